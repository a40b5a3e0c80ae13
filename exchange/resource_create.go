package exchange

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/notify"
	"github.com/concord-hie/concord/records"
)

// readBody reads the request body within the configured limit (413 beyond it).
func (s *Server) readBody(c echo.Context) ([]byte, error) {
	r := io.LimitReader(c.Request().Body, s.cfg.MaxBodyBytes+1)
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, errs.E("exchange.readBody", errs.Invalid, "could not read the request body", err)
	}
	if int64(len(b)) > s.cfg.MaxBodyBytes {
		return nil, errs.E("exchange.readBody", errs.TooLarge, "the request body is too large")
	}
	return b, nil
}

// readRequestResource reads the request body (within the limit, see readBody) and parses it as
// one FHIR resource; it returns the raw body as well, for callers that hash it. A non-empty
// want must equal the resource's type, else the error is Invalid under op.
func (s *Server) readRequestResource(c echo.Context, op, want string) ([]byte, *fhir.Resource, error) {
	body, err := s.readBody(c)
	if err != nil {
		return nil, nil, err
	}
	res, err := fhir.Parse(body)
	if err != nil {
		return nil, nil, err
	}
	if want != "" && res.ResourceType != want {
		return nil, nil, errs.E(op, errs.Invalid, "resourceType does not match the URL")
	}
	return body, res, nil
}

// createResource handles POST [base]/[type]: a server-assigned id, the sending member's
// record, labelled with its source. A Patient must carry an identifier in the member's own
// namespace; the MPI links it in the same transaction, so the response and the link agree.
// Resources in a patient compartment must point at one of the member's own Patients.
// The write's audit event (records.AuditWrites) commits in the same transaction: if it
// cannot be written, nothing is stored and the answer is 503. A retry answered from its
// Idempotency-Key writes nothing and adds no event (the first request has its own).
//
// A conditional create (If-None-Exist) needs the type's read scope as well as create: its
// match answers with the stored resource.
//
// The answer (201, or 200 for an If-None-Exist match or a Patient whose MRN named an
// existing record; Location, ETag and Last-Modified of the version) carries what Prefer
// asks for (writeReply): the resource (return=representation, the default), nothing
// (return=minimal) or an OperationOutcome saying what was done (return=OperationOutcome).
// A retry answered from its Idempotency-Key gets the same status and headers, and its own
// Prefer applied to the version the first request stored.
func (s *Server) createResource(c echo.Context) error {
	const op = "exchange.createResource"
	typ := c.Param("type")
	if err := admitGenericWrite(c, op, typ, 'c', "unknown resource type"); err != nil {
		return err
	}
	// A matching If-None-Exist answers with the stored resource: a read, so it needs the
	// read scope too (as PATCH does), or a create-only token could read through it.
	if c.Request().Header.Get("If-None-Exist") != "" {
		if err := require(c, typ, 'r'); err != nil {
			return err
		}
	}
	body, res, err := s.readRequestResource(c, op, typ)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	p := principal(c)
	member, err := s.Directory.Member(ctx, p.MemberID)
	if err != nil {
		return err
	}
	var stored store.Stored
	status := http.StatusCreated
	matched := false // an If-None-Exist condition matched: nothing was created
	cond := c.Request().Header.Get("If-None-Exist")
	var idem string // a retry with the same Idempotency-Key gets the first reply and writes nothing
	if k := c.Request().Header.Get("Idempotency-Key"); k != "" {
		idem = "create:" + typ + ":" + k
	}
	var replay *idempotentReply
	reqHash := sha256.Sum256(body)
	v := viewer(c)
	err = db.InTx(ctx, s.Pool, func(tx db.Querier) error {
		if replay, err = s.replayIdempotent(ctx, tx, member.ID, idem, reqHash[:]); err != nil || replay != nil {
			return err
		}
		var w records.Writes
		if cond != "" {
			stored, status, matched, err = s.matchOrCreate(ctx, tx, member, res, cond, &w)
		} else if stored, status, err = s.Ingest(ctx, tx, member, res); err == nil {
			written(&w, stored, status, false)
		}
		if err != nil {
			return err
		}
		if err := s.rememberIdempotent(ctx, tx, member.ID, idem, reqHash[:], idempotentReply{status: status, location: s.FHIRBase() + "/" + stored.Type + "/" + stored.ID + "/_history/" + itoa(stored.Version), body: stored.Body}); err != nil {
			return err
		}
		return s.auditWrites(ctx, tx, v, &w)
	})
	if p, ok := preconditionFailed(err); ok {
		return writePrecondition(c, p)
	}
	if keyReused(err) {
		return writeKeyReused(c)
	}
	if err != nil {
		return err
	}
	if replay != nil {
		st, ok := replay.replayed(s.FHIRBase())
		if !ok { // not a reply this handler remembered: answer it as it was
			c.Response().Header().Set("Location", replay.location)
			return c.Blob(replay.status, mimeFHIR, replay.body)
		}
		return writeReply(c, s.FHIRBase(), replay.status, st,
			st.Type+"/"+st.ID+" version "+itoa(st.Version)+" answered an earlier request with this Idempotency-Key: nothing was written")
	}
	return writeReply(c, s.FHIRBase(), status, stored, wrote(status, stored, matched))
}

