package store_test

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/mpi"
	"github.com/concord-hie/concord/mpi/eval"
	"github.com/concord-hie/concord/mpi/store"
)

// Every exported field of the engine's Record is in the features codec: a field added to
// mpi.Record must be encoded (and featuresVersion bumped) or candidates would be scored
// without it.
func TestFeaturesCoverRecord(t *testing.T) {
	var have []string
	rt := reflect.TypeFor[mpi.Record]()
	for i := range rt.NumField() {
		if f := rt.Field(i); f.IsExported() {
			have = append(have, f.Name)
		}
	}
	want := append([]string(nil), store.FeatureFields...)
	sort.Strings(have)
	sort.Strings(want)
	if !reflect.DeepEqual(have, want) {
		t.Fatalf("mpi.Record fields %v, features codec knows %v", have, want)
	}
}

// A decoded record equals the normalized one, field for field, and scores identically.
func TestFeaturesRoundTrip(t *testing.T) {
	m, err := store.NewMatcher(nil)
	if err != nil {
		t.Fatal(err)
	}
	model, err := mpi.DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	ds := eval.Generate(eval.GenOptions{Seed: 11, Persons: 1500})
	recs := make([]mpi.Record, len(ds.Inputs))
	for i, in := range ds.Inputs {
		body, err := eval.PatientJSON(in)
		if err != nil {
			t.Fatal(err)
		}
		if recs[i], err = m.Record(body); err != nil {
			t.Fatal(err)
		}
	}
	// Hand-made edge cases: compound surname, suffix, other identifiers, placeholders.
	for _, body := range []string{
		`{"resourceType":"Patient","identifier":[{"system":"urn:oid:1","value":"9"},{"system":"urn:x","value":"y"},{"system":"urn:z","value":"w"}],
		  "name":[{"family":"García-López","given":["José","Ma"],"suffix":["Jr"]}],"gender":"male","birthDate":"1900-01-01"}`,
		`{"resourceType":"Patient","name":[{"family":"Doe","given":["Baby","Boy"]}],"birthDate":"2023-02-30"}`,
		`{"resourceType":"Patient"}`,
	} {
		r, err := m.Record([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	var dec mpi.Record
	for i := range recs {
		if err := store.DecodeFeatures(store.EncodeFeatures(&recs[i]), &dec); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		model.Prepare(&dec)
		if !reflect.DeepEqual(emptyNil(recs[i]), emptyNil(dec)) {
			t.Fatalf("record %d differs after the round trip:\n%+v\n%+v", i, recs[i], dec)
		}
		// Scores against a spread of other records, in both directions.
		for j := i % 7; j < len(recs); j += 97 {
			w1, e1 := model.Score(&recs[i], &recs[j])
			w2, e2 := model.Score(&dec, &recs[j])
			w3, _ := model.Score(&recs[j], &dec)
			w4, _ := model.Score(&recs[j], &recs[i])
			if w1 != w2 || w3 != w4 || e1 != e2 || model.Guard(&recs[i], &recs[j], e1.Levels) != model.Guard(&dec, &recs[j], e2.Levels) {
				t.Fatalf("records %d/%d score %v/%v after the round trip, %v/%v before", i, j, w2, w3, w1, w4)
			}
		}
	}
}

// emptyNil maps empty slices to nil: the codec does not keep the difference and the
// engine does not see it.
func emptyNil(r mpi.Record) mpi.Record {
	if len(r.FamilyParts) == 0 {
		r.FamilyParts = nil
	}
	if len(r.GivenGroups) == 0 {
		r.GivenGroups = nil
	}
	if len(r.IDs) == 0 {
		r.IDs = nil
	}
	return r
}

func TestFeaturesRejectMalformed(t *testing.T) {
	m, err := store.NewMatcher(nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.Record(ana())
	if err != nil {
		t.Fatal(err)
	}
	enc := store.EncodeFeatures(&r)
	var dec mpi.Record
	for n := range len(enc) { // every truncation
		if store.DecodeFeatures(enc[:n], &dec) == nil {
			t.Fatalf("a value truncated to %d of %d bytes decoded", n, len(enc))
		}
	}
	other := append([]byte{enc[0] + 1}, enc[1:]...)
	if store.DecodeFeatures(other, &dec) == nil {
		t.Fatal("a value of another version decoded")
	}
	if store.DecodeFeatures(append(enc, 0), &dec) == nil {
		t.Fatal("a value with trailing bytes decoded")
	}
}

// Matching from stored features decides exactly as matching from re-normalized
// demographics (rows without features, and the path of before the features column).
func TestMatchFromFeaturesEqualsDemographics(t *testing.T) {
	e := newOpsEnv(t)
	ds := eval.Generate(eval.GenOptions{Seed: 5, Persons: 300, Members: 4})
	sys := map[string]string{}
	for _, in := range ds.Inputs {
		if _, ok := sys[in.Source.System]; !ok {
			sys[in.Source.System] = []string{"a", "b", "c", "d"}[len(sys)]
		}
	}
	probes := ds.Inputs[len(ds.Inputs)-60:]
	for i, in := range ds.Inputs[:len(ds.Inputs)-60] {
		body, err := eval.PatientJSON(in)
		if err != nil {
			t.Fatal(err)
		}
		err = db.InTx(e.ctx, e.pool, func(tx db.Querier) error {
			_, err := e.m.LinkPatient(e.ctx, tx, sys[in.Source.System], in.Source.System, in.Source.Value, fmt.Sprintf("p%d", i), body)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.count(`SELECT count(*) FROM mpi_source_records WHERE features IS NULL`); n != 0 {
		t.Fatalf("%d linked records without features", n)
	}
	decide := func(full bool) []string {
		var out []string
		for _, in := range probes {
			body, _ := eval.PatientJSON(in)
			r, err := e.m.Record(body)
			if err != nil {
				t.Fatal(err)
			}
			a, err := e.m.Match(e.ctx, e.pool, &r)
			if err != nil {
				t.Fatal(err)
			}
			d := a.Outcome.String()
			if a.Outcome != mpi.NoLink || full { // a no-link's best candidate decides nothing
				d += fmt.Sprintf(" %s %.6f %v", a.Person, a.Score, a.Guards)
			}
			if full {
				s, err := e.m.Score(e.ctx, e.pool, &r)
				if err != nil {
					t.Fatal(err)
				}
				d += fmt.Sprintf(" %s %d %+v", a.RunnerUp, len(s), s)
			}
			out = append(out, d)
		}
		return out
	}
	withFeatures, decisions := decide(true), decide(false)
	// The path of before the features column also fetched every record sharing a refined
	// key of 0 (all of them, here): the same decisions, from more candidates (a no-link's
	// best candidate may differ; it decides nothing).
	store.Legacy(e.m, true)
	legacy := decide(false)
	store.Legacy(e.m, false)
	if _, err := e.pool.Exec(e.ctx, `UPDATE mpi_source_records SET features = NULL`); err != nil {
		t.Fatal(err)
	}
	fallback := decide(true)
	linked := 0
	for i := range withFeatures {
		if withFeatures[i] != fallback[i] {
			t.Fatalf("probe %d:\nfeatures %s\nfallback %s", i, withFeatures[i], fallback[i])
		}
		if decisions[i] != legacy[i] {
			t.Fatalf("probe %d:\nfeatures %s\nlegacy   %s", i, decisions[i], legacy[i])
		}
		if strings.HasPrefix(decisions[i], mpi.AutoLink.String()) {
			linked++
		}
	}
	if linked == 0 {
		t.Fatal("no probe auto-linked: the comparison proves nothing")
	}
}

// BulkLoad stores what LinkPatient stores: the same blocking keys and features, and an
// online registration then matches the bulk-loaded person.
func TestBulkLoad(t *testing.T) {
	e := newOpsEnv(t)
	ctx := context.Background()
	person := store.NewPersonID()
	srcs := []store.BulkSource{
		{MemberID: "a", System: "urn:oid:1.2.1", Value: "A1", PatientID: "pat-a-A1", Person: person, Patient: ana()},
		{MemberID: "b", System: "urn:oid:1.2.2", Value: "B1", PatientID: "pat-b-B1", Person: person, Patient: ana()},
		{MemberID: "b", System: "urn:oid:1.2.2", Value: "B2", PatientID: "pat-b-B2",
			Patient: patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344")},
		{MemberID: "c", System: "urn:oid:1.2.3", Value: "C9", PatientID: "pat-c-C9", Patient: []byte(`{"resourceType":"Observation"}`)},
	}
	if err := db.InTx(ctx, e.pool, func(tx db.Querier) error { return e.m.BulkLoad(ctx, tx, srcs) }); err != nil {
		t.Fatal(err)
	}
	if n := e.count(`SELECT count(DISTINCT person_id) FROM mpi_source_records`); n != 3 {
		t.Fatalf("%d persons, want 3", n)
	}
	if n := e.count(`SELECT count(*) FROM mpi_link_history WHERE action = 'create'`); n != 4 {
		t.Fatalf("%d history rows, want 4", n)
	}
	if n := e.count(`SELECT count(*) FROM mpi_source_records s WHERE features IS NULL OR NOT EXISTS (SELECT 1 FROM mpi_block_keys k WHERE k.source_id = s.id)`); n != 1 {
		t.Fatalf("%d records without features or keys, want 1 (the unreadable one)", n)
	}
	bulkKeys := e.keysOf("pat-b-B2")
	features := e.featuresOf("pat-b-B2")
	// The same record written online gets the same keys and features.
	online := e.link("d", "D2", patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344"))
	if got := e.keysOf("pat-d-D2"); !reflect.DeepEqual(got, bulkKeys) {
		t.Fatalf("online keys %v, bulk keys %v", got, bulkKeys)
	}
	if got := e.featuresOf("pat-d-D2"); len(features) == 0 || !reflect.DeepEqual(got, features) {
		t.Fatalf("online features %x, bulk features %x", got, features)
	}
	if online.Outcome != mpi.AutoLink {
		t.Fatalf("online registration of a bulk-loaded record: %s", online.Outcome)
	}
	c := e.link("c", "C1", ana())
	if c.Outcome != mpi.AutoLink || c.Source.PersonID != person {
		t.Fatalf("online registration of Ana: %s to %s, want %s", c.Outcome, c.Source.PersonID, person)
	}
	// A stored MRN again is a conflict, and the failed call leaves nothing behind.
	before := e.count(`SELECT count(*) FROM mpi_source_records`)
	err := db.InTx(ctx, e.pool, func(tx db.Querier) error { return e.m.BulkLoad(ctx, tx, srcs[:1]) })
	if err == nil {
		t.Fatal("a stored MRN bulk-loaded again")
	}
	if after := e.count(`SELECT count(*) FROM mpi_source_records`); after != before {
		t.Fatalf("%d records after a failed load, %d before", after, before)
	}
}

func (e *opsEnv) keysOf(patientID string) []string {
	e.t.Helper()
	rows, err := e.pool.Query(e.ctx, `SELECT k.hash::text || '/' || k.fine::text FROM mpi_block_keys k JOIN mpi_source_records s ON s.id = k.source_id
		WHERE s.patient_id = $1 ORDER BY 1`, patientID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

func (e *opsEnv) featuresOf(patientID string) []byte {
	e.t.Helper()
	var f []byte
	if err := e.pool.QueryRow(e.ctx, `SELECT features FROM mpi_source_records WHERE patient_id = $1`, patientID).Scan(&f); err != nil {
		e.t.Fatal(err)
	}
	return f
}
