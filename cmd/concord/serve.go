package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/exchange"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/config"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/devoidc"
	"github.com/concord-hie/concord/internal/devs3"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/httpx"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/notify"
	"github.com/concord-hie/concord/portal"
	"github.com/concord-hie/concord/records"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, _, err := parseConfig("serve", "serve [flags]", args, stderr, nil)
	if err != nil {
		return err
	}
	m := NewMain(cfg, stdout, stderr)
	defer m.Close()
	if err := m.Open(ctx); err != nil {
		return err
	}
	return m.Run(ctx)
}

// Main holds every long-lived part of a running Concord and wires them together.
type Main struct {
	cfg    config.Config
	log    *slog.Logger
	stdout io.Writer

	pool    *pgxpool.Pool
	redis   *redis.Client
	blobs   *documents.S3Blobs
	docs    *documents.Service
	devS3   *devs3.Server
	devOIDC *devoidc.Server
	audit   *audit.Log
	// consentCaches are the consent caches built by wiring, for the bench's cold pass.
	consentCaches []*consent.Cache

	directory *directory.Store
	fhir      *store.Store
	mpi       *mpistore.Store
	matcher   *mpistore.Matcher
	staff     *portal.StaffStore
	records   *records.Service
	searcher  *records.Searcher
	tokens    *directory.Tokens
	exchange  *exchange.Server
	notify    *notify.Store      // rosters, endpoints, subscriptions
	notifier  *notify.Dispatcher // outbox → rest-hook deliveries; runs while Run does
	portal    *portal.Server

	echo    *echo.Echo
	http    *http.Server
	admin   *http.Server
	httpLn  net.Listener
	adminLn net.Listener
	// demoUsers are registered in the embedded OIDC provider when it starts.
	demoUsers []devoidc.User
}

// NewMain returns an unopened Main.
func NewMain(cfg config.Config, stdout, stderr io.Writer) *Main {
	lvl := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	return &Main{cfg: cfg, log: log, stdout: stdout}
}

