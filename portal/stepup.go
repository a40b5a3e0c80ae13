package portal

import (
	"net/http"
	"net/url"
	"strings"
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
	Kept  bool // the refused form was kept for Back's page (keepDraft)
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
// second factor) and come back to back, if localPath accepts it. Nothing is done; a form
// the request posted is kept for back's page to show again (keepDraft).
func (s *Server) askStepUp(c echo.Context, back string) error {
	sess, _ := session(c)
	kept := s.keepDraft(c, localPath(back))
	p := stepUpPage{Page: s.page(c, "Confirm it's you"), Back: localPath(back), Kept: kept,
		Staff: sess != nil && (sess.Role == RoleClinician || sess.Role == RoleOfficer)}
	return s.render(c, http.StatusForbidden, "step_up", p)
}

// backTo returns a requireFreshAuth back function for a fixed page.
func backTo(path string) func(echo.Context) string {
	return func(echo.Context) string { return path }
}

// formDraft is a form that askStepUp refused: what the user typed, kept in their session
// so that the page they come back to after signing in afresh shows it again instead of
// an empty form. It can hold PHI (a patient's name on a guardian form) and lives only in
// the session store, like the rest of the session; Session.LogValue never prints it.
type formDraft struct {
	Action string     `json:"action"` // the path the form was posted to
	Back   string     `json:"back"`   // the page that offers it, where the step-up returns
	Form   url.Values `json:"form"`   // the fields, without the CSRF token
	Saved  time.Time  `json:"saved"`
}

// Draft limits: a bigger form is not kept (the portal's forms are far smaller), and a kept
// one is shown again only within draftTTL.
const (
	maxDraftBytes = 8 << 10
	draftTTL      = 30 * time.Minute
)

// keepDraft saves the form of a refused POST in the session, for back's page (takeDraft),
// and reports whether it did. It keeps at most one draft, the latest; failing to save it
// only loses the convenience.
func (s *Server) keepDraft(c echo.Context, back string) bool {
	sess, id := session(c)
	r := c.Request()
	if sess == nil || id == "" || back == "" || r.Method != http.MethodPost || !draftRestored(r.URL.Path) {
		return false
	}
	if err := r.ParseForm(); err != nil {
		return false
	}
	form := url.Values{}
	for k, vs := range r.PostForm {
		if k != "_csrf" {
			form[k] = vs
		}
	}
	if len(form.Encode()) > maxDraftBytes {
		return false
	}
	sess.Draft = &formDraft{Action: r.URL.Path, Back: back, Form: form, Saved: s.now()}
	if err := s.sessions.Save(r.Context(), id, *sess); err != nil {
		s.log.Warn("portal: form draft not saved", "request_id", requestID(c), "err", err)
		return false
	}
	return true
}

// takeDraft returns the form kept for this page (keepDraft: the request's path and query
// are its Back) and the path it was posted to, and removes it from the session: a page
// shows a draft once. ok is false when there is none for this page, or it is older than
// draftTTL (then it is removed too).
func (s *Server) takeDraft(c echo.Context) (action string, form url.Values, ok bool) {
	sess, id := session(c)
	if sess == nil || id == "" || sess.Draft == nil {
		return "", nil, false
	}
	d := *sess.Draft
	fresh := s.now().Sub(d.Saved) <= draftTTL
	if fresh && d.Back != c.Request().URL.RequestURI() {
		return "", nil, false
	}
	sess.Draft = nil
	if err := s.sessions.Save(c.Request().Context(), id, *sess); err != nil {
		s.log.Warn("portal: form draft not cleared", "request_id", requestID(c), "err", err)
	}
	if !fresh {
		return "", nil, false
	}
	return d.Action, d.Form, true
}

// draftNote is the note a page shows above a form it filled in from a draft.
const draftNote = "What you typed before signing in again is filled in below. Check it, then send it."

// draftRestored reports whether the page of a form posted to action fills it in again
// from a draft (takeDraft): the forms people type into, not one-click buttons.
func draftRestored(action string) bool {
	switch action {
	case "/officer/consent", "/officer/guardians", "/caregivers":
		return true
	}
	rest, ok := strings.CutPrefix(action, "/staff/patients/")
	return ok && strings.HasSuffix(rest, "/break-glass") && !strings.Contains(strings.TrimSuffix(rest, "/break-glass"), "/")
}
