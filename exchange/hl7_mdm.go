package exchange

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/exchange/hl7v2"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/jsonobj"
	"github.com/concord-hie/concord/records"
)

// The MDM side of the HL7 v2 intake (hl7v2.Document): a clinic's note becomes the
// member's DocumentReference, its content stored through the document service exactly as
// a DocumentReference POSTed with attachment.data (Ingest: bytes to S3 first, then the
// metadata and the resource in the message's transaction, labels, de-duplication of
// identical bytes, the write's audit event and the Binary retrieval URL).
//
// TXA-12, the unique document number in its authority's system (resolveDocumentNumbers),
// is the document's identifier and its idempotency key: a T02 or T10 whose number names a
// document of the member already stores nothing when it is the same document (same
// patient, same bytes) and is refused (AE 205) when it is not. T10 replaces the member's
// document named by TXA-13 (relatesTo replaces: the document service marks it
// superseded); T11 marks the document named by TXA-12 entered-in-error. A document that
// is not the member's, or not about the message's patient, is unknown (AE 204).

// rejectDocument is a content error about a document (AE, with code at loc).
func rejectDocument(code hl7v2.ErrCode, loc, text string) error {
	e := errs.E("exchange.HL7Intake", errs.Invalid, text, &hl7v2.Problem{Code: code, Loc: loc, Text: text})
	e.Path = loc
	return e
}

// resolveDocumentNumbers rewrites the systems of the MDM document numbers (TXA-12,
// TXA-13) as resolveIdentifiers does PID-3's (authoritySystem): an authority registered to
// the member becomes its system, another member's is refused (AE 204). The sending
// facility (MSH-4), which stands in for a number sent without an authority, is the
// member's by its HL7 registration: its universal ID is kept when no authority has it.
func resolveDocumentNumbers(auth map[string]directory.Authority, member directory.Member, m *hl7v2.Mapped) error {
	d := m.Document
	one := func(c hl7v2.CX, loc string) (string, error) {
		sys, bad := authoritySystem(auth, member, c, loc == "MSH-4")
		if bad != "" {
			return "", reject204(loc, bad)
		}
		return sys, nil
	}
	sys, err := one(d.Number, d.NumberLoc)
	if err != nil {
		return err
	}
	d.NumberSystem = sys
	if d.Parent != nil {
		if d.ParentSystem, err = one(*d.Parent, d.ParentLoc); err != nil {
			return err
		}
	}
	if d.Resource >= 0 {
		doc := m.Resources[d.Resource].DocumentReference
		doc.Identifier[0].System = d.NumberSystem
	}
	return nil
}

// documentPatient returns the id of the member's Patient the MDM message is about, as
// store wrote (or found) it.
func documentPatient(m *hl7v2.Mapped, ids map[string]string) string {
	return strings.TrimPrefix(ids[m.Resources[m.Subjects[m.Document.Subject].Patient].FullURL], "Patient/")
}

// documentConditions are the identifier conditions of an MDM message: its document
// number, its parent's (T10) and its visit number (PV1-19), whose locks it takes at once.
func documentConditions(d *hl7v2.Document) (num, parent, visit *store.Condition) {
	num = &store.Condition{Type: "DocumentReference", System: d.NumberSystem, Value: d.Number.Value}
	if d.Parent != nil {
		parent = &store.Condition{Type: "DocumentReference", System: d.ParentSystem, Value: d.Parent.Value}
	}
	if d.Visit != nil {
		visit = &store.Condition{Type: "Encounter", System: d.Visit.System(), Value: d.Visit.Value}
	}
	return num, parent, visit
}

// lockDocument takes, for the rest of tx, the locks of the message's conditions, all at
// once (LockConditions sorts them): two messages about the same document number serialize,
// and cannot both store it. The MRN keys were taken before (store), as the lock order says.
func (h *HL7Intake) lockDocument(ctx context.Context, tx db.Querier, member directory.Member, cs ...*store.Condition) error {
	var keys []string
	for _, c := range cs {
		if c != nil {
			keys = append(keys, c.Key())
		}
	}
	return h.srv.FHIR.LockConditions(ctx, tx, member.ID, keys)
}

