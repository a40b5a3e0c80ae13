package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/bench"
)

// The scenarios of benchmarks.md that `concord bench` runs besides the thin-slice reads.
// Every expected result count is computed from the region definition or from the stored
// rows (raw SQL, not the search code under test) before the run, never written down.
var (
	s2Names = []string{"s2-family-birthdate", "s2-identifier", "s2-name-gender", "s2-match"}
	s3Names = []string{"s3-lab", "s3-lab-code", "s3-lab-date"}
	s5Names = []string{"s5-binary-4k", "s5-binary-64k", "s5-binary-1m", "s5-binary-deny"}
	s7Names = []string{"s7-synthea-c1", "s7-synthea-c4"}
)

// benchEnv is what the scenario builders share: the running Concord and its demo region.
type benchEnv struct {
	ctx    context.Context
	m      *Main
	region region
	seed   uint64
	read   *tokenSource // member 0, system/*.rs
	write  func(member int) (*tokenSource, error)
	client *http.Client
}

// patientOf returns member mi's Patient id for region person pi.
func (e *benchEnv) patientOf(mi, pi int) (string, error) {
	src, err := e.m.mpi.SourceByIdentifier(e.ctx, nil, e.region.members[mi].OID, e.region.mrn(mi, pi))
	return src.PatientID, err
}

// call sends one request with ts's token and returns the status and body.
func (e *benchEnv) call(ts *tokenSource, method, path, ctype string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(e.ctx, method, e.m.cfg.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range ts.header() {
		req.Header[k] = v
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	_, err = out.ReadFrom(resp.Body)
	return resp.StatusCode, out.Bytes(), err
}

// wantCount checks that a Bundle answer carries n results (its total, or its entries
// when it has none).
func wantCount(n int) func(int, []byte) error {
	return func(_ int, body []byte) error {
		got, err := bench.BundleCount(body)
		if err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d results, want %d", got, n)
		}
		return nil
	}
}

// knows reports whether region person p is known to member mi.
func knows(p demoPerson, mi int) bool { return slices.Contains(p.Members, mi) }

// visibleRecords counts the Patient records member 0 may see of the persons that match:
// every member's record of every person, because the region's default treatment policy is
// opt-out (consent.DefaultPolicies: treatment permitted to member systems unless the
// patient denies it) and the demo region seeds no directive and no labelled Patient.
func (e *benchEnv) visibleRecords(match func(demoPerson) bool) int {
	n := 0
	for _, p := range e.region.persons {
		if match(p) {
			n += len(p.Members)
		}
	}
	return n
}

// patientSearch is S2: Patient search and $match as member 0, 16 connections, against the
// PostgreSQL point-select anchor.
func (e *benchEnv) patientSearch() ([]bench.Scenario, error) {
	r := e.region
	own := r.members[0]
	ana := r.persons[0]
	// name+gender: the family most persons share.
	fam := map[string]int{}
	for _, p := range r.persons {
		fam[p.Family]++
	}
	name, best := "", 0
	for f, n := range fam {
		if n > best || n == best && f < name {
			name, best = f, n
		}
	}
	var gender string
	for _, p := range r.persons {
		if p.Family == name {
			gender = p.Gender
			break
		}
	}
	prefix := func(s string) bool { return strings.HasPrefix(strings.ToLower(s), strings.ToLower(name)) }
	// A search answers one page (the server's default size): a bigger region (--persons)
	// fills it.
	nFamBirth := min(fhir.DefaultCount, e.visibleRecords(func(p demoPerson) bool { return p.Family == ana.Family && p.BirthDate == ana.BirthDate }))
	nNameGender := min(fhir.DefaultCount, e.visibleRecords(func(p demoPerson) bool { return p.Gender == gender && (prefix(p.Family) || prefix(p.Given)) }))
	mrn := r.mrn(0, 0)
	nIdent := 0
	for i, p := range r.persons {
		for _, mi := range p.Members {
			if r.members[mi].OID == own.OID && r.mrn(mi, i) == mrn {
				nIdent++
			}
		}
	}
	// $match with onlyCertainMatches: one entry per person with the same demographics.
	nMatch := 0
	for _, p := range r.persons {
		if p.Family == ana.Family && p.Given == ana.Given && p.BirthDate == ana.BirthDate && p.Gender == ana.Gender {
			nMatch++
		}
	}
	match, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": []any{
		map[string]any{"name": "resource", "resource": map[string]any{"resourceType": "Patient",
			"name": []any{map[string]any{"family": ana.Family, "given": []string{ana.Given}}}, "gender": ana.Gender, "birthDate": ana.BirthDate,
			"telecom": []any{map[string]any{"system": "phone", "value": ana.Phone}},
			"address": []any{map[string]any{"line": []string{ana.Street}, "city": ana.City, "postalCode": ana.ZIP}}}},
		map[string]any{"name": "onlyCertainMatches", "valueBoolean": true},
	}})
	base := e.m.cfg.BaseURL + "/fhir/Patient"
	form := func(ct string) func() http.Header {
		return func() http.Header {
			h := e.read.header()
			h.Set("Content-Type", ct)
			return h
		}
	}
	q := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	return []bench.Scenario{
		bench.HTTPScenario{Name: s2Names[0], URL: base + "?" + q("family", ana.Family, "birthdate", ana.BirthDate), Header: e.read.header,
			Check: wantCount(nFamBirth), Count: bench.BundleCount, Anchor: bench.AnchorPG, Conns: 16},
		bench.HTTPScenario{Name: s2Names[1], URL: base + "?" + q("identifier", own.OID+"|"+mrn), Header: e.read.header,
			Check: wantCount(nIdent), Count: bench.BundleCount, Anchor: bench.AnchorPG, Conns: 16},
		bench.HTTPScenario{Name: s2Names[2], Method: http.MethodPost, URL: base + "/_search", Body: []byte(q("name", name, "gender", gender)),
			Header: form("application/x-www-form-urlencoded"), Check: wantCount(nNameGender), Count: bench.BundleCount, Anchor: bench.AnchorPG, Conns: 16},
		bench.HTTPScenario{Name: s2Names[3], Method: http.MethodPost, URL: base + "/$match", Body: match,
			Header: form("application/fhir+json"), Check: wantCount(nMatch), Count: bench.BundleCount, Anchor: bench.AnchorPG, Conns: 16},
	}, nil
}

