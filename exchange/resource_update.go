package exchange

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

// errPrecondition is an If-Match version mismatch (412) or a conditional create whose
// condition matched more than one resource. errs has no code for 412, so handlers and
// bundles render it themselves.
type errPrecondition struct{ msg string }

func (e *errPrecondition) Error() string { return e.msg }

// preconditionFailed reports whether err is a failed precondition.
func preconditionFailed(err error) (*errPrecondition, bool) {
	for err != nil {
		if p, ok := err.(*errPrecondition); ok {
			return p, true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return nil, false
		}
		err = u.Unwrap()
	}
	return nil, false
}

// writePrecondition answers 412 with an OperationOutcome.
func writePrecondition(c echo.Context, p *errPrecondition) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusPreconditionFailed, mimeFHIR, fhir.OperationOutcome(fhir.Issue{Severity: fhir.SeverityError, Code: fhir.IssueConflict, Diagnostics: p.msg}))
}

// update stores res as a new version of the member's resource typ/id inside tx (or, when
// res has the current version's content, stores nothing and returns that version with
// Unchanged set: ingestUpdate). The pre-image must be the member's own and not deleted
// (anything else is errs.NotFound whose cause is a *refusedWrite, so another member's id
// looks absent, no id can be created by PUT, and the caller can audit the refusal); the
// new body goes through Ingest, which authorizes its compartment like a create (a
// resource cannot be moved into another member's Patient). ifMatch, when not "", must
// name the current version (errPrecondition otherwise).
func (s *Server) update(ctx context.Context, tx db.Querier, member directory.Member, typ, id string, res *fhir.Resource, ifMatch string) (store.Stored, error) {
	if err := sameTarget(typ, id, res); err != nil {
		return store.Stored{}, err
	}
	if typ == "Patient" {
		// Intake takes a Patient's MRN lock and then writes its row: take them in that
		// order here too, or an update and a create of one Patient deadlock. A body with
		// no valid MRN is refused by ingestUpdate below.
		if mrn, _, err := patientIdentity(res, member); err == nil {
			if err := s.FHIR.LockConditions(ctx, tx, member.ID, []string{mrnLockKey(mrn)}); err != nil {
				return store.Stored{}, err
			}
		}
	}
	if _, err := s.lockOwn(ctx, tx, member, typ, id, ifMatch); err != nil {
		return store.Stored{}, err
	}
	return s.ingestUpdate(ctx, tx, member, res, id)
}

// sameTarget checks that res is the resource typ/id named in the URL.
func sameTarget(typ, id string, res *fhir.Resource) error {
	const op = "exchange.update"
	if res.ResourceType != typ {
		return errs.E(op, errs.Invalid, "resourceType does not match the URL")
	}
	if res.ID != id {
		e := errs.E(op, errs.Invalid, "Resource.id must equal the id in the URL")
		e.Path = typ + ".id"
		return e
	}
	return nil
}

// lockOwn takes the row lock of typ/id in tx and returns its head, provided the resource
// is the member's own and live: anything else is errs.NotFound whose cause is a
// *refusedWrite naming why (not-owner, not-found, deleted), so that another member's
// resource and an unknown id answer alike. ifMatch, when not "", must name the current
// version (errPrecondition otherwise; errs.Invalid when it is not a weak ETag).
func (s *Server) lockOwn(ctx context.Context, tx db.Querier, member directory.Member, typ, id, ifMatch string) (store.Head, error) {
	const op = "exchange.lockOwn"
	h, err := s.FHIR.Lock(ctx, tx, typ, id)
	if err != nil && errs.CodeOf(err) != errs.NotFound {
		return store.Head{}, err
	}
	if reason := refusalOf(h, err, member.ID); reason != "" {
		return store.Head{}, errs.E(op, errs.NotFound, "resource not found", &refusedWrite{typ: typ, id: id, reason: reason})
	}
	if ifMatch != "" {
		v, ok := store.ParseETag(ifMatch)
		if !ok {
			return store.Head{}, errs.E(op, errs.Invalid, "If-Match must be a weak ETag W/\"n\"")
		}
		if v != h.Version {
			return store.Head{}, &errPrecondition{msg: "the resource has changed: If-Match does not name the current version"}
		}
	}
	return h, nil
}

