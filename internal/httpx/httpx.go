// Package httpx holds the HTTP plumbing shared by Concord's servers: request IDs, JSON
// access logs that carry IDs only, panic recovery, and the mapping of errs codes to status
// codes. Each server (exchange, portal) renders errors its own way on top of Status.
package httpx

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// NewRequestID returns a random 128-bit request ID in hex.
func NewRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RequestID takes X-Request-Id from the request when it is well-formed (a short token, no
// PHI-shaped free text), otherwise generates one, and echoes it on the response.
func RequestID() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id := c.Request().Header.Get(echo.HeaderXRequestID)
			if !requestIDPattern.MatchString(id) {
				id = NewRequestID()
			}
			c.Request().Header.Set(echo.HeaderXRequestID, id)
			c.Response().Header().Set(echo.HeaderXRequestID, id)
			return next(c)
		}
	}
}

// ID returns the request ID that RequestID set.
func ID(c echo.Context) string { return c.Response().Header().Get(echo.HeaderXRequestID) }

// AccessLog logs one JSON line per request: method, route pattern (never the raw URL, whose
// query may hold PHI), status, bytes, duration and request ID.
func AccessLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			status := c.Response().Status
			lvl := slog.LevelInfo
			if status >= 500 {
				lvl = slog.LevelError
			}
			log.LogAttrs(c.Request().Context(), lvl, "request",
				slog.String("request_id", ID(c)),
				slog.String("method", c.Request().Method),
				slog.String("route", c.Path()),
				slog.Int("status", status),
				slog.Int64("bytes", c.Response().Size),
				slog.Duration("dur", time.Since(start)),
			)
			return nil
		}
	}
}

// Recover turns a panic into an errs.Internal error (500) and logs the stack with the
// request ID. The stack never reaches the client.
func Recover(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler {
						panic(r)
					}
					log.Error("panic", "request_id", ID(c), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					err = errs.E("httpx.Recover", errs.Internal, fmt.Errorf("panic: %v", r))
				}
			}()
			return next(c)
		}
	}
}

// Status maps an error to an HTTP status. *echo.HTTPError keeps its code; errs codes map
// one to one; anything else is 500.
func Status(err error) int {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return he.Code
	}
	switch errs.CodeOf(err) {
	case errs.NotFound:
		return http.StatusNotFound
	case errs.Invalid:
		return http.StatusBadRequest
	case errs.Conflict:
		return http.StatusConflict
	case errs.Unauthenticated:
		return http.StatusUnauthorized
	case errs.Forbidden:
		return http.StatusForbidden
	case errs.Unavailable:
		return http.StatusServiceUnavailable
	case errs.TooLarge:
		return http.StatusRequestEntityTooLarge
	case errs.Unsupported:
		return http.StatusUnsupportedMediaType
	case errs.RateLimited:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// LogError logs err with the request ID at a level fitting its status. Only servers'
// error handlers call it, so each error is logged once.
func LogError(log *slog.Logger, c echo.Context, status int, err error) {
	lvl := slog.LevelInfo
	if status >= 500 {
		lvl = slog.LevelError
	}
	log.Log(c.Request().Context(), lvl, "request failed", "request_id", ID(c), "status", status, "err", err.Error())
}

// CodeForStatus gives the errs code of an HTTP status that Echo itself produced (router
// 404 and 405, body limits, middleware refusals), so each server renders those errors
// through its one errs mapping like any other.
func CodeForStatus(status int) errs.Code {
	switch {
	case status == http.StatusNotFound:
		return errs.NotFound
	case status == http.StatusMethodNotAllowed, status == http.StatusUnsupportedMediaType:
		return errs.Unsupported
	case status == http.StatusUnauthorized:
		return errs.Unauthenticated
	case status == http.StatusForbidden:
		return errs.Forbidden
	case status == http.StatusRequestEntityTooLarge:
		return errs.TooLarge
	case status == http.StatusTooManyRequests:
		return errs.RateLimited
	case status == http.StatusServiceUnavailable:
		return errs.Unavailable
	case status >= 500:
		return errs.Internal
	}
	return errs.Invalid
}