// Open connects to every service and builds the servers. It fails with one line naming
// what is wrong: a database that does not answer, a schema that is behind, S3 or Redis down.
func (m *Main) Open(ctx context.Context) error {
	cfg := m.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("CONCORD_DATA_DIR: %v", err)
	}
	var err error
	// The server runs as concord_app, which may append to the audit tables but never
	// update, delete or truncate them (migration 0030).
	m.pool, err = db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: 32, AppRole: "concord_app"})
	if err != nil {
		return fmt.Errorf("CONCORD_DATABASE_URL: PostgreSQL does not answer: %v", errors.Unwrap(err))
	}
	if err := db.CheckSchema(ctx, m.pool); err != nil {
		return errors.New(errs.MessageOf(err))
	}
	ropt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("CONCORD_REDIS_URL: %v", err)
	}
	m.redis = redis.NewClient(ropt)
	if err := m.redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("CONCORD_REDIS_URL: Redis does not answer at %s", ropt.Addr)
	}
	s3cfg := documents.S3Config{Endpoint: cfg.S3Endpoint, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey,
		Bucket: cfg.S3Bucket, Region: cfg.S3Region, Secure: cfg.S3Secure}
	if cfg.S3Endpoint == "" {
		m.devS3, err = devs3.Start(ctx, "127.0.0.1:0", filepath.Join(cfg.DataDir, "s3"))
		if err != nil {
			return fmt.Errorf("embedded S3 server: %v", err)
		}
		s3cfg.Endpoint, s3cfg.AccessKey, s3cfg.SecretKey = m.devS3.Endpoint(), m.devS3.AccessKey(), m.devS3.SecretKey()
		m.log.Warn("no CONCORD_S3_ENDPOINT: started the embedded development S3 server on local disk; not for production", "endpoint", s3cfg.Endpoint)
	}
	m.blobs, err = documents.NewS3Blobs(ctx, s3cfg)
	if err != nil {
		return fmt.Errorf("CONCORD_S3_ENDPOINT: S3 is not usable (%v)", errs.MessageOf(err))
	}
	issuer, clientSecret := cfg.OIDCIssuer, cfg.OIDCClientSecret
	if issuer == "" {
		if clientSecret == "" {
			// A secret of this installation's own, never a constant shared by every demo.
			k, err := secretKey(cfg, "", "dev-oidc-client.key")
			if err != nil {
				return fmt.Errorf("CONCORD_DATA_DIR: %v", err)
			}
			clientSecret = hex.EncodeToString(k)
		}
		m.devOIDC, err = devoidc.Start(ctx, cfg.DevOIDCAddr, m.demoUsers, []devoidc.Client{{
			ID: cfg.OIDCClientID, Secret: clientSecret,
			RedirectURIs:           []string{cfg.BaseURL + "/auth/callback"},
			PostLogoutRedirectURIs: []string{cfg.BaseURL + "/"},
		}})
		if err != nil {
			return fmt.Errorf("CONCORD_DEV_OIDC_ADDR: embedded OIDC provider: %v", err)
		}
		issuer = m.devOIDC.Issuer()
		m.log.Warn("no CONCORD_OIDC_ISSUER: started the embedded development OIDC provider with demo users; not for production", "issuer", issuer)
	} else if clientSecret == "" {
		return errors.New("CONCORD_OIDC_CLIENT_SECRET: required when CONCORD_OIDC_ISSUER is set")
	}
	signing, err := auditSigningKey(cfg)
	if err != nil {
		return fmt.Errorf("audit signing key: %v", err)
	}
	m.audit, err = audit.New(ctx, m.pool, audit.Config{SigningKey: signing, WitnessFile: cfg.AuditWitness, Logger: m.log})
	if err != nil {
		if errs.CodeOf(err) == errs.Invalid && cfg.AuditWitness != "" {
			return fmt.Errorf("CONCORD_AUDIT_WITNESS: %v", err)
		}
		return fmt.Errorf("audit log: %v", err)
	}
	tokenKey, err := secretKey(cfg, cfg.TokenKey, "token.key")
	if err != nil {
		return fmt.Errorf("CONCORD_TOKEN_KEY: %v", err)
	}

	m.directory = directory.NewStore(m.pool)
	m.fhir = store.New(m.pool)
	m.mpi = mpistore.New(m.pool)
	if m.matcher, err = mpistore.NewMatcher(m.mpi); err != nil {
		return err
	}
	m.staff = portal.NewStaffStore(m.pool)
	dirs, err := m.consentDirectives(ctx)
	if err != nil {
		return err
	}
	m.records = records.New(m.fhir, m.mpi, dirs, m.audit, nil).WithBreakGlass(records.NewBreakGlassStore(m.pool))
	auditKey, err := secretKey(cfg, cfg.AuditKey, "audit.key")
	if err != nil {
		return fmt.Errorf("CONCORD_AUDIT_KEY: %v", err)
	}
	hasher, err := audit.NewHasher(auditKey)
	if err != nil {
		return fmt.Errorf("CONCORD_AUDIT_KEY: %v", err)
	}
	// Paging cursors are sealed with a key derived from the token key: bound to the caller
	// and the consent in force, unreadable and unforgeable by clients.
	if m.searcher, err = records.NewSearcher(m.records, records.SearchConfig{CursorKey: tokenKey, Hasher: hasher, MaxCount: 200}); err != nil {
		return err
	}
	m.tokens, err = directory.NewTokens(m.directory, tokenKey, cfg.BaseURL+"/fhir", cfg.BaseURL+"/token", cfg.TokenTTL, nil)
	if err != nil {
		return err
	}
	// Document size limit and type allow-list take documents defaults (32 MiB); the
	// request body limit (CONCORD_MAX_BODY_BYTES) bounds inline data first.
	// Notifications: only public addresses, plus the exact ip:port receivers an operator
	// names in CONCORD_NOTIFY_ALLOW (on-premises EHRs); no other loopback or private
	// receiver is ever reached from a running server.
	m.notify = notify.NewStore(cfg.NotifyAllow)
	m.notifier = notify.NewDispatcher(m.pool, m.notify, m.mpi, m.records, notify.NewClient(notify.ClientConfig{Allow: cfg.NotifyAllow}),
		notify.DispatcherConfig{FHIRBase: cfg.BaseURL + "/fhir"}, m.log)
	m.docs = documents.New(m.pool, m.fhir, m.blobs, m.audit, m.log, documents.Config{FHIRBase: cfg.BaseURL + "/fhir"})
	m.exchange = exchange.New(exchange.Config{BaseURL: cfg.BaseURL, MaxBodyBytes: cfg.MaxBodyBytes, PresignTTL: cfg.PresignTTL}, exchange.Deps{
		Pool: m.pool, Directory: m.directory, Tokens: m.tokens, FHIR: m.fhir, MPI: m.mpi, Matcher: m.matcher, Records: m.records, Log: m.log,
		Documents: m.docs,
		Notify:    m.notify,
	})
	m.portal, err = portal.New(portal.Config{BaseURL: cfg.BaseURL, Issuer: issuer, ClientID: cfg.OIDCClientID,
		ClientSecret: clientSecret, RedisPrefix: cfg.RedisPrefix, StaffMFAOff: !cfg.StaffMFA, MFAACR: cfg.StaffMFAACR},
		portal.Deps{Identity: identity{m.mpi}, Staff: m.staff, Records: portalRecords{m.records, m.directory},
			Shares: portal.NewShareStore(m.pool).WithAudit(m.audit), Shared: portalRecords{m.records, m.directory},
			Patients: patientLookup{portalRecords{m.records, m.directory}, m.mpi}, Messages: portal.NewMessageStore(m.pool).WithAudit(m.audit),
			Documents: portalDocuments{portalRecords{m.records, m.directory}, m.docs, m.audit, time.Now},
			Proxies:   portal.NewProxyStore(m.pool, m.audit),
			Emergency: portalBreakGlass{m.pool, records.NewBreakGlassStore(m.pool), consent.BreakGlassPolicy{MaxDuration: cfg.BreakGlass}, m.audit, time.Now},
			Privacy:   portal.NewPrivacyStore(m.pool, dirs, mpistore.NewOps(m.pool, m.audit, m.matcher.Model())).WithAudit(m.audit).WithConsentStore(consent.NewStore()), Redis: m.redis, Logger: m.log})
	if err != nil {
		return err
	}
	m.buildHTTP()
	return nil
}