// labsPerPatient is how many lab Observations S3 adds for its patient, so a _count=50 page
// is full and the sort has work to do.
const labsPerPatient = 200

// labSearch is S3: member 0's lab search for one patient, in resources/s, against the
// PostgreSQL point-select anchor. The demo region has at most 28 labs per person, so it
// first posts labsPerPatient more for the patient as one transaction Bundle through the
// API (values and dates drawn from the run's seed, dated before a fixed day, so the same
// seed gives the same bytes), then analyzes.
func (e *benchEnv) labSearch() ([]bench.Scenario, error) {
	r := e.region
	// A person only member 0 knows, so every lab of the person is member 0's own and no
	// consent decision changes the count; else any person member 0 knows.
	pi := -1
	for i, p := range r.persons {
		if knows(p, 0) && (pi < 0 || len(p.Members) == 1 && len(r.persons[pi].Members) > 1) {
			pi = i
		}
	}
	patient, err := e.patientOf(0, pi)
	if err != nil {
		return nil, err
	}
	w, err := e.write(0)
	if err != nil {
		return nil, err
	}
	rng := mrand.New(mrand.NewPCG(e.seed, 0x733362))
	day0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type entry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  map[string]any  `json:"request"`
	}
	var entries []entry
	for i := range labsPerPatient {
		t := demoLabs[rng.IntN(len(demoLabs))]
		at := day0.Add(-time.Duration(rng.IntN(5*365*24*60)) * time.Minute)
		entries = append(entries, entry{FullURL: fmt.Sprintf("urn:uuid:00000000-0000-4000-8000-%012d", i),
			Resource: observationJSON(t, t.Mean+t.SD*rng.NormFloat64(), at, patient),
			Request:  map[string]any{"method": "POST", "url": "Observation"}})
	}
	body, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
	st, out, err := e.call(w, http.MethodPost, "/fhir", "application/fhir+json", body)
	if err != nil {
		return nil, err
	}
	if st != http.StatusOK {
		return nil, fmt.Errorf("loading labs: %d %.300s", st, out)
	}
	if err := e.m.vacuumAnalyze(e.ctx); err != nil {
		return nil, err
	}
	// The expected counts come from the stored rows of every Patient record of the person.
	const rows = `SELECT convert_from(r.body, 'UTF8')::jsonb AS j FROM fhir_resources r
		JOIN mpi_source_records s ON s.patient_id = r.patient_id
		JOIN mpi_source_records me ON me.person_id = s.person_id AND me.patient_id = $1
		WHERE r.type = 'Observation' AND NOT r.deleted`
	const lab = ` AND j->'category' @> '[{"coding":[{"code":"laboratory"}]}]'`
	count := func(where string, args ...any) (int, error) {
		var n int
		err := e.m.pool.QueryRow(e.ctx, `SELECT count(*) FROM (`+rows+`) o WHERE true`+lab+where, append([]any{patient}, args...)...).Scan(&n)
		return n, err
	}
	code := "http://loinc.org|" + demoLabs[0].LOINC
	// date=ge a day no lab is near (a day either side), so time zones cannot move a lab
	// across the boundary: start from the median lab's day.
	var median time.Time
	if err := e.m.pool.QueryRow(e.ctx, `SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY (j->>'effectiveDateTime')::timestamptz) FROM (`+rows+`) o`, patient).Scan(&median); err != nil {
		return nil, err
	}
	cut := median.UTC().Truncate(24 * time.Hour)
	for range 60 {
		near, err := count(` AND (j->>'effectiveDateTime')::timestamptz BETWEEN $2 AND $3`, cut.Add(-24*time.Hour), cut.Add(48*time.Hour))
		if err != nil {
			return nil, err
		}
		if near == 0 {
			break
		}
		cut = cut.Add(24 * time.Hour)
	}
	nAll, err := count("")
	if err != nil {
		return nil, err
	}
	nCode, err := count(` AND j->'code'->'coding' @> $2::jsonb`, fmt.Sprintf(`[{"system":"http://loinc.org","code":%q}]`, demoLabs[0].LOINC))
	if err != nil {
		return nil, err
	}
	nDate, err := count(` AND (j->>'effectiveDateTime')::timestamptz >= $2`, cut)
	if err != nil {
		return nil, err
	}
	base := e.m.cfg.BaseURL + "/fhir/Observation?patient=" + patient + "&category=laboratory&_count=50&_sort=-date"
	mk := func(name, extra string, n int) bench.Scenario {
		return bench.HTTPScenario{Name: name, URL: base + extra, Header: e.read.header, Check: sampled(8, labPage(n)), Metric: bench.Resources,
			Anchor: bench.AnchorPG, Conns: 16}
	}
	return []bench.Scenario{
		mk(s3Names[0], "", nAll),
		mk(s3Names[1], "&code="+url.QueryEscape(code), nCode),
		mk(s3Names[2], "&date=ge"+cut.Format(time.DateOnly), nDate),
	}, nil
}