// memberDocument returns the member's current DocumentReference that c names, in the
// compartment of patient. None, or one about another patient, is AE 204 at loc; more
// than one AE 205.
func (h *HL7Intake) memberDocument(ctx context.Context, tx db.Querier, member directory.Member, c store.Condition, patient, loc string) (store.Stored, error) {
	ids, err := h.srv.FHIR.Match(ctx, tx, member.ID, c)
	switch {
	case err != nil:
		return store.Stored{}, err
	case len(ids) == 0:
		return store.Stored{}, rejectDocument(hl7v2.UnknownKeyIdentifier, loc, "No document of this patient has this number")
	case len(ids) > 1:
		return store.Stored{}, rejectDocument(hl7v2.DuplicateKeyIdentifier, loc, "The document number names more than one document")
	}
	st, err := h.srv.FHIR.Get(ctx, tx, "DocumentReference", ids[0])
	if err != nil {
		return store.Stored{}, err
	}
	if st.PatientID != patient {
		return store.Stored{}, rejectDocument(hl7v2.UnknownKeyIdentifier, loc, "No document of this patient has this number")
	}
	return st, nil
}

// storedDocument is the part of a stored DocumentReference the intake compares.
type storedDocument struct {
	Status  string `json:"status"`
	Content []struct {
		Attachment struct {
			Size *int64 `json:"size"`
			Hash string `json:"hash"`
		} `json:"attachment"`
	} `json:"content"`
}

// sameDocument reports whether st, the member's document with the message's number, is
// the message's document: about the same patient, with the same bytes (size and SHA-1 of
// each content, in order, as the document service recorded them).
func sameDocument(st store.Stored, patient string, doc *hl7v2.DocumentReference) (bool, error) {
	var sd storedDocument
	if err := json.Unmarshal(st.Body, &sd); err != nil {
		return false, errs.E("exchange.sameDocument", errs.Internal, err)
	}
	if st.PatientID != patient || len(sd.Content) != len(doc.Content) {
		return false, nil
	}
	for i, c := range doc.Content {
		a := sd.Content[i].Attachment
		sum := sha1.Sum(c.Attachment.Data)
		if a.Size == nil || *a.Size != int64(len(c.Attachment.Data)) || a.Hash != base64.StdEncoding.EncodeToString(sum[:]) {
			return false, nil
		}
	}
	return true, nil
}

// putDocument stores the DocumentReference r of an MDM T02 or T10 through put (Ingest,
// and so the document service), after the checks the message's document numbers need:
// a number the member already used stores nothing if it names this very document (a
// resend under a new MSH-10), and is refused (AE 205) if not; a T10's parent must be the
// member's document about the same patient and not entered in error (else AE 204), and
// the new document replaces it. PV1-19 points context.encounter at the member's Encounter
// of that visit when there is one, of the same patient. The document service's refusals
// of the content (too large, a type it does not accept, bytes that are not what they
// claim) are the sender's errors, answered AE at the content's OBX; S3 being down is not
// (errs.Unavailable: AR, nothing written).
func (h *HL7Intake) putDocument(ctx context.Context, tx db.Querier, member directory.Member, m *hl7v2.Mapped, r hl7v2.Resource,
	ids map[string]string, put func(hl7v2.Resource) error) error {
	d, doc := m.Document, r.DocumentReference
	patient := documentPatient(m, ids)
	num, parent, visit := documentConditions(d)
	if err := h.lockDocument(ctx, tx, member, num, parent, visit); err != nil {
		return err
	}
	existing, err := h.srv.FHIR.Match(ctx, tx, member.ID, *num)
	if err != nil {
		return err
	}
	switch len(existing) {
	case 0:
	case 1:
		st, err := h.srv.FHIR.Get(ctx, tx, "DocumentReference", existing[0])
		if err != nil {
			return err
		}
		same, err := sameDocument(st, patient, doc)
		if err != nil || same {
			return err // the same document again: nothing to store
		}
		return rejectDocument(hl7v2.DuplicateKeyIdentifier, "TXA-12", "This document number was already used for another document; send MDM^T10 to replace a document")
	default:
		return rejectDocument(hl7v2.DuplicateKeyIdentifier, "TXA-12", "The document number names more than one document")
	}
	if parent != nil {
		st, err := h.memberDocument(ctx, tx, member, *parent, patient, "TXA-13")
		if err != nil {
			return err
		}
		var sd storedDocument
		if err := json.Unmarshal(st.Body, &sd); err != nil {
			return errs.E("exchange.HL7Intake.putDocument", errs.Internal, err)
		}
		if sd.Status == "entered-in-error" {
			return rejectDocument(hl7v2.UnknownKeyIdentifier, "TXA-13", "The parent document was cancelled")
		}
		doc.RelatesTo = []hl7v2.DocumentRelatesTo{{Code: "replaces", Target: hl7v2.Reference{Reference: "DocumentReference/" + st.ID}}}
	}
	if visit != nil {
		enc, err := h.srv.FHIR.Match(ctx, tx, member.ID, *visit)
		if err != nil {
			return err
		}
		if len(enc) == 1 {
			st, err := h.srv.FHIR.Get(ctx, tx, "Encounter", enc[0])
			if err != nil {
				return err
			}
			if st.PatientID == patient {
				if doc.Context == nil {
					doc.Context = &hl7v2.DocumentContext{}
				}
				doc.Context.Encounter = []hl7v2.Reference{{Reference: "Encounter/" + st.ID}}
			}
		}
	}
	if err := put(r); err != nil {
		return contentError(err, d)
	}
	return nil
}

