package exchange

import (
	"context"
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

// update stores res as a new version of the member's resource typ/id inside tx. The
// pre-image must be the member's own and not deleted (anything else is errs.NotFound, so
// another member's id looks absent and no id can be created by PUT); the new body goes
// through Ingest, which authorizes its compartment like a create (a resource cannot be
// moved into another member's Patient). ifMatch, when not "", must name the current
// version (errPrecondition otherwise).
func (s *Server) update(ctx context.Context, tx db.Querier, member directory.Member, typ, id string, res *fhir.Resource, ifMatch string) (store.Stored, error) {
	const op = "exchange.update"
	if res.ResourceType != typ {
		return store.Stored{}, errs.E(op, errs.Invalid, "resourceType does not match the URL")
	}
	if res.ID != id {
		e := errs.E(op, errs.Invalid, "Resource.id must equal the id in the URL")
		e.Path = typ + ".id"
		return store.Stored{}, e
	}
	if typ == "Patient" {
		// Intake takes a Patient's MRN lock and then writes its row: take them in that
		// order here too, or an update and a create of one Patient deadlock. A body with
		// no valid MRN is refused by IngestAs below.
		if mrn, _, err := patientIdentity(res, member); err == nil {
			if err := s.FHIR.LockConditions(ctx, tx, member.ID, []string{mrnLockKey(mrn)}); err != nil {
				return store.Stored{}, err
			}
		}
	}
	h, err := s.FHIR.Lock(ctx, tx, typ, id)
	if err != nil && errs.CodeOf(err) != errs.NotFound {
		return store.Stored{}, err
	}
	if err != nil || h.MemberID != member.ID || h.Deleted {
		return store.Stored{}, errs.E(op, errs.NotFound, "resource not found")
	}
	if ifMatch != "" {
		v, ok := store.ParseETag(ifMatch)
		if !ok {
			return store.Stored{}, errs.E(op, errs.Invalid, "If-Match must be a weak ETag W/\"n\"")
		}
		if v != h.Version {
			return store.Stored{}, &errPrecondition{msg: "the resource has changed: If-Match does not name the current version"}
		}
	}
	st, _, err := s.IngestAs(ctx, tx, member, res, id)
	return st, err
}

// updateResource handles PUT [base]/[type]/[id]: a member updates one of its own
// resources. Another member's resource and an unknown id answer alike (404). The update's
// audit event commits with it (503 and nothing stored when it cannot).
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
	ctx := c.Request().Context()
	member, err := s.Directory.Member(ctx, principal(c).MemberID)
	if err != nil {
		return err
	}
	var st store.Stored
	v := viewer(c)
	err = db.InTx(ctx, s.Pool, func(tx db.Querier) error {
		if st, err = s.update(ctx, tx, member, typ, id, res, c.Request().Header.Get("If-Match")); err != nil {
			return err
		}
		var w records.Writes
		w.Stored(audit.Update, st)
		return s.auditWrites(ctx, tx, v, &w)
	})
	if p, ok := preconditionFailed(err); ok {
		return writePrecondition(c, p)
	}
	if err != nil {
		return err
	}
	setVersionHeaders(c, s.FHIRBase(), st)
	return c.Blob(http.StatusOK, mimeFHIR, st.Body)
}

// deleteResource handles DELETE [base]/[type]/[id]: a soft delete of the member's own
// resource (history kept, search index rows removed). An unknown id, another member's
// resource and an already deleted one answer 204 alike, so a delete reveals nothing; only
// a delete that removed something has an audit event, committed with it (503 and nothing
// deleted when it cannot be).
func (s *Server) deleteResource(c echo.Context) error {
	const op = "exchange.deleteResource"
	typ, id := c.Param("type"), c.Param("id")
	if err := admitGenericWrite(c, op, typ, 'd', "resource not found"); err != nil {
		return err
	}
	ctx := c.Request().Context()
	v := viewer(c)
	err := db.InTx(ctx, s.Pool, func(tx db.Querier) error {
		var w records.Writes
		if err := s.deleteOwn(ctx, tx, v.Org, typ, id, &w); err != nil {
			return err
		}
		return s.auditWrites(ctx, tx, v, &w)
	})
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// deleteOwn soft-deletes the member's resource typ/id in tx and records the delete, with
// the compartment the resource was in, in w. A resource that does not exist, is another
// member's or is deleted already is left alone and recorded nowhere: nil, like a delete.
func (s *Server) deleteOwn(ctx context.Context, tx db.Querier, memberID, typ, id string, w *records.Writes) error {
	// The row lock first, so the compartment read next is the one deleted.
	h, err := s.FHIR.Lock(ctx, tx, typ, id)
	switch {
	case errs.CodeOf(err) == errs.NotFound:
		return nil
	case err != nil:
		return err
	case h.MemberID != memberID || h.Deleted:
		return nil
	}
	cur, err := s.FHIR.Get(ctx, tx, typ, id)
	if err != nil {
		return err
	}
	if _, err := s.FHIR.Delete(ctx, tx, typ, id, memberID, s.Now()); err != nil {
		return err
	}
	w.Stored(audit.Delete, cur)
	return nil
}

// setVersionHeaders writes Location, ETag and Last-Modified for a stored version.
func setVersionHeaders(c echo.Context, base string, st store.Stored) {
	h := c.Response().Header()
	h.Set("Location", base+"/"+st.Type+"/"+st.ID+"/_history/"+itoa(st.Version))
	h.Set("ETag", store.ETag(st.Version))
	h.Set("Last-Modified", st.LastUpdated.UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "no-store")
}
