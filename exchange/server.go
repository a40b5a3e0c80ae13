// Package exchange is Concord's machine-facing transport: FHIR R4 REST at /fhir, the SMART
// Backend Services token endpoint, and (in exchange/hl7v2) HL7 v2 over MLLP. Handlers stay
// thin: they authenticate, parse strictly, and call the domain packages; the regional read
// path goes through records, the one enforcement point.
package exchange

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/httpx"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/notify"
	"github.com/concord-hie/concord/records"
)

// Config is what the exchange needs to know about its deployment.
type Config struct {
	BaseURL      string // public base of the HTTP listener; the FHIR base is BaseURL+"/fhir"
	MaxBodyBytes int64
	MaxCount     int // cap of _count
	// PresignTTL enables the presigned retrieval mode of GET Binary/{id} (Prefer:
	// presigned-url → 303 to a short-lived S3 URL) with links that live this long; 0 keeps
	// every retrieval streamed through Concord. See readBinary for the trade-off.
	PresignTTL time.Duration
}

// Deps are the stores and services the exchange calls.
type Deps struct {
	Pool      *pgxpool.Pool
	Directory *directory.Store
	Tokens    *directory.Tokens
	FHIR      *store.Store
	MPI       *mpistore.Store
	Matcher   *mpistore.Matcher
	Records   *records.Service
	Documents *documents.Service // nil: documents are stored as plain resources, no Binary route
	Notify    *notify.Store      // nil: no rosters, Subscriptions or outbox events
	Log       *slog.Logger
	Now       func() time.Time

	// IdentityLimiter rate-limits $match and PIXm per client; nil gets the default of
	// New (2 requests/s, bursts of 20).
	IdentityLimiter *RateLimiter
}

// Server serves the exchange's routes.
type Server struct {
	cfg Config
	Deps
	superseded supersededWrites // documents_intake.go
}

// New returns an exchange server.
func New(cfg Config, d Deps) *Server {
	if cfg.MaxCount == 0 {
		cfg.MaxCount = 200
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.IdentityLimiter == nil {
		d.IdentityLimiter = NewRateLimiter(2, 20, d.Now)
	}
	return &Server{cfg: cfg, Deps: d}
}

// FHIRBase returns the FHIR base URL.
func (s *Server) FHIRBase() string { return s.cfg.BaseURL + "/fhir" }

// TokenURL returns the token endpoint URL, the `aud` of every client assertion.
func (s *Server) TokenURL() string { return s.cfg.BaseURL + "/token" }

// Register mounts the exchange's routes on e. routes.go is the route table.
func (s *Server) Register(e *echo.Echo) {
	s.routes(e)
}

// IsExchangePath reports whether a request path belongs to the exchange, so the shared
// error handler renders an OperationOutcome (or an OAuth error) rather than a page.
func IsExchangePath(p string) bool {
	return p == "/fhir" || strings.HasPrefix(p, "/fhir/") || p == "/token"
}

// HandleError renders err for an exchange request: the OAuth error JSON on /token, an
// OperationOutcome elsewhere. Details stay in the log with the request ID.
func (s *Server) HandleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status := httpx.Status(err)
	httpx.LogError(s.Log, c, status, err)
	if c.Request().URL.Path == "/token" {
		writeOAuthError(c, err)
		return
	}
	is := fhir.IssueFor(err)
	if he, ok := err.(*echo.HTTPError); ok {
		is = fhir.IssueFor(errs.E("exchange.HandleError", httpx.CodeForStatus(he.Code), http.StatusText(he.Code)))
	}
	switch {
	case status >= 500 && errs.MessageOf(err) == db.CommitUnknown: // a write that may have been stored
		is.Diagnostics = "The database did not confirm the change: it may or may not have been stored. Read it back, or repeat it only with If-None-Exist or an Idempotency-Key; quote request ID " + httpx.ID(c) + "."
	case status >= 500:
		is.Diagnostics = "The server could not complete the request; quote request ID " + httpx.ID(c) + "."
	}
	if status == http.StatusUnauthorized {
		c.Response().Header().Set("WWW-Authenticate", `Bearer realm="concord", error="invalid_token"`)
	}
	if status == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", "5")
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	_ = c.Blob(status, mimeFHIR, fhir.OperationOutcome(is))
}

const mimeFHIR = "application/fhir+json"
