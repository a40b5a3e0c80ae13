// Package testkit gives integration tests real services: a fresh PostgreSQL database cloned
// from a migrated template, a Redis key prefix of their own, an S3 bucket of their own. The
// services come from CONCORD_TEST_* variables that `make test` sets; without them a test
// skips with one clear line, unless CONCORD_TEST_STRICT=1 makes that a failure (CI).
package testkit

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// missing skips (or, under CONCORD_TEST_STRICT=1, fails) a test whose service is not configured.
func missing(t testing.TB, variable string) {
	t.Helper()
	msg := variable + " not set: run `make test` to start the services and set it"
	if os.Getenv("CONCORD_TEST_STRICT") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// RandomID returns n random bytes in hex, for unique test names.
func RandomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RepoRoot returns the directory holding go.mod, walking up from the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testkit: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// SharedData returns the path of ../shared/data/<parts...> beside the repository, skipping
// the test (failing under CONCORD_TEST_STRICT=1) when it is missing.
func SharedData(t testing.TB, parts ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{RepoRoot(t), "..", "shared", "data"}, parts...)...)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CONCORD_TEST_STRICT") == "1" {
			t.Fatalf("shared test data %s is missing", p)
		}
		t.Skipf("shared test data %s is missing", p)
	}
	return p
}
