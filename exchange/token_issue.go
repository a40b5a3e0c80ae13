package exchange

import (
	"errors"
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/internal/errs"
)

// maxTokenForm bounds a token request body: a client assertion is at most 16 KiB.
const maxTokenForm = 64 << 10

// issueToken is the SMART Backend Services token endpoint. It reads its parameters from an
// application/x-www-form-urlencoded body only (RFC 6749 §3.2): a request with a query
// string, another media type, or a parameter given twice is invalid_request.
func (s *Server) issueToken(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Pragma", "no-cache")
	r := c.Request()
	if r.URL.RawQuery != "" {
		return &directory.OAuthError{Code: "invalid_request", Description: "send the parameters in the body, not in the URL"}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return &directory.OAuthError{Code: "invalid_request", Description: "the body must be application/x-www-form-urlencoded", Err: err}
	}
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxTokenForm)
	if err := r.ParseForm(); err != nil {
		return &directory.OAuthError{Code: "invalid_request", Description: "the body must be a form", Err: err}
	}
	// r.PostForm holds the body alone (r.Form would merge in the URL query). Repeated
	// parameters are refused by Exchange.
	tr, err := s.Tokens.Exchange(r.Context(), r.PostForm)
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
