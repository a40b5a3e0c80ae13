package exchange

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/concord-hie/concord/exchange/hl7v2"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// TestContentError: only the document service's refusals of the content are the
// sender's content error at the OBX; a refused relatesTo is about the parent (AE 204); a
// database or mapping failure unrelated to the content is internal (AR, not remembered).
func TestContentError(t *testing.T) {
	at := func(code errs.Code, path, msg string) error {
		e := errs.E("documents.Service.ingestDocumentReference", code, msg)
		e.Path = path
		return e
	}
	_, parseErr := fhir.Parse([]byte(`{"resourceType":`))
	d := &hl7v2.Document{ContentLoc: []string{"OBX[2]-5", "OBX[3]-5"}}
	for _, tt := range []struct {
		name     string
		err      error
		ack      hl7v2.AckCode
		code     hl7v2.ErrCode
		loc      string
		remember bool
	}{
		{"bytes not their type", at(errs.Invalid, "DocumentReference.content[1].attachment", "the content does not look like its declared contentType"),
			hl7v2.AE, hl7v2.DataTypeError, "OBX[3]-5", true},
		{"too large", at(errs.TooLarge, "DocumentReference.content[0].attachment", "the document is larger than allowed"), hl7v2.AE, hl7v2.DataTypeError, "OBX[2]-5", true},
		{"archive", at(errs.Unsupported, "", "archives are not accepted as documents"), hl7v2.AE, hl7v2.TableValueNotFound, "OBX[2]-5", true},
		{"parent not the member's", at(errs.Invalid, "DocumentReference.relatesTo.target", "relatesTo.target is not one of the sending member's documents"),
			hl7v2.AE, hl7v2.UnknownKeyIdentifier, "TXA-13", true},
		{"parent not current", at(errs.Conflict, "DocumentReference.relatesTo[0].target", "DocumentReference/x is superseded by DocumentReference/y; replace the current document"),
			hl7v2.AE, hl7v2.UnknownKeyIdentifier, "TXA-13", true},
		{"foreign key", db.Map("documents.insertMeta", &pgconn.PgError{Code: "23503"}), hl7v2.AR, hl7v2.ApplicationInternal, "", false},
		{"mapped resource does not parse", errs.E("exchange.HL7Intake.store", errs.Invalid, "the message maps to an invalid DocumentReference", parseErr),
			hl7v2.AR, hl7v2.ApplicationInternal, "", false},
		{"object store down", errs.E("documents.S3Blobs.Put", errs.Unavailable, "object store unavailable"), hl7v2.AR, hl7v2.ApplicationInternal, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := contentError(tt.err, d)
			a := ackFor(err)
			if a.Code != tt.ack || a.Err != tt.code || a.Loc != tt.loc {
				t.Errorf("ACK %s %d at %q, want %s %d at %q (%v)", a.Code, a.Err, a.Loc, tt.ack, tt.code, tt.loc, err)
			}
			if content(err) != tt.remember {
				t.Errorf("remembered for the MSH-10: %v, want %v", content(err), tt.remember)
			}
		})
	}
}

// TestHL7MDMChangeRelationRefused: the document service's refusal of what a T04 or T11
// stores again is sorted as a T02's is (contentError): here the relatesTo the document
// got through FHIR names a parent cancelled since, which another document had replaced
// first, and supersede refuses it. That is about the parent (AE 204 at TXA-13, nothing
// written), not an application error (AE 207). The document service now refuses such a
// second replacement when it is written; one stored before it did is written here
// directly, resource and metadata, as it did then.
func TestHL7MDMChangeRelationRefused(t *testing.T) {
	e := newMDMEnv(t)
	c := mllpClient(t, e.addr)
	sendAA(t, c, "T02 DOC-1", mdmMsg("T02", "C1", pidA, "DOC-1", "", "", "First."))
	sendAA(t, c, "T10 DOC-2 replaces DOC-1", mdmMsg("T10", "C2", pidA, "DOC-2", "DOC-1", "", "Second."))
	sendAA(t, c, "T02 DOC-3", mdmWith("T02", "C3", pidA, "DOC-3", "", "Third.", map[int]string{17: "PA"}))
	d1, _ := e.doc(t, "DOC-1")
	d3, _ := e.doc(t, "DOC-3")
	e.openWrite(t, func(ctx context.Context, tx pgx.Tx) error {
		st, err := e.srv.FHIR.Get(ctx, tx, "DocumentReference", d3.ID)
		if err != nil {
			return err
		}
		var body map[string]any
		if err := json.Unmarshal(st.Body, &body); err != nil {
			return err
		}
		body["relatesTo"] = []any{map[string]any{"code": "replaces", "target": map[string]any{"reference": "DocumentReference/" + d1.ID}}}
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		res, err := fhir.Parse(b)
		if err != nil {
			return err
		}
		if _, err := e.srv.FHIR.Put(ctx, tx, store.Write{Resource: res, ID: d3.ID, MemberID: e.member.ID, PatientID: st.PatientID, At: time.Now()}); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE documents_metadata SET replaces = array_append(replaces, $1) WHERE id = $2`, d1.ID, d3.ID)
		return err
	})()
	sendAA(t, c, "T11 DOC-1", mdmMsg("T11", "C4", pidA, "DOC-1", "", "", ""))
	for _, tt := range []struct{ what, msg string }{
		{"T04 DOC-3", mdmWith("T04", "C5", pidA, "DOC-3", "", "Third.", map[int]string{17: "AU"})},
		{"T11 DOC-3", mdmMsg("T11", "C6", pidA, "DOC-3", "", "", "")},
	} {
		e.sendUnchanged(t, c, tt.what, tt.msg, "AE", "204")
		ack, err := c.Send(t.Context(), []byte(tt.msg)) // the remembered answer
		if err != nil {
			t.Fatal(err)
		}
		if ack.Get("ERR-2") != "TXA^1^13" {
			t.Errorf("%s: AE at %s, want TXA-13", tt.what, ack.Get("ERR-2"))
		}
	}
}
