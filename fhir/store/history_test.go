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

func TestParseConditionAndETag(t *testing.T) {
	c, err := store.ParseCondition("Practitioner", "identifier=http://hl7.org/fhir/sid/us-npi|123")
	if err != nil || c.Type != "Practitioner" || c.System != "http://hl7.org/fhir/sid/us-npi" || c.Value != "123" ||
		c.Key() != "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123" {
		t.Fatalf("ParseCondition = %+v, %v", c, err)
	}
	// Conditions on other parameters: TestParseConditionKey and TestParseConditionRefusals.
	for _, bad := range []string{"", "identifier=", "_count=1", "unknown=x", "%zz"} {
		if bad == "" { // and a type without an identifier index
			if _, err := store.ParseCondition("Observation", "identifier=a|1"); errs.CodeOf(err) != errs.Invalid {
				t.Errorf("ParseCondition(Observation) = %v; want invalid", err)
			}
		}
		if _, err := store.ParseCondition("Patient", bad); errs.CodeOf(err) != errs.Invalid {
			t.Errorf("ParseCondition(%q) = %v; want invalid", bad, err)
		}
	}
	for in, want := range map[string]int{`W/"3"`: 3, `"12"`: 12, `W/"0"`: 0, `3`: 0, `W/"x"`: 0, `W/""`: 0} {
		if got, ok := store.ParseETag(in); got != want || ok != (want > 0) {
			t.Errorf("ParseETag(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

// TestCreateManyMatchesPut: the bulk path must store the same rows as Put.
func TestCreateManyMatchesPutAndDelete(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ('a', 'a', 'urn:oid:1.2.3')`); err != nil {
		t.Fatal(err)
	}
	s := store.New(pool)
	obs := fhir.MustParse([]byte(`{"resourceType":"Observation","identifier":[{"system":"urn:x","value":"1"}],"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}],"text":"Glucose"},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-03-01T10:00:00Z"}`))
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var put, many store.Stored
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		var err error
		if put, err = s.Put(ctx, tx, store.Write{Resource: obs, MemberID: "a", PatientID: "p1", At: at}); err != nil {
			return err
		}
		sts, err := s.CreateMany(ctx, tx, []store.Write{{Resource: obs, MemberID: "a", PatientID: "p1", At: at}})
		if err == nil {
			many = sts[0]
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rows := func(id string) string {
		var out string
		err := pool.QueryRow(ctx, `SELECT concat_ws(';',
			(SELECT string_agg(param || system || replace(code, $1, 'ID'), ',' ORDER BY param, system, code) FROM fhir_idx_token WHERE id = $1),
			(SELECT string_agg(param || lo::text || hi::text, ',' ORDER BY param, lo) FROM fhir_idx_date WHERE id = $1),
			(SELECT string_agg(param || value, ',' ORDER BY param, value) FROM fhir_idx_string WHERE id = $1),
			(SELECT string_agg(param || ref_type || ref_id, ',' ORDER BY param, ref_type, ref_id) FROM fhir_idx_ref WHERE id = $1),
			(SELECT version || member_id || coalesce(patient_id, '') || deleted FROM fhir_resources WHERE id = $1),
			(SELECT count(*)::text FROM fhir_history WHERE id = $1))`, id).Scan(&out)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if rows(put.ID) != rows(many.ID) || rows(put.ID) == ";;;;;" {
		t.Fatalf("Put rows %q\nCreateMany rows %q", rows(put.ID), rows(many.ID))
	}
	// Match finds Organizations by identifier, whichever path stored them (so 2: a
	// conditional create would answer 412).
	org := fhir.MustParse([]byte(`{"resourceType":"Organization","identifier":[{"system":"urn:x","value":"1"}]}`))
	var orgs [2]store.Stored
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		var err error
		if orgs[0], err = s.Put(ctx, tx, store.Write{Resource: org, MemberID: "a", At: at}); err != nil {
			return err
		}
		sts, err := s.CreateMany(ctx, tx, []store.Write{{Resource: org, MemberID: "a", At: at}})
		if err == nil {
			orgs[1] = sts[0]
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	cond := store.Condition{Type: "Organization", System: "urn:x", Value: "1"}
	ids, err := s.Match(ctx, pool, "a", cond)
	if err != nil || len(ids) != 2 {
		t.Fatalf("Match = %v, %v", ids, err)
	}
	if ids, err := s.Match(ctx, pool, "b", cond); err != nil || len(ids) != 0 {
		t.Fatalf("Match for another member = %v, %v; want none", ids, err)
	}
	// CreateMany never overwrites: an existing id is a conflict.
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		_, err := s.CreateMany(ctx, tx, []store.Write{{Resource: obs, ID: put.ID, MemberID: "a", At: at}})
		return err
	})
	if errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("CreateMany over an existing id = %v; want conflict", err)
	}
	// Delete: version 2 is a deletion, index rows go, Get answers not found, and the
	// deleted resource no longer matches.
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		_, err := s.Delete(ctx, tx, "Observation", put.ID, "b", at)
		if errs.CodeOf(err) != errs.NotFound {
			t.Errorf("Delete by another member = %v; want not found", err)
		}
		st, err := s.Delete(ctx, tx, "Observation", put.ID, "a", at)
		if err == nil && st.Version != 2 {
			t.Errorf("Delete version = %d", st.Version)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, nil, "Observation", put.ID); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("Get after delete = %v", err)
	}
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		_, err := s.Delete(ctx, tx, "Organization", orgs[0].ID, "a", at)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.Match(ctx, pool, "a", cond); len(ids) != 1 || ids[0] != orgs[1].ID {
		t.Fatalf("Match after delete = %v", ids)
	}
	v1, err := s.Version(ctx, nil, "Observation", put.ID, 1)
	v2, err2 := s.Version(ctx, nil, "Observation", put.ID, 2)
	if err != nil || err2 != nil || v1.Deleted || !v2.Deleted || string(v1.Body) != string(put.Body) {
		t.Fatalf("Version 1 = %+v %v; 2 = %+v %v", v1.Deleted, err, v2.Deleted, err2)
	}
	h, err := s.History(ctx, nil, "Observation", put.ID, 10)
	if err != nil || len(h) != 2 || h[0].Version != 2 {
		t.Fatalf("History = %d versions, %v", len(h), err)
	}
}
