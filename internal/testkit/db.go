package testkit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/internal/db"
)

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// DatabaseURL returns the URL of a fresh database, cloned from a template migrated once per
// migration set and dropped when the test ends. Tests that need only a URL (a child
// process) use it; most use DB.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("CONCORD_TEST_DATABASE_URL")
	if base == "" {
		missing(t, "CONCORD_TEST_DATABASE_URL")
	}
	ctx := context.Background()
	templateOnce.Do(func() { templateName, templateErr = ensureTemplate(ctx, base) })
	if templateErr != nil {
		t.Fatalf("testkit: template database: %v", templateErr)
	}
	name := "concord_t_" + RandomID(6)
	admin := adminConn(t, base)
	defer admin.Close(ctx)
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		_, err = admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+templateName)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "55006" { // template busy: another clone in flight
			time.Sleep(time.Duration(20+attempt*10) * time.Millisecond)
			continue
		}
		break
	}
	if err != nil {
		t.Fatalf("testkit: create database: %v", err)
	}
	t.Cleanup(func() {
		c := adminConn(t, base)
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("testkit: drop database %s: %v", name, err)
		}
	})
	return withDatabase(t, base, name)
}

// DB returns a pool on a fresh migrated database, closed and dropped when the test ends.
func DB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := DatabaseURL(t)
	pool, err := db.Open(context.Background(), url, db.Options{MaxConns: 8})
	if err != nil {
		t.Fatalf("testkit: open database: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func adminConn(t testing.TB, base string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), withDatabase(t, base, "postgres"))
	if err != nil {
		t.Fatalf("testkit: connect to PostgreSQL: %v", err)
	}
	return c
}

func withDatabase(t testing.TB, base, name string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		t.Fatalf("testkit: CONCORD_TEST_DATABASE_URL: %v", err)
	}
	// Rebuild the URL with the database replaced; keep the query string.
	u, q, _ := strings.Cut(base, "?")
	if i := strings.LastIndex(u, "/"); i > len("postgres://") {
		u = u[:i]
	}
	_ = cfg
	out := u + "/" + name
	if q != "" {
		out += "?" + q
	}
	return out
}

// ensureTemplate creates and migrates the template database for the current migration set,
// once across concurrent test processes (an advisory lock serializes them).
func ensureTemplate(ctx context.Context, base string) (string, error) {
	h := sha256.New()
	for _, m := range db.Migrations() {
		h.Write([]byte(m.Checksum))
	}
	name := "concord_tmpl_" + hex.EncodeToString(h.Sum(nil))[:16]
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		return "", err
	}
	cfg.Database = "postgres"
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(7311)"); err != nil {
		return "", err
	}
	defer admin.Exec(ctx, "SELECT pg_advisory_unlock(7311)")
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_b"
	admin.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return "", err
	}
	cfg.Database = building
	pool, err := pgxpool.New(ctx, cfg.ConnString())
	if err != nil {
		return "", err
	}
	pcfg := pool.Config()
	pool.Close()
	pcfg.ConnConfig.Database = building
	pool, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return "", err
	}
	_, err = db.Migrate(ctx, pool)
	pool.Close()
	if err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+building+" RENAME TO "+name); err != nil {
		return "", err
	}
	return name, nil
}