// updateResource handles PUT [base]/[type]/[id]: a member updates one of its own
// resources. Another member's resource, an unknown id and the member's own deleted one
// answer alike (404), each after a deny event of the refused update
// (auditRefusedUpdate; 503 when it cannot be committed). The update's audit event commits
// with it (503 and nothing stored when it cannot).
//
// A body with the content of the current version (store.Put: all but meta.versionId and
// meta.lastUpdated, after the server's meta.source, tags and labels) is a no-op: no new
// version, no notification, 200 with the current version and its ETag; it is audited as
// an update all the same. The answer is 200 with Location, ETag and Last-Modified, and the
// resource, nothing or an OperationOutcome as Prefer asks (writeReply).
func (s *Server) updateResource(c echo.Context) error {
	const op = "exchange.updateResource"
	typ, id := c.Param("type"), c.Param("id")
	if err := admitGenericWrite(c, op, typ, 'u', "resource not found"); err != nil {
		return err
	}
	_, res, err := s.readRequestResource(c, op, "")
	if err != nil {
		return err
	}
	return s.writeOwn(c, func(ctx context.Context, tx db.Querier, member directory.Member, w *records.Writes) (store.Stored, int, error) {
		st, err := s.update(ctx, tx, member, typ, id, res, c.Request().Header.Get("If-Match"))
		if err == nil {
			w.Stored(audit.Update, st)
		}
		return st, http.StatusOK, err
	})
}

// writeOwn is an update of the caller's member's own resources (PUT, conditional PUT,
// PATCH) after admission: in one transaction do writes, recording its writes in w, and the
// audit events of w commit with it (auditWrites); then it answers 412 for a failed
// precondition, 422 for a patch that does not apply, any other error with the refused
// update's deny event committed first (auditRefusedUpdate), and success as Prefer asks
// (writeReply) with do's status and stored version.
func (s *Server) writeOwn(c echo.Context, do func(context.Context, db.Querier, directory.Member, *records.Writes) (store.Stored, int, error)) error {
	ctx := c.Request().Context()
	member, err := s.Directory.Member(ctx, principal(c).MemberID)
	if err != nil {
		return err
	}
	var st store.Stored
	var status int
	v := viewer(c)
	err = db.InTx(ctx, s.Pool, func(tx db.Querier) error {
		var w records.Writes
		if st, status, err = do(ctx, tx, member, &w); err != nil {
			return err
		}
		return s.auditWrites(ctx, tx, v, &w)
	})
	if p, ok := preconditionFailed(err); ok {
		return writePrecondition(c, p)
	}
	if errors.Is(err, fhir.ErrPatchNotApplied) {
		return writeUnprocessable(c, err)
	}
	if err != nil {
		return s.auditRefusedUpdate(ctx, v, err)
	}
	return writeReply(c, s.FHIRBase(), status, st, wrote(status, st, false))
}

