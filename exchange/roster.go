package exchange

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

// groupFields is the part of a roster Group the exchange reads.
type groupFields struct {
	Type   string `json:"type"`
	Member []struct {
		Entity struct {
			Reference string `json:"reference"`
		} `json:"entity"`
		Inactive bool `json:"inactive"`
	} `json:"member"`
}

// createRoster handles POST [base]/Group: a member registers the patients attributed to
// it (type person, member.entity = the member's own Patients). The Group is stored like
// any resource and its active entries become the member's roster in the same
// transaction; notifications go to members whose roster holds the person.
func (s *Server) createRoster(c echo.Context) error { return s.putRoster(c, "") }

// updateRoster handles PUT [base]/Group/{id}: the roster is replaced with the new entries.
// Only the member's own Group can be replaced, or made again after its deletion (404
// alike for another member's id and an unknown one, each after a deny event of the refused
// update, like a PUT of any resource: auditRefusedUpdate, 503 when it cannot be
// committed); the body's id must be the URL's.
func (s *Server) updateRoster(c echo.Context) error { return s.putRoster(c, c.Param("id")) }

func (s *Server) putRoster(c echo.Context, id string) error {
	const op = "exchange.putRoster"
	interaction := byte('c')
	if id != "" {
		interaction = 'u'
	}
	if err := require(c, "Group", interaction); err != nil {
		return err
	}
	_, res, err := s.readRequestResource(c, op, "Group")
	if err != nil {
		return err
	}
	var g groupFields
	if err := json.Unmarshal(res.Bytes(), &g); err != nil {
		return errs.E(op, errs.Invalid, "malformed Group", err)
	}
	if g.Type != "person" {
		e := errs.E(op, errs.Invalid, "a roster Group has type person")
		e.Path = "Group.type"
		return e
	}
	ctx := c.Request().Context()
	member, err := s.Directory.Member(ctx, principal(c).MemberID)
	if err != nil {
		return err
	}
	var stored store.Stored
	var status int
	v := viewer(c)
	err = db.InTx(ctx, s.Pool, func(tx db.Querier) error {
		status = http.StatusCreated // a retried attempt decides afresh
		var patients []string
		for _, m := range g.Member {
			if m.Inactive {
				continue
			}
			pid, ok := strings.CutPrefix(m.Entity.Reference, "Patient/")
			st, err := s.FHIR.Get(ctx, tx, "Patient", pid)
			if !ok || err != nil || st.MemberID != member.ID {
				e := errs.E(op, errs.Invalid, "every roster entry must be one of the sending member's Patients")
				e.Path = "Group.member.entity"
				return e
			}
			patients = append(patients, pid)
		}
		var err error
		var old store.Head
		var gerr error
		if id != "" {
			old, gerr = s.FHIR.Lock(ctx, tx, "Group", id)
		}
		switch {
		case id == "":
			stored, _, err = s.IngestAs(ctx, tx, member, res, "")
		case gerr != nil && errs.CodeOf(gerr) != errs.NotFound:
			return gerr
		case gerr != nil || old.MemberID != member.ID:
			// PUT creates no id: another member's Group and an unknown id are alike, and
			// either is a refusal to audit.
			return errs.E(op, errs.NotFound, "resource not found", &refusedWrite{typ: "Group", id: id, reason: refusalOf(old, gerr, member.ID)})
		case old.Deleted: // the member's own roster, deleted: made again under its id
			if res.ID != id {
				e := errs.E(op, errs.Invalid, "Resource.id must equal the id in the URL")
				e.Path = "Group.id"
				return e
			}
			stored, _, err = s.IngestAs(ctx, tx, member, res, id)
		default:
			status = http.StatusOK
			stored, err = s.update(ctx, tx, member, "Group", id, res, "")
		}
		if err != nil {
			return err
		}
		if err := s.Notify.PutRoster(ctx, tx, member.ID, stored.ID, patients); err != nil {
			return err
		}
		action := audit.Update
		if status == http.StatusCreated {
			action = audit.Create
		}
		var w records.Writes
		w.Stored(action, stored)
		return s.auditWrites(ctx, tx, v, &w)
	})
	if err != nil {
		return s.auditRefusedUpdate(ctx, v, err)
	}
	c.Response().Header().Set("Location", s.FHIRBase()+"/Group/"+stored.ID+"/_history/"+itoa(stored.Version))
	c.Response().Header().Set("ETag", store.ETag(stored.Version))
	return c.Blob(status, mimeFHIR, stored.Body)
}
