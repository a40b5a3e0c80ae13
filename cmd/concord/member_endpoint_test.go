package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/internal/testkit"
	"github.com/concord-hie/concord/notify"
)

// harborEndpoints registers member harbor on a fresh database and returns its pool and URL
// and a runner of `concord member endpoint ARGS` against it (stdout and stderr together).
func harborEndpoints(t *testing.T) (*pgxpool.Pool, string, func(args ...string) (string, error)) {
	t.Helper()
	return harborMember(t, "endpoint")
}

// harborMember registers member harbor on a fresh database and returns its pool and URL
// and a runner of `concord member SUB ARGS` against it (stdout and stderr together).
func harborMember(t *testing.T, sub string) (*pgxpool.Pool, string, func(args ...string) (string, error)) {
	t.Helper()
	dbURL := testkit.DatabaseURL(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `INSERT INTO directory_members (id, name, system) VALUES ('harbor', 'Harbor', 'urn:oid:2.16.840.1.113883.3.77')`); err != nil {
		t.Fatal(err)
	}
	return pool, dbURL, func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := runMember(ctx, append(append([]string{sub}, args...), "--database-url", dbURL), &out, &errb)
		return out.String() + errb.String(), err
	}
}

// TestMemberEndpoint registers notification endpoints through the CLI: a public https
// origin is stored; a private address is refused unless CONCORD_NOTIFY_ALLOW names it.
func TestMemberEndpoint(t *testing.T) {
	ctx := context.Background()
	pool, _, run := harborEndpoints(t)
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
	rows, _ := pool.Query(ctx, `SELECT origin FROM notify_endpoints WHERE member_id = 'harbor' AND removed_at IS NULL ORDER BY origin`)
	for rows.Next() {
		var o string
		_ = rows.Scan(&o)
		origins = append(origins, o)
	}
	if strings.Join(origins, " ") != "https://10.0.0.5:8443 https://hooks.harbor-health.org:8443" {
		t.Fatalf("registered origins %v", origins)
	}
}

