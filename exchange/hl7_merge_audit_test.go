package exchange

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	mpistore "github.com/concord-hie/concord/mpi/store"
)

// TestHL7MergeAudit: an A40 that merges two of the member's Patients files its write
// events under both persons it is about: the person the retired record belonged to before
// the merge and the survivor's, each one update event naming the retired Patient and every
// resource re-pointed from its compartment. None is filed under the new person the MPI
// gives the retired record. This holds whether the two records had one person or two, and
// when the intake leaves the MPI as it is (no HL7Options.Audit).
func TestHL7MergeAudit(t *testing.T) {
	pidOther := "PID|1||MRN-A^^^GENFAC&2.16.840.1.113883.3.9999&ISO^MR||Otherperson^Sam^^^^^L||19650505|M\r"
	tests := []struct {
		name       string
		retiredPID string // the PID of MRN-A, the record the A40 retires
		mpiAudit   bool   // the intake has HL7Options.Audit, so the merge changes the MPI
		samePerson bool   // a steward linked MRN-A to MRN-B's person before the merge
	}{
		{"two persons", pidOther, true, false},
		{"one person", pidOther, true, true},
		{"MPI left as it is", pidOther, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newHL7Env(t)
			if !tt.mpiAudit {
				e.intake.opts.Audit = nil
			}
			c := mllpClient(t, e.addr)
			for _, m := range []string{adtA01("M1", tt.retiredPID), oruR01("M2", tt.retiredPID), adtA01("M3", pidB)} {
				if ack, code := send(t, c, m); ack != "AA" {
					t.Fatalf("setup: %s %s", ack, code)
				}
			}
			retired, survivor := idByMRN(t, e, "MRN-A"), idByMRN(t, e, "MRN-B")
			if tt.samePerson {
				mpi := mpistore.New(e.pool)
				src, err := mpi.SourceByPatient(context.Background(), nil, retired)
				if err != nil {
					t.Fatal(err)
				}
				ops := mpistore.NewOps(e.pool, e.intake.opts.Audit, "")
				if _, err := ops.Link(context.Background(), src.ID, mpistore.PersonID(personOf(t, e.pool, survivor)), mpistore.Steward{Subject: "test|steward"}); err != nil {
					t.Fatal(err)
				}
			}
			retiredPerson, survivorPerson := personOf(t, e.pool, retired), personOf(t, e.pool, survivor)
			if (retiredPerson == survivorPerson) != tt.samePerson {
				t.Fatalf("setup: persons %s and %s; want one person: %v", retiredPerson, survivorPerson, tt.samePerson)
			}
			moved := append(compartmentOfPatient(t, e, retired), "Patient/"+retired) // an Encounter, a report, 3 Observations
			if len(moved) != 6 {
				t.Fatalf("setup: the retired compartment holds %v", moved)
			}

			a40 := mshGen + "ADT^A40^ADT_A39|M4|P|2.5.1\rEVN|A40|20250302080000\r" + pidB + "MRG|MRN-A^^^GENFAC&2.16.840.1.113883.3.9999&ISO^MR\r"
			if ack, code := send(t, c, a40); ack != "AA" {
				t.Fatalf("A40: %s %s", ack, code)
			}
			var updates []writeEvent
			for _, ev := range eventsOf(t, e.pool, "M4") {
				if ev.Action != "merge" {
					updates = append(updates, ev)
				} else if ev.SourceIP != "127.0.0.1" { // the MPI's side names the sender too
					t.Errorf("MPI merge event %+v: want source 127.0.0.1", ev)
				}
			}
			want := []brief{{"update", survivorPerson, moved}}
			if !tt.samePerson {
				want = append(want, brief{"update", retiredPerson, moved})
			}
			if !sameBriefs(briefs(updates), want) {
				t.Errorf("A40 write events %+v, want %+v", briefs(updates), want)
			}
			for _, ev := range updates {
				if ev.Outcome != "permit" || ev.Org != e.member.ID || ev.Actor != "hl7v2|"+e.member.ID || ev.Client != "hl7v2" || ev.SourceIP != "127.0.0.1" {
					t.Errorf("event %+v: want outcome permit, org/actor of %s, client hl7v2, source 127.0.0.1", ev, e.member.ID)
				}
			}
			if now := personOf(t, e.pool, retired); tt.mpiAudit == (now == retiredPerson) {
				t.Errorf("the retired record's person is %s after the merge (was %s); MPI changed: %v", now, retiredPerson, tt.mpiAudit)
			}
		})
	}
}

// idByMRN is the member Patient id of the source record with MRN value mrn.
func idByMRN(t testing.TB, e *hl7Env, mrn string) string {
	t.Helper()
	var pid string
	if err := e.pool.QueryRow(context.Background(), `SELECT patient_id FROM mpi_source_records WHERE value = $1`, mrn).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// compartmentOfPatient lists the live resources in the compartment of Patient patient, as Type/id.
func compartmentOfPatient(t testing.TB, e *hl7Env, patient string) []string {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT type || '/' || id FROM fhir_resources WHERE patient_id = $1 AND NOT deleted`, patient)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}
