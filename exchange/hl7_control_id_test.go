package exchange

import (
	"strings"
	"testing"
)

// TestHL7ControlIDReusedForOtherContent: a sender that reuses a control ID (MSH-10) for a
// different message, as an engine whose counter was reset does, gets AE 205 at MSH-10 and
// nothing of that message is stored; answering it with the first message's stored ACK
// would drop it unseen. A true resend of the first message still gets its AA and stores
// nothing new, even when the engine stamped MSH-7 again.
func TestHL7ControlIDReusedForOtherContent(t *testing.T) {
	e := newHL7Env(t)
	c := mllpClient(t, e.addr)
	first := adtA01("R1", pidA)
	sendAA(t, c, "first A01", first)

	// Another patient's lab result under the same control ID.
	if code, errCode := send(t, c, oruR01("R1", pidB)); code != "AE" || errCode != "205" {
		t.Fatalf("a different message with a used MSH-10: %s %s; want AE 205", code, errCode)
	}
	if n := e.count(t, "Observation"); n != 0 {
		t.Fatalf("%d Observations stored from the refused message", n)
	}
	if n := e.count(t, "Patient"); n != 1 {
		t.Fatalf("%d Patients, want the first message's one", n)
	}

	// The first message again, with a new MSH-7: the same message, the same AA.
	restamped := strings.Replace(first, "|20250301080000||ADT^A01", "|20250301080500||ADT^A01", 1)
	if restamped == first {
		t.Fatal("the test did not change MSH-7")
	}
	sendAA(t, c, "resend of the first A01 with a new MSH-7", restamped)
	sendAA(t, c, "resend of the first A01 as sent", first)
	if n := e.count(t, "Encounter"); n != 1 {
		t.Fatalf("%d Encounters after resends, want 1", n)
	}
	if n := e.scalar(t, `SELECT count(*) FROM exchange_hl7_messages WHERE msh10 = 'R1'`); n != 1 {
		t.Fatalf("%d dedupe rows for R1, want 1", n)
	}

	// The refused message under a new control ID goes through.
	sendAA(t, c, "the lab result with its own MSH-10", oruR01("R2", pidB))
}
