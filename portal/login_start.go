package portal

import (
	"crypto/rand"
	"net/http"
	"strconv"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"
)

// startLogin begins the OIDC code flow: it keeps state, nonce and the PKCE verifier in a
// fresh pre-login session (never in the browser) and redirects to the OP. With the form
// field mfa=1 (the staff refusal page's button) it asks the OP for the MFA acr
// (acr_values) and a fresh authentication (prompt=login). Every request asks for max_age:
// the absolute session timeout (Config.Absolute, in whole seconds) for a plain sign-in, so
// that the OP must return auth_time (OpenID Connect Core §3.1.2.1) and an answer from an
// old OP session is not taken for a recent sign-in (see authTime). With step_up=1 (the
// step-up page's button, see askStepUp) it asks for an authentication made now
// (prompt=login and max_age=0), so that the ID token's auth_time is this moment; one
// started while acting for a patient keeps that grant and the login in the flow, for
// finishLogin to act for the patient again (resumeActingFor), and one started after a
// refused form keeps that form (Session.Draft) for the same login to find again. With the form field
// return_to (a page that wants the user back, such as a caregiver invitation) it keeps
// that path in the flow, if localPath accepts it, for finishLogin to land on; anything
// else is dropped without a word and the sign-in lands on the role's home.
func (s *Server) startLogin(c echo.Context) error {
	ctx := c.Request().Context()
	_, oauth, err := s.op(ctx)
	if err != nil {
		return err
	}
	// A sign-in replaces whatever session the browser had.
	old, oldID := session(c)
	if oldID != "" {
		if err := s.sessions.Delete(ctx, oldID); err != nil {
			return err
		}
	}
	f := &loginFlow{State: rand.Text(), Nonce: rand.Text(), Verifier: oauth2.GenerateVerifier(), Started: s.now(),
		MFA: c.FormValue("mfa") == "1", StepUp: c.FormValue("step_up") == "1", ReturnTo: localPath(c.FormValue("return_to"))}
	if f.StepUp && old != nil && old.Subject != "" {
		f.StepUpLogin, f.Draft = old.Issuer+"|"+old.Subject, old.Draft
		if old.Role == RoleProxy && old.ProxyGrant != 0 {
			f.ActFor = old.ProxyGrant
		}
	}
	id, err := s.sessions.Create(ctx, Session{Flow: f})
	if err != nil {
		return err
	}
	s.setSessionCookie(c, id)
	opts := []oauth2.AuthCodeOption{oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)}
	if f.MFA {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", s.cfg.MFAACR))
	}
	if f.MFA || f.StepUp {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"))
	}
	maxAge := strconv.FormatInt(int64(s.cfg.Absolute/time.Second), 10)
	if f.StepUp {
		maxAge = "0"
	}
	opts = append(opts, oauth2.SetAuthURLParam("max_age", maxAge))
	dest := oauth.AuthCodeURL(f.State, opts...)
	return c.Redirect(http.StatusSeeOther, dest)
}
