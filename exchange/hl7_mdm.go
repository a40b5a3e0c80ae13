package exchange

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"slices"
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
// is the document's identifier and its idempotency key: a T02, T06 or T10 whose number
// names a document of the member already stores nothing when it maps to that very
// document (same patient, bytes, labels, type, status, dates, author and parent:
// sameDocument) and is refused (AE 205) when anything differs. T10 replaces the member's
// document named by TXA-13 (relatesTo replaces: the document service marks it
// superseded), unless that one was cancelled or replaced already (AE 204); T06 is an
// addendum to it (relatesTo appends: it stays as it is), unless it was cancelled (AE
// 204). T04 changes the completion status, authenticator and confidentiality of the
// document named by TXA-12, whose content it must carry unchanged, leaving an
// authenticator or confidentiality it does not send as stored (statusDocument); T11
// marks that document entered-in-error. A T06 or T10 that sends no TXA-18 takes the
// confidentiality labels of the document it adds to or replaces. A document that is not
// the member's, or not about the message's patient, is unknown (AE 204). T04, T11 and
// the parent of a T06 or T10 work on the document under its row lock (lockedDocument),
// so a FHIR or MHD write of it that commits meanwhile is built upon, never undone.

// rejectDocument is a content error about a document (AE, with code at loc).
func rejectDocument(code hl7v2.ErrCode, loc, text string) error {
	e := errs.E("exchange.HL7Intake", errs.Invalid, text, &hl7v2.Problem{Code: code, Loc: loc, Text: text})
	e.Path = loc
	return e
}

// pinFacility makes the sending facility (MSH-4), where it stands in for the authority
// of a document number sent without one, only what the directory verified. senderMember
// accepts a message whose MSH-4 matches one form the member registered (the raw field,
// the namespace ID or the universal ID), so when the match was the namespace alone, the
// universal ID is only what the message says: unless it is a registered authority (then
// resolveDocumentNumbers keeps it, or refuses another member's), the numbers lose it
// and their system is the registered namespace (GENFAC^1.2.3.4.5^ISO registered as
// GENFAC numbers its documents in GENFAC, or in the system the namespace was registered
// for with AddHL7Namespace). PID-3 and authorities sent in TXA-12/13 are not affected.
// It returns errs.Unavailable when the directory cannot be read.
func (h *HL7Intake) pinFacility(ctx context.Context, msg *hl7v2.Message, member directory.Member, m *hl7v2.Mapped) error {
	d := m.Document
	if d == nil || (d.NumberLoc != "MSH-4" && (d.Parent == nil || d.ParentLoc != "MSH-4")) {
		return nil
	}
	msh := msg.MSH()
	f := msh.Field(4)
	fac := hl7v2.CX{Namespace: f.Comp(1).Value(), UniversalID: f.Comp(2).Value(), UniversalIDType: f.Comp(3).Value()}
	if fac.UniversalID == "" {
		return nil // matched by its namespace, the only thing it names
	}
	// Registered as sent: the raw field or the universal ID (hdForms but the namespace).
	forms := []string{f.Raw()}
	if u := f.Comp(2).String(); u != f.Raw() {
		forms = append(forms, u)
	}
	id, err := h.srv.Directory.HL7SenderMember(ctx, nil, hdForms(msh.Field(3)), forms)
	switch {
	case err == nil && id == member.ID:
		return nil
	case err != nil && errs.CodeOf(err) != errs.NotFound && errs.CodeOf(err) != errs.Conflict:
		return err
	}
	auth, err := h.srv.Directory.ResolveAuthorities(ctx, nil, []string{fac.System()})
	if err != nil {
		return err
	}
	if _, ok := auth[fac.System()]; ok {
		return nil
	}
	if fac.Namespace == "" {
		return reject204("MSH-4", "Sending facility not registered to this connection's member")
	}
	if d.NumberLoc == "MSH-4" {
		d.Number.UniversalID, d.Number.UniversalIDType = "", ""
		d.NumberSystem = d.Number.System()
	}
	if d.Parent != nil && d.ParentLoc == "MSH-4" {
		d.Parent.UniversalID, d.Parent.UniversalIDType = "", ""
		d.ParentSystem = d.Parent.System()
	}
	return nil
}