// deleteResource handles DELETE [base]/[type]/[id]: a soft delete of the member's own
// resource (history kept, search index rows removed). An unknown id, another member's
// resource and an already deleted one answer 204 alike, so a delete reveals nothing. A
// delete that removed something has its audit event committed with it (503 and nothing
// deleted when it cannot be); one refused because the id is unknown or another member's
// has a deny event (auditRefusal) committed before the 204 (503 when it cannot be);
// one of the member's own resource deleted already refuses nothing and has none.
func (s *Server) deleteResource(c echo.Context) error {
	const op = "exchange.deleteResource"
	typ, id := c.Param("type"), c.Param("id")
	if err := admitGenericWrite(c, op, typ, 'd', "resource not found"); err != nil {
		return err
	}
	ctx := c.Request().Context()
	v := viewer(c)
	var refused *refusedWrite
	err := db.InTx(ctx, s.Pool, func(tx db.Querier) error {
		var w records.Writes
		var err error
		if refused, err = s.deleteOwnRefusing(ctx, tx, v.Org, typ, id, &w); err != nil {
			return err
		}
		return s.auditWrites(ctx, tx, v, &w)
	})
	if err == nil && refused != nil {
		err = s.auditRefusal(ctx, v, audit.Delete, refused)
	}
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// deleteOwn soft-deletes the member's resource typ/id in tx and records the delete, with
// the compartment the resource was in, in w. A resource that does not exist, is another
// member's or is deleted already is left alone and recorded nowhere: nil, like a delete.
func (s *Server) deleteOwn(ctx context.Context, tx db.Querier, memberID, typ, id string, w *records.Writes) error {
	_, err := s.deleteOwnRefusing(ctx, tx, memberID, typ, id, w)
	return err
}

// deleteOwnRefusing is deleteOwn that also returns why it left typ/id alone when the id
// is unknown or another member's resource (deleted or not), for the caller to audit the
// refusal; nil when it deleted the resource or the member's own was deleted already.
func (s *Server) deleteOwnRefusing(ctx context.Context, tx db.Querier, memberID, typ, id string, w *records.Writes) (*refusedWrite, error) {
	// The row lock first, so the compartment read next is the one deleted.
	h, err := s.FHIR.Lock(ctx, tx, typ, id)
	if err != nil && errs.CodeOf(err) != errs.NotFound {
		return nil, err
	}
	switch reason := refusalOf(h, err, memberID); reason {
	case "":
	case "deleted":
		return nil, nil // the member's own, deleted already: done, nothing refused
	default:
		return &refusedWrite{typ: typ, id: id, reason: reason}, nil
	}
	cur, err := s.FHIR.Get(ctx, tx, typ, id)
	if err != nil {
		return nil, err
	}
	if _, err := s.FHIR.Delete(ctx, tx, typ, id, memberID, s.Now()); err != nil {
		return nil, err
	}
	w.Stored(audit.Delete, cur)
	return nil, nil
}

// refusedWrite is an update or delete of typ/id refused as if the id were absent, and why
// (refusalOf). update returns it as the cause of its errs.NotFound, deleteOwnRefusing as a
// value; the handler audits it with auditRefusal. It holds IDs and a code only.
type refusedWrite struct {
	typ, id, reason string
}

func (r *refusedWrite) Error() string { return r.typ + "/" + r.id + " refused: " + r.reason }

// refusalOf says why a write of the member's resource whose row lock returned h and
// lockErr (nil or errs.NotFound) is refused: "not-found" for an id never stored,
// "not-owner" for another member's resource (deleted or not), "deleted" for the member's
// own deleted one; "" when the write may go ahead.
func refusalOf(h store.Head, lockErr error, memberID string) string {
	switch {
	case lockErr != nil:
		return "not-found"
	case h.MemberID != memberID:
		return "not-owner"
	case h.Deleted:
		return "deleted"
	}
	return ""
}

// auditRefusal commits the deny event of the refused update or delete r
// (records.Service.AuditWriteRefusal: action, the resource, the person behind it if any,
// the reason; never the body). The caller's absent-alike answer leaves only once it
// returns nil. An event that cannot be committed, or no enforcement point (Deps.Records)
// to commit it, is errs.Unavailable (503) instead.
func (s *Server) auditRefusal(ctx context.Context, v records.Viewer, action audit.Action, r *refusedWrite) error {
	if s.Records == nil {
		return errs.E("exchange.auditRefusal", errs.Unavailable, "audit log unavailable", r)
	}
	return s.Records.AuditWriteRefusal(ctx, v, action, r.typ, r.id, r.reason)
}

// auditRefusedUpdate is auditRefusal for the error of an update: when err carries a
// *refusedWrite (update's 404) it returns err after committing the deny event, or the
// audit failure (503) instead; any other err is returned as it is.
func (s *Server) auditRefusedUpdate(ctx context.Context, v records.Viewer, err error) error {
	var r *refusedWrite
	if !errors.As(err, &r) {
		return err
	}
	if aerr := s.auditRefusal(ctx, v, audit.Update, r); aerr != nil {
		return aerr
	}
	return err
}

// setVersionHeaders writes Location, ETag and Last-Modified for a stored version.
func setVersionHeaders(c echo.Context, base string, st store.Stored) {
	h := c.Response().Header()
	h.Set("Location", base+"/"+st.Type+"/"+st.ID+"/_history/"+itoa(st.Version))
	h.Set("ETag", store.ETag(st.Version))
	h.Set("Last-Modified", st.LastUpdated.UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "no-store")
}
