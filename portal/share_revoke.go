package portal

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

// revokeShareLink revokes one of the signed-in patient's links at once: the next request
// with its token gets the same 404 as an unknown one. A link that is not the patient's, or
// already revoked or expired, changes nothing and says so.
func (s *Server) revokeShareLink(c echo.Context) error {
	sess, _ := session(c)
	id, err := strconv.ParseInt(c.FormValue("link"), 10, 64)
	if err != nil || id <= 0 {
		return errs.E("portal.revokeShareLink", errs.Invalid, "malformed link ID")
	}
	switch err := s.shares.RevokeShareLink(c.Request().Context(), s.patientViewer(c, sess), id, s.now()); {
	case err == nil:
		s.setFlash(c, "Link revoked. It no longer opens.")
	case errs.Is(err, errs.NotFound):
		s.setFlash(c, "That link had already stopped working.")
	default:
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/labs/share")
}
