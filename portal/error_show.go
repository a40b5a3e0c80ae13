package portal

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/httpx"
)

type errorPage struct {
	Page
	Status  int
	Message string
}

// httpStatus maps an errs code to the portal's status.
func httpStatus(c errs.Code) int {
	switch c {
	case errs.NotFound:
		return http.StatusNotFound
	case errs.Invalid, errs.Conflict, errs.TooLarge, errs.Unsupported:
		return http.StatusBadRequest
	case errs.Unauthenticated:
		return http.StatusUnauthorized
	case errs.Forbidden:
		return http.StatusForbidden
	case errs.Unavailable:
		return http.StatusServiceUnavailable
	case errs.RateLimited:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

// HTTPErrorHandler is the portal's one mapping from errors to responses: a readable page
// with a fixed sentence per status and the request ID; the cause goes to the log with the
// request ID. Portal handlers' errors reach it through the portal's own middleware; the
// lead's e.HTTPErrorHandler should call it for requests outside /fhir (unmatched routes).
func (s *Server) HTTPErrorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code := errs.CodeOf(err)
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code = httpx.CodeForStatus(he.Code)
		if he.Code == http.StatusMethodNotAllowed {
			code = errs.NotFound // a page answers a wrong method as a missing page
		}
	}
	status := httpStatus(code)
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	s.log.LogAttrs(c.Request().Context(), level, "portal error",
		slog.String("request_id", requestID(c)),
		slog.String("method", c.Request().Method),
		slog.String("route", c.Path()),
		slog.Int("status", status),
		slog.String("code", code.String()),
		slog.String("err", err.Error()))
	h := c.Response().Header()
	h.Set(echo.HeaderCacheControl, "no-store")
	// Unmatched routes reach here from the host's error handler without the portal's
	// middleware: give the page the same headers.
	if h.Get(echo.HeaderContentSecurityPolicy) == "" {
		h.Set(echo.HeaderContentSecurityPolicy, s.csp)
		h.Set(echo.HeaderXContentTypeOptions, "nosniff")
		h.Set(echo.HeaderXFrameOptions, "DENY")
		h.Set(echo.HeaderReferrerPolicy, "same-origin")
	}
	p := errorPage{Page: s.page(c, statusTitle(status)), Status: status, Message: statusText(status)}
	// An error page is no section's page: no navigation link is marked current.
	p.route = ""
	if errs.MessageOf(err) == db.CommitUnknown { // "nothing was changed" may be untrue
		p.Message = "We could not confirm that your change was saved. It may or may not have been: please check (for example, your messages or sharing choices) before you try again."
	}
	if rerr := s.render(c, status, "error", p); rerr != nil {
		s.log.Error("portal error page", slog.String("request_id", requestID(c)), slog.String("err", rerr.Error()))
		_ = c.String(status, statusText(status)+" Request ID: "+requestID(c))
	}
}
