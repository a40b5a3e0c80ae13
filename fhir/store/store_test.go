package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

func TestPutGetHistoryAndIndex(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	for _, m := range []string{"a", "b"} {
		if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ($1, $1, 'urn:oid:1.2.' || length($1) || $1)`, m); err != nil {
			t.Fatal(err)
		}
	}
	s := store.New(pool)
	obs := fhir.MustParse([]byte(`{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-03-01T10:00:00Z"}`))
	var st store.Stored
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		var err error
		st, err = s.Put(ctx, tx, store.Write{Resource: obs, MemberID: "a", PatientID: "p1", At: time.Now(), Source: "https://x/members/a"})
		return err
	})
	if err != nil || st.Version != 1 || len(st.ID) != 32 {
		t.Fatalf("Put = %+v, %v", st, err)
	}
	got, err := s.Get(ctx, nil, "Observation", st.ID)
	if err != nil || string(got.Body) != string(st.Body) || got.MemberID != "a" || got.PatientID != "p1" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	// Another member cannot overwrite it: it looks absent.
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		_, err := s.Put(ctx, tx, store.Write{Resource: obs, ID: st.ID, MemberID: "b", At: time.Now()})
		return err
	})
	if errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("cross-member update = %v; want NotFound", err)
	}
	// Its own update makes version 2 and keeps version 1 in history.
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		_, err := s.Put(ctx, tx, store.Write{Resource: obs, ID: st.ID, MemberID: "a", PatientID: "p1", At: time.Now()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var versions, tokens, dates, refs int
	pool.QueryRow(ctx, `SELECT count(*) FROM fhir_history WHERE type = 'Observation' AND id = $1`, st.ID).Scan(&versions)
	pool.QueryRow(ctx, `SELECT count(*) FROM fhir_idx_token WHERE id = $1 AND param = 'code' AND code = '2345-7' AND system = 'http://loinc.org'`, st.ID).Scan(&tokens)
	pool.QueryRow(ctx, `SELECT count(*) FROM fhir_idx_date WHERE id = $1 AND param = 'date' AND lo = '2026-03-01T10:00:00Z'`, st.ID).Scan(&dates)
	pool.QueryRow(ctx, `SELECT count(*) FROM fhir_idx_ref WHERE id = $1 AND param IN ('patient', 'subject') AND ref_type = 'Patient' AND ref_id = 'p1'`, st.ID).Scan(&refs)
	if versions != 2 || tokens != 1 || dates != 1 || refs < 1 {
		t.Fatalf("history %d, code tokens %d, dates %d, refs %d; want 2, 1 (replaced, not added), 1, ≥1", versions, tokens, dates, refs)
	}
	list, err := s.ByPatients(ctx, "Observation", []string{"p1"}, 10)
	if err != nil || len(list) != 1 || list[0].Version != 2 {
		t.Fatalf("ByPatients = %+v, %v", list, err)
	}
	if _, err := s.Get(ctx, nil, "Observation", "nope"); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("Get missing = %v", err)
	}
}

// TestGetInCompartment checks that the lookup sees the compartment Patient: the resource's
// own id for a Patient, patient_id for others, NULL (→ "") for none, and cannot be captured
// by a subquery table's own columns named id or patient_id.
func TestGetInCompartment(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ('a', 'a', 'urn:oid:1.2.3')`); err != nil {
		t.Fatal(err)
	}
	s := store.New(pool)
	put := func(body string, patient string) store.Stored {
		t.Helper()
		var st store.Stored
		err := db.InTx(ctx, pool, func(tx db.Querier) (err error) {
			st, err = s.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(body)), MemberID: "a", PatientID: patient, At: time.Now()})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	pat := put(`{"resourceType":"Patient","gender":"female"}`, "")
	obs := put(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+pat.ID+`"}}`, pat.ID)
	org := put(`{"resourceType":"Organization","name":"x"}`, "")
	// A subquery over a table with its own id and patient_id columns, like the MPI's.
	lookup := func(expr string) string {
		return `(SELECT 'p:' || x.pid FROM (VALUES (7, 'zz')) AS v(id, patient_id), LATERAL (SELECT ` + expr + ` AS pid) x WHERE x.pid IS NOT NULL)`
	}
	for _, tc := range []struct {
		st   store.Stored
		want string
	}{{pat, "p:" + pat.ID}, {obs, "p:" + pat.ID}, {org, ""}} {
		got, v, err := s.GetInCompartment(ctx, nil, tc.st.Type, tc.st.ID, lookup)
		if err != nil || v != tc.want || string(got.Body) != string(tc.st.Body) {
			t.Errorf("%s: %q, %v; want %q", tc.st.Type, v, err, tc.want)
		}
	}
	if _, _, err := s.GetInCompartment(ctx, nil, "Observation", "nope", lookup); errs.CodeOf(err) != errs.NotFound {
		t.Errorf("missing: %v, want NotFound", err)
	}
}