// contentError sorts put's refusal of an MDM document (err): only a refusal of the
// content itself (an error at DocumentReference.content or its attachment, or the
// document service's TooLarge and Unsupported) is the sender's content error, AE at the
// OBX it came from; a refusal of relatesTo (the document service's supersede) is about
// the parent, AE 204 at TXA-13. Any other errs.Invalid (a foreign key the database
// refused, a mapped resource that does not parse) is not the message's fault, since the
// mapping already checked it: it becomes errs.Internal, answered AR and not remembered
// for the MSH-10, so the sender can resend it. Other errors are returned as they are.
func contentError(err error, d *hl7v2.Document) error {
	if err == nil || hl7v2.ProblemOf(err) != nil {
		return err
	}
	path, code := errs.PathOf(err), errs.CodeOf(err)
	switch {
	case strings.HasPrefix(path, "DocumentReference.relatesTo"):
		return rejectDocument(hl7v2.UnknownKeyIdentifier, "TXA-13", "The parent document cannot be replaced")
	case !strings.HasPrefix(path, "DocumentReference.content") && code != errs.TooLarge && code != errs.Unsupported:
		if code == errs.Invalid { // errs.E would keep the cause's code
			return &errs.Error{Op: "exchange.HL7Intake.putDocument", Code: errs.Internal, Msg: "the document could not be stored", Err: err}
		}
		return err
	}
	loc := "OBX"
	if len(d.ContentLoc) > 0 {
		loc = d.ContentLoc[0]
	}
	if rest, ok := strings.CutPrefix(path, "DocumentReference.content["); ok {
		if i, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, ']'), 0)]); err == nil && i >= 0 && i < len(d.ContentLoc) {
			loc = d.ContentLoc[i]
		}
	}
	switch code {
	case errs.TooLarge:
		return rejectDocument(hl7v2.DataTypeError, loc, "The document is larger than allowed")
	case errs.Unsupported:
		return rejectDocument(hl7v2.TableValueNotFound, loc, "This kind of document content is not accepted")
	case errs.Invalid:
		return rejectDocument(hl7v2.DataTypeError, loc, "Document content refused: "+errs.MessageOf(err))
	}
	return err
}

// cancelDocument handles MDM T11: the member's document named by TXA-12, about the
// message's patient, becomes entered-in-error, a new version stored through the same path
// as an update of it (ingestUpdate: the document service's metadata follow), recorded in
// w. A document already entered in error is left as it is. It returns the versions written.
func (h *HL7Intake) cancelDocument(ctx context.Context, tx db.Querier, member directory.Member, m *hl7v2.Mapped, ids map[string]string, w *records.Writes) (int, error) {
	const op = "exchange.HL7Intake.cancelDocument"
	num, _, _ := documentConditions(m.Document)
	if err := h.lockDocument(ctx, tx, member, num); err != nil {
		return 0, err
	}
	st, err := h.memberDocument(ctx, tx, member, *num, documentPatient(m, ids), "TXA-12")
	if err != nil {
		return 0, err
	}
	top, err := jsonobj.Parse(st.Body)
	if err != nil {
		return 0, errs.E(op, errs.Internal, err)
	}
	if string(top.Get("status")) == `"entered-in-error"` {
		return 0, nil
	}
	res, err := fhir.Parse(top.Set("status", json.RawMessage(`"entered-in-error"`)).Encode())
	if err != nil {
		return 0, errs.E(op, errs.Internal, err)
	}
	sv, err := h.srv.ingestUpdate(ctx, tx, member, res, st.ID)
	if err != nil {
		return 0, err
	}
	written(w, sv, http.StatusOK, true)
	return 1, nil
}
