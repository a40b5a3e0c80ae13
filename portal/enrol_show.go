package portal

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

type enrolPage struct {
	Page
	SignedIn bool
}

// showEnrol explains how to enrol: a code from a member clinic, or a visit to the privacy
// office. A login is never linked to a person by email, name or birth date.
func (s *Server) showEnrol(c echo.Context) error {
	sess, _ := session(c)
	if sess != nil && sess.Role != "" && sess.Role != RoleUnenrolled {
		return c.Redirect(http.StatusSeeOther, homeFor(sess.Role))
	}
	p := enrolPage{Page: s.page(c, "Finish setting up your account"), SignedIn: sess != nil && sess.Role == RoleUnenrolled}
	return s.render(c, http.StatusOK, "enrol", p)
}