// bodyBudgetFactor is how many maximum-size request bodies the server holds at once
// (httpx.BodyBudget). A body is charged as it is read: the first 1 MiB of every body is
// read uncharged, so a body of at most 1 MiB never counts or waits; a larger one is then
// charged for what it has read and, step by step, for the rest, and a read beyond the
// budget waits up to 10 s, then answers 503.
const bodyBudgetFactor = 8

// buildHTTP assembles the Echo server: request IDs, access logs, recovery, body limits and
// the in-flight body budget, timeouts, health endpoints, the exchange and the portal, and
// one error handler that renders an OperationOutcome under /fhir and a page elsewhere.
func (m *Main) buildHTTP() {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = ipExtractor(m.cfg.TrustedProxies)
	e.Use(httpx.RequestID(), httpx.AccessLog(m.log), httpx.Recover(m.log))
	e.Use(middleware.BodyLimit(fmt.Sprint(m.cfg.MaxBodyBytes)))
	// Bodies are read whole: at most bodyBudgetFactor limits' worth of bodies over 1 MiB
	// are held at once.
	e.Use(httpx.NewBodyBudget(bodyBudgetFactor*m.cfg.MaxBodyBytes, m.cfg.MaxBodyBytes, 1<<20).Middleware(10 * time.Second))
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if exchange.IsExchangePath(c.Request().URL.Path) {
			m.exchange.HandleError(err, c)
			return
		}
		m.portal.HTTPErrorHandler(err, c)
	}
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", m.ready)
	m.exchange.Register(e)
	m.consentAPI().Register(e)
	exchange.NewSearchAPI(m.exchange, m.searcher).Register(e)
	m.portal.Register(e)
	m.echo = e
	m.http = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 120 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn)}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

