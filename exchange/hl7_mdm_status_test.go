package exchange

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

// mdmState is what a T04 may change in a stored DocumentReference, and its version.
type mdmState struct {
	Version       int
	DocStatus     string
	Authenticator string
	Security      []string
}

// mdmStatus returns the state of the member's current DocumentReference with identifier
// value num.
func (e *mdmEnv) mdmStatus(t testing.TB, num string) mdmState {
	t.Helper()
	var body []byte
	var s mdmState
	err := e.pool.QueryRow(context.Background(), `SELECT r.body, r.version FROM fhir_resources r JOIN fhir_idx_token t ON t.type = r.type AND t.id = r.id
		WHERE r.type = 'DocumentReference' AND r.member_id = $1 AND t.param = 'identifier' AND t.code = $2 AND NOT r.deleted`, e.member.ID, num).Scan(&body, &s.Version)
	if err != nil {
		t.Fatalf("document %s: %v", num, err)
	}
	var d struct {
		DocStatus     string `json:"docStatus"`
		Authenticator struct{ Display string }
		Meta          struct{ Security []struct{ Code string } }
	}
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	s.DocStatus, s.Authenticator = d.DocStatus, d.Authenticator.Display
	for _, l := range d.Meta.Security {
		s.Security = append(s.Security, l.Code)
	}
	return s
}

// otherReader adds the member orgb and returns a function that reports whether orgb
// may read the DocumentReference id for treatment (Records.Read; not found is false).
func (e *mdmEnv) otherReader(t testing.TB) func(id string) bool {
	t.Helper()
	insertMembers(t, e.pool, "orgb")
	other := records.Viewer{Client: "client-orgb", Org: "orgb", Role: consent.RoleSystem, Purpose: consent.PurposeTreatment}
	return func(id string) bool {
		t.Helper()
		_, err := e.srv.Records.Read(context.Background(), other, "DocumentReference", id)
		if err != nil && errs.CodeOf(err) != errs.NotFound {
			t.Fatalf("read as orgb: %v", err)
		}
		return err == nil
	}
}

