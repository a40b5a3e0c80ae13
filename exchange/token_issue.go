package exchange

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/internal/errs"
)

// issueToken is the SMART Backend Services token endpoint.
func (s *Server) issueToken(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Pragma", "no-cache")
	form, err := c.FormParams()
	if err != nil {
		return &directory.OAuthError{Code: "invalid_request", Description: "the body must be a form", Err: err}
	}
	tr, err := s.Tokens.Exchange(c.Request().Context(), form)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, tr)
}

// writeOAuthError renders an RFC 6749 error body. Unknown failures are server errors.
func writeOAuthError(c echo.Context, err error) {
	var oe *directory.OAuthError
	if errors.As(err, &oe) {
		status := http.StatusBadRequest
		if oe.Code == "invalid_client" {
			status = http.StatusUnauthorized
		}
		_ = c.JSON(status, map[string]string{"error": oe.Code, "error_description": oe.Description})
		return
	}
	status := http.StatusInternalServerError
	if errs.CodeOf(err) == errs.Unavailable {
		status = http.StatusServiceUnavailable
	}
	_ = c.JSON(status, map[string]string{"error": "server_error", "error_description": "quote the X-Request-Id header"})
}
