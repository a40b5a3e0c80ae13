package exchange

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
)

// The shared test harness: the pieces every exchange test environment builds the same
// way (members, token issuer, MPI and matcher, the mounted exchange, an in-memory audit
// log, regional-default directives). Each environment keeps its own data and wiring.

// memAudit keeps appended audit events in memory.
type memAudit struct {
	mu     sync.Mutex
	events []audit.Event
}

func (m *memAudit) Append(_ context.Context, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, ev)
	return nil
}

// AppendTx keeps evs in memory at once: the events outlive a rolled-back tx, which the
// tests that use memAudit do not look at (audit_write_test.go uses the real log).
func (m *memAudit) AppendTx(_ context.Context, _ db.Querier, evs ...audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, evs...)
	return nil
}

func (m *memAudit) last() audit.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.events[len(m.events)-1]
}

// defaultDirectives are the regional defaults only (no patient directives).
type defaultDirectives struct{}

func (defaultDirectives) InForce(context.Context, string, time.Time) ([]consent.Directive, error) {
	return consent.DefaultPolicies(consent.PolicyConfig{}), nil
}

// insertMembers registers each id as a directory member named id with system
// urn:oid:1.2.3.<ascii(id)>, and the members' test clients (registerTestClients).
func insertMembers(t testing.TB, pool *pgxpool.Pool, ids ...string) {
	t.Helper()
	for _, m := range ids {
		if _, err := pool.Exec(context.Background(), `INSERT INTO directory_members(id, name, system) VALUES ($1, $1, 'urn:oid:1.2.3.' || ascii($1))`, m); err != nil {
			t.Fatal(err)
		}
	}
	registerTestClients(t, pool)
}

// testClientGeneration is the token generation of the clients registerTestClients
// registers, and the one mintToken writes into its tokens.
const testClientGeneration = "00000000-0000-4000-8000-00000000c0c0"

// registerTestClients registers, for every member in pool without them, the client systems
// client-<member> and client-<member>2 that mintToken's tokens name: every scope a test
// asks for (system/*.cruds, break-the-glass, bulk export) and every purpose of use, at
// testClientGeneration. directory.Tokens.Verify refuses a token whose client is not
// registered for what the token holds. Call it after the environment's members exist.
//
// The database assigns every client a random generation and ignores a supplied one
// (migration 0103), so the clients are inserted with that trigger switched off, in one
// transaction that switches it on again: only the table's owner, which the tests connect
// as, can do that.
func registerTestClients(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		if _, err := tx.Exec(ctx, `ALTER TABLE directory_clients DISABLE TRIGGER directory_clients_token_generation`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO directory_clients(client_id, member_id, jwks, scopes, purposes, token_generation)
			SELECT 'client-' || m.id || n.suffix, m.id, '{"keys":[]}', $1, $2, $3
			FROM directory_members m, (VALUES (''), ('2')) n(suffix)
			ON CONFLICT (client_id) DO NOTHING`,
			[]string{"system/*.cruds", ScopeBreakGlass, ScopeBulkExport}, []string{"TREAT", "ETREAT", "HPAYMT", "HOPERAT", "PUBHLTH", "PATRQT", "BTG"},
			testClientGeneration); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `ALTER TABLE directory_clients ENABLE ALWAYS TRIGGER directory_clients_token_generation`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// newTokens is directory.NewTokens for issuer (token endpoint tokenURL) signing with key,
// failing t on error.
func newTokens(t testing.TB, dir *directory.Store, key []byte, issuer, tokenURL string, ttl time.Duration) *directory.Tokens {
	t.Helper()
	toks, err := directory.NewTokens(dir, key, issuer, tokenURL, ttl, nil)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

// newMatcher is the MPI store on pool and its matcher, failing t on error.
func newMatcher(t testing.TB, pool *pgxpool.Pool) (*mpistore.Store, *mpistore.Matcher) {
	t.Helper()
	mpi := mpistore.New(pool)
	matcher, err := mpistore.NewMatcher(mpi)
	if err != nil {
		t.Fatal(err)
	}
	return mpi, matcher
}

// mountExchange is a new echo with srv's error handler, middleware mw, and srv's routes.
func mountExchange(srv *Server, mw ...echo.MiddlewareFunc) *echo.Echo {
	e := echo.New()
	e.Use(mw...)
	e.HTTPErrorHandler = srv.HandleError
	srv.Register(e)
	return e
}

// serveExchange mounts srv (then each of extra) and serves it on an httptest server
// closed at cleanup; it returns the FHIR base URL.
func serveExchange(t testing.TB, srv *Server, extra ...func(*echo.Echo)) string {
	t.Helper()
	e := mountExchange(srv)
	for _, reg := range extra {
		reg(e)
	}
	hs := httptest.NewServer(e)
	t.Cleanup(hs.Close)
	return hs.URL + "/fhir"
}

// mintToken signs an access token as directory.Tokens would issue it: for client acting
// for member org with scope and purpose, issued by (and for) issuer, valid for ttl, at
// testClientGeneration. It verifies only if client is registered for org, scope and purpose
// at that generation (registerTestClients).
func mintToken(t testing.TB, key []byte, issuer, client, org, scope, purpose string, ttl time.Duration) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := struct {
		jwt.Claims
		Org     string `json:"org"`
		Scope   string `json:"scope"`
		Purpose string `json:"pou"`
		Gen     string `json:"gen"`
	}{jwt.Claims{Issuer: issuer, Audience: jwt.Audience{issuer}, Subject: client, ID: testkit.RandomID(8),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(ttl))}, org, scope, purpose, testClientGeneration}
	s, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
