package exchange

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestHL7MDMAddendum: T06 stores the addendum as a new document of the same patient that
// appends to its parent (relatesTo appends), through the document service, audited as a
// create; the parent stays current, with no new version and its metadata as it was. A
// resend stores nothing; the number of another document is AE 205. A parent that is
// unknown, another patient's, another member's or cancelled is AE 204 and stores
// nothing; a replaced parent may have an addendum.
func TestHL7MDMAddendum(t *testing.T) {
	e := newMDMEnv(t)
	ctx := context.Background()
	c := mllpClient(t, e.addr)

	sendAA(t, c, "T02 DOC-1", mdmMsg("T02", "A1", pidA, "DOC-1", "", "", "The note."))
	d1, patient := e.doc(t, "DOC-1")
	parentVersions := e.scalar(t, `SELECT count(*) FROM fhir_history WHERE type = 'DocumentReference' AND id = $1`, d1.ID)

	const addendum = "Addendum: the biopsy came back benign."
	sendAA(t, c, "T06", mdmMsg("T06", "A2", pidA, "DOC-A", "DOC-1", "", addendum))
	da, pa := e.doc(t, "DOC-A")
	if da.Status != "current" || pa != patient || len(da.RelatesTo) != 1 || da.RelatesTo[0].Code != "appends" ||
		da.RelatesTo[0].Target.Reference != "DocumentReference/"+d1.ID || da.ID == d1.ID {
		t.Errorf("T06: status %s, patient %s (want %s), relatesTo %+v", da.Status, pa, patient, da.RelatesTo)
	}
	if got := e.bytesOf(t, da); string(got) != addendum+"\n" {
		t.Errorf("T06 bytes %q", got)
	}
	d1, _ = e.doc(t, "DOC-1")
	if d1.Status != "current" || e.scalar(t, `SELECT count(*) FROM fhir_history WHERE type = 'DocumentReference' AND id = $1`, d1.ID) != parentVersions {
		t.Errorf("T06: the parent is %s with new versions, want current and as it was", d1.Status)
	}
	if n := e.scalar(t, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND status = 'current' AND superseded_by IS NULL`, d1.ID); n != 1 {
		t.Errorf("T06: the parent's metadata is no longer current")
	}
	if n := e.scalar(t, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND status = 'current' AND cardinality(replaces) = 0`, da.ID); n != 1 {
		t.Errorf("T06: the addendum's metadata is not a current document that replaces nothing")
	}
	if n := e.scalar(t, `SELECT count(*) FROM audit_events WHERE request_id = 'A2' AND action = 'create' AND org = $1 AND $2 = ANY(resources)`,
		e.member.ID, "DocumentReference/"+da.ID); n != 1 {
		t.Errorf("T06: %d create events for the addendum, want 1", n)
	}
	if n := e.scalar(t, `SELECT count(*) FROM audit_events WHERE request_id = 'A2' AND $1 = ANY(resources)`, "DocumentReference/"+d1.ID); n != 0 {
		t.Errorf("T06: %d events name the parent, want none", n)
	}

	// Resends, under the same MSH-10 and a new one, store nothing.
	e.sendUnchanged(t, c, "T06 resent", mdmMsg("T06", "A2", pidA, "DOC-A", "DOC-1", "", addendum), "AA", "")
	e.sendUnchanged(t, c, "T06 resent under a new MSH-10", mdmMsg("T06", "A3", pidA, "DOC-A", "DOC-1", "", addendum), "AA", "")
	if n := e.count(t, "DocumentReference"); n != 2 {
		t.Errorf("%d DocumentReferences after the resends, want 2", n)
	}
	// The number of a T02 is not an addendum's, even with the same bytes.
	sendAA(t, c, "T02 DOC-2", mdmMsg("T02", "A4", pidA, "DOC-2", "", "", "Second note."))
	e.sendUnchanged(t, c, "T06 under DOC-2's number", mdmMsg("T06", "A5", pidA, "DOC-2", "DOC-1", "", "Second note."), "AE", "205")
	if d2, _ := e.doc(t, "DOC-2"); len(d2.RelatesTo) != 0 {
		t.Errorf("DOC-2 relatesTo %+v after the refused T06", d2.RelatesTo)
	}

	// Another member's document, under a number system both may use.
	other := e.addOther(t)
	if err := e.dir.AddHL7Sender(ctx, other.ID, "", "OTHERFAC"); err != nil {
		t.Fatal(err)
	}
	if err := e.dir.AddHL7Address(ctx, other.ID, "127.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	pidO := "PID|1||MRN-O^^^OTHERFAC&2.16.840.1.113883.3.7777&ISO^MR||Testperson^Alex^^^^^L||19800101|F\r"
	fromOther := strings.Replace(mdmMsg("T02", "O1", pidO, "DOC-S^SHARED", "", "", "Their note."), "GENFAC^2.16.840.1.113883.3.9999^ISO", "OTHERFAC", 1)
	// A connection opened before the address was shared is the first member's.
	sendAA(t, mllpClient(t, e.addr), "the other member's T02", fromOther)

	sendAA(t, c, "T02 DOC-3", mdmMsg("T02", "A6", pidA, "DOC-3", "", "", "Wrong chart."))
	sendAA(t, c, "T11 DOC-3", mdmMsg("T11", "A7", pidA, "DOC-3", "", "", ""))
	for _, tt := range []struct{ what, msg string }{
		{"unknown parent", mdmMsg("T06", "A8", pidA, "DOC-B", "NO-SUCH", "", addendum)},
		{"another patient's parent", mdmMsg("T06", "A9", pidB, "DOC-B", "DOC-1", "", addendum)},
		{"another member's parent", mdmMsg("T06", "A10", pidA, "DOC-B", "DOC-S^SHARED", "", addendum)},
		{"cancelled parent", mdmMsg("T06", "A11", pidA, "DOC-B", "DOC-3", "", addendum)},
	} {
		e.sendUnchanged(t, c, tt.what, tt.msg, "AE", "204")
	}
	// The other member's number was looked up among this member's documents, and not found
	// (the resend gets the remembered answer).
	ack, err := c.Send(ctx, []byte(mdmMsg("T06", "A10", pidA, "DOC-B", "DOC-S^SHARED", "", addendum)))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Get("MSA-3") != "No document of this patient has this number" || ack.Get("ERR-2") != "TXA^1^13" {
		t.Errorf("another member's parent: %q at %s", ack.Get("MSA-3"), ack.Get("ERR-2"))
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_resources r JOIN fhir_idx_token t ON t.type = r.type AND t.id = r.id
		WHERE r.type = 'DocumentReference' AND t.param = 'identifier' AND t.code = 'DOC-B'`); n != 0 {
		t.Errorf("%d documents DOC-B stored by refused addenda", n)
	}

	// A replaced document keeps its addenda, and may get more.
	sendAA(t, c, "T10 DOC-4 replaces DOC-2", mdmMsg("T10", "A12", pidA, "DOC-4", "DOC-2", "", "Second note, corrected."))
	sendAA(t, c, "T06 to the replaced DOC-2", mdmMsg("T06", "A13", pidA, "DOC-C", "DOC-2", "", "Late addendum."))
	d2, _ := e.doc(t, "DOC-2")
	if dc, _ := e.doc(t, "DOC-C"); d2.Status != "superseded" || dc.Status != "current" || len(dc.RelatesTo) != 1 ||
		dc.RelatesTo[0].Code != "appends" || dc.RelatesTo[0].Target.Reference != "DocumentReference/"+d2.ID {
		t.Errorf("addendum to a replaced document: DOC-2 %s, DOC-C %s %+v", d2.Status, dc.Status, dc.RelatesTo)
	}
	if n, err := e.srv.Documents.DanglingReferences(ctx); err != nil || n != 0 {
		t.Errorf("dangling = %d, %v", n, err)
	}
}

// TestHL7MDMInheritedConfidentiality: an addendum (T06) or a replacement (T10) whose
// TXA-18 is empty takes its parent's confidentiality labels, in meta.security and its
// metadata, so another member cannot read it while it cannot read the parent; a resend
// stores nothing. TXA-18 U, or the HL7 null `""`, gives it none, and a value its own.
func TestHL7MDMInheritedConfidentiality(t *testing.T) {
	e := newMDMEnv(t)
	c := mllpClient(t, e.addr)
	visible := e.otherReader(t)
	none := map[int]string{}
	sendAA(t, c, "T02 very restricted", mdmWith("T02", "L1", pidA, "DOC-1", "", "Very restricted note.", map[int]string{18: "V"}))
	d1, _ := e.doc(t, "DOC-1")
	if visible(d1.ID) {
		t.Fatal("orgb reads the document labelled V")
	}
	for _, tt := range []struct {
		what, ev, num, parent string
		set                   map[int]string
		labels                []string
	}{
		{"T06 without TXA-18", "T06", "DOC-A", "DOC-1", none, []string{"V"}},
		{"T06 usual control", "T06", "DOC-B", "DOC-1", map[int]string{18: "U"}, nil},
		{"T06 confidentiality null", "T06", "DOC-C", "DOC-1", map[int]string{18: `""`}, nil},
		{"T06 restricted", "T06", "DOC-D", "DOC-1", map[int]string{18: "R"}, []string{"R"}},
		{"T10 without TXA-18", "T10", "DOC-2", "DOC-1", none, []string{"V"}},
		{"T10 of the replacement, usual control", "T10", "DOC-3", "DOC-2", map[int]string{18: "U"}, nil},
		{"T06 without TXA-18 to an unlabelled parent", "T06", "DOC-E", "DOC-3", none, nil},
	} {
		msg := mdmWith(tt.ev, "L-"+tt.num, pidA, tt.num, tt.parent, tt.what+".", tt.set)
		sendAA(t, c, tt.what, msg)
		d, _ := e.doc(t, tt.num)
		if got := e.mdmStatus(t, tt.num).Security; !slices.Equal(got, tt.labels) {
			t.Errorf("%s: labels %v, want %v", tt.what, got, tt.labels)
		}
		if got, want := e.metaLabels(t, d.ID), strings.Join(tt.labels, ","); got != want {
			t.Errorf("%s: metadata labels %q, want %q", tt.what, got, want)
		}
		if got := visible(d.ID); got != (len(tt.labels) == 0) {
			t.Errorf("%s: orgb reads it: %v, want %v", tt.what, got, len(tt.labels) == 0)
		}
		e.sendUnchanged(t, c, tt.what+", resent", strings.Replace(msg, "|L-"+tt.num+"|", "|L-"+tt.num+"-again|", 1), "AA", "")
	}

	// Once the parent's label is gone (T04, TXA-18 U), the addendum that took it keeps it,
	// and its resend without TXA-18 is still the same document; one with another label
	// than it was stored with is not (AE 205).
	sendAA(t, c, "T04 of DOC-1, usual control", mdmWith("T04", "L-T04", pidA, "DOC-1", "", "Very restricted note.", map[int]string{18: "U"}))
	if got := e.mdmStatus(t, "DOC-1").Security; len(got) != 0 {
		t.Fatalf("DOC-1 labels %v after the T04, want none", got)
	}
	e.sendUnchanged(t, c, "T06 without TXA-18 resent", mdmWith("T06", "L-DOC-A-late", pidA, "DOC-A", "DOC-1", "T06 without TXA-18.", none), "AA", "")
	if got := e.mdmStatus(t, "DOC-A").Security; !slices.Equal(got, []string{"V"}) {
		t.Errorf("DOC-A labels %v, want [V]", got)
	}
	e.sendUnchanged(t, c, "T06 restricted resent very restricted", mdmWith("T06", "L-DOC-D-V", pidA, "DOC-D", "DOC-1", "T06 restricted.", map[int]string{18: "V"}), "AE", "205")
}