// resolveDocumentNumbers rewrites the systems of the MDM document numbers (TXA-12,
// TXA-13) as resolveIdentifiers does PID-3's (authoritySystem): an authority registered to
// the member becomes its system, another member's is refused (AE 204). The sending
// facility (MSH-4), which stands in for a number sent without an authority, is the
// member's by its HL7 registration, as pinFacility left it: its universal ID only when
// the registration or an authority of the member names it, else its namespace.
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

// numberedDocument is the stored document the message's TXA-12 names (a T04's or T11's),
// under its number's lock (lockDocument) and its row lock (lockedDocument).
func (h *HL7Intake) numberedDocument(ctx context.Context, tx db.Querier, member directory.Member, m *hl7v2.Mapped, ids map[string]string) (store.Stored, error) {
	num, _, _ := documentConditions(m.Document)
	if err := h.lockDocument(ctx, tx, member, num); err != nil {
		return store.Stored{}, err
	}
	return h.lockedDocument(ctx, tx, member, *num, documentPatient(m, ids), "TXA-12")
}

// lockedDocument is memberDocument holding, for the rest of tx, the row lock of the
// document it returns (FHIR.Lock): the lock a FHIR update (PUT, PATCH) and the document
// service's supersede (a replacement through FHIR or MHD) take, which the condition locks
// of lockDocument are not. The document is read again once the lock is held, so what the
// caller builds on is the version stored now, and no other write of it commits before tx
// ends (as update does: the row lock, then the write). The number is matched again too,
// since a write that committed meanwhile may have moved it (it then names another
// document, whose lock is taken in turn, or none: AE 204). It returns errs.Unavailable
// when the number kept moving (AR: the sender resends).
func (h *HL7Intake) lockedDocument(ctx context.Context, tx db.Querier, member directory.Member, c store.Condition, patient, loc string) (store.Stored, error) {
	st, err := h.memberDocument(ctx, tx, member, c, patient, loc)
	for range 3 {
		if err != nil {
			return store.Stored{}, err
		}
		if _, err := h.srv.FHIR.Lock(ctx, tx, "DocumentReference", st.ID); err != nil {
			return store.Stored{}, err
		}
		id := st.ID
		if st, err = h.memberDocument(ctx, tx, member, c, patient, loc); err == nil && st.ID == id {
			return st, nil
		}
	}
	if err != nil {
		return store.Stored{}, err
	}
	return store.Stored{}, errs.E("exchange.HL7Intake.lockedDocument", errs.Unavailable, "the document number kept moving to other documents")
}

