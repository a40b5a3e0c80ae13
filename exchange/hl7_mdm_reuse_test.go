package exchange

import (
	"strings"
	"testing"

	"github.com/concord-hie/concord/exchange/hl7v2"
)

// mdmWith is mdmMsg (no visit) with the TXA fields in set changed ("" clears one).
func mdmWith(ev, ctl, pid, num, parent, text string, set map[int]string) string {
	msg := mdmMsg(ev, ctl, pid, num, parent, "", text)
	fields := map[int]string{1: "1", 2: "PR", 4: "20250301093000", 5: "C001^Forster^Richard^^^Dr", 12: num, 13: parent, 17: "AU"}
	for k, v := range set {
		fields[k] = v
	}
	i := strings.Index(msg, "TXA|")
	j := i + strings.Index(msg[i:], "\r") + 1
	return msg[:i] + txaSeg(fields) + msg[j:]
}

// mdmWrites are the queries that count what an MDM message may write: document versions,
// metadata and contents, and create or update audit events.
var mdmWrites = [...]string{
	`SELECT count(*) FROM fhir_history`,
	`SELECT count(*) FROM documents_metadata`,
	`SELECT count(*) FROM documents_contents`,
	`SELECT count(*) FROM audit_events WHERE action IN ('create', 'update')`,
}

// sendUnchanged sends msg (what it is, for the messages) on c, and checks that the ACK is
// wantCode with the error code wantErr ("" for none) and that the message wrote nothing
// mdmWrites count.
func (e *mdmEnv) sendUnchanged(t testing.TB, c *hl7v2.Client, what, msg, wantCode, wantErr string) {
	t.Helper()
	count := func() (n [len(mdmWrites)]int) {
		for i, q := range mdmWrites {
			n[i] = e.scalar(t, q)
		}
		return n
	}
	before := count()
	if code, err := send(t, c, msg); code != wantCode || err != wantErr {
		t.Errorf("%s: %s %s, want %s %s", what, code, err, wantCode, wantErr)
	}
	if after := count(); after != before {
		t.Errorf("%s wrote something: counts %v, then %v", what, before, after)
	}
}

// TestHL7MDMNumberReuse: a document number used again under a new MSH-10 is a resend
// (AA, nothing written) only when the message maps to exactly the stored document; the
// same patient and bytes with another confidentiality (TXA-18), type (TXA-2), status
// (TXA-17), date or parent (T10 instead of T02) are AE 205 and change nothing.
func TestHL7MDMNumberReuse(t *testing.T) {
	e := newMDMEnv(t)
	c := mllpClient(t, e.addr)
	const note = "A confidential note."
	sendAA(t, c, "T02 usual control", mdmWith("T02", "U1", pidA, "DOC-U", "", note, map[int]string{18: "U"}))
	e.sendUnchanged(t, c, "resend", mdmWith("T02", "U2", pidA, "DOC-U", "", note, map[int]string{18: "U"}), "AA", "")
	e.sendUnchanged(t, c, "very restricted under a used number", mdmWith("T02", "U3", pidA, "DOC-U", "", note, map[int]string{18: "V"}), "AE", "205")
	if got := e.mdmStatus(t, "DOC-U").Security; len(got) != 0 {
		t.Errorf("labels %v after the refused relabel, want none", got)
	}
	sendAA(t, c, "T02 very restricted", mdmWith("T02", "V1", pidA, "DOC-V", "", note, map[int]string{18: "V"}))
	e.sendUnchanged(t, c, "resend, very restricted", mdmWith("T02", "V2", pidA, "DOC-V", "", note, map[int]string{18: "V"}), "AA", "")
	e.sendUnchanged(t, c, "usual control under a used number", mdmWith("T02", "V3", pidA, "DOC-V", "", note, map[int]string{18: "U"}), "AE", "205")
	if got := e.mdmStatus(t, "DOC-V").Security; len(got) != 1 || got[0] != "V" {
		t.Errorf("labels %v, want [V]", got)
	}
	e.sendUnchanged(t, c, "another type", mdmWith("T02", "U4", pidA, "DOC-U", "", note, map[int]string{2: "DS", 18: "U"}), "AE", "205")
	e.sendUnchanged(t, c, "another status", mdmWith("T02", "U5", pidA, "DOC-U", "", note, map[int]string{17: "IP", 18: "U"}), "AE", "205")
	e.sendUnchanged(t, c, "another date", mdmWith("T02", "U6", pidA, "DOC-U", "", note, map[int]string{4: "20250302093000", 18: "U"}), "AE", "205")
	e.sendUnchanged(t, c, "another author", mdmWith("T02", "U7", pidA, "DOC-U", "", note, map[int]string{5: "C002^Other^Ann", 18: "U"}), "AE", "205")

	// The visit's Encounter arriving later does not make a resend another document.
	sendAA(t, c, "T02 of a visit not yet known", mdmMsg("T02", "E1", pidA, "DOC-E", "", "C9", note))
	sendAA(t, c, "A01 of the visit", adtA01("C9", pidA))
	e.sendUnchanged(t, c, "resend once the visit is known", mdmMsg("T02", "E2", pidA, "DOC-E", "", "C9", note), "AA", "")

	// T10 under the number of a T02 with the same bytes: not the same document.
	sendAA(t, c, "T02 DOC-1", mdmMsg("T02", "P1", pidA, "DOC-1", "", "", "First."))
	sendAA(t, c, "T02 DOC-2", mdmMsg("T02", "P2", pidA, "DOC-2", "", "", "Second."))
	e.sendUnchanged(t, c, "T10 under DOC-2's number", mdmMsg("T10", "P3", pidA, "DOC-2", "DOC-1", "", "Second."), "AE", "205")
	d1, _ := e.doc(t, "DOC-1")
	d2, _ := e.doc(t, "DOC-2")
	if d1.Status != "current" || len(d2.RelatesTo) != 0 {
		t.Errorf("after the refused T10: DOC-1 %s, DOC-2 relatesTo %+v", d1.Status, d2.RelatesTo)
	}
	// A T10 resent with another parent is not the same either.
	sendAA(t, c, "T10 DOC-3 replaces DOC-1", mdmMsg("T10", "P4", pidA, "DOC-3", "DOC-1", "", "Third."))
	e.sendUnchanged(t, c, "T10 DOC-3 resent", mdmMsg("T10", "P5", pidA, "DOC-3", "DOC-1", "", "Third."), "AA", "")
	e.sendUnchanged(t, c, "T10 DOC-3 with another parent", mdmMsg("T10", "P6", pidA, "DOC-3", "DOC-2", "", "Third."), "AE", "205")
	if d2, _ := e.doc(t, "DOC-2"); d2.Status != "current" {
		t.Errorf("DOC-2 %s after the refused T10, want current", d2.Status)
	}
}

