package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/config"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
)

// TestAuditPrune runs `concord audit prune` against a log with events seven years old: it
// refuses without the key, before a checkpoint covers them, and for a date under six years
// ago; a dry run changes nothing; the prune drops the old partitions, and `concord audit
// verify` still passes afterwards.
func TestAuditPrune(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	dbURL, owner, app, run := auditCLI(t, dataDir)
	prune := func(args ...string) (string, error) { return run("prune", args...) }
	exists := func(table string) bool {
		t.Helper()
		var ok bool
		if err := owner.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}

	now := time.Now().UTC()
	before := now.AddDate(-audit.MinRetentionYears, 0, 0).Format(time.DateOnly)
	old := time.Date(now.Year()-7, now.Month(), 1, 12, 0, 0, 0, time.UTC)
	month := func(t time.Time) string { return "audit_events_" + t.Format("2006_01") }
	oldParts := []string{month(old.AddDate(0, -2, 0)), month(old), month(old.AddDate(0, 1, 0))}

	// Without the checkpoint key in DATA_DIR: refused, and no new key made.
	out, err := prune("--before", before)
	if err == nil || !strings.Contains(err.Error(), "no checkpoint signing key") {
		t.Fatalf("prune without a key: %v %s", err, out)
	}
	// Nor do verify and checkpoint run on (or mint) a key DATA_DIR lacks: after a restore
	// without keys/, a minted key would sign the next checkpoints; verify --pub needs none.
	for _, sub := range []string{"verify", "checkpoint"} {
		if out, err := run(sub); err == nil || !strings.Contains(err.Error(), "no checkpoint signing key") {
			t.Fatalf("%s without a key: %v %s", sub, err, out)
		}
	}
	if out, err := run("verify", "--pub", strings.Repeat("ab", 32)); err != nil || !strings.HasPrefix(out, "OK: ") {
		t.Fatalf("verify --pub without a key: %v %s", err, out)
	}
	seed := filepath.Join(dataDir, "keys", auditSeedFile)
	if _, err := os.Stat(seed); !os.IsNotExist(err) {
		t.Fatalf("an audit command without a key made one: %v", err)
	}

	key, err := auditSigningKey(config.Config{DataDir: dataDir}) // as serve makes it
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(ctx, app, audit.Config{SigningKey: key, CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := audit.EnsurePartitions(ctx, owner, old.AddDate(0, -2, 0), 1); err != nil { // an empty old month
		t.Fatal(err)
	}
	ev := func(i int, at time.Time) audit.Event {
		return audit.Event{Time: at, Action: audit.Read, Outcome: audit.Permit, Actor: "https://idp.example|u1",
			Client: "ehr-a", Org: "riverside", Role: "clinician", Purpose: "TREAT", Patient: fmt.Sprint("person-", i),
			Resources: []audit.Resource{{Type: "Observation", ID: fmt.Sprint("o", i)}}, RequestID: fmt.Sprint("req-", i)}
	}
	for i, at := range []time.Time{old, old.Add(time.Hour), old.AddDate(0, 1, 0)} {
		if err := l.Append(ctx, ev(i, at)); err != nil {
			t.Fatal(err)
		}
	}

	// No signed checkpoint covers the old events yet.
	out, err = prune("--before", before, "--dry-run")
	if err == nil || !strings.Contains(err.Error(), "no checkpoint covers seq 3") || !strings.Contains(err.Error(), "concord audit checkpoint") {
		t.Fatalf("dry run before a checkpoint: %v %s", err, out)
	}
	if out, err = prune("--before", before); err == nil || !strings.Contains(err.Error(), "no checkpoint covers seq 3") {
		t.Fatalf("prune before a checkpoint: %v %s", err, out)
	}
	if out, err := run("checkpoint"); err != nil {
		t.Fatalf("audit checkpoint: %v %s", err, out)
	}
	for i := 3; i < 5; i++ {
		if err := l.Append(ctx, ev(i, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}

	// Too recent, malformed or missing dates are refused before the database is touched.
	for _, tt := range []struct{ name, before, want string }{
		{"five years", now.AddDate(-5, 0, 0).Format(time.DateOnly), "too recent"},
		{"one day short", now.AddDate(-audit.MinRetentionYears, 0, 1).Format(time.DateOnly), "too recent"},
		{"not a date", "2019-13-01", "YYYY-MM-DD"},
		{"missing", "", "--before YYYY-MM-DD is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := prune("--before", tt.before)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("--before %q: %v %s; want %q", tt.before, err, out, tt.want)
			}
		})
	}
	// A longer configured retention moves the floor; one under six years is no setting.
	if out, err := prune("--before", before, "--audit-retention-years", "8"); err == nil || !strings.Contains(err.Error(), "too recent") {
		t.Fatalf("--before %s with 8 years' retention: %v %s; want too recent", before, err, out)
	}
	if out, err := prune("--before", before, "--audit-retention-years", "5"); err == nil {
		t.Fatalf("--audit-retention-years 5: %s; want refused", out)
	}

	// A DATA_DIR whose key did not sign the checkpoints is refused.
	other := t.TempDir()
	if _, err := auditSigningKey(config.Config{DataDir: other}); err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	err = runAudit(ctx, []string{"prune", "--before", before, "--database-url", dbURL, "--data-dir", other}, &errb, &errb)
	if err == nil || !strings.Contains(err.Error(), "does not verify with the checkpoint key") {
		t.Fatalf("prune with another key: %v %s", err, errb.String())
	}

	// A dry run lists what would go and changes nothing.
	out, err = prune("--before", before, "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v %s", err, out)
	}
	for _, want := range append(oldParts, "would prune 3 audit partitions", "events seq 1-3", "would move to seq 3", "nothing changed") {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	for _, p := range oldParts {
		if !exists(p) {
			t.Fatalf("dry run dropped %s", p)
		}
	}
	var anchors int
	if err := owner.QueryRow(ctx, "SELECT count(*) FROM audit_anchor").Scan(&anchors); err != nil || anchors != 0 {
		t.Fatalf("dry run wrote an anchor: %d, %v", anchors, err)
	}

	out, err = prune("--before", before)
	if err != nil {
		t.Fatalf("prune: %v %s", err, out)
	}
	for _, want := range append(oldParts, "pruned 3 audit partitions", "events seq 1-3", "anchor written at seq 3") {
		if !strings.Contains(out, want) {
			t.Errorf("prune output lacks %q:\n%s", want, out)
		}
	}
	for _, p := range oldParts {
		if exists(p) {
			t.Errorf("%s survived the prune", p)
		}
	}
	if strings.Contains(out, "person-") || strings.Contains(out, "idp.example") {
		t.Errorf("prune printed event contents:\n%s", out)
	}

	out, err = run("verify")
	if err != nil || !strings.Contains(out, "OK: 2 events, chain intact through seq 5") {
		t.Fatalf("verify after prune: %v %s", err, out)
	}
	// The chain goes on, and a second prune has nothing left to do.
	if err := l.Append(ctx, ev(5, time.Now())); err != nil {
		t.Fatal(err)
	}
	if out, err := run("checkpoint"); err != nil {
		t.Fatalf("audit checkpoint: %v %s", err, out)
	}
	if out, err := prune("--before", before); err != nil || !strings.Contains(out, "pruned nothing") {
		t.Fatalf("second prune: %v %s", err, out)
	}
	if out, err := run("verify"); err != nil || !strings.Contains(out, "OK: 3 events, chain intact through seq 6") {
		t.Fatalf("verify after the second prune: %v %s", err, out)
	}
}

// auditCLI opens a fresh database as its owner and as concord_app (the role serve appends
// audit events as), both closed when the test ends, and returns its URL and them with a
// runner of `concord audit SUB ARGS` against it with data directory dataDir (stdout and
// stderr together).
func auditCLI(t *testing.T, dataDir string) (dbURL string, owner, app *pgxpool.Pool, run func(sub string, args ...string) (string, error)) {
	t.Helper()
	ctx := context.Background()
	dbURL = testkit.DatabaseURL(t)
	owner, err := db.Open(ctx, dbURL, db.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	app, err = db.Open(ctx, dbURL, db.Options{MaxConns: 4, AppRole: "concord_app"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	return dbURL, owner, app, func(sub string, args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := runAudit(ctx, append(append([]string{sub}, args...), "--database-url", dbURL, "--data-dir", dataDir), &out, &errb)
		return out.String() + errb.String(), err
	}
}
