package portal

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

type staffPage struct {
	Page
	Role      Role
	Org       string
	OrgName   string
	CanLookUp bool // the patient look-up is offered (clinicians)
	// Inbox is the member's message threads, unread first (clinicians, when messages are on).
	Inbox    []inboxThread
	Messages bool
}

// inboxThread is a thread as the clinician's inbox lists it: with the organization's own
// patient it is about, when the look-up is configured.
type inboxThread struct {
	MessageThread
	Patient *OrgPatient // nil: no look-up, or the organization no longer holds the record
}

// showStaff is the staff landing: who is signed in, in which role, at which member.
func (s *Server) showStaff(c echo.Context) error {
	sess, _ := session(c)
	p := staffPage{Page: s.page(c, "Staff area"), Role: sess.Role, Org: sess.Org, OrgName: sess.OrgName,
		CanLookUp: s.patients != nil && sess.Role == RoleClinician}
	if s.messages != nil && sess.Role == RoleClinician {
		ctx, v := c.Request().Context(), staffViewer(c)
		ts, err := s.messages.Threads(ctx, v)
		if err != nil {
			return err
		}
		p.Messages = true
		// Each thread names the organization's own record of its patient, read through the
		// look-up (an audited read of the organization's own Patient, once per person). A
		// look-up that fails for any reason but absence fails the page: no name is shown
		// without its audit event.
		names := map[string]*OrgPatient{}
		for _, t := range ts {
			it := inboxThread{MessageThread: t}
			if s.patients != nil {
				pt, seen := names[t.PersonID]
				if !seen {
					got, err := s.patients.ByPerson(ctx, v, t.PersonID)
					switch {
					case err == nil:
						pt = &got
					case errs.CodeOf(err) != errs.NotFound:
						return err
					}
					names[t.PersonID] = pt
				}
				it.Patient = pt
			}
			p.Inbox = append(p.Inbox, it)
		}
	}
	return s.render(c, http.StatusOK, "staff", p)
}
