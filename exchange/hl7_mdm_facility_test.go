package exchange

import (
	"context"
	"strings"
	"testing"
)

// TestHL7MDMFacilityAuthority: a document number sent without an authority takes the
// sending facility's (MSH-4) as the directory verified it. GENFAC is registered by its
// namespace, so a universal ID nobody registered (GENFAC^1.2.3.4.5^ISO) is not taken on
// the message's word: the number is in GENFAC, or in the system GENFAC was registered
// for. A universal ID the member registered as its sender, or as its authority, is kept;
// another member's authority is AE 204. PID-3 is resolved as before.
func TestHL7MDMFacilityAuthority(t *testing.T) {
	e := newMDMEnv(t)
	ctx := context.Background()
	c := mllpClient(t, e.addr)
	withMSH4 := func(msg, msh4 string) string {
		return strings.Replace(msg, "|GENFAC^2.16.840.1.113883.3.9999^ISO|", "|"+msh4+"|", 1)
	}
	system := func(num string) string {
		t.Helper()
		d, _ := e.doc(t, num)
		if len(d.Identifier) != 1 || d.Identifier[0].Value != num {
			t.Fatalf("%s: identifier %+v", num, d.Identifier)
		}
		return d.Identifier[0].System
	}
	for _, tt := range []struct {
		name, num, msh4, want string
	}{
		{"unregistered universal ID", "DOC-1", "GENFAC^1.2.3.4.5^ISO", "GENFAC"},
		{"the member's authority", "DOC-2", "GENFAC^" + hl7TestOID + "^ISO", "urn:oid:" + hl7TestOID},
		{"namespace only", "DOC-3", "GENFAC", "GENFAC"},
	} {
		if code, err := send(t, c, withMSH4(mdmMsg("T02", "F-"+tt.num, pidA, tt.num, "", "", "A note."), tt.msh4)); code != "AA" {
			t.Fatalf("%s: %s %s", tt.name, code, err)
		}
		if got := system(tt.num); got != tt.want {
			t.Errorf("%s: system %s, want %s", tt.name, got, tt.want)
		}
	}
	// A T10 whose parent number is the facility's finds it under the same pinned system.
	if code, err := send(t, c, withMSH4(mdmMsg("T10", "F-DOC-4", pidA, "DOC-4", "DOC-1", "", "Replaced."), "GENFAC^1.2.3.4.5^ISO")); code != "AA" {
		t.Fatalf("T10: %s %s", code, err)
	}
	if d1, _ := e.doc(t, "DOC-1"); d1.Status != "superseded" || system("DOC-4") != "GENFAC" {
		t.Errorf("T10: DOC-1 %s, DOC-4 in %s", d1.Status, system("DOC-4"))
	}

	// The namespace registered for the member's system: numbers are in that system.
	if err := e.dir.AddHL7Namespace(ctx, e.member.ID, "GENFAC", ""); err != nil {
		t.Fatal(err)
	}
	if code, err := send(t, c, withMSH4(mdmMsg("T02", "F-DOC-5", pidA, "DOC-5", "", "", "A note."), "GENFAC^1.2.3.4.5^ISO")); code != "AA" {
		t.Fatalf("registered namespace: %s %s", code, err)
	}
	if got := system("DOC-5"); got != "urn:oid:"+hl7TestOID {
		t.Errorf("registered namespace: system %s, want urn:oid:%s", got, hl7TestOID)
	}

	// A sender registered by its universal ID: that ID is verified, and kept.
	if err := e.dir.AddHL7Sender(ctx, e.member.ID, "", "2.16.840.1.113883.3.7777"); err != nil {
		t.Fatal(err)
	}
	if code, err := send(t, c, withMSH4(mdmMsg("T02", "F-DOC-6", pidA, "DOC-6", "", "", "A note."), "ANNEX^2.16.840.1.113883.3.7777^ISO")); code != "AA" {
		t.Fatalf("registered universal ID: %s %s", code, err)
	}
	if got := system("DOC-6"); got != "urn:oid:2.16.840.1.113883.3.7777" {
		t.Errorf("registered universal ID: system %s", got)
	}

	// Another member's authority as the universal ID stays refused.
	if _, err := e.dir.AddMember(ctx, "Other Clinic", "2.16.840.1.113883.3.8888"); err != nil {
		t.Fatal(err)
	}
	if code, err := send(t, c, withMSH4(mdmMsg("T02", "F-DOC-7", pidA, "DOC-7", "", "", "A note."), "GENFAC^2.16.840.1.113883.3.8888^ISO")); code != "AE" || err != "204" {
		t.Errorf("another member's authority: %s %s, want AE 204", code, err)
	}
	if n := e.count(t, "DocumentReference"); n != 6 {
		t.Errorf("%d DocumentReferences, want 6", n)
	}
}
