package portal

import (
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"
)

// deleteSession signs out: it ends the session (signOut) and sends the browser to the OP's
// end_session endpoint when the OP advertises one (else to the landing page). It runs
// without the checks of a signed-in request (signInChain), so it signs out whatever the
// session has become: a caregiver's ended grant or a removed login included.
func (s *Server) deleteSession(c echo.Context) error {
	sess, id := session(c)
	if err := s.signOut(c, id); err != nil {
		return err
	}
	dest := "/"
	if end := s.endSession(); end != "" && sess != nil && sess.IDToken != "" {
		u, err := url.Parse(end)
		if err == nil {
			q := u.Query()
			q.Set("id_token_hint", sess.IDToken)
			q.Set("client_id", s.cfg.ClientID)
			q.Set("post_logout_redirect_uri", s.cfg.PostLogoutRedirectURL)
			u.RawQuery = q.Encode()
			dest = u.String()
		}
	}
	return c.Redirect(http.StatusSeeOther, dest)
}

// signOut ends session id (none: "") for this browser: it deletes the session in Redis,
// expires the cookie and asks the browser to clear this site's cache, cookies and storage.
// It returns errs.Unavailable, having changed nothing, when Redis fails.
func (s *Server) signOut(c echo.Context, id string) error {
	if err := s.sessions.Delete(c.Request().Context(), id); err != nil {
		return err
	}
	s.clearSessionCookie(c)
	c.Response().Header().Set("Clear-Site-Data", `"cache", "cookies", "storage"`)
	return nil
}