// TestHL7MDMStatusChange: T04 with the stored bytes gives the document its new
// completion status, authenticator and confidentiality as a new version of the same
// DocumentReference (and metadata), audited as an update; resent, or with nothing to
// change (also when it sends only the stored status), it writes nothing. Other content,
// another type, a status going back from final to preliminary are AE 205; an unknown,
// another patient's or a cancelled document AE 204; none of them writes anything.
func TestHL7MDMStatusChange(t *testing.T) {
	e := newMDMEnv(t)
	c := mllpClient(t, e.addr)
	const note = "Dictated note.\nSigned later."
	const signer = "C001^Forster^Richard^^^Dr"
	sendAA(t, c, "T02 pre-authenticated", mdmWith("T02", "S1", pidA, "DOC-1", "", note, map[int]string{17: "PA"}))
	d, _ := e.doc(t, "DOC-1")
	before := e.mdmStatus(t, "DOC-1")
	if before.DocStatus != "preliminary" || before.Authenticator != "" || len(before.Security) != 0 {
		t.Fatalf("T02: %+v", before)
	}

	// PA → AU, signed, restricted: one new version of the same document.
	t04 := mdmWith("T04", "S2", pidA, "DOC-1", "", note, map[int]string{17: "AU", 18: "R", 22: signer})
	sendAA(t, c, "T04 authenticated", t04)
	after := e.mdmStatus(t, "DOC-1")
	if after.Version != before.Version+1 || after.DocStatus != "final" || after.Authenticator != "Dr Richard Forster" || !slices.Equal(after.Security, []string{"R"}) {
		t.Errorf("T04: %+v", after)
	}
	if d2, _ := e.doc(t, "DOC-1"); d2.ID != d.ID || d2.Status != "current" || d2.Content[0].Attachment.URL != d.Content[0].Attachment.URL || string(e.bytesOf(t, d2)) != note+"\n" {
		t.Errorf("T04: document %+v, want %s current with the same content", d2, d.ID)
	}
	if n := e.count(t, "DocumentReference"); n != 1 {
		t.Errorf("%d DocumentReferences, want 1", n)
	}
	if n := e.scalar(t, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND status = 'current' AND security = '{R}'`, d.ID); n != 1 {
		t.Errorf("T04: the metadata does not carry the new label")
	}
	if n := e.scalar(t, `SELECT count(*) FROM documents_contents WHERE document_id = $1`, d.ID); n != 1 {
		t.Errorf("T04: %d contents, want the one stored", n)
	}
	if n := e.scalar(t, `SELECT count(*) FROM audit_events WHERE request_id = 'S2' AND action = 'update' AND org = $1 AND $2 = ANY(resources)`,
		e.member.ID, "DocumentReference/"+d.ID); n != 1 {
		t.Errorf("T04: %d update events, want 1", n)
	}

	// Resent, under the same MSH-10 or a new one, and LA after AU (final either way, the
	// same authenticator and label): nothing to write.
	e.sendUnchanged(t, c, "T04 resent", t04, "AA", "")
	e.sendUnchanged(t, c, "T04 resent under a new MSH-10", mdmWith("T04", "S3", pidA, "DOC-1", "", note, map[int]string{17: "AU", 18: "R", 22: signer}), "AA", "")
	e.sendUnchanged(t, c, "T04 legally authenticated", mdmWith("T04", "S4", pidA, "DOC-1", "", note, map[int]string{17: "LA", 18: "R", 22: signer}), "AA", "")

	// Refused, and nothing written.
	e.sendUnchanged(t, c, "other content", mdmWith("T04", "S5", pidA, "DOC-1", "", "Another text.", map[int]string{17: "LA", 18: "R", 22: signer}), "AE", "205")
	e.sendUnchanged(t, c, "one more line", mdmWith("T04", "S6", pidA, "DOC-1", "", note+"\nAdded.", map[int]string{17: "LA", 18: "R", 22: signer}), "AE", "205")
	e.sendUnchanged(t, c, "another type", mdmWith("T04", "S7", pidA, "DOC-1", "", note, map[int]string{2: "DS", 17: "LA", 18: "R", 22: signer}), "AE", "205")
	e.sendUnchanged(t, c, "final back to preliminary", mdmWith("T04", "S8", pidA, "DOC-1", "", note, map[int]string{17: "PA", 18: "R", 22: signer}), "AE", "205")
	e.sendUnchanged(t, c, "unknown document", mdmWith("T04", "S9", pidA, "NO-SUCH", "", note, map[int]string{17: "AU"}), "AE", "204")
	e.sendUnchanged(t, c, "another patient's document", mdmWith("T04", "S10", pidB, "DOC-1", "", note, map[int]string{17: "AU", 18: "R", 22: signer}), "AE", "204")
	e.sendUnchanged(t, c, "cancel through T04", mdmWith("T04", "S11", pidA, "DOC-1", "", note, map[int]string{17: "CA"}), "AE", "103")
	if got := e.mdmStatus(t, "DOC-1"); got.Version != after.Version || got.DocStatus != "final" || got.Authenticator != "Dr Richard Forster" || !slices.Equal(got.Security, []string{"R"}) {
		t.Errorf("after the refused T04s: %+v, want %+v", got, after)
	}
	ack, err := c.Send(t.Context(), []byte(mdmWith("T04", "S8", pidA, "DOC-1", "", note, map[int]string{17: "PA", 18: "R", 22: signer})))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Get("MSA-1") != "AE" || ack.Get("ERR-2") != "TXA^1^17" {
		t.Errorf("final back to preliminary: %s at %s %q", ack.Get("MSA-1"), ack.Get("ERR-2"), ack.Get("MSA-3"))
	}

	// An empty TXA-18 or TXA-22 is no information, not a removal (the HL7 null `""` is:
	// TestHL7MDMStatusChangeNull): a T04 with only the stored status changes nothing.
	e.sendUnchanged(t, c, "T04 with only the completion status", mdmWith("T04", "S12", pidA, "DOC-1", "", note, map[int]string{17: "AU"}), "AA", "")
	if got := e.mdmStatus(t, "DOC-1"); got.Version != after.Version || got.DocStatus != "final" || got.Authenticator != "Dr Richard Forster" || !slices.Equal(got.Security, []string{"R"}) {
		t.Errorf("T04 with only the completion status: %+v, want %+v", got, after)
	}

	// A cancelled document takes no status change.
	sendAA(t, c, "T11", mdmMsg("T11", "S13", pidA, "DOC-1", "", "", ""))
	e.sendUnchanged(t, c, "T04 of a cancelled document", mdmWith("T04", "S14", pidA, "DOC-1", "", note, map[int]string{17: "LA", 22: signer}), "AE", "204")
	if n, err := e.srv.Documents.DanglingReferences(context.Background()); err != nil || n != 0 {
		t.Errorf("dangling = %d, %v", n, err)
	}
}

// TestHL7MDMStatusChangeNull: a T04 is not a snapshot. One that sends only TXA-17 moves
// the completion status and keeps the sender's R label (in meta.security and the
// document's metadata, so consent still keeps the document from another member) and the
// authenticator; TXA-22 `""` removes the authenticator and TXA-18 `""` the sender's
// label, while the labels ingest rules give the document stay. Each is one new version;
// resent, they write nothing.
func TestHL7MDMStatusChangeNull(t *testing.T) {
	e := newMDMEnv(t)
	c := mllpClient(t, e.addr)
	visible := e.otherReader(t)
	step := func(what, msg string, from mdmState, want mdmState) mdmState {
		t.Helper()
		sendAA(t, c, what, msg)
		got := e.mdmStatus(t, "DOC-1")
		want.Version = from.Version + 1
		if got.Version != want.Version || got.DocStatus != want.DocStatus || got.Authenticator != want.Authenticator || !slices.Equal(got.Security, want.Security) {
			t.Errorf("%s: %+v, want %+v", what, got, want)
		}
		return got
	}
	const note = "Restricted note."
	const signer = "C001^Forster^Richard^^^Dr"
	sendAA(t, c, "T02 restricted", mdmWith("T02", "N1", pidA, "DOC-1", "", note, map[int]string{17: "PA", 18: "R", 22: signer}))
	sendAA(t, c, "T02 usual control", mdmWith("T02", "N2", pidA, "DOC-2", "", "Plain note.", map[int]string{17: "PA"}))
	d, _ := e.doc(t, "DOC-1")
	plain, _ := e.doc(t, "DOC-2")
	s := e.mdmStatus(t, "DOC-1")
	if s.DocStatus != "preliminary" || s.Authenticator != "Dr Richard Forster" || !slices.Equal(s.Security, []string{"R"}) || e.metaLabels(t, d.ID) != "R" {
		t.Fatalf("T02: %+v, metadata %q", s, e.metaLabels(t, d.ID))
	}
	if !visible(plain.ID) || visible(d.ID) {
		t.Fatalf("orgb sees the plain document %v and the restricted one %v; want only the plain one", visible(plain.ID), visible(d.ID))
	}

	// Only TXA-17: the status moves, the label and the authenticator stay.
	s = step("T04 with only the completion status", mdmWith("T04", "N3", pidA, "DOC-1", "", note, map[int]string{17: "AU"}), s,
		mdmState{DocStatus: "final", Authenticator: "Dr Richard Forster", Security: []string{"R"}})
	if got := e.metaLabels(t, d.ID); got != "R" {
		t.Errorf("metadata labels %q after the T04, want R", got)
	}
	if visible(d.ID) {
		t.Error("orgb reads the restricted document after a T04 with only the completion status")
	}
	e.sendUnchanged(t, c, "T04 with only the completion status, resent", mdmWith("T04", "N4", pidA, "DOC-1", "", note, map[int]string{17: "AU"}), "AA", "")
	e.sendUnchanged(t, c, "T04 with only the same completion status", mdmWith("T04", "N5", pidA, "DOC-1", "", note, map[int]string{17: "LA"}), "AA", "")

	// TXA-22 `""`: the authenticator goes, the label stays.
	s = step("T04 authenticator null", mdmWith("T04", "N6", pidA, "DOC-1", "", note, map[int]string{17: "LA", 22: `""`}), s,
		mdmState{DocStatus: "final", Security: []string{"R"}})
	e.sendUnchanged(t, c, "T04 authenticator null, resent", mdmWith("T04", "N7", pidA, "DOC-1", "", note, map[int]string{17: "LA", 22: `""`}), "AA", "")
	if visible(d.ID) {
		t.Error("orgb reads the restricted document after the authenticator was removed")
	}

	// TXA-18 `""`: the sender's label goes, and with it what kept the document from orgb.
	step("T04 confidentiality null", mdmWith("T04", "N8", pidA, "DOC-1", "", note, map[int]string{17: "LA", 18: `""`}), s,
		mdmState{DocStatus: "final"})
	e.sendUnchanged(t, c, "T04 confidentiality null, resent", mdmWith("T04", "N9", pidA, "DOC-1", "", note, map[int]string{17: "LA", 18: `""`}), "AA", "")
	if got := e.metaLabels(t, d.ID); got != "" {
		t.Errorf("metadata labels %q after TXA-18 null, want none", got)
	}
	if !visible(d.ID) {
		t.Error("orgb does not read the document once its label was removed")
	}

	// Labels the ingest rules give (a PHQ-9: PSY, and R with it) stay when TXA-18 `""`
	// removes the sender's V.
	const phq = "44261-6^PHQ-9 total score^LN"
	sendAA(t, c, "T02 very restricted PHQ-9", mdmWith("T02", "N10", pidA, "DOC-3", "", note, map[int]string{2: phq, 17: "PA", 18: "V"}))
	if got := e.mdmStatus(t, "DOC-3").Security; !sameSet(got, []string{"V", "PSY", "R"}) {
		t.Fatalf("T02 PHQ-9 labels %v, want V, PSY and R", got)
	}
	sendAA(t, c, "T04 PHQ-9 with only the completion status", mdmWith("T04", "N11", pidA, "DOC-3", "", note, map[int]string{2: phq, 17: "AU"}))
	if got := e.mdmStatus(t, "DOC-3").Security; !sameSet(got, []string{"V", "PSY", "R"}) {
		t.Errorf("T04 PHQ-9 with only the completion status: labels %v, want V, PSY and R", got)
	}
	sendAA(t, c, "T04 PHQ-9 confidentiality null", mdmWith("T04", "N12", pidA, "DOC-3", "", note, map[int]string{2: phq, 17: "AU", 18: `""`}))
	if got := e.mdmStatus(t, "DOC-3").Security; !sameSet(got, []string{"PSY", "R"}) {
		t.Errorf("T04 PHQ-9 confidentiality null: labels %v, want PSY and R", got)
	}
	d3, _ := e.doc(t, "DOC-3")
	if visible(d3.ID) {
		t.Error("orgb reads the PHQ-9 once the sender's label was removed")
	}
}