// TestMemberEndpointPublished publishes a member's FHIR base, MLLP receiver and Direct
// address with --type, changes one's status by registering it again, refuses malformed
// ones, and lists them with member list; rest-hook stays the default.
func TestMemberEndpointPublished(t *testing.T) {
	ctx := context.Background()
	_, dbURL, run := harborEndpoints(t)
	for _, args := range [][]string{
		{"--member", "harbor", "--type", "fhir", "--address", "https://FHIR.harbor-health.org/r4/"},
		{"--member", "harbor", "--type", "mllp", "--address", "mllp://hl7.harbor-health.org:2575", "--payload", "http://terminology.hl7.org/CodeSystem/v2-0076|ADT,http://terminology.hl7.org/CodeSystem/v2-0076|ORU"},
		{"--member", "harbor", "--type", "direct", "--address", "mailto:records@direct.harbor-health.org"},
		{"--member", "harbor", "--type", "direct", "--address", "mailto:records@direct.harbor-health.org", "--status", "off"},
	} {
		if out, err := run(args...); err != nil || !strings.Contains(out, "published") || !strings.Contains(out, "Endpoint/ep-") {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	for _, args := range [][]string{
		{"--member", "harbor", "--type", "fhir", "--address", "http://fhir.harbor-health.org/r4"},
		{"--member", "harbor", "--type", "mllp", "--address", "hl7.harbor-health.org:2575"},
		{"--member", "harbor", "--type", "direct", "--address", "mailto:a@b.example?subject=x"},
		{"--member", "harbor", "--type", "fhir", "--address", "https://fhir.harbor-health.org", "--status", "retired"},
		{"--member", "harbor", "--type", "fhir", "--address", "https://fhir.harbor-health.org", "--payload", "ccda"},
		{"--member", "harbor", "--type", "ftp", "--address", "ftp://x.example"},
		{"--member", "harbor", "--type", "fhir"},
		{"--member", "harbor", "--type", "fhir", "--address", "https://fhir.harbor-health.org", "--url", "https://hooks.harbor-health.org"},
		{"--member", "harbor", "--url", "https://hooks.harbor-health.org", "--address", "https://fhir.harbor-health.org"},
		{"--member", "nobody", "--type", "fhir", "--address", "https://fhir.harbor-health.org"},
	} {
		if out, err := run(args...); err == nil {
			t.Fatalf("%v succeeded: %s", args, out)
		}
	}
	// The default is still rest-hook.
	if out, err := run("--member", "harbor", "--url", "https://hooks.harbor-health.org/hook"); err != nil || !strings.Contains(out, "registered notification endpoint") {
		t.Fatalf("rest-hook: %v %s", err, out)
	}
	var out, errb bytes.Buffer
	if err := runMember(ctx, []string{"list", "--database-url", dbURL}, &out, &errb); err != nil {
		t.Fatalf("list: %v %s", err, errb.String())
	}
	var list []struct {
		Organization string
		Endpoints    []struct {
			ID             string   `json:"id"`
			ConnectionType string   `json:"connection_type"`
			Address        string   `json:"address"`
			PayloadTypes   []string `json:"payload_types"`
			Status         string   `json:"status"`
		}
	}
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range list[0].Endpoints {
		if !strings.HasPrefix(e.ID, "ep-") {
			t.Errorf("id %s", e.ID)
		}
		got = append(got, e.ConnectionType+" "+e.Address+" "+e.Status+" "+strings.Join(e.PayloadTypes, ","))
	}
	want := []string{
		"direct-project mailto:records@direct.harbor-health.org off http://terminology.hl7.org/CodeSystem/endpoint-payload-type|any",
		"hl7-fhir-rest https://fhir.harbor-health.org/r4 active http://terminology.hl7.org/CodeSystem/endpoint-payload-type|any",
		"hl7v2-mllp mllp://hl7.harbor-health.org:2575 active http://terminology.hl7.org/CodeSystem/v2-0076|ADT,http://terminology.hl7.org/CodeSystem/v2-0076|ORU",
	}
	if len(list) != 1 || !slices.Equal(got, want) {
		t.Fatalf("member list endpoints:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestMemberEndpointRemove removes a published endpoint with --remove: member list no
// longer shows it and its row records the removal; removing it again, or without
// --address, or with --payload or --status, fails.
func TestMemberEndpointRemove(t *testing.T) {
	ctx := context.Background()
	pool, dbURL, run := harborEndpoints(t)
	for _, args := range [][]string{
		{"--member", "harbor", "--type", "fhir", "--address", "https://fhir.harbor-health.org/r4"},
		{"--member", "harbor", "--type", "mllp", "--address", "mllp://hl7.harbor-health.org:2575", "--status", "off"},
	} {
		if out, err := run(args...); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	out, err := run("--member", "harbor", "--type", "mllp", "--address", "mllp://HL7.harbor-health.org:2575", "--remove")
	if err != nil || !strings.Contains(out, "removed hl7v2-mllp endpoint mllp://hl7.harbor-health.org:2575 of harbor: Endpoint/ep-") {
		t.Fatalf("remove: %v %s", err, out)
	}
	var removed bool
	if err := pool.QueryRow(ctx, `SELECT removed_at IS NOT NULL FROM directory_endpoints WHERE member_id = 'harbor' AND connection_type = 'hl7v2-mllp'`).Scan(&removed); err != nil || !removed {
		t.Fatalf("removal recorded: %v %v", removed, err)
	}
	for _, args := range [][]string{
		{"--member", "harbor", "--type", "mllp", "--address", "mllp://hl7.harbor-health.org:2575", "--remove"},
		{"--member", "harbor", "--type", "direct", "--address", "mailto:records@direct.harbor-health.org", "--remove"},
		{"--member", "harbor", "--type", "fhir", "--remove"},
		{"--member", "harbor", "--type", "fhir", "--address", "https://fhir.harbor-health.org/r4", "--remove", "--status", "off"},
		{"--member", "harbor", "--type", "fhir", "--address", "https://fhir.harbor-health.org/r4", "--remove", "--payload", "any"},
		{"--member", "nobody", "--type", "fhir", "--address", "https://fhir.harbor-health.org/r4", "--remove"},
	} {
		if out, err := run(args...); err == nil {
			t.Fatalf("%v succeeded: %s", args, out)
		}
	}
	var list bytes.Buffer
	if err := runMember(ctx, []string{"list", "--database-url", dbURL}, &list, io.Discard); err != nil {
		t.Fatal(err)
	}
	if s := list.String(); strings.Contains(s, "hl7v2-mllp") || !strings.Contains(s, "https://fhir.harbor-health.org/r4") {
		t.Fatalf("member list after removal: %s", s)
	}
}

// TestMemberEndpointRemoveOrigin removes registered rest-hook origins with --url and
// --remove: of two origins the other stays, in the table and in the directory's listing;
// an origin is named by any URL at it; removing one again fails and says why, as removing a
// published endpoint twice does; a private origin goes although CONCORD_NOTIFY_ALLOW no
// longer names it; and --remove takes no --address.
func TestMemberEndpointRemoveOrigin(t *testing.T) {
	ctx := context.Background()
	pool, _, run := harborEndpoints(t)
	if out, err := run("--member", "harbor", "--url", "https://hooks.harbor-health.org:8443/hook,https://ehr.harbor-health.org/notify"); err != nil {
		t.Fatalf("register: %v %s", err, out)
	}
	if out, err := run("--member", "harbor", "--url", "https://HOOKS.harbor-health.org:8443/other?x=1", "--remove"); err != nil ||
		out != "removed notification endpoint origin https://hooks.harbor-health.org:8443 of harbor: its Subscriptions are stopped (status error)\n" {
		t.Fatalf("remove: %v %q", err, out)
	}
	origins := func() []string {
		t.Helper()
		got, err := notify.NewStore(nil).EndpointOrigins(ctx, pool, []string{"harbor"})
		if err != nil {
			t.Fatal(err)
		}
		return got["harbor"]
	}
	if got, want := origins(), []string{"https://ehr.harbor-health.org:443"}; !slices.Equal(got, want) {
		t.Fatalf("origins after removal: %v, want %v", got, want)
	}
	out, err := run("--member", "harbor", "--url", "https://hooks.harbor-health.org:8443/hook", "--remove")
	if err == nil || !strings.Contains(err.Error(), "no such registered endpoint origin") {
		t.Fatalf("removed twice: %v %s", err, out)
	}
	if got := origins(); len(got) != 1 {
		t.Fatalf("a failed removal changed the origins: %v", got)
	}
	// All or none: one unregistered origin, or one bad URL, in the list removes nothing,
	// and the error names origins or positions, never a URL's path or query.
	for _, urls := range []string{
		"https://ehr.harbor-health.org/notify,https://hooks.harbor-health.org:8443/h?token=s3cret",
		"https://ehr.harbor-health.org/notify,ftp://x.example/h?token=s3cret",
	} {
		out, err := run("--member", "harbor", "--url", urls, "--remove")
		if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(out, "s3cret") || !strings.Contains(err.Error(), "nothing removed") {
			t.Fatalf("partly bad removal %q: %v %q", urls, err, out)
		}
		if got := origins(); len(got) != 1 {
			t.Fatalf("a failed removal of %q changed the origins: %v", urls, got)
		}
	}

	if out, err := run("--member", "harbor", "--url", "https://10.0.0.5:8443/hook", "--notify-allow", "10.0.0.5:8443"); err != nil {
		t.Fatalf("allowed private endpoint: %v %s", err, out)
	}
	if out, err := run("--member", "harbor", "--url", "https://10.0.0.5:8443/hook", "--remove"); err != nil {
		t.Fatalf("private origin no longer allowed: %v %s", err, out)
	}
	for _, args := range [][]string{
		{"--member", "harbor", "--url", "https://ehr.harbor-health.org/notify", "--remove", "--address", "https://ehr.harbor-health.org"},
		{"--member", "harbor", "--url", "ftp://ehr.harbor-health.org/notify", "--remove"},
		{"--member", "harbor", "--remove"},
		{"--member", "nobody", "--url", "https://ehr.harbor-health.org/notify", "--remove"},
	} {
		if out, err := run(args...); err == nil {
			t.Fatalf("%v succeeded: %s", args, out)
		}
	}
	if got, want := origins(), []string{"https://ehr.harbor-health.org:443"}; !slices.Equal(got, want) {
		t.Fatalf("origins at the end: %v, want %v", got, want)
	}
}
