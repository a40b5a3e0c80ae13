package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/concord-hie/concord/internal/bench"
)

// s4Names are S4's scenarios: MHD find (ITI-67) of one patient's notes by category and by
// type, each with a date bound.
var s4Names = []string{"s4-docref-category", "s4-docref-type"}

// s4Bundle is how many notes one load transaction carries.
const s4Bundle = 100

// docSearch is S4: member 0 searches DocumentReference for one patient by category or type
// and date (`_count=50`), in req/s against the PostgreSQL point-select anchor. It first loads
// the Synthea clinical notes of notesPath (1,215 DocumentReferences about 13 patients, with
// their text inline) through the API as member 0's transaction Bundles, each Synthea patient
// becoming a region person member 0 knows. Each note keeps its status, type, category, date
// and bytes; its server id is assigned on POST, and its author and custodian (conditional
// references to Practitioners and Organizations that were never sent) keep only their
// display text. context.encounter stays as sent: a reference to an Encounter not in the
// store, which FHIR allows. The query
// names the person with the most notes; the expected counts come from the stored rows.
func (e *benchEnv) docSearch(notesPath string) ([]bench.Scenario, error) {
	w, err := e.write(0)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(notesPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var known []int // region persons member 0 knows, in region order
	for i, p := range e.region.persons {
		if knows(p, 0) {
			known = append(known, i)
		}
	}
	patients := map[string]string{} // Synthea subject → member 0's Patient id
	notes := map[string]int{}       // member 0's Patient id → notes
	var entries []json.RawMessage
	load := func() error {
		if len(entries) == 0 {
			return nil
		}
		body, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": entries})
		st, out, err := e.call(w, http.MethodPost, "/fhir", "application/fhir+json", body)
		if err != nil {
			return err
		}
		if st != http.StatusOK {
			return fmt.Errorf("loading notes: %d %.300s", st, out)
		}
		if err := transactionResponse(out, len(entries)); err != nil {
			return fmt.Errorf("loading notes: %v", err)
		}
		entries = entries[:0]
		return nil
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var note map[string]any
		if err := json.Unmarshal(sc.Bytes(), &note); err != nil {
			return nil, fmt.Errorf("%s: %v", notesPath, err)
		}
		subject, _ := note["subject"].(map[string]any)
		ref, _ := subject["reference"].(string)
		patient, ok := patients[ref]
		if !ok {
			if len(patients) == len(known) {
				return nil, fmt.Errorf("%s names more patients than member 0 knows (%d)", notesPath, len(known))
			}
			if patient, err = e.patientOf(0, known[len(patients)]); err != nil {
				return nil, err
			}
			patients[ref] = patient
		}
		notes[patient]++
		note["subject"] = map[string]any{"reference": "Patient/" + patient}
		delete(note, "id")
		delete(note, "custodian")
		if authors, ok := note["author"].([]any); ok {
			for i, a := range authors {
				am, _ := a.(map[string]any)
				authors[i] = map[string]any{"display": am["display"]}
			}
		}
		entry, _ := json.Marshal(map[string]any{"resource": note, "request": map[string]any{"method": "POST", "url": "DocumentReference"}})
		entries = append(entries, entry)
		if len(entries) == s4Bundle {
			if err := load(); err != nil {
				return nil, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := load(); err != nil {
		return nil, err
	}
	if err := e.m.vacuumAnalyze(e.ctx); err != nil {
		return nil, err
	}
	patient, most := "", 0
	for p, n := range notes {
		if n > most || n == most && p < patient {
			patient, most = p, n
		}
	}
	// The expected counts: the patient's stored notes with the category or type, dated on
	// or after the median note's day.
	const rows = `SELECT convert_from(body, 'UTF8')::jsonb AS j FROM fhir_resources
		WHERE type = 'DocumentReference' AND patient_id = $1 AND NOT deleted`
	var median time.Time
	if err := e.m.pool.QueryRow(e.ctx, `SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY (j->>'date')::timestamptz) FROM (`+rows+`) d`, patient).Scan(&median); err != nil {
		return nil, err
	}
	// A day boundary no note is near, so time zones cannot move a note across it.
	cut := median.UTC().Truncate(24 * time.Hour)
	for range 60 {
		var near int
		if err := e.m.pool.QueryRow(e.ctx, `SELECT count(*) FROM (`+rows+`) d WHERE (j->>'date')::timestamptz BETWEEN $2 AND $3`,
			patient, cut.Add(-24*time.Hour), cut.Add(24*time.Hour)).Scan(&near); err != nil {
			return nil, err
		}
		if near == 0 {
			break
		}
		cut = cut.Add(24 * time.Hour)
	}
	count := func(coding string) (int, error) {
		var n int
		err := e.m.pool.QueryRow(e.ctx, `SELECT count(*) FROM (`+rows+`) d WHERE (j->>'date')::timestamptz >= $2
			AND (j->'category' @> jsonb_build_array(jsonb_build_object('coding', $3::jsonb)) OR j->'type'->'coding' @> $3::jsonb)`,
			patient, cut, coding).Scan(&n)
		return n, err
	}
	const category, loinc = "clinical-note", "34111-5"
	nCat, err := count(`[{"code":"` + category + `"}]`)
	if err == nil && nCat == 0 {
		err = fmt.Errorf("no note of category %s after %s", category, cut.Format(time.DateOnly))
	}
	if err != nil {
		return nil, err
	}
	nType, err := count(`[{"system":"http://loinc.org","code":"` + loinc + `"}]`)
	if err == nil && nType == 0 {
		err = fmt.Errorf("no note of type %s after %s", loinc, cut.Format(time.DateOnly))
	}
	if err != nil {
		return nil, err
	}
	base := e.m.cfg.BaseURL + "/fhir/DocumentReference?patient=" + patient + "&date=ge" + cut.Format(time.DateOnly) + "&_count=50"
	mk := func(name, extra string, n int) bench.Scenario {
		return bench.HTTPScenario{Name: name, URL: base + extra, Header: e.read.header, Check: sampled(8, docPage(n)),
			Count: bench.BundleCount, Anchor: bench.AnchorPG, Conns: 16}
	}
	return []bench.Scenario{
		mk(s4Names[0], "&category="+category, nCat),
		mk(s4Names[1], "&type="+url.QueryEscape("http://loinc.org|"+loinc), nType),
	}, nil
}

// docPage checks the first page of a DocumentReference search with n matches: min(n, 50)
// entries, each a matching DocumentReference, and a total of n when the page has one.
func docPage(n int) func(int, []byte) error { return firstPage("DocumentReference", n, false) }
