package portal

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

type landingPage struct {
	Page
}

// showLanding shows the sign-in button, or sends a signed-in user to their home page.
func (s *Server) showLanding(c echo.Context) error {
	if sess, _ := session(c); sess != nil && sess.Role != "" {
		return c.Redirect(http.StatusSeeOther, homeFor(sess.Role))
	}
	return s.render(c, http.StatusOK, "landing", landingPage{Page: s.page(c, "Sign in")})
}

// homeFor returns the page a role lands on after sign-in.
func homeFor(r Role) string {
	switch r {
	case RolePatient, RoleProxy: // a caregiver acting for a patient lands on the patient's labs
		return "/labs"
	case RoleClinician, RoleOfficer:
		return "/staff"
	default:
		return "/enrol"
	}
}