// parentConfidentiality returns the v3-Confidentiality labels of the stored document
// body, as a T06 or T10 that sends no TXA-18 carries them (hl7v2.Document.KeepConfidentiality).
func parentConfidentiality(body []byte) ([]hl7v2.Coding, error) {
	var d struct {
		Meta struct {
			Security []fhir.Coding `json:"security"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, errs.E("exchange.parentConfidentiality", errs.Internal, err)
	}
	var out []hl7v2.Coding
	for _, c := range d.Meta.Security {
		if c.System == systemConfidentiality && c.Code != "" && !slices.ContainsFunc(out, func(o hl7v2.Coding) bool { return o.Code == c.Code }) {
			out = append(out, hl7v2.Coding{System: c.System, Code: c.Code, Display: c.Display})
		}
	}
	return out, nil
}

// storedDocument is the part of a stored DocumentReference the intake checks.
type storedDocument struct {
	Status string `json:"status"`
}

// documentStatus returns the status of the stored DocumentReference st.
func documentStatus(st store.Stored) (string, error) {
	var sd storedDocument
	if err := json.Unmarshal(st.Body, &sd); err != nil {
		return "", errs.E("exchange.documentStatus", errs.Internal, err)
	}
	return sd.Status, nil
}

// documentKey returns what identifies an MDM document's mapping in the DocumentReference
// JSON body, as bytes to compare: documentFields, marshalled (with sorted keys), without
// the v3-Confidentiality labels when anyConfidentiality is set.
func documentKey(body []byte, labels []fhir.Coding, anyConfidentiality bool) ([]byte, error) {
	out, err := documentFields(body, labels)
	if err != nil {
		return nil, err
	}
	if anyConfidentiality {
		set := slices.DeleteFunc(out["security"].([]string), func(k string) bool { return strings.HasPrefix(k, systemConfidentiality+"|") })
		if len(set) == 0 {
			set = nil
		}
		out["security"] = set
	}
	return json.Marshal(out) // maps marshal with sorted keys
}

// documentFields returns, by element name, what identifies an MDM document's mapping in
// the DocumentReference JSON body: every element the mapping writes (identifier, type,
// category, subject, docStatus, date, author, authenticator, relatesTo, the context's
// period), the security labels ("security": meta.security with labels, as a sorted set
// of system|code), and ("content") for each content its media type, size and SHA-1,
// whether the bytes are inline (data: the mapped resource) or were stored by the
// document service (size and hash: the stored one). Left out are what the server writes
// (id, the rest of meta), status (superseded or entered-in-error by later messages), and
// the context's encounter, which PV1-19 finds among the member's stored Encounters at
// the time and so is not the message's to fix (a context with nothing else is left out).
func documentFields(body []byte, labels []fhir.Coding) (map[string]any, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, err
	}
	out := map[string]any{}
	for k, v := range top {
		switch k {
		case "id", "meta", "status", "content", "context":
			continue
		}
		var x any
		if err := json.Unmarshal(v, &x); err != nil {
			return nil, err
		}
		out[k] = x
	}
	var meta struct {
		Security []fhir.Coding `json:"security"`
	}
	if raw := top["meta"]; raw != nil {
		if err := json.Unmarshal(raw, &meta); err != nil {
			return nil, err
		}
	}
	var set []string
	for _, c := range append(meta.Security, labels...) {
		if k := c.System + "|" + c.Code; !slices.Contains(set, k) {
			set = append(set, k)
		}
	}
	slices.Sort(set)
	out["security"] = set
	if raw := top["context"]; raw != nil {
		var c map[string]any
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, err
		}
		delete(c, "encounter")
		if len(c) > 0 {
			out["context"] = c
		}
	}
	var contents []struct {
		Attachment struct {
			ContentType string `json:"contentType"`
			Data        []byte `json:"data"`
			Size        *int64 `json:"size"`
			Hash        string `json:"hash"`
		} `json:"attachment"`
	}
	if raw := top["content"]; raw != nil {
		if err := json.Unmarshal(raw, &contents); err != nil {
			return nil, err
		}
	}
	var keys []string
	for _, c := range contents {
		a := c.Attachment
		mt, _, _ := mime.ParseMediaType(a.ContentType)
		size, hash := int64(-1), a.Hash
		if a.Size != nil {
			size = *a.Size
		}
		if a.Data != nil {
			sum := sha1.Sum(a.Data)
			size, hash = int64(len(a.Data)), base64.StdEncoding.EncodeToString(sum[:])
		}
		keys = append(keys, strings.ToLower(mt)+" "+strconv.FormatInt(size, 10)+" "+hash)
	}
	out["content"] = keys
	return out, nil
}

// sameDocument reports whether st, the member's document with the message's number, is
// what the message maps to: about the same patient, and with the same documentKey as r
// stored now (its references rewritten to the ids in ids, with the labels Ingest would
// add: sourceWrite). A different label, type, status, date, author, parent or content
// under the same number is not the same document. A message whose TXA-18 says nothing
// (anyConfidentiality: a T06 or T10 that takes its parent's labels) is compared without
// the confidentiality labels, so that its resend is the same document even when the
// parent's labels changed since.
func (h *HL7Intake) sameDocument(member directory.Member, st store.Stored, patient string, r hl7v2.Resource, ids map[string]string, anyConfidentiality bool) (bool, error) {
	const op = "exchange.HL7Intake.sameDocument"
	if st.PatientID != patient {
		return false, nil
	}
	b, err := r.JSON()
	if err != nil {
		return false, err
	}
	res, err := fhir.Parse(b)
	if err != nil {
		return false, errs.E(op, errs.Internal, err)
	}
	res, err = fhir.RewriteReferences(res, func(ref string) (string, error) {
		if to, ok := ids[ref]; ok {
			return to, nil
		}
		return ref, nil
	})
	if err != nil {
		return false, err
	}
	want, err := documentKey(res.Bytes(), h.srv.sourceWrite(member, res, "").Security, anyConfidentiality)
	if err != nil {
		return false, errs.E(op, errs.Internal, err)
	}
	got, err := documentKey(st.Body, nil, anyConfidentiality)
	if err != nil {
		return false, errs.E(op, errs.Internal, err)
	}
	return bytes.Equal(got, want), nil
}

// putDocument stores the DocumentReference r of an MDM T02, T06 or T10 through put
// (Ingest, and so the document service), after the checks the message's document numbers
// need.
//
// A number the member already used stores nothing if the stored document is exactly
// what the message maps to (sameDocument: a resend under a new MSH-10), and is refused
// (AE 205, with a fixed reason) if anything differs: the patient, the bytes, and also
// only a label (TXA-18), the type (TXA-2), the completion status (TXA-17), a date, the
// author or the parent (TXA-13; so a T06 or T10 under the number of a T02, or of a T10
// of another parent). Such a message is never applied as an update, not even a changed
// label or status on the same bytes: a T02, T06 or T10 announces a new document, while a
// change of one's status is a T04 (statusDocument) and an edit (T08) is not taken;
// applying it would also let a resend of an old message quietly lower a label (V to U).
// The sender replaces the document with a T10 under a new number instead.
//
// A T10's parent must be the member's document about the same patient, neither entered
// in error nor already replaced by another (AE 204: two current replacements of one
// document would leave it unclear which is the document now); the new document replaces
// it. A T06's parent must be the member's document about the same patient, not entered
// in error (AE 204); one already replaced may still get an addendum. The addendum
// appends to it (relatesTo appends), which leaves the parent as it was: current, with no
// new version and its metadata untouched. The parent is read under its row lock
// (lockedDocument), so a FHIR update or MHD replacement of it cannot commit between
// these checks and the write. A T06 or T10 whose TXA-18 says nothing (empty, not the
// null `""`: hl7v2.Document.KeepConfidentiality) takes the parent's v3-Confidentiality
// labels, so an addendum or replacement of a restricted note sent by an EHR that fills
// TXA-18 on the original only is as restricted as the note; `""` or a value (U: none)
// decides as on a T02. Its resend is compared without those labels (sameDocument), so
// it stays the same document after the parent's labels changed. PV1-19 points
// context.encounter at the member's Encounter of that visit when there is one, of the
// same patient. The document service's refusals of the content (too large, a type it
// does not accept, bytes that are not what they claim) are the sender's errors, answered
// AE at the content's OBX (contentError); S3 being down is not (errs.Unavailable: AR,
// nothing written).
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
	if len(existing) > 1 {
		return rejectDocument(hl7v2.DuplicateKeyIdentifier, "TXA-12", "The document number names more than one document")
	}
	// The parent and the encounter first: a resend is compared with all of the mapping.
	parentStatus := ""
	if parent != nil {
		st, err := h.lockedDocument(ctx, tx, member, *parent, patient, "TXA-13")
		if err != nil {
			return err
		}
		if parentStatus, err = documentStatus(st); err != nil {
			return err
		}
		if d.KeepConfidentiality {
			labels, err := parentConfidentiality(st.Body)
			if err != nil {
				return err
			}
			doc.Meta = nil
			if len(labels) > 0 {
				doc.Meta = &hl7v2.Meta{Security: labels}
			}
		}
		code := "replaces"
		if d.Action == hl7v2.DocumentAddendum {
			code = "appends"
		}
		doc.RelatesTo = []hl7v2.DocumentRelatesTo{{Code: code, Target: hl7v2.Reference{Reference: "DocumentReference/" + st.ID}}}
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
	if len(existing) == 1 {
		st, err := h.srv.FHIR.Get(ctx, tx, "DocumentReference", existing[0])
		if err != nil {
			return err
		}
		same, err := h.sameDocument(member, st, patient, r, ids, d.KeepConfidentiality)
		if err != nil || same {
			return err // the same document again: nothing to store
		}
		return rejectDocument(hl7v2.DuplicateKeyIdentifier, "TXA-12", "This document number was already used for a different document; send MDM^T10 with a new number to replace a document")
	}
	switch {
	case parentStatus == "entered-in-error":
		return rejectDocument(hl7v2.UnknownKeyIdentifier, "TXA-13", "The parent document was cancelled")
	case parentStatus == "superseded" && d.Action == hl7v2.DocumentReplace:
		return rejectDocument(hl7v2.UnknownKeyIdentifier, "TXA-13", "The parent document was already replaced")
	}
	if err := put(r); err != nil {
		return contentError(err, d)
	}
	return nil
}

// contentError sorts put's refusal of an MDM document (err), and ingestUpdate's of the
// new version a T04 or T11 stores: only a refusal of the content itself (an error at
// DocumentReference.content or its attachment, or the document service's TooLarge and
// Unsupported) is the sender's content error, AE at the OBX it came from; a refusal of
// relatesTo (the document service's supersede, which a T04 or T11 of a replacement runs
// again) is about the parent, AE 204 at TXA-13. Any other errs.Invalid (a foreign key the
// database refused, a mapped resource that does not parse) is not the message's fault,
// since the mapping already checked it: it becomes errs.Internal, answered AR and not
// remembered for the MSH-10, so the sender can resend it. Other errors are returned as
// they are.
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
// w. It works on the version read under the document's row lock (lockedDocument), as a
// FHIR update does, so a write that committed while it waited is kept in the new version.
// A document already entered in error is left as it is. The document service's refusals
// are sorted as a T02's are (contentError). It returns the versions written.
func (h *HL7Intake) cancelDocument(ctx context.Context, tx db.Querier, member directory.Member, m *hl7v2.Mapped, ids map[string]string, w *records.Writes) (int, error) {
	const op = "exchange.HL7Intake.cancelDocument"
	st, err := h.numberedDocument(ctx, tx, member, m, ids)
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
		return 0, contentError(err, m.Document)
	}
	written(w, sv, http.StatusOK, true)
	return 1, nil
}

// changeDocument applies an MDM message that changes one of the member's stored
// documents instead of storing a new one: T04 (statusDocument) or T11 (cancelDocument).
// It returns the versions written, each recorded in w.
func (h *HL7Intake) changeDocument(ctx context.Context, tx db.Querier, member directory.Member, m *hl7v2.Mapped, ids map[string]string, w *records.Writes) (int, error) {
	if m.Document.Action == hl7v2.DocumentStatusChange {
		return h.statusDocument(ctx, tx, member, m, ids, w)
	}
	return h.cancelDocument(ctx, tx, member, m, ids, w)
}

// docStatusRank orders the R4 docStatus values an MDM T04 moves a document between.
// The mapping folds HL7 table 0271 (document completion status) into two of them
// (hl7v2's docStatuses) and the stored document keeps only the folded value, so the
// order Concord enforces is the order of those:
//
//	rank 1, preliminary: IN incomplete, IP in progress, DI dictated, PA pre-authenticated
//	rank 2, final:       DO documented, AU authenticated, LA legally authenticated
//	                     (and amended, which only a FHIR write can set)
//
// A status change may keep its rank or go up (PA → AU: preliminary → final), never down
// (AU → PA, LA → IP, and DO → PA too, since the mapping makes DO final): AE 205. Moves
// within a rank (IP → DI, DO → AU → LA) store the same docStatus, so they cannot be told
// from their reverse and are accepted. A document stored without a docStatus (a T02
// without TXA-17) has rank 0 and may take any. CA (canceled) is no status a T04 sets
// (the mapping answers AE 103: a document sent in error is cancelled with T11), and a
// cancelled document (status or docStatus entered-in-error) takes no status change
// (AE 204).
func docStatusRank(s string) int {
	switch s {
	case "preliminary":
		return 1
	case "final", "amended":
		return 2
	}
	return 0
}

// statusDocument handles MDM T04: the member's document named by TXA-12, about the
// message's patient, takes the message's completion status (TXA-17 as docStatus),
// authenticator (TXA-22) and confidentiality (TXA-18 as its v3-Confidentiality label)
// in a new version, stored through the same path as an update of it (ingestUpdate: the
// document service's metadata follow) and recorded in w. Unlike Map's other segments the
// TXA is not a snapshot: HL7 v2 tells a field that is not present from the null `""`
// (hl7v2.Document.KeepConfidentiality, KeepAuthenticator). An empty TXA-18 or TXA-22
// leaves the stored label or authenticator as it is, so a T04 that sends only TXA-17
// never lowers a document's confidentiality; `""` removes it (TXA-18 `""` or U: the
// confidentiality label the sender gave; labels that ingest rules give the document
// stay); a value sets it. Everything else of the stored document is kept: its status (a
// replaced document may still be authenticated), identifier, relatesTo, context, content
// and what FHIR writes added.
//
// A T04 is a status change, not an edit: its content must be the stored content, byte
// for byte (the same media type, size and SHA-1 for each content), and the other
// elements the mapping writes (type, category, date, author, the context's period) the
// stored ones; otherwise it is AE 205 and nothing is written (new content is a T10
// under a new number). A status that goes down (docStatusRank) is AE 205 too. A document
// that is unknown, another patient's or cancelled is AE 204. A T04 that changes nothing
// (a resend under a new MSH-10, or one that sends only the stored status) writes nothing
// and is answered AA. The document service's refusals of the new version are sorted as a
// T02's are (contentError). It returns the versions written.
//
// Every check and the new version are made from the document as read under its row lock
// (lockedDocument), the lock a FHIR update and the document service's supersede take, so
// a write that commits while the T04 waits is built upon, not undone: a label it added
// stays when TXA-18 is empty, and a document an MHD replacement superseded stays
// superseded (its status is kept, as is the metadata's superseded_by). The T04 takes the
// row lock before the document's metadata, which supersede takes in the other order: a
// deadlock between them is 40P01, and the message's transaction (db.InTx) runs again.
func (h *HL7Intake) statusDocument(ctx context.Context, tx db.Querier, member directory.Member, m *hl7v2.Mapped, ids map[string]string, w *records.Writes) (int, error) {
	const op = "exchange.HL7Intake.statusDocument"
	d := m.Document
	if d.Change == nil {
		return 0, errs.E(op, errs.Internal, "a status change without its document")
	}
	st, err := h.numberedDocument(ctx, tx, member, m, ids)
	if err != nil {
		return 0, err
	}
	msg, err := json.Marshal(d.Change)
	if err != nil {
		return 0, errs.E(op, errs.Internal, err)
	}
	got, err := documentFields(st.Body, nil)
	if err != nil {
		return 0, errs.E(op, errs.Internal, err)
	}
	want, err := documentFields(msg, nil)
	if err != nil {
		return 0, errs.E(op, errs.Internal, err)
	}
	status, err := documentStatus(st)
	if err != nil {
		return 0, err
	}
	docStatus, _ := got["docStatus"].(string)
	if status == "entered-in-error" || docStatus == "entered-in-error" {
		return 0, rejectDocument(hl7v2.UnknownKeyIdentifier, "TXA-12", "The document was cancelled")
	}
	if !sameJSON(got["content"], want["content"]) {
		loc := "OBX"
		if len(d.ContentLoc) > 0 {
			loc = d.ContentLoc[0]
		}
		return 0, rejectDocument(hl7v2.DuplicateKeyIdentifier, loc, "The content differs from the stored document's; send MDM^T10 with a new number to replace a document")
	}
	for _, f := range []struct{ key, loc string }{{"type", "TXA-2"}, {"category", "TXA-2"}, {"date", "TXA-6"}, {"context", "TXA-4"}, {"author", "TXA-9"}} {
		if !sameJSON(got[f.key], want[f.key]) {
			return 0, rejectDocument(hl7v2.DuplicateKeyIdentifier, f.loc, "A status change cannot change the document's type, dates or author")
		}
	}
	if docStatusRank(d.Change.DocStatus) < docStatusRank(docStatus) {
		return 0, rejectDocument(hl7v2.DuplicateKeyIdentifier, "TXA-17", "The completion status cannot go back from final to preliminary")
	}
	res, err := statusChanged(st.Body, d)
	if err != nil {
		return 0, errs.E(op, errs.Internal, err)
	}
	// Nothing to write when the version would carry what the stored one does, with the
	// labels the write would add (sourceWrite), as Put stamps them.
	sw := h.srv.sourceWrite(member, res, st.ID)
	next, err := sw.Resource.Stamp(fhir.Stamp{Security: sw.Security})
	if err != nil {
		return 0, errs.E(op, errs.Internal, err)
	}
	before, err := statusKey(st.Body)
	if err != nil {
		return 0, errs.E(op, errs.Internal, err)
	}
	after, err := statusKey(next.Bytes())
	if err != nil {
		return 0, errs.E(op, errs.Internal, err)
	}
	if before == after {
		return 0, nil
	}
	sv, err := h.srv.ingestUpdate(ctx, tx, member, res, st.ID)
	if err != nil || sv.Unchanged {
		return 0, contentError(err, d)
	}
	written(w, sv, http.StatusOK, true)
	return 1, nil
}

// statusChanged returns the stored DocumentReference body with the docStatus of the
// T04 d (d.Change) and, unless d keeps them as stored (KeepAuthenticator,
// KeepConfidentiality), its authenticator and the v3-Confidentiality labels of
// meta.security: one that d.Change lacks is removed. Everything else is as stored.
func statusChanged(body []byte, d *hl7v2.Document) (*fhir.Resource, error) {
	change := d.Change
	top, err := jsonobj.Parse(body)
	if err != nil {
		return nil, err
	}
	ds, err := json.Marshal(change.DocStatus)
	if err != nil {
		return nil, err
	}
	top = top.Set("docStatus", ds)
	switch {
	case change.Authenticator != nil:
		a, err := json.Marshal(change.Authenticator)
		if err != nil {
			return nil, err
		}
		top = top.Set("authenticator", a)
	case !d.KeepAuthenticator:
		top = top.Del("authenticator")
	}
	if d.KeepConfidentiality {
		return fhir.Parse(top.Encode())
	}
	meta := jsonobj.Object{}
	if raw := top.Get("meta"); raw != nil {
		if meta, err = jsonobj.Parse(raw); err != nil {
			return nil, err
		}
	}
	var labels []json.RawMessage
	if raw := meta.Get("security"); raw != nil {
		if err := json.Unmarshal(raw, &labels); err != nil {
			return nil, err
		}
	}
	labels = slices.DeleteFunc(labels, func(raw json.RawMessage) bool {
		var c fhir.Coding
		return json.Unmarshal(raw, &c) == nil && c.System == systemConfidentiality
	})
	if change.Meta != nil {
		for _, c := range change.Meta.Security {
			b, err := json.Marshal(c)
			if err != nil {
				return nil, err
			}
			labels = append(labels, b)
		}
	}
	if len(labels) == 0 {
		meta = meta.Del("security")
	} else {
		b, err := json.Marshal(labels)
		if err != nil {
			return nil, err
		}
		meta = meta.Set("security", b)
	}
	if len(meta) == 0 {
		top = top.Del("meta")
	} else {
		top = top.Set("meta", meta.Encode())
	}
	return fhir.Parse(top.Encode())
}

// statusKey returns what a T04 may change in a DocumentReference JSON body, as a string
// to compare: docStatus, authenticator and the security labels (as a sorted set).
func statusKey(body []byte) (string, error) {
	var d struct {
		DocStatus     string `json:"docStatus"`
		Authenticator any    `json:"authenticator"`
		Meta          struct {
			Security []fhir.Coding `json:"security"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		return "", err
	}
	var set []string
	for _, c := range d.Meta.Security {
		if k := c.System + "|" + c.Code; !slices.Contains(set, k) {
			set = append(set, k)
		}
	}
	slices.Sort(set)
	b, err := json.Marshal([]any{d.DocStatus, d.Authenticator, set})
	return string(b), err
}

// sameJSON reports whether a and b, values decoded from JSON, encode the same.
func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
