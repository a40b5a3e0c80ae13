package portal

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// DefaultStepUpWindow is Config.StepUpWindow's default: how recent a sign-in must be for the
// operations that need step-up authentication (security.md, ASVS 7.5.3).
const DefaultStepUpWindow = 5 * time.Minute

// freshAuth reports whether sess's user authenticated within the step-up window. A session
// without an authentication time (made before it was recorded) is never fresh.
func (s *Server) freshAuth(sess *Session) bool {
	if sess == nil || sess.AuthTime.IsZero() {
		return false
	}
	age := s.now().Sub(sess.AuthTime)
	return age <= s.cfg.StepUpWindow
}

// stepUpPage asks the user to sign in again before a highly sensitive operation; Back is
// the page to come back to, signed in afresh.
type stepUpPage struct {
	Page
	Back  string
	Staff bool // the sign-in must also show a second factor
}

// requireFreshAuth guards a highly sensitive operation (break-the-glass, recording a
// consent or a guardian for a patient, identity merges and splits, a record export, giving
// someone else access to the record): unless the user signed in within
// Config.StepUpWindow, nothing is done and askStepUp asks them to sign in again, coming
// back to back(c) (the page that offers the operation, whatever the method of this
// request). It runs after requireRole. An operation that needs step-up only for some of
// its forms (one that widens access but not one that narrows it) calls freshAuth and
// askStepUp in its handler instead.
func (s *Server) requireFreshAuth(back func(echo.Context) string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			sess, _ := session(c)
			if s.freshAuth(sess) {
				return next(c)
			}
			return s.askStepUp(c, back(c))
		}
	}
}

// askStepUp answers a request for a highly sensitive operation on a sign-in older than the
// step-up window: 403 and a page that asks the user to sign in again (staff with their
// second factor) and come back to back, if localPath accepts it. Nothing is done.
func (s *Server) askStepUp(c echo.Context, back string) error {
	sess, _ := session(c)
	p := stepUpPage{Page: s.page(c, "Confirm it's you"), Back: localPath(back),
		Staff: sess != nil && (sess.Role == RoleClinician || sess.Role == RoleOfficer)}
	return s.render(c, http.StatusForbidden, "step_up", p)
}

// backTo returns a requireFreshAuth back function for a fixed page.
func backTo(path string) func(echo.Context) string {
	return func(echo.Context) string { return path }
}
