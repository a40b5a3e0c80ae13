package exchange

import (
	"context"
	"slices"
	"testing"

	mpistore "github.com/concord-hie/concord/mpi/store"
)

// TestHL7IntakeMergeRetiresTheSourceInTheMPI: after an A40 the survivor's regional person
// no longer lists the retired Patient as a source; the retired record's new person
// redirects to the survivor's; the history row, one link-changed outbox event and the
// audit events exist; and the same A40 again (same MSH-10) changes nothing, nor does a
// later A40 for the record already retired.
func TestHL7IntakeMergeRetiresTheSourceInTheMPI(t *testing.T) {
	e := newHL7Env(t)
	c := mllpClient(t, e.addr)
	ctx := context.Background()
	for _, m := range []string{adtA01("M1", pidA), oruR01("M2", pidA), adtA01("M3", pidB)} {
		if ack, code := send(t, c, m); ack != "AA" {
			t.Fatalf("setup: %s %s", ack, code)
		}
	}
	mpi := mpistore.New(e.pool)
	src := func(mrn string) mpistore.Source {
		s, err := mpi.SourceByIdentifier(ctx, nil, "urn:oid:"+hl7TestOID, mrn)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	retired, survivor := src("MRN-A"), src("MRN-B")
	if sources := patientsOf(t, mpi, survivor.PersonID); !slices.Contains(sources, survivor.PatientID) {
		t.Fatalf("setup: survivor's person lists %v", sources)
	}

	a40 := mshGen + "ADT^A40^ADT_A39|M4|P|2.5.1\rEVN|A40|20250302080000\r" + pidB + "MRG|MRN-A^^^GENFAC&2.16.840.1.113883.3.9999&ISO^MR\r"
	if ack, code := send(t, c, a40); ack != "AA" {
		t.Fatalf("A40: %s %s", ack, code)
	}
	after := src("MRN-B")
	sources := patientsOf(t, mpi, after.PersonID)
	if slices.Contains(sources, retired.PatientID) || !slices.Contains(sources, survivor.PatientID) {
		t.Fatalf("survivor's person lists %v; want the survivor %s and not the retired %s", sources, survivor.PatientID, retired.PatientID)
	}
	moved := src("MRN-A")
	var into string
	if err := e.pool.QueryRow(ctx, `SELECT coalesce(retired_into::text, '') FROM mpi_persons WHERE id = $1`, string(moved.PersonID)).Scan(&into); err != nil {
		t.Fatal(err)
	}
	if moved.PersonID == retired.PersonID || into != string(after.PersonID) {
		t.Fatalf("retired record's person %s (was %s) redirects to %q; want a new person retired into %s", moved.PersonID, retired.PersonID, into, after.PersonID)
	}
	if retired.PersonID != survivor.PersonID {
		// The retired record was its person's only one: that person is retired too.
		if err := e.pool.QueryRow(ctx, `SELECT coalesce(retired_into::text, '') FROM mpi_persons WHERE id = $1`, string(retired.PersonID)).Scan(&into); err != nil || into != string(after.PersonID) {
			t.Fatalf("emptied person redirects to %q (%v); want %s", into, err, after.PersonID)
		}
	}
	check := func(when string) {
		t.Helper()
		if n := e.scalar(t, `SELECT count(*) FROM mpi_link_history WHERE source_id = $1 AND action = 'source-retired'
			AND prev_person = $2 AND person_id = $3 AND actor = $4`, retired.ID, string(retired.PersonID), string(moved.PersonID), "hl7v2|"+e.member.ID); n != 1 {
			t.Errorf("%s: %d source-retired history rows; want 1", when, n)
		}
		if n := e.scalar(t, `SELECT count(*) FROM outbox_events WHERE topic = $1 AND payload->>'action' = 'source-retired'
			AND payload->>'into' = $2`, mpistore.TopicLinkChanged, string(after.PersonID)); n != 1 {
			t.Errorf("%s: %d link-changed outbox events; want 1", when, n)
		}
		if n := e.scalar(t, `SELECT count(*) FROM audit_events WHERE action = 'merge' AND reason = 'source-retired' AND request_id = 'M4'`); n == 0 {
			t.Errorf("%s: no audit event for the MPI change", when)
		}
		if n := e.scalar(t, `SELECT count(*) FROM mpi_block_keys WHERE source_id = $1`, retired.ID); n != 0 {
			t.Errorf("%s: the retired record still has %d blocking keys", when, n)
		}
	}
	check("after the A40")

	// The same message again is answered from the dedupe row: nothing changes.
	if ack, code := send(t, c, a40); ack != "AA" {
		t.Fatalf("resent A40: %s %s", ack, code)
	}
	check("after the resent A40")
	if got := src("MRN-A"); got.PersonID != moved.PersonID {
		t.Fatalf("resent A40 moved the retired record to %s", got.PersonID)
	}
	// A new A40 naming the record already retired leaves the MPI as it is too.
	again := mshGen + "ADT^A40^ADT_A39|M5|P|2.5.1\rEVN|A40|20250302090000\r" + pidB + "MRG|MRN-A^^^GENFAC&2.16.840.1.113883.3.9999&ISO^MR\r"
	if ack, code := send(t, c, again); ack != "AA" {
		t.Fatalf("second A40: %s %s", ack, code)
	}
	check("after a second A40")
}

// patientsOf lists the Patient ids of person's source records.
func patientsOf(t testing.TB, mpi *mpistore.Store, person mpistore.PersonID) []string {
	t.Helper()
	srcs, err := mpi.Sources(context.Background(), person)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range srcs {
		out = append(out, s.PatientID)
	}
	return out
}
