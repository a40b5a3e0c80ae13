package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/internal/testkit"
)

// TestMemberEndpoint registers notification endpoints through the CLI: a public https
// origin is stored; a private address is refused unless CONCORD_NOTIFY_ALLOW names it.
func TestMemberEndpoint(t *testing.T) {
	dbURL := testkit.DatabaseURL(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `INSERT INTO directory_members (id, name, system) VALUES ('harbor', 'Harbor', 'urn:oid:2.16.840.1.113883.3.77')`); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := runMember(ctx, append(append([]string{"endpoint"}, args...), "--database-url", dbURL), &out, &errb)
		return out.String() + errb.String(), err
	}
	if out, err := run("--member", "harbor", "--url", "https://hooks.harbor-health.org:8443/hook"); err != nil || !strings.Contains(out, "registered") {
		t.Fatalf("public endpoint: %v %s", err, out)
	}
	if _, err := run("--member", "harbor", "--url", "https://10.0.0.5:8443/hook"); err == nil {
		t.Fatal("a private endpoint was registered without CONCORD_NOTIFY_ALLOW")
	}
	if out, err := run("--member", "harbor", "--url", "https://10.0.0.5:8443/hook", "--notify-allow", "10.0.0.5:8443"); err != nil {
		t.Fatalf("allowed private endpoint: %v %s", err, out)
	}
	if _, err := run("--member", "nobody", "--url", "https://hooks.harbor-health.org/hook"); err == nil {
		t.Fatal("an endpoint was registered for an unknown member")
	}
	var origins []string
	rows, _ := pool.Query(ctx, `SELECT origin FROM notify_endpoints WHERE member_id = 'harbor' ORDER BY origin`)
	for rows.Next() {
		var o string
		_ = rows.Scan(&o)
		origins = append(origins, o)
	}
	if strings.Join(origins, " ") != "https://10.0.0.5:8443 https://hooks.harbor-health.org:8443" {
		t.Fatalf("registered origins %v", origins)
	}
}
