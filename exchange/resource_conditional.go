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

// conditionalUpdate handles PUT [base]/[type]?identifier=system|value, or a condition on
// any search parameters of the type (store.ParseCondition; 400 naming a parameter it
// refuses): the upsert an EHR interface engine sends when it knows its own identifier but
// not our id. Serialized on the condition like a conditional create, among the member's
// own resources only: no match creates the resource (201, or 200 when a Patient's MRN
// names the member's existing record; it needs the create scope too, and the body may not
// carry an id), one match updates it (200; a body id must be that one; If-Match applies),
// more than one is 412. Another member's resources never match, so a condition reveals nothing and
// refuses no foreign id; a match deleted by a concurrent request before its update locks it
// answers 404 after a deny event, like a PUT of it (auditRefusedUpdate). The create's or
// update's audit event commits with it (503 and nothing stored when it cannot). An update
// to the content the match has already stores nothing, as a PUT of it would
// (updateResource), and the answer carries what Prefer asks for (writeReply).
func (s *Server) conditionalUpdate(c echo.Context) error {
	const op = "exchange.conditionalUpdate"
	typ := c.Param("type")
	if err := admitGenericWrite(c, op, typ, 'u', "resource type not supported"); err != nil {
		return err
	}
	cond, err := store.ParseCondition(typ, c.Request().URL.RawQuery)
	if err != nil {
		return errs.E(op, err)
	}
	_, res, err := s.readRequestResource(c, op, typ)
	if err != nil {
		return err
	}
	return s.writeOwn(c, func(ctx context.Context, tx db.Querier, member directory.Member, w *records.Writes) (store.Stored, int, error) {
		return s.conditionalPut(ctx, tx, c, member, cond, res, w)
	})
}

// conditionalPut is conditionalUpdate's work inside tx, for member's res of type cond.Type:
// it returns the stored version and the status, and records the create or update in w.
func (s *Server) conditionalPut(ctx context.Context, tx db.Querier, c echo.Context, member directory.Member, cond store.Condition,
	res *fhir.Resource, w *records.Writes) (store.Stored, int, error) {
	const op = "exchange.conditionalUpdate"
	typ := cond.Type
	m, err := s.matchLocked(ctx, tx, member, cond, res)
	if err != nil {
		return store.Stored{}, 0, err
	}
	switch len(m) {
	case 0:
		if err := require(c, typ, 'c'); err != nil {
			return store.Stored{}, 0, err
		}
		if res.ID != "" {
			e := errs.E(op, errs.Invalid, "a conditional update that creates takes no Resource.id")
			e.Path = typ + ".id"
			return store.Stored{}, 0, e
		}
		// 201, or 200 when a Patient's MRN named the member's existing record (Ingest).
		st, status, err := s.Ingest(ctx, tx, member, res)
		if err != nil {
			return store.Stored{}, 0, err
		}
		written(w, st, status, false)
		return st, status, nil
	case 1:
		if res.ID != "" && res.ID != m[0] {
			e := errs.E(op, errs.Invalid, "Resource.id must be absent or the id of the resource the condition matches")
			e.Path = typ + ".id"
			return store.Stored{}, 0, e
		}
		if res.ID == "" {
			if res, err = res.Stamp(fhir.Stamp{ID: m[0]}); err != nil {
				return store.Stored{}, 0, err
			}
		}
		st, err := s.update(ctx, tx, member, typ, m[0], res, c.Request().Header.Get("If-Match"))
		if err != nil {
			return store.Stored{}, 0, err
		}
		w.Stored(audit.Update, st)
		return st, http.StatusOK, nil
	}
	return store.Stored{}, 0, &errPrecondition{msg: "the condition matches more than one resource"}
}

// matchLocked is store.MatchLocked for a conditional create or update of res: when res is
// a Patient with an MRN in member's namespace, the MRN's key is locked in the same call, so
// the keys are taken in the one order every path takes them (MRN first, see mrnLockKey)
// and the MRN lock that Ingest or update takes next is a re-lock.
func (s *Server) matchLocked(ctx context.Context, tx db.Querier, member directory.Member, c store.Condition, res *fhir.Resource) ([]string, error) {
	keys := []string{c.Key()}
	if res.ResourceType == "Patient" {
		if mrn, _, err := patientIdentity(res, member); err == nil {
			keys = append(keys, mrnLockKey(mrn))
		}
	}
	if err := s.FHIR.LockConditions(ctx, tx, member.ID, keys); err != nil {
		return nil, err
	}
	return s.FHIR.Match(ctx, tx, member.ID, c)
}

// conditionalDelete handles DELETE [base]/[type]?identifier=system|value (or another
// condition, as conditionalUpdate takes it): the member's one resource that matches it is
// deleted (204); none answers 204 as well, like a delete of an unknown id; more than one
// is 412 (single deletes only). The delete's audit event commits with it (503 and nothing
// deleted when it cannot).
func (s *Server) conditionalDelete(c echo.Context) error {
	const op = "exchange.conditionalDelete"
	typ := c.Param("type")
	if err := admitGenericWrite(c, op, typ, 'd', "resource type not supported"); err != nil {
		return err
	}
	cond, err := store.ParseCondition(typ, c.Request().URL.RawQuery)
	if err != nil {
		return errs.E(op, err)
	}
	ctx := c.Request().Context()
	v := viewer(c)
	err = db.InTx(ctx, s.Pool, func(tx db.Querier) error {
		m, err := s.FHIR.MatchLocked(ctx, tx, v.Org, cond)
		if err != nil {
			return err
		}
		switch len(m) {
		case 0:
			return nil
		case 1:
			var w records.Writes
			if err := s.deleteOwn(ctx, tx, v.Org, typ, m[0], &w); err != nil {
				return err
			}
			return s.auditWrites(ctx, tx, v, &w)
		}
		return &errPrecondition{msg: "the condition matches more than one resource"}
	})
	if p, ok := preconditionFailed(err); ok {
		return writePrecondition(c, p)
	}
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
