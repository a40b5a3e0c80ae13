package exchange

import (
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/httpx"
	"github.com/concord-hie/concord/records"
)

const principalKey = "exchange.principal"

// authenticate requires a valid SMART backend access token and stores its principal. The
// token's client registration is read for every request (directory.Tokens.Verify), so a
// disabled or narrowed client is refused (401) from the next request on.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			return errs.E("exchange.authenticate", errs.Unauthenticated, "a bearer access token is required")
		}
		p, err := s.Tokens.Verify(c.Request().Context(), tok)
		if err != nil {
			return err
		}
		c.Set(principalKey, p)
		return next(c)
	}
}

func principal(c echo.Context) directory.Principal {
	p, _ := c.Get(principalKey).(directory.Principal)
	return p
}

// require checks that the token's scopes allow interaction op on resourceType. A missing
// scope depends on no record, so it is a 403.
func require(c echo.Context, resourceType string, op byte) error {
	if !principal(c).Scopes.Allows(resourceType, op) {
		return errs.E("exchange.require", errs.Forbidden, "the access token's scopes do not allow this interaction")
	}
	return nil
}

// viewer describes the calling member system to the enforcement point.
func viewer(c echo.Context) records.Viewer {
	p := principal(c)
	return records.Viewer{Client: p.ClientID, Org: p.MemberID, Role: "system", Purpose: p.Purpose,
		TokenID: p.TokenID, RequestID: httpx.ID(c), SourceIP: c.RealIP()}
}

// fhirMedia enforces the exchange's media types: JSON only. A body must be
// application/fhir+json or application/json (415 otherwise); an Accept header that admits
// neither is 406. The exchange never sets cookies.
func (s *Server) fhirMedia(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength != 0 && (r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch) {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || (mt != mimeFHIR && mt != "application/json" && !(mt == "application/x-www-form-urlencoded" && strings.HasSuffix(r.URL.Path, "/_search"))) {
				return errs.E("exchange.fhirMedia", errs.Unsupported, "send application/fhir+json")
			}
		}
		if acc := r.Header.Get("Accept"); acc != "" && !acceptsJSON(acc) {
			return echo.NewHTTPError(http.StatusNotAcceptable)
		}
		if f := c.QueryParam("_format"); f != "" && f != "json" && f != mimeFHIR && f != "application/json" {
			return echo.NewHTTPError(http.StatusNotAcceptable)
		}
		return next(c)
	}
}

func acceptsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
		switch mt {
		case mimeFHIR, "application/json", "application/*", "*/*":
			return true
		}
	}
	return false
}
