package portal

import (
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"
)

// deleteSession signs out: it deletes the session in Redis, expires the cookie, asks the
// browser to clear this site's cache, cookies and storage, and sends the browser to the OP's
// end_session endpoint when the OP advertises one (else to the landing page).
func (s *Server) deleteSession(c echo.Context) error {
	sess, id := session(c)
	if err := s.sessions.Delete(c.Request().Context(), id); err != nil {
		return err
	}
	s.clearSessionCookie(c)
	c.Response().Header().Set("Clear-Site-Data", `"cache", "cookies", "storage"`)
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
