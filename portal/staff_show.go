package portal

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

type staffPage struct {
	Page
	Role      Role
	Org       string
	OrgName   string
	CanLookUp bool // the patient look-up is offered (clinicians)
	// Inbox is the member's message threads, unread first (clinicians, when messages are on).
	Inbox    []MessageThread
	Messages bool
}

// showStaff is the staff landing: who is signed in, in which role, at which member.
func (s *Server) showStaff(c echo.Context) error {
	sess, _ := session(c)
	p := staffPage{Page: s.page(c, "Staff area"), Role: sess.Role, Org: sess.Org, OrgName: sess.OrgName,
		CanLookUp: s.patients != nil && sess.Role == RoleClinician}
	if s.messages != nil && sess.Role == RoleClinician {
		ts, err := s.messages.Threads(c.Request().Context(), s.clinicianViewer(c, sess))
		if err != nil {
			return err
		}
		p.Inbox, p.Messages = ts, true
	}
	return s.render(c, http.StatusOK, "staff", p)
}