// ready answers 200 when PostgreSQL, Redis and S3 answer, else 503 naming the failing part.
func (m *Main) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	var failing []string
	if err := m.pool.Ping(ctx); err != nil {
		failing = append(failing, "postgresql")
	}
	if err := m.redis.Ping(ctx).Err(); err != nil {
		failing = append(failing, "redis")
	}
	if err := m.blobs.Ping(ctx); err != nil {
		failing = append(failing, "s3")
	}
	if len(failing) > 0 {
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "failing": failing})
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ok"})
}

// Listen binds the listeners, so a caller (tests, demo) knows the addresses before Run.
func (m *Main) Listen() error {
	var err error
	if m.httpLn, err = net.Listen("tcp", m.cfg.HTTPAddr); err != nil {
		return fmt.Errorf("CONCORD_HTTP_ADDR: %v", err)
	}
	if m.cfg.AdminAddr != "" {
		if m.adminLn, err = net.Listen("tcp", m.cfg.AdminAddr); err != nil {
			return fmt.Errorf("CONCORD_ADMIN_ADDR: %v", err)
		}
	}
	return nil
}

// Run serves until ctx is done, then shuts down gracefully.
func (m *Main) Run(ctx context.Context) error {
	if m.httpLn == nil {
		if err := m.Listen(); err != nil {
			return err
		}
	}
	stopMLLP, err := m.startMLLP() // mllp.go; nothing when CONCORD_MLLP_ADDR is empty
	if err != nil {
		return err
	}
	defer stopMLLP()
	stopNotify := m.notifier.Start(ctx) // stopped (and waited for) before Close closes the pool
	defer stopNotify()
	// Orphaned document objects (a crash between the S3 write and the metadata commit) are
	// collected after their grace period.
	gcCtx, gcStop := context.WithCancel(ctx)
	gcDone := make(chan struct{})
	go func() { defer close(gcDone); m.docs.RunGC(gcCtx, time.Hour) }()
	defer func() { gcStop(); <-gcDone }()
	errc := make(chan error, 2)
	go func() { errc <- m.http.Serve(m.httpLn) }()
	if m.adminLn != nil {
		go func() { errc <- m.admin.Serve(m.adminLn) }()
	}
	m.log.Info("concord serving", "http", m.httpLn.Addr().String(), "base", m.cfg.BaseURL)
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = m.http.Shutdown(sctx)
	if m.adminLn != nil {
		_ = m.admin.Shutdown(sctx)
	}
	return nil
}

// Close releases everything Open acquired; it is safe on a partly opened Main.
func (m *Main) Close() error {
	if m.audit != nil {
		m.audit.Close()
	}
	if m.devOIDC != nil {
		m.devOIDC.Close()
	}
	if m.devS3 != nil {
		m.devS3.Close()
	}
	if m.redis != nil {
		m.redis.Close()
	}
	if m.pool != nil {
		m.pool.Close()
	}
	return nil
}

var _ = flag.ErrHelp

// ipExtractor is how a request's source address is found, for audit events and rate
// limits. With no trusted proxies it is the peer address, whatever headers say. With
// some, a request whose peer is one of them is attributed to the nearest address in
// X-Forwarded-For that is not (an unparsable entry stops the walk at the peer); Echo's
// defaults of also trusting loopback, link-local and private peers are switched off, so a
// client on the same network cannot name its own source. The address is returned in one
// form (an IPv4-mapped IPv6 address as IPv4), and as the peer's when it does not parse.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		opts = append(opts, echo.TrustIPRange(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}))
	}
	xff := echo.ExtractIPFromXFFHeader(opts...)
	return func(r *http.Request) string {
		ip := xff(r)
		if a, err := netip.ParseAddr(ip); err == nil {
			return a.Unmap().String()
		}
		return echo.ExtractIPDirect()(r)
	}
}
