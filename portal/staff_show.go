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
}

// showStaff is the staff landing: who is signed in, in which role, at which member.
func (s *Server) showStaff(c echo.Context) error {
	sess, _ := session(c)
	p := staffPage{Page: s.page(c, "Staff area"), Role: sess.Role, Org: sess.Org, OrgName: sess.OrgName,
		CanLookUp: s.patients != nil && sess.Role == RoleClinician}
	return s.render(c, http.StatusOK, "staff", p)
}
