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