// sampled runs check on the first answer and then on every nth: the answers of one
// scenario are the same query's, and the bench engine still counts and compares every
// answer's entries, so decoding each 60 KB page in full would only crowd the server's cores
// with the load generator's work.
func sampled(n int, check func(int, []byte) error) func(int, []byte) error {
	var calls atomic.Int64
	return func(status int, body []byte) error {
		if (calls.Add(1)-1)%int64(n) != 0 {
			return nil
		}
		return check(status, body)
	}
}

// labPage checks the first page of a lab search with n matches: min(n, 50) entries, each a
// match, newest first, and a total of n when the page has one.
func labPage(n int) func(int, []byte) error { return firstPage("Observation", n, true) }

// firstPage checks the first page of a search of typ with n matches: min(n, 50) entries,
// each a match of typ, a total of n when the page has one and, with newestFirst, entries
// sorted by effectiveDateTime, newest first.
func firstPage(typ string, n int, newestFirst bool) func(int, []byte) error {
	return func(_ int, body []byte) error {
		var b struct {
			ResourceType string `json:"resourceType"`
			Total        *int   `json:"total"`
			Entry        []struct {
				Resource struct {
					ResourceType string `json:"resourceType"`
					Effective    string `json:"effectiveDateTime"`
				} `json:"resource"`
				Search struct {
					Mode string `json:"mode"`
				} `json:"search"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" {
			return fmt.Errorf("answer is not a Bundle")
		}
		if b.Total != nil && *b.Total != n {
			return fmt.Errorf("total %d, want %d", *b.Total, n)
		}
		if len(b.Entry) != min(n, 50) {
			return fmt.Errorf("%d entries, want %d", len(b.Entry), min(n, 50))
		}
		var prev time.Time
		for i, e := range b.Entry {
			if e.Resource.ResourceType != typ || e.Search.Mode != "match" {
				return fmt.Errorf("entry %d is a %s (%s)", i, e.Resource.ResourceType, e.Search.Mode)
			}
			if !newestFirst {
				continue
			}
			at, err := time.Parse(time.RFC3339, e.Resource.Effective)
			if err != nil {
				return fmt.Errorf("entry %d: effectiveDateTime %q", i, e.Resource.Effective)
			}
			if i > 0 && at.After(prev) {
				return fmt.Errorf("entry %d is newer than entry %d: not sorted by -date", i, i-1)
			}
			prev = at
		}
		return nil
	}
}

// docObjects is how many documents S5 uploads per size, as many as the S3 anchor's objects.
const docObjects = 8

// documents is S5: member 0 reads, through GET /fhir/Binary/{id}, documents member 1 sent
// about a person both know (so every read is a consent decision under the regional
// treatment policy, not the sender reading its own; then audit, bytes streamed from S3),
// for 4 KB, 64 KB and 1 MB objects, each against the raw signed S3 GET anchor of the same
// size at the same concurrency (the anchor's workers); and the deny path: a labelled
// document another member holds about a person member 0 does not know answers 404,
// against HTTP hello-world. The documents are
// uploaded through the API (a DocumentReference with inline data) with bytes drawn from the
// run's seed; every answer's size and SHA-256 must be those of a stored document.
func (e *benchEnv) documents(workers int) ([]bench.Scenario, error) {
	r := e.region
	if !knows(r.persons[0], 0) || !knows(r.persons[0], 1) {
		return nil, fmt.Errorf("demo person 0 is not known to members 0 and 1")
	}
	patient, err := e.patientOf(1, 0)
	if err != nil {
		return nil, err
	}
	w, err := e.write(1)
	if err != nil {
		return nil, err
	}
	rng := mrand.New(mrand.NewPCG(e.seed, 0x733562))
	upload := func(ts *tokenSource, patient string, data []byte, labels ...string) (string, error) {
		var security []map[string]string
		for _, l := range labels {
			security = append(security, map[string]string{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": l})
		}
		res := map[string]any{"resourceType": "DocumentReference", "status": "current",
			"subject": map[string]string{"reference": "Patient/" + patient},
			"content": []any{map[string]any{"attachment": map[string]string{"contentType": "application/dicom", "data": base64.StdEncoding.EncodeToString(data)}}}}
		if len(security) > 0 {
			res["meta"] = map[string]any{"security": security}
		}
		doc, _ := json.Marshal(res)
		st, out, err := e.call(ts, http.MethodPost, "/fhir/DocumentReference", "application/fhir+json", doc)
		if err != nil {
			return "", err
		}
		if st != http.StatusCreated {
			return "", fmt.Errorf("upload: %d %.300s", st, out)
		}
		var d struct {
			Content []struct {
				Attachment struct {
					URL string `json:"url"`
				} `json:"attachment"`
			} `json:"content"`
		}
		if err := json.Unmarshal(out, &d); err != nil || len(d.Content) != 1 {
			return "", fmt.Errorf("upload answered %.300s", out)
		}
		_, id, ok := strings.Cut(d.Content[0].Attachment.URL, "/Binary/")
		if !ok || id == "" {
			return "", fmt.Errorf("attachment url %q", d.Content[0].Attachment.URL)
		}
		return id, nil
	}
	binHeader := func() http.Header {
		h := e.read.header()
		h.Set("Accept", "*/*")
		return h
	}
	var out []bench.Scenario
	for i, sz := range []struct {
		size   int
		anchor string
	}{{4 << 10, bench.AnchorS3_4K}, {64 << 10, bench.AnchorS3_64K}, {1 << 20, bench.AnchorS3_1M}} {
		var urls []string
		sums := map[[32]byte]bool{}
		for range docObjects {
			data := dicomBytes(rng, sz.size)
			id, err := upload(w, patient, data)
			if err != nil {
				return nil, err
			}
			urls = append(urls, e.m.cfg.BaseURL+"/fhir/Binary/"+id)
			sums[sha256.Sum256(data)] = true
		}
		size := sz.size
		// Every answer's size is checked; its SHA-256 on every 8th (the server verifies the
		// hash of every byte it sends; the raw S3 anchor only counts bytes, so hashing each
		// answer here too would charge the load generator's work to Concord).
		stored := sampled(8, func(_ int, body []byte) error {
			if !sums[sha256.Sum256(body)] {
				return fmt.Errorf("the bytes are not those of a stored document")
			}
			return nil
		})
		out = append(out, bench.HTTPScenario{Name: s5Names[i], URLs: urls, Header: binHeader, Anchor: sz.anchor, Conns: workers,
			Check: func(status int, body []byte) error {
				if len(body) != size {
					return fmt.Errorf("%d bytes, want %d", len(body), size)
				}
				return stored(status, body)
			}})
	}
	// The deny path: another member's mental-health (PSY) document about a person member 0
	// does not know. The regional opt-out policy releases no labelled item, and the person
	// has no consent of their own, so member 0 gets the 404 of an unknown id.
	pi := slices.IndexFunc(r.persons, func(p demoPerson) bool { return !knows(p, 0) })
	if pi < 0 {
		return nil, fmt.Errorf("every demo person is known to %s: no deny path", r.members[0].ID)
	}
	holder := r.persons[pi].Members[0]
	other, err := e.patientOf(holder, pi)
	if err != nil {
		return nil, err
	}
	ow, err := e.write(holder)
	if err != nil {
		return nil, err
	}
	denied, err := upload(ow, other, dicomBytes(rng, 4<<10), "PSY")
	if err != nil {
		return nil, err
	}
	out = append(out, bench.HTTPScenario{Name: s5Names[3], URL: e.m.cfg.BaseURL + "/fhir/Binary/" + denied, Header: binHeader,
		Status: http.StatusNotFound, Anchor: bench.AnchorHello, Conns: 64})
	return out, nil
}

// dicomBytes returns size bytes shaped as a DICOM file (a 128-byte preamble and "DICM",
// one of the allowed document types), the rest drawn from rng.
func dicomBytes(rng *mrand.Rand, size int) []byte {
	data := make([]byte, size)
	for j := 132; j < size; j++ {
		data[j] = byte(rng.Uint32())
	}
	copy(data[128:], "DICM")
	return data
}

// printBytesRatios prints, for each named scenario, its bytes/s over its reference's
// bytes/s, per round (the reference measured just before it) and their median: S5's
// second figure beside the ops/s ratio of the table.
func printBytesRatios(w io.Writer, rep *bench.Report, names ...string) {
	for _, name := range names {
		var ratios []float64
		for i, r := range rep.Records {
			if r.Name != name || r.Reference == "" {
				continue
			}
			for j := i - 1; j >= 0; j-- {
				ref := rep.Records[j]
				if ref.Name == r.Reference && ref.Round == r.Round {
					if ref.BytesPerSec > 0 {
						ratios = append(ratios, r.BytesPerSec/ref.BytesPerSec)
					}
					break
				}
			}
		}
		if len(ratios) == 0 {
			continue
		}
		s := bench.SpreadOf(ratios)
		fmt.Fprintf(w, "%s bytes/s over its anchor's: median %.3f [%.3f–%.3f] over %d rounds\n", name, s.Median, s.Min, s.Max, len(ratios))
	}
}

// syntheaMRN is the identifier system of the Synthea bundles' Patients (their MRNs): the
// member S7 loads as must own it, as a sending member owns its MRN namespace.
const syntheaMRN = "http://hospital.smarthealthit.org"

// syntheaMember registers the member S7 loads as, a hospital whose MRN namespace is the
// bundles' (so no demo member's data, which the read scenarios count, changes), with a
// client system, and returns a write token source for it.
func (e *benchEnv) syntheaMember() (*tokenSource, string, error) {
	dm, err := e.m.directory.AddMember(e.ctx, "Synthea Hospital", syntheaMRN)
	if err != nil {
		return nil, "", err
	}
	priv, pub, err := newClientKey(dm.ID)
	if err != nil {
		return nil, "", err
	}
	c, err := e.m.directory.AddClient(e.ctx, dm.ID, pub, nil, nil)
	if err != nil {
		return nil, "", err
	}
	creds, _ := json.Marshal(struct {
		ClientID string          `json:"client_id"`
		Key      json.RawMessage `json:"private_jwk"`
	}{c.ID, priv})
	path := filepath.Join(e.m.cfg.DataDir, "demo-clients", dm.ID+".json")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		return nil, "", err
	}
	ts, err := newTokenSource(e.m.cfg.DataDir, dm.ID, e.m.cfg.BaseURL+"/token", "system/*.cruds")
	return ts, dm.ID, err
}

// synthea is S7: the raw Synthea transaction bundles in dir POSTed to [base] as they are,
// by 1 and by 4 concurrent clients, in resources/s against the PostgreSQL INSERT anchor.
// One op is one bundle; the bundles are taken in turn from one cursor shared by every
// worker and round, so each is sent once before any is sent again. The exchange makes a
// re-sent body idempotent (it answers the first response and writes nothing), which would
// turn later passes into free answers, so every post carries an Idempotency-Key of its own
// (bundle and pass), as a sender regenerating the bundle would: a re-sent bundle updates its
// Patient (matched by MRN) and matches its Organizations and Practitioners, but stores its
// clinical entries again. The database is the run's own and is dropped at the end. An
// answer is right only when it is a transaction-response with one 2xx entry per request
// entry. The returned check, called after the run, fails it when any bundle failed
// (warm-up included: S7 requires 0 errors) and compares the member's stored Patients with
// the number of distinct bundles sent: no bundle may leave a duplicate Patient.
func (e *benchEnv) synthea(dir string) ([]bench.Scenario, func() error, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		return nil, nil, fmt.Errorf("no Synthea bundles (*.json) in %s", dir)
	}
	bodies := make([][]byte, len(files))
	entries := make([]int, len(files))
	for i, f := range files {
		if bodies[i], err = os.ReadFile(f); err != nil {
			return nil, nil, err
		}
		var b struct {
			Type  string            `json:"type"`
			Entry []json.RawMessage `json:"entry"`
		}
		if err := json.Unmarshal(bodies[i], &b); err != nil || b.Type != "transaction" {
			return nil, nil, fmt.Errorf("%s is not a transaction Bundle", filepath.Base(f))
		}
		entries[i] = len(b.Entry)
	}
	ts, member, err := e.syntheaMember()
	if err != nil {
		return nil, nil, err
	}
	patients := func() (int, error) {
		var n int
		err := e.m.pool.QueryRow(e.ctx, `SELECT count(*) FROM fhir_resources WHERE type = 'Patient' AND member_id = $1 AND NOT deleted`, member).Scan(&n)
		return n, err
	}
	before, err := patients()
	if err != nil {
		return nil, nil, err
	}
	client := bench.NewHTTPClient(4, 2*time.Minute)
	var next atomic.Int64
	var failed atomic.Int64
	var firstBad atomic.Pointer[string] // the first failure's answer, for the operator (synthetic data only)
	sent := make([]atomic.Bool, len(bodies))
	var out []bench.Scenario
	for i, workers := range []int{1, 4} {
		items := new(atomic.Int64)
		out = append(out, bench.FuncScenario{Name: s7Names[i], Anchor: bench.AnchorPGInsert, Workers: workers, Metric: bench.Resources, Items: items,
			NewOp: func(int) bench.Op {
				var buf bytes.Buffer
				return func(ctx context.Context) (int64, error) {
					n := int(next.Add(1) - 1)
					k := n % len(bodies)
					req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.m.cfg.BaseURL+"/fhir", bytes.NewReader(bodies[k]))
					if err != nil {
						return 0, err
					}
					for h, v := range ts.header() {
						req.Header[h] = v
					}
					req.Header.Set("Content-Type", "application/fhir+json")
					req.Header.Set("Idempotency-Key", fmt.Sprintf("concord-bench-s7-%d-pass-%d", k, n/len(bodies)))
					resp, err := client.Do(req)
					if err != nil {
						return 0, err
					}
					buf.Reset()
					_, err = buf.ReadFrom(resp.Body)
					resp.Body.Close()
					if err != nil {
						return 0, err
					}
					if resp.StatusCode != http.StatusOK {
						failed.Add(1)
						msg := fmt.Sprintf("%s: %d %.400s", filepath.Base(files[k]), resp.StatusCode, buf.Bytes())
						firstBad.CompareAndSwap(nil, &msg)
						return 0, &bench.StatusError{Status: resp.StatusCode}
					}
					if err := transactionResponse(buf.Bytes(), entries[k]); err != nil {
						failed.Add(1)
						return 0, &bench.CheckError{Err: fmt.Errorf("%s: %w", filepath.Base(files[k]), err)}
					}
					sent[k].Store(true)
					items.Add(int64(entries[k]))
					return int64(buf.Len()), nil
				}
			}})
	}
	check := func() error {
		defer client.CloseIdleConnections()
		if n := failed.Load(); n > 0 {
			first := ""
			if p := firstBad.Load(); p != nil {
				first = "; first: " + *p
			}
			return fmt.Errorf("S7: %d of %d bundles failed, 0 allowed%s", n, next.Load(), first)
		}
		distinct := 0
		for i := range sent {
			if sent[i].Load() {
				distinct++
			}
		}
		after, err := patients()
		if err != nil {
			return err
		}
		if after-before != distinct {
			return fmt.Errorf("S7: %d bundles sent (%d distinct) left %d new Patients, want %d", next.Load(), distinct, after-before, distinct)
		}
		return nil
	}
	return out, check, nil
}

// transactionResponse checks a transaction's answer: a transaction-response Bundle with
// n entries, each with a 2xx status.
func transactionResponse(body []byte, n int) error {
	var b struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Response struct {
				Status string `json:"status"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.ResourceType != "Bundle" || b.Type != "transaction-response" {
		return fmt.Errorf("answer is not a transaction-response")
	}
	if len(b.Entry) != n {
		return fmt.Errorf("%d response entries for %d entries", len(b.Entry), n)
	}
	for i, x := range b.Entry {
		if !strings.HasPrefix(x.Response.Status, "2") {
			return fmt.Errorf("entry %d: status %q", i, x.Response.Status)
		}
	}
	return nil
}
