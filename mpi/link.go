package mpi

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"sync"

	"github.com/concord-hie/concord/internal/errs"
)

//go:embed default_model.json
var defaultModelJSON []byte

// DefaultModel returns the model shipped with Concord: trained by EM on the seeded
// HIE-style generator (mpi/eval) and calibrated there for 0.999 auto-link precision (guarded pairs included).
// Regenerate it with `go test ./mpi/eval -run TestWriteDefaultModel -update`.
func DefaultModel() (*Model, error) { return LoadModel(defaultModelJSON) }

// LinkOptions control LinkNDJSON.
type LinkOptions struct {
	Model     *Model     // nil: DefaultModel
	Nicknames *Nicknames // nil: DefaultNicknames
	Workers   int        // ≤ 0: GOMAXPROCS
	// Progress, when set, is called from time to time with a short stage name and counts;
	// it may be called from several goroutines at once.
	Progress func(stage string, done, total int)
}

// LinkStats summarises a LinkNDJSON run.
type LinkStats struct {
	Lines, Records, Persons, Reviews int
	Pairs                            int64 // candidate pairs scored
	BadLines                         []int // 1-based line numbers that were not a Patient
}

// fhirPatient is the subset of a FHIR R4 Patient that matching reads.
type fhirPatient struct {
	ResourceType string `json:"resourceType"`
	Identifier   []struct {
		System string `json:"system"`
		Value  string `json:"value"`
	} `json:"identifier"`
	Name []struct {
		Use    string   `json:"use"`
		Family string   `json:"family"`
		Given  []string `json:"given"`
		Suffix []string `json:"suffix"`
	} `json:"name"`
	Gender    string `json:"gender"`
	BirthDate string `json:"birthDate"`
	Address   []struct {
		Use        string   `json:"use"`
		Line       []string `json:"line"`
		City       string   `json:"city"`
		State      string   `json:"state"`
		PostalCode string   `json:"postalCode"`
	} `json:"address"`
	Telecom []struct {
		System string `json:"system"`
		Value  string `json:"value"`
		Use    string `json:"use"`
	} `json:"telecom"`
}

// PatientInput converts a FHIR R4 Patient (JSON) to an Input: identifier[0] is the
// member's MRN, an identifier with system SSNSystem is the SSN, other identifiers are
// kept; the official (else first) name, the home (else first) address and the first
// phone are used. It returns errs.Invalid when data is not a Patient resource.
func PatientInput(data []byte) (Input, error) {
	var p fhirPatient
	if err := json.Unmarshal(data, &p); err != nil {
		return Input{}, errs.E("mpi.PatientInput", errs.Invalid, "not valid JSON", err)
	}
	if p.ResourceType != "Patient" {
		return Input{}, errs.E("mpi.PatientInput", errs.Invalid, "resource is not a Patient")
	}
	var in Input
	for i, id := range p.Identifier {
		switch {
		case id.System == SSNSystem:
			in.SSN = id.Value
		case i == 0:
			in.Source = Identifier{System: id.System, Value: id.Value}
		default:
			in.Identifiers = append(in.Identifiers, Identifier{System: id.System, Value: id.Value})
		}
	}
	if len(p.Name) > 0 {
		n := p.Name[0]
		for _, x := range p.Name {
			if x.Use == "official" {
				n = x
				break
			}
		}
		in.Given, in.Family = n.Given, n.Family
		if len(n.Suffix) > 0 {
			in.Suffix = n.Suffix[0]
		}
	}
	in.Sex, in.BirthDate = p.Gender, p.BirthDate
	if len(p.Address) > 0 {
		a := p.Address[0]
		for _, x := range p.Address {
			if x.Use == "home" {
				a = x
				break
			}
		}
		in.Lines, in.City, in.State, in.PostalCode = a.Line, a.City, a.State, a.PostalCode
	}
	for _, t := range p.Telecom {
		if t.System == "phone" && t.Value != "" {
			in.Phone = t.Value
			break
		}
	}
	return in, nil
}

