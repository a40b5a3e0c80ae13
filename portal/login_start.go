package portal

import (
	"crypto/rand"
	"net/http"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"
)

// startLogin begins the OIDC code flow: it keeps state, nonce and the PKCE verifier in a
// fresh pre-login session (never in the browser) and redirects to the OP.
func (s *Server) startLogin(c echo.Context) error {
	ctx := c.Request().Context()
	_, oauth, err := s.op(ctx)
	if err != nil {
		return err
	}
	// A sign-in replaces whatever session the browser had.
	if _, old := session(c); old != "" {
		if err := s.sessions.Delete(ctx, old); err != nil {
			return err
		}
	}
	f := &loginFlow{State: rand.Text(), Nonce: rand.Text(), Verifier: oauth2.GenerateVerifier(), Started: s.now()}
	id, err := s.sessions.Create(ctx, Session{Flow: f})
	if err != nil {
		return err
	}
	s.setSessionCookie(c, id)
	dest := oauth.AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier))
	return c.Redirect(http.StatusSeeOther, dest)
}
