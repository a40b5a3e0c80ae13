package exchange

import (
	"context"
	"testing"
	"time"

	"github.com/concord-hie/concord/fhir/store"
)

// TestHL7IntakeAfterPatientDeleted: deleting (or updating) the Patient that intake wrote
// must not leave intake believing it is still current. Before, the unchanged PID of the
// next message matched the remembered hash, the Patient write was skipped and the message
// was rejected (AE) for a Patient that no longer exists.
func TestHL7IntakeAfterPatientDeleted(t *testing.T) {
	e := newHL7Env(t)
	c := mllpClient(t, e.addr)
	ctx := context.Background()
	if code, _ := send(t, c, adtA01("D1", pidA)); code != "AA" {
		t.Fatalf("A01: %s", code)
	}
	var id string
	if err := e.pool.QueryRow(ctx, `SELECT id FROM fhir_resources WHERE type = 'Patient' AND member_id = $1`, e.member.ID).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := store.New(e.pool).Delete(ctx, e.pool, "Patient", id, e.member.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if code, err := send(t, c, oruR01("D2", pidA)); code != "AA" {
		t.Fatalf("ORU after the Patient was deleted: %s %s; want AA", code, err)
	}
	if n := e.count(t, "Patient"); n != 1 {
		t.Fatalf("%d live Patients after the ORU; want 1", n)
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_resources WHERE type = 'Observation' AND member_id = $1 AND NOT deleted`, e.member.ID); n != 3 {
		t.Fatalf("%d Observations stored; want 3", n)
	}
	// An unchanged PID on a live Patient at the version intake wrote still writes nothing.
	var v1 int
	if err := e.pool.QueryRow(ctx, `SELECT version FROM fhir_resources WHERE type = 'Patient' AND member_id = $1 AND NOT deleted`, e.member.ID).Scan(&v1); err != nil {
		t.Fatal(err)
	}
	if code, _ := send(t, c, oruR01("D3", pidA)); code != "AA" {
		t.Fatalf("second ORU: %s", code)
	}
	if v := e.scalar(t, `SELECT version FROM fhir_resources WHERE type = 'Patient' AND member_id = $1 AND NOT deleted`, e.member.ID); v != v1 {
		t.Fatalf("Patient version %d after an unchanged PID; want %d (no write)", v, v1)
	}
}

// TestHL7MergeAfterRetiredPatientDeleted: an A40 whose retired MRN (MRG-1) names a Patient
// the member has since deleted through FHIR (the MPI source record stays) gets AA, every
// time it is sent, and is recorded with nothing re-pointed: the deleted Patient is not
// brought back to carry a replaced-by link, and what the member left in its compartment
// stays there. Before, reading the deleted Patient answered not-found, the sender got
// AR 207 ("resend later"), and every resend failed the same way, so an original-mode
// sender's queue was stuck behind the message for good.
func TestHL7MergeAfterRetiredPatientDeleted(t *testing.T) {
	e := newHL7Env(t)
	c := mllpClient(t, e.addr)
	ctx := context.Background()
	sendAA(t, c, "A01 of the retired MRN", adtA01("ZM1", pidA))
	sendAA(t, c, "ORU of the retired MRN", oruR01("ZM2", pidA))
	sendAA(t, c, "A01 of the survivor", adtA01("ZM3", pidB))
	var a string
	if err := e.pool.QueryRow(ctx, `SELECT patient_id FROM mpi_source_records WHERE value = 'MRN-A'`).Scan(&a); err != nil {
		t.Fatal(err)
	}
	if _, err := store.New(e.pool).Delete(ctx, e.pool, "Patient", a, e.member.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	left := e.scalar(t, `SELECT count(*) FROM fhir_resources WHERE patient_id = $1 AND NOT deleted`, a)
	if left == 0 {
		t.Fatal("setup: nothing in the retired compartment")
	}
	a40 := mshGen + "ADT^A40^ADT_A39|ZM4|P|2.5.1\rEVN|A40|20250302080000\r" + pidB + "MRG|MRN-A^^^GENFAC&2.16.840.1.113883.3.9999&ISO^MR\r"
	for i := range 2 { // the second is the sender resending: it gets the same answer
		if ack, code := send(t, c, a40); ack != "AA" {
			t.Fatalf("A40 after the retired Patient was deleted, attempt %d: %s %s; want AA", i+1, ack, code)
		}
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_resources WHERE type = 'Patient' AND id = $1 AND NOT deleted`, a); n != 0 {
		t.Error("the deleted retired Patient was brought back")
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_resources WHERE patient_id = $1 AND NOT deleted`, a); n != left {
		t.Errorf("%d resources left in the retired compartment, want the %d the member left there", n, left)
	}
	if n := e.scalar(t, `SELECT count(*) FROM exchange_hl7_merges WHERE retired_patient = $1 AND repointed = 0 AND msh10 = 'ZM4'`, a); n != 1 {
		t.Errorf("%d merges recorded for the deleted retired Patient with nothing re-pointed, want 1", n)
	}
}
