package records_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// TestAuditWrites: the events of one transaction's writes, in the real chained log: one per
// person and action, persons from the MPI inside the transaction, resources outside any
// compartment (or of a Patient the MPI does not know) under no patient, at most 1000
// resources per event, nothing for no writes; a log that cannot append in a transaction,
// or an insert that fails, is errs.Unavailable and leaves nothing.
func TestAuditWrites(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ('a', 'a', 'urn:oid:1.2.3.97')`); err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(ctx, pool, audit.Config{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	fs, ms := store.New(pool), mpistore.New(pool)
	svc := records.New(fs, ms, directives{}, log, nil)
	v := records.Viewer{Client: "client-a", Org: "a", Role: "system", Purpose: "TREAT", TokenID: "jti-1", RequestID: "rq-1", SourceIP: "127.0.0.1"}

	var p1, p2 mpistore.PersonID
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		// pat-1 and pat-2 are linked by this very transaction: AuditWrites must see them.
		s1, _, err := ms.Upsert(ctx, tx, "a", "urn:oid:1.2.3.97", "mrn-1", "pat-1", map[string]string{}, "")
		if err != nil {
			return err
		}
		s2, _, err := ms.Upsert(ctx, tx, "a", "urn:oid:1.2.3.97", "mrn-2", "pat-2", map[string]string{}, "")
		if err != nil {
			return err
		}
		p1, p2 = s1.PersonID, s2.PersonID
		var w records.Writes
		w.Add(audit.Create, "Patient", "pat-1", "")
		for i := range 1001 {
			w.Add(audit.Create, "Observation", fmt.Sprintf("o%04d", i), "pat-1")
		}
		w.Add(audit.Create, "Observation", "o0000", "pat-1") // recorded twice, listed once
		w.Add(audit.Update, "Encounter", "e1", "pat-2")
		w.Add(audit.Delete, "Observation", "gone", "pat-unknown")
		w.Add(audit.Create, "Organization", "org-1", "")
		return svc.AuditWrites(ctx, tx, v, &w)
	})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT action, outcome, patient, resources, client, org, purpose, token_id, request_id, source_ip FROM audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	type ev struct {
		action, outcome, patient string
		n                        int
		first                    string
	}
	var got []ev
	for rows.Next() {
		var e ev
		var res []string
		var client, org, purpose, tok, rid, ip string
		if err := rows.Scan(&e.action, &e.outcome, &e.patient, &res, &client, &org, &purpose, &tok, &rid, &ip); err != nil {
			t.Fatal(err)
		}
		if client != "client-a" || org != "a" || purpose != "TREAT" || tok != "jti-1" || rid != "rq-1" || ip != "127.0.0.1" || e.outcome != "permit" {
			t.Errorf("event %s/%s: client %q org %q purpose %q token %q request %q source %q outcome %q", e.action, e.patient, client, org, purpose, tok, rid, ip, e.outcome)
		}
		if len(slices.Compact(slices.Sorted(slices.Values(res)))) != len(res) {
			t.Errorf("event %s/%s lists a resource twice", e.action, e.patient)
		}
		e.n, e.first = len(res), res[0]
		got = append(got, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []ev{
		{"create", "permit", string(p1), 1000, "Patient/pat-1"},
		{"create", "permit", string(p1), 2, "Observation/o0999"},
		{"create", "permit", "", 1, "Organization/org-1"},
		{"delete", "permit", "", 1, "Observation/gone"},
		{"update", "permit", string(p2), 1, "Encounter/e1"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n got %v\nwant %v", got, want)
	}

	// Nothing recorded: nothing appended (and no chain lock taken).
	if err := svc.AuditWrites(ctx, pool, v, &records.Writes{}); err != nil {
		t.Fatal(err)
	}
	// A log without AppendTx cannot keep a write atomic with its event: Unavailable.
	one := func() *records.Writes {
		var w records.Writes
		w.Add(audit.Update, "Encounter", "e1", "pat-2")
		return &w
	}
	plain := records.New(fs, ms, directives{}, &recorder{}, nil)
	if err := plain.AuditWrites(ctx, pool, v, one()); errs.CodeOf(err) != errs.Unavailable {
		t.Errorf("AuditWrites on a log without AppendTx: %v; want Unavailable", err)
	}
	// A failing insert: Unavailable, and the caller's transaction rolls back.
	if _, err := pool.Exec(ctx, `CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit down'; END $$;
		CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION fail_audit()`); err != nil {
		t.Fatal(err)
	}
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		if _, _, err := ms.Upsert(ctx, tx, "a", "urn:oid:1.2.3.97", "mrn-3", "pat-3", map[string]string{}, ""); err != nil {
			return err
		}
		return svc.AuditWrites(ctx, tx, v, one())
	})
	if errs.CodeOf(err) != errs.Unavailable {
		t.Errorf("AuditWrites with a failing insert: %v; want Unavailable", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM mpi_source_records WHERE patient_id = 'pat-3'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the write whose event failed is there (%d rows, %v)", n, err)
	}
}