// LinkNDJSON reads NDJSON FHIR R4 Patients from in, links them in memory with the same
// engine the server uses, and writes `system,value,person` CSV to out (one row per
// Patient, in input order; person IDs are P1, P2, ... in order of first appearance).
// When review is not nil it receives the records sent to review with their best
// candidate and score. Lines that are not a Patient are skipped and listed in
// LinkStats.BadLines; the rest is still written, and the error is then errs.Invalid
// naming the line numbers. A cancelled ctx gives errs.Unavailable.
func LinkNDJSON(ctx context.Context, in io.Reader, out, review io.Writer, opts LinkOptions) (LinkStats, error) {
	const op = "mpi.LinkNDJSON"
	var st LinkStats
	m := opts.Model
	if m == nil {
		var err error
		if m, err = DefaultModel(); err != nil {
			return st, err
		}
	}
	nick := opts.Nicknames
	if nick == nil {
		nick = DefaultNicknames()
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	recs, err := readPatients(ctx, in, NewNormalizer(nick), workers, &st, opts.Progress)
	if err != nil {
		return st, err
	}
	st.Records = recs.len()
	lm := *m
	var tmp, tmp2 Record
	lm.fitTF(recs.len(), func(j int) *Record { return recs.load(j, &tmp) }) // term frequencies of the population being linked
	var prog func(int)
	if opts.Progress != nil {
		prog = func(done int) { opts.Progress("link", done, recs.len()) }
	}
	res, err := lm.linkBatch(ctx, recs, workers, prog)
	if err != nil {
		return st, err
	}
	st.Persons, st.Reviews, st.Pairs = res.Persons, len(res.Reviews), res.Pairs

	// Person IDs in order of first appearance.
	ids := make([]int32, res.Persons)
	next := int32(0)
	name := func(p int32) string {
		if ids[p] == 0 {
			next++
			ids[p] = next
		}
		return "P" + strconv.Itoa(int(ids[p]))
	}
	w := csv.NewWriter(out)
	_ = w.Write([]string{"system", "value", "person"})
	for i := range recs.len() {
		r := recs.load(i, &tmp)
		if err := w.Write([]string{r.Source.System, r.Source.Value, name(res.Person[i])}); err != nil {
			return st, errs.E(op, errs.Unavailable, "writing links failed", err)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return st, errs.E(op, errs.Unavailable, "writing links failed", err)
	}
	if review != nil {
		rw := csv.NewWriter(review)
		_ = rw.Write([]string{"system", "value", "other_system", "other_value", "score", "reason"})
		for _, r := range res.Reviews {
			a, b := recs.load(r.Record, &tmp), recs.load(r.Other, &tmp2)
			reason := r.Guards.String()
			switch {
			case r.PossibleDuplicate:
				reason = "possible-duplicate"
			case reason == "" && r.Score < lm.Link:
				reason = "review-band"
			case reason == "":
				reason = "margin"
			}
			_ = rw.Write([]string{a.Source.System, a.Source.Value, b.Source.System, b.Source.Value,
				strconv.FormatFloat(r.Score, 'f', 2, 64), reason})
		}
		rw.Flush()
		if err := rw.Error(); err != nil {
			return st, errs.E(op, errs.Unavailable, "writing reviews failed", err)
		}
	}
	if len(st.BadLines) > 0 {
		shown := st.BadLines
		if len(shown) > 20 {
			shown = shown[:20]
		}
		return st, errs.E(op, errs.Invalid, fmt.Sprintf("%d malformed line(s), first: %v", len(st.BadLines), shown))
	}
	return st, nil
}

// lineChunk is a run of consecutive input lines, copied out of the scanner's buffer.
type lineChunk struct {
	seq   int    // chunk number, for putting results back in input order
	first int    // 1-based line number of the first line
	data  []byte // the lines' bytes
	ends  []int  // end offset of each line in data
}

// parsedChunk is a chunk's packed records and its lines that were not a Patient.
type parsedChunk struct {
	seq  int
	recs []packedRec
	bad  []int
}

// readPatients streams NDJSON Patients from in: one goroutine reads lines in chunks,
// workers parse, normalize and pack them, and the records come back in input order, left
// in the chunks they were built in (no copy into one growing slice). Only the packed
// records are kept, never the input text nor a whole Record. Blank lines are skipped; lines
// that are not a Patient go to st.BadLines in order. st.Lines counts every line read.
func readPatients(ctx context.Context, in io.Reader, norm *Normalizer, workers int, st *LinkStats, progress func(string, int, int)) (*packedStore, error) {
	const op = "mpi.LinkNDJSON"
	const chunkLines = 1024
	store := &packedStore{nick: norm.nick}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan lineChunk, workers)
	results := make(chan parsedChunk, workers)
	var readErr error
	lines := 0
	go func() {
		defer close(jobs)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		c := lineChunk{first: 1}
		send := func() bool {
			select {
			case jobs <- c:
			case <-ctx.Done():
				return false
			}
			c = lineChunk{seq: c.seq + 1, first: lines + 1, data: make([]byte, 0, len(c.data)), ends: make([]int, 0, chunkLines)}
			return true
		}
		for sc.Scan() {
			lines++
			c.data = append(c.data, sc.Bytes()...)
			c.ends = append(c.ends, len(c.data))
			if len(c.ends) == chunkLines && !send() {
				return
			}
		}
		readErr = sc.Err()
		if len(c.ends) > 0 {
			send()
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var nrecs []Record
			for c := range jobs {
				p := parsedChunk{seq: c.seq}
				nrecs = nrecs[:0]
				start := 0
				for k, end := range c.ends {
					line := c.data[start:end]
					start = end
					if len(bytes.TrimSpace(line)) == 0 {
						continue
					}
					pin, err := PatientInput(line)
					if err != nil {
						p.bad = append(p.bad, c.first+k)
						continue
					}
					nrecs = append(nrecs, norm.Normalize(pin))
				}
				p.recs = store.packChunk(make([]packedRec, 0, len(nrecs)), nrecs)
				clear(nrecs) // drop the strings the packed records do not share
				select {
				case results <- p:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(results) }()
	var recs []*packedRec
	pending := map[int]parsedChunk{}
	next, reported := 0, 0
	for p := range results {
		pending[p.seq] = p
		for {
			q, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			for k := range q.recs {
				recs = append(recs, &q.recs[k])
			}
			st.BadLines = append(st.BadLines, q.bad...)
		}
		if progress != nil && len(recs)-reported >= 100000 {
			reported = len(recs)
			progress("read", len(recs), 0)
		}
		if ctx.Err() != nil {
			cancel()
			for range results { // let the workers and the reader finish
			}
			return nil, errs.E(op, errs.Unavailable, ctx.Err())
		}
	}
	if ctx.Err() != nil {
		return nil, errs.E(op, errs.Unavailable, ctx.Err())
	}
	st.Lines = lines // the reader is done: results closed after jobs was drained
	if readErr != nil {
		return nil, errs.E(op, errs.Invalid, "input unreadable", readErr)
	}
	store.recs = slices.Clip(recs)
	return store, nil
}
