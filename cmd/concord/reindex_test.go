package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
)

// TestFHIRReindex stores a Location, drops its address-city index rows as if the parameter
// had been added after it was stored, and runs `concord fhir reindex`: a dry run counts it
// and changes nothing, the run makes it searchable and prints counts and no record content,
// and a second run finds nothing to do.
func TestFHIRReindex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, pool, s := reindexFixture(t)
	var err error
	var loc store.Stored
	err = db.InTx(ctx, pool, func(tx db.Querier) (err error) {
		loc, err = s.Put(ctx, tx, store.Write{MemberID: "a", At: time.Now(),
			Resource: fhir.MustParse([]byte(`{"resourceType":"Location","name":"Harbor Street Clinic","address":{"city":"Springfield"}}`))})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM fhir_idx_string WHERE param = 'address-city'`); err != nil {
		t.Fatal(err)
	}
	cityRows := func() (n int) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM fhir_idx_string WHERE type = 'Location' AND id = $1 AND param = 'address-city'`, loc.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	run := func(args ...string) (string, error) {
		t.Helper()
		var out, errb bytes.Buffer
		err := runFHIR(ctx, append(args, "--database-url", dbURL), &out, &errb)
		got := out.String() + errb.String()
		for _, phi := range []string{"Harbor", "Springfield", "springfield"} {
			if strings.Contains(got, phi) {
				t.Errorf("fhir %v printed record content %q:\n%s", args, phi, got)
			}
		}
		return got, err
	}

	out, err := run("reindex", "--type", "Location", "--dry-run")
	if err != nil || !strings.Contains(out, "examined 1 current resources: 1 would be reindexed") || !strings.Contains(out, "nothing changed") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if n := cityRows(); n != 0 {
		t.Fatalf("the dry run wrote %d address-city rows", n)
	}
	out, err = run("reindex", "--type", " Location,PractitionerRole ", "--batch", "1")
	if err != nil || !strings.Contains(out, "examined 1 current resources: 1 reindexed, 0 already current, 0 skipped") {
		t.Fatalf("reindex: %v\n%s", err, out)
	}
	if n := cityRows(); n != 1 {
		t.Fatalf("after reindex: %d address-city rows, want 1", n)
	}
	out, err = run("reindex")
	if err != nil || !strings.Contains(out, "examined 1 current resources: 0 reindexed, 1 already current") {
		t.Fatalf("second run (all types): %v\n%s", err, out)
	}
	got, err := s.Get(ctx, nil, "Location", loc.ID)
	if err != nil || got.Version != 1 || !got.LastUpdated.Equal(loc.LastUpdated) || !bytes.Equal(got.Body, loc.Body) {
		t.Errorf("after reindex: version %d, lastUpdated %v, same body %v, %v; want 1, %v, true",
			got.Version, got.LastUpdated, bytes.Equal(got.Body, loc.Body), err, loc.LastUpdated)
	}

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown type", []string{"reindex", "--type", "Location,Nope"}, `--type: unknown resource type "Nope"`},
		{"batch out of range", []string{"reindex", "--batch", "0"}, "--batch 0: want 1 to 10000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := run(tt.args...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestFHIRReindexHelp checks that the command's help names it as the step after an upgrade
// that adds search parameters, and that `concord fhir` alone is a usage error.
func TestFHIRReindexHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if err := runFHIR(context.Background(), []string{"reindex", "-h"}, &out, &errb); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("reindex -h = %v", err)
	}
	help := strings.Join(strings.Fields(errb.String()), " ")
	for _, want := range []string{"after an upgrade that adds search parameters", "concord migrate", "-dry-run", "-batch", "-type"} {
		if !strings.Contains(help, want) {
			t.Errorf("reindex help lacks %q:\n%s", want, errb.String())
		}
	}
	errb.Reset()
	if err := runFHIR(context.Background(), nil, &out, &errb); !errors.Is(err, errReported) || !strings.Contains(errb.String(), "concord fhir reindex") {
		t.Errorf("fhir with no command = %v, %q", err, errb.String())
	}
}

// TestFHIRReindexUnstorableValue: a resource whose new index rows the database refuses (a
// NUL character in a newly indexed string) is named, left as it was and makes the command
// exit non-zero, while the rest is reindexed; the refusal is not blamed on --type.
func TestFHIRReindexUnstorableValue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, pool, s := reindexFixture(t)
	var err error
	var locs []store.Stored
	for _, body := range []string{
		`{"resourceType":"Location","name":"Harbor Street Clinic","address":{"city":"Springfield"}}`,
		`{"resourceType":"Location","name":"Hilltop Annex","address":{"city":"Shelbyville"}}`,
	} {
		err = db.InTx(ctx, pool, func(tx db.Querier) error {
			loc, err := s.Put(ctx, tx, store.Write{MemberID: "a", At: time.Now(), Resource: fhir.MustParse([]byte(body))})
			locs = append(locs, loc)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	bad := locs[0].ID
	if _, err := pool.Exec(ctx, `UPDATE fhir_resources SET body = convert_to('{"resourceType":"Location","name":"Harbor Street Clinic","address":{"city":"Spring\u0000field"}}', 'UTF8') WHERE type = 'Location' AND id = $1`, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM fhir_idx_string WHERE param = 'address-city'`); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	err = runFHIR(ctx, []string{"reindex", "--type", "Location", "--database-url", dbURL}, &out, &errb)
	got := out.String() + errb.String()
	if !errors.Is(err, errReported) || strings.Contains(got, "--type") || !strings.Contains(got, "Location/"+bad) ||
		!strings.Contains(out.String(), "examined 2 current resources: 1 reindexed") {
		t.Fatalf("reindex over a resource whose index rows are refused: %v\n%s\nwant the other reindexed, Location/%s named, exit non-zero", err, got, bad)
	}
	for _, phi := range []string{"Harbor", "Springfield", "springfield", "Shelbyville"} {
		if strings.Contains(got, phi) {
			t.Errorf("printed record content %q:\n%s", phi, got)
		}
	}
}

// reindexFixture opens a fresh test database with member "a" and returns its URL, a pool
// on it (closed when the test ends) and a store over that pool.
func reindexFixture(t *testing.T) (string, *pgxpool.Pool, *store.Store) {
	t.Helper()
	ctx := context.Background()
	dbURL := testkit.DatabaseURL(t)
	pool, err := db.Open(ctx, dbURL, db.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ('a', 'a', 'urn:oid:1.2.9')`); err != nil {
		t.Fatal(err)
	}
	return dbURL, pool, store.New(pool)
}