// auditWrites appends the audit events of w (records.Service.AuditWrites: one per person
// and action) inside tx. Call it last, right before the commit: it holds the audit chain's
// lock until tx ends. Without the enforcement point (Deps.Records) nothing can be audited,
// so nothing is written: errs.Unavailable. The DocumentReferences a replacement superseded
// in tx join w first (auditSuperseded).
func (s *Server) auditWrites(ctx context.Context, tx db.Querier, v records.Viewer, w *records.Writes) error {
	s.auditSuperseded(tx, w)
	if s.Records == nil {
		if w.Len() == 0 {
			return nil
		}
		return errs.E("exchange.auditWrites", errs.Unavailable, "audit log unavailable")
	}
	return s.Records.AuditWrites(ctx, tx, v, w)
}

// written records in w what Ingest or IngestAs did: a new resource (201) is a create, a
// Patient whose MRN named an existing record (200) an update, as is any write to an id
// that existed before (existed).
func written(w *records.Writes, st store.Stored, status int, existed bool) {
	if st.ID == "" {
		return
	}
	action := audit.Create
	if existed || status != http.StatusCreated {
		action = audit.Update
	}
	w.Stored(action, st)
}

// Ingest stores one resource for member inside tx (every intake path calls it: FHIR
// create, bundles, HL7 v2). It returns the stored version and 201
// for a new resource or 200 when a Patient's identifier named an existing source record.
func (s *Server) Ingest(ctx context.Context, tx db.Querier, member directory.Member, res *fhir.Resource) (store.Stored, int, error) {
	return s.IngestAs(ctx, tx, member, res, "")
}

// IngestAs is Ingest with the id chosen by the caller (a bundle assigns ids before it
// stores, an update names its target; "" assigns a new one). An existing id must be the
// member's own (errs.NotFound otherwise). A Patient whose MRN names an existing source
// record keeps that record's id; an id that disagrees with it is errs.Invalid. Every call
// stores a new version; an update that may be a no-op calls ingestUpdate.
func (s *Server) IngestAs(ctx context.Context, tx db.Querier, member directory.Member, res *fhir.Resource, id string) (store.Stored, int, error) {
	return s.ingest(ctx, tx, member, res, id, false)
}

// ingestUpdate is IngestAs for an update of the member's resource id (PUT and PATCH,
// plain, conditional or in a Bundle): when res has the content of the current version
// (store.Write.SkipUnchanged) it stores nothing and returns that version with Unchanged
// set: no new version, no MPI re-link, no outbox event (so no notification or subscription
// event). The caller audits it like any other update.
func (s *Server) ingestUpdate(ctx context.Context, tx db.Querier, member directory.Member, res *fhir.Resource, id string) (store.Stored, error) {
	st, _, err := s.ingest(ctx, tx, member, res, id, true)
	return st, err
}

// ingest is IngestAs, and ingestUpdate when skipUnchanged is set.
func (s *Server) ingest(ctx context.Context, tx db.Querier, member directory.Member, res *fhir.Resource, id string, skipUnchanged bool) (store.Stored, int, error) {
	const op = "exchange.Ingest"
	w := s.sourceWrite(member, res, id)
	w.SkipUnchanged = skipUnchanged
	if res.ResourceType == "Patient" {
		mrn, demo, err := patientIdentity(res, member)
		if err != nil {
			return store.Stored{}, 0, err
		}
		// Every intake path takes the MRN's lock before looking it up (a bundle has taken
		// it already, with its other keys in order), so two concurrent creates of one MRN
		// cannot both see none and store two Patients.
		if err := s.FHIR.LockConditions(ctx, tx, member.ID, []string{mrnLockKey(mrn)}); err != nil {
			return store.Stored{}, 0, err
		}
		existing, err := s.MPI.SourceByIdentifier(ctx, tx, mrn.System, mrn.Value)
		status := http.StatusCreated
		switch {
		case err == nil && existing.MemberID != member.ID:
			return store.Stored{}, 0, errs.E(op, errs.Invalid, "the identifier belongs to another member's namespace")
		case err == nil && id != "" && existing.PatientID != id:
			e := errs.E(op, errs.Invalid, "the identifier names another of the member's Patients")
			e.Path = "Patient.identifier"
			return store.Stored{}, 0, e
		case err == nil:
			w.ID, status = existing.PatientID, http.StatusOK
		case errs.CodeOf(err) != errs.NotFound:
			return store.Stored{}, 0, err
		}
		st, err := s.FHIR.Put(ctx, tx, w)
		if err != nil {
			return store.Stored{}, 0, err
		}
		if st.Unchanged { // the same demographics: nothing for the MPI to redo
			return st, status, nil
		}
		if _, err := s.Matcher.LinkPatient(ctx, tx, member.ID, mrn.System, mrn.Value, st.ID, demo); err != nil {
			return store.Stored{}, 0, err
		}
		return st, status, nil
	}
	// Bundles store new resources of other types through runEntries' bulk path
	// (bundle.go: bulkWrite, CreateMany, EnqueueStored): a step added below must be added
	// there too, or excluded from it in bulkCreatable.
	patientID, err := s.compartment(ctx, tx, member, res)
	if err != nil {
		return store.Stored{}, 0, err
	}
	w.PatientID = patientID
	if err := s.ingestDocument(ctx, tx, member, &w); err != nil {
		return store.Stored{}, 0, err
	}
	st, err := s.FHIR.Put(ctx, tx, w)
	if err == nil && s.Notify != nil && !st.Unchanged { // an Encounter's event joins the outbox in this transaction
		err = notify.EnqueueStored(ctx, tx, st)
	}
	return st, http.StatusCreated, err
}

type identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// patientFields is the part of a Patient the exchange reads to identify it.
type patientFields struct {
	Identifier []identifier `json:"identifier"`
}

// mrnLockKey is the LockConditions key that serialises intake of one MRN of a member.
//
// Lock order: a path that holds a Patient's MRN key and a condition key (store.Condition's,
// "Type?identifier=...") takes the MRN key first. LockConditions takes its keys in sorted
// order, and this key starts with '#', below the upper-case letter every condition key
// starts with, so a Bundle's one call (runEntries) takes its MRNs before its conditions;
// the paths that lock in steps do the same: a conditional create or update of a Patient
// locks its MRN with its condition (matchLocked), the HL7 intake stores its Patients
// (Ingest: the MRN) before it looks up an Encounter's visit number (MatchLocked), and an
// update locks the MRN before the row. The same key taken again is a no-op (advisory xact
// locks are re-entrant).
func mrnLockKey(mrn identifier) string { return "#Patient?mrn=" + mrn.System + "|" + mrn.Value }

// patientIdentity returns the Patient's MRN in the member's namespace, and the
// demographics the MPI keeps. An identifier in no namespace of the member is refused.
func patientIdentity(res *fhir.Resource, member directory.Member) (identifier, json.RawMessage, error) {
	const op = "exchange.patientIdentity"
	var pf patientFields
	if err := json.Unmarshal(res.Bytes(), &pf); err != nil {
		return identifier{}, nil, errs.E(op, errs.Invalid, "malformed Patient", err)
	}
	for _, id := range pf.Identifier {
		if id.System == member.System && id.Value != "" {
			return id, json.RawMessage(res.Bytes()), nil
		}
	}
	e := errs.E(op, errs.Invalid, "Patient.identifier needs a value in the sending member's namespace ("+member.System+")")
	e.Path = "Patient.identifier"
	return identifier{}, nil, e
}

// subjectFields finds the patient reference of a compartment resource.
type subjectFields struct {
	Subject *struct {
		Reference string `json:"reference"`
	} `json:"subject"`
	Patient *struct {
		Reference string `json:"reference"`
	} `json:"patient"`
}

// compartment returns the member's Patient id that res belongs to, or "" for resources
// outside any patient compartment. A reference to a Patient that is not the member's own
// is refused exactly like one that does not exist.
func (s *Server) compartment(ctx context.Context, tx db.Querier, member directory.Member, res *fhir.Resource) (string, error) {
	ref, elem, err := compartmentRef(res)
	if err != nil {
		return "", err
	}
	return s.resolveCompartment(ctx, tx, member, res.ResourceType, ref, elem)
}

// compartmentRef returns the patient reference of res and the element holding it
// ("subject" or "patient"); both are "" for a resource with neither.
func compartmentRef(res *fhir.Resource) (ref, elem string, err error) {
	var sf subjectFields
	if err := json.Unmarshal(res.Bytes(), &sf); err != nil {
		return "", "", errs.E("exchange.compartment", errs.Invalid, "malformed resource", err)
	}
	switch {
	case sf.Subject != nil:
		return sf.Subject.Reference, "subject", nil
	case sf.Patient != nil:
		return sf.Patient.Reference, "patient", nil
	}
	return "", "", nil
}

// resolveCompartment checks a reference found by compartmentRef in a resource of type typ
// and returns the member's Patient id it names ("" when the subject is not a Patient).
func (s *Server) resolveCompartment(ctx context.Context, tx db.Querier, member directory.Member, typ, ref, elem string) (string, error) {
	const op = "exchange.compartment"
	if elem == "" {
		return "", nil
	}
	path := typ + "." + elem
	id, ok := strings.CutPrefix(ref, "Patient/")
	if !ok {
		if strings.Contains(ref, "/") {
			return "", nil // the subject is not a Patient (Group, Device, Location)
		}
		e := errs.E(op, errs.Invalid, "the reference must be Patient/{id}")
		e.Path = path
		return "", e
	}
	st, err := s.FHIR.Get(ctx, tx, "Patient", id)
	if err != nil || st.MemberID != member.ID {
		e := errs.E(op, errs.Invalid, "the referenced Patient is not one of the sending member's patients")
		e.Path = path
		return "", e
	}
	if _, err := s.MPI.SourceByPatient(ctx, tx, id); err != nil {
		return "", err
	}
	return id, nil
}