// TestHL7MDMParentReplaced: a T10 whose parent another T10 has replaced already is AE
// 204, so one document never has two current replacements; replacing the replacement is
// accepted, and the first T10 resent is still a resend.
func TestHL7MDMParentReplaced(t *testing.T) {
	e := newMDMEnv(t)
	c := mllpClient(t, e.addr)
	for _, m := range []struct{ what, msg string }{
		{"T02 DOC-1", mdmMsg("T02", "R1", pidA, "DOC-1", "", "", "First.")},
		{"T10 DOC-2 replaces DOC-1", mdmMsg("T10", "R2", pidA, "DOC-2", "DOC-1", "", "Second.")},
	} {
		if code, err := send(t, c, m.msg); code != "AA" {
			t.Fatalf("%s: %s %s", m.what, code, err)
		}
	}
	ack, err := c.Send(t.Context(), []byte(mdmMsg("T10", "R3", pidA, "DOC-3", "DOC-1", "", "Third.")))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Get("MSA-1") != "AE" || ack.Get("ERR-3.1") != "204" || ack.Get("MSA-3") != "The parent document was already replaced" || ack.Get("ERR-2") != "TXA^1^13" {
		t.Errorf("T10 of a replaced parent: %s %s %q at %s", ack.Get("MSA-1"), ack.Get("ERR-3.1"), ack.Get("MSA-3"), ack.Get("ERR-2"))
	}
	if n := e.scalar(t, `SELECT count(*) FROM documents_metadata WHERE status = 'current'`); n != 1 {
		t.Errorf("%d current documents, want 1", n)
	}
	if code, err := send(t, c, mdmMsg("T10", "R4", pidA, "DOC-2", "DOC-1", "", "Second.")); code != "AA" {
		t.Errorf("T10 DOC-2 resent: %s %s", code, err)
	}
	if code, err := send(t, c, mdmMsg("T10", "R5", pidA, "DOC-3", "DOC-2", "", "Third.")); code != "AA" {
		t.Errorf("T10 DOC-3 replaces DOC-2: %s %s", code, err)
	}
	if d2, _ := e.doc(t, "DOC-2"); d2.Status != "superseded" {
		t.Errorf("DOC-2 %s, want superseded", d2.Status)
	}
}
