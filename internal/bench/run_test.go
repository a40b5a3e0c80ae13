package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

// fhirStub answers every search with a Bundle of total results.
func fhirStub(total *atomic.Int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fhir/Patient/") {
			fmt.Fprint(w, `{"resourceType":"Patient","id":"x"}`)
			return
		}
		fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","total":%d,"entry":[{},{},{}]}`, total.Load())
	}))
}

func readRecords(t *testing.T, path string) []Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("record %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// TestQueryListAgainstPeer needs no services: the hello-world anchor is in-process and both
// FHIR servers are stubs on loopback.
func TestQueryListAgainstPeer(t *testing.T) {
	var baseTotal, peerTotal atomic.Int64
	baseTotal.Store(7)
	peerTotal.Store(7)
	base, peer := fhirStub(&baseTotal), fhirStub(&peerTotal)
	defer base.Close()
	defer peer.Close()
	var tokens atomic.Int64
	ql := QueryList{
		Base: base.URL + "/fhir/", Peer: peer.URL + "/fhir",
		Header: func() http.Header {
			tokens.Add(1)
			return http.Header{"Authorization": {"Bearer x"}}
		},
		Queries: []string{"Observation?patient=1&category=laboratory", "Patient/1"},
		Conns:   4,
	}
	hello := HTTPScenario{Name: "thin-slice", URL: base.URL + "/fhir/Patient/1", Anchor: AnchorHello, Conns: 8}
	labs := HTTPScenario{Name: "labs", URL: base.URL + "/fhir/Observation?category=laboratory", Metric: Resources, Conns: 4}
	cfg := Config{
		Duration: 100 * time.Millisecond, Rounds: 2, Warmup: -1, Gate: Gate{Disabled: true},
		Anchors: []string{AnchorHello}, Workers: Workers{HTTP: 8},
		Scenarios: append(ql.Scenarios(), hello, labs), Commit: "abc", Phase: "warm",
		JSONPath: filepath.Join(t.TempDir(), "bench.jsonl"), Out: new(bytes.Buffer),
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, cfg.Out)
	}
	t.Logf("\n%s", cfg.Out)
	if tokens.Load() == 0 {
		t.Error("the header func was never called")
	}
	for _, name := range []string{"q01", "q02", "peer:q01", "thin-slice", AnchorHello} {
		row, ok := rep.Row(name)
		if !ok {
			t.Fatalf("no row %s", name)
		}
		if row.Value.N != 2 || row.Value.Median <= 0 || row.Errors.Total() != 0 {
			t.Errorf("%s: value %+v errors %+v", name, row.Value, row.Errors)
		}
	}
	q1, _ := rep.Row("q01")
	if q1.Reference != "peer:q01" || q1.Ratio.N != 2 || q1.Count != "ok" {
		t.Errorf("q01 row = %+v", q1)
	}
	ts, _ := rep.Row("thin-slice")
	if ts.Reference != AnchorHello || ts.Ratio.N != 2 || ts.Ratio.Median <= 0 {
		t.Errorf("thin-slice row = %+v", ts)
	}
	recs := readRecords(t, cfg.JSONPath)
	// per round: hello, thin-slice, labs, and two (peer, base) pairs
	if len(recs) != 2*7 {
		t.Fatalf("%d records, want 14", len(recs))
	}
	for _, r := range recs {
		if r.Commit != "abc" || r.Phase != "warm" || r.Seed != 1 || r.Round < 1 || r.Round > 2 {
			t.Errorf("record labels: %+v", r)
		}
		if r.Name == "labs" && (r.Unit != "res/s" || r.Count == nil || *r.Count != 7 || math.Abs(r.Value-3*r.OpsPerSec) > 1e-6*r.Value) {
			t.Errorf("labs record: %+v, want 3 resources per request and count 7", r)
		}
		if r.Name == "q01" && (r.Ratio == nil || r.Count == nil || *r.Count != 7 || r.CountCheck != "ok") {
			t.Errorf("q01 record: %+v", r)
		}
	}

	// The peer now disagrees: the run must fail, whatever the speed.
	peerTotal.Store(8)
	cfg.JSONPath = ""
	cfg.Out = nil
	rep, err = Run(context.Background(), cfg)
	if !errs.Is(err, errs.Invalid) || rep == nil || len(rep.Failures) == 0 {
		t.Fatalf("mismatched counts: err %v, report %+v", err, rep)
	}
	if q1, _ := rep.Row("q01"); q1.Count != "mismatch" {
		t.Errorf("q01 count check %q, want mismatch", q1.Count)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"unknown reference", Config{Anchors: []string{AnchorHello}, Scenarios: []Scenario{HTTPScenario{Name: "x", URL: "http://127.0.0.1:1/", Anchor: AnchorPG}}}},
		{"unknown anchor", Config{Anchors: []string{"nope"}}},
		{"anchor name", Config{Anchors: []string{AnchorHello}, Scenarios: []Scenario{HTTPScenario{Name: AnchorHello, URL: "http://127.0.0.1:1/"}}}},
		{"unconfigured anchor", Config{Scenarios: []Scenario{HTTPScenario{Name: "x", URL: "http://127.0.0.1:1/", Anchor: AnchorRedis}}}},
		{"duplicate", Config{Anchors: []string{AnchorHello}, Scenarios: []Scenario{HTTPScenario{Name: "x", URL: "http://127.0.0.1:1/"}, HTTPScenario{Name: "x", URL: "http://127.0.0.1:1/"}}}},
		{"self", Config{Anchors: []string{AnchorHello}, Scenarios: []Scenario{HTTPScenario{Name: "x", URL: "http://127.0.0.1:1/", Anchor: "x"}}}},
		{"no url", Config{Anchors: []string{AnchorHello}, Scenarios: []Scenario{HTTPScenario{Name: "x"}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Gate.Disabled = true
			if _, err := Run(context.Background(), tt.cfg); !errs.Is(err, errs.Invalid) {
				t.Fatalf("err = %v, want Invalid", err)
			}
		})
	}
}

// TestAnchorsOnRealServices runs every anchor for ~200 ms a round against the services that
// `make test` starts, in a fresh database (pgbench scale 1 to keep the fill short).
func TestAnchorsOnRealServices(t *testing.T) {
	if testing.Short() {
		t.Skip("anchors run for several seconds; skipped in -short")
	}
	dbURL := testkit.DatabaseURL(t)
	rc, prefix := testkit.Redis(t)
	s3 := testkit.S3(t)
	redisURL := os.Getenv("CONCORD_TEST_REDIS_URL")
	ctx := context.Background()

	out := new(bytes.Buffer)
	cfg := Config{
		DatabaseURL: dbURL, PGScale: 1,
		RedisURL: redisURL, RedisPrefix: prefix + "bench:",
		S3:       S3Config{Endpoint: s3.Endpoint, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, Bucket: s3.Bucket, Region: s3.Region},
		Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond, Rounds: 2,
		Gate: Gate{Disabled: true}, Out: out, JSONPath: filepath.Join(t.TempDir(), "anchors.jsonl"),
		Anchors: []string{AnchorPG, AnchorPGInsert, AnchorRedis, AnchorS3_4K, AnchorS3_64K, AnchorS3_1M, AnchorHello},
		Scenarios: []Scenario{FuncScenario{Name: "noop", Anchor: AnchorRedis, Workers: 2, NewOp: func(int) Op {
			return func(context.Context) (int64, error) { return 0, nil }
		}}},
	}
	rep, err := Run(ctx, cfg)
	t.Logf("\n%s", out)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, name := range []string{AnchorPG, AnchorPGInsert, AnchorRedis, AnchorS3_4K, AnchorS3_64K, AnchorS3_1M, AnchorHello} {
		row, ok := rep.Row(name)
		if !ok {
			t.Errorf("no row for %s", name)
			continue
		}
		if row.Value.N != 2 || row.Value.Min <= 0 || row.P50 <= 0 || row.P99 < row.P50 {
			t.Errorf("%s: value %+v p50 %v p99 %v", name, row.Value, row.P50, row.P99)
		}
		if row.Errors.Total() != 0 {
			t.Errorf("%s: errors %+v", name, row.Errors)
		}
	}
	if got := len(readRecords(t, cfg.JSONPath)); got != 2*8 {
		t.Errorf("%d JSON records, want 16 (8 targets × 2 rounds)", got)
	}

	// The anchors clean up after themselves and leave the pgbench table for the next run.
	if keys, err := rc.Keys(ctx, prefix+"bench:*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("Redis keys left under the prefix: %d (%v)", len(keys), err)
	}
	mc, err := minio.New(s3.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, ""), Region: s3.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for o := range mc.ListObjects(ctx, s3.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		n++
	}
	if n != 0 {
		t.Errorf("%d S3 objects left in the bucket", n)
	}
	var rows int
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pgbench_accounts").Scan(&rows); err != nil || rows != 100000 {
		t.Errorf("pgbench_accounts has %d rows (%v), want 100000", rows, err)
	}
	var left int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bench_inserts_%'").Scan(&left); err != nil || left != 0 {
		t.Errorf("%d insert tables left (%v)", left, err)
	}
}

func TestRunReportsServerErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer srv.Close()
	out := new(bytes.Buffer)
	rep, err := Run(context.Background(), Config{
		Duration: 50 * time.Millisecond, Warmup: -1, Gate: Gate{Disabled: true}, Out: out,
		Anchors: []string{AnchorHello}, Workers: Workers{HTTP: 2},
		Scenarios: []Scenario{HTTPScenario{Name: "broken", URL: srv.URL, Anchor: AnchorHello, Conns: 2}},
	})
	if err != nil {
		t.Fatalf("server errors are reported, not a harness failure: %v", err)
	}
	row, _ := rep.Row("broken")
	if row.Errors.NonOK == 0 || row.Errors.Total() != row.Errors.NonOK || !strings.Contains(row.FirstError, "500") {
		t.Fatalf("broken row: errors %+v first %q", row.Errors, row.FirstError)
	}
	if row.P50 != 0 || row.Value.Median != 0 {
		t.Fatalf("failed requests counted as successes: p50 %v value %v", row.P50, row.Value.Median)
	}
	if !strings.Contains(out.String(), "first error of broken") {
		t.Fatalf("table does not show the first error:\n%s", out)
	}
}

// TestDenyStatusAndFuncResources needs no services: a scenario whose success is a 404
// (a deny path) and a FuncScenario counting resources, appended to an existing JSON file.
func TestDenyStatusAndFuncResources(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/denied" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()
	var items atomic.Int64
	deny := HTTPScenario{Name: "deny", URL: srv.URL + "/denied", Status: http.StatusNotFound, Anchor: AnchorHello, Conns: 2}
	wrongDeny := HTTPScenario{Name: "allowed", URL: srv.URL + "/open", Status: http.StatusNotFound, Conns: 2}
	load := FuncScenario{Name: "load", Workers: 2, Metric: Resources, Items: &items, NewOp: func(int) Op {
		return func(ctx context.Context) (int64, error) {
			time.Sleep(time.Millisecond)
			items.Add(10)
			return 1, nil
		}
	}}
	path := filepath.Join(t.TempDir(), "run.jsonl")
	if err := os.WriteFile(path, []byte(`{"name":"earlier"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Duration: 100 * time.Millisecond, Rounds: 2, Warmup: -1, Gate: Gate{Disabled: true},
		Anchors: []string{AnchorHello}, Workers: Workers{HTTP: 4}, JSONPath: path, AppendJSON: true,
		Scenarios: []Scenario{deny, wrongDeny, load}}
	rep, err := Run(context.Background(), cfg)
	if errs.CodeOf(err) != errs.Invalid && err != nil {
		t.Fatal(err)
	}
	d, _ := rep.Row("deny")
	if d.Errors.Total() != 0 || d.Value.Median <= 0 || d.Ratio.N != 2 {
		t.Errorf("deny row %+v: a 404 is its success", d)
	}
	a, _ := rep.Row("allowed")
	if a.Errors.NonOK == 0 {
		t.Errorf("allowed row %+v: a 200 must count as a failure when 404 is expected", a)
	}
	l, _ := rep.Row("load")
	if l.Unit != "res/s" || l.Errors.Total() != 0 {
		t.Fatalf("load row %+v", l)
	}
	// Each op adds 10 resources, so resources/s is 10 × ops/s in every round.
	for _, r := range rep.Records {
		if r.Name == "load" && math.Abs(r.Value-10*r.OpsPerSec) > 0.01*r.Value {
			t.Errorf("round %d: %.0f res/s, %.0f ops/s", r.Round, r.Value, r.OpsPerSec)
		}
	}
	recs := readRecords(t, path)
	if len(recs) != len(rep.Records)+1 || recs[0].Name != "earlier" {
		t.Errorf("the JSON file has %d records, want the earlier one and %d appended", len(recs), len(rep.Records))
	}
	if _, _, err := (FuncScenario{Name: "x", Metric: Resources, NewOp: load.NewOp}).build(&runEnv{}); errs.CodeOf(err) != errs.Invalid {
		t.Errorf("resources without Items: %v", err)
	}
}

// TestColdPass needs no services: a cold pass calls Cold right before each scenario, measures
// each once without its anchor, labels the records "cold", and stops at a failing Cold.
func TestColdPass(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()
	var colds []string
	var servedAtCold []int64
	cfg := Config{Duration: 50 * time.Millisecond, Gate: Gate{Disabled: true}, Anchors: []string{AnchorHello},
		Scenarios: []Scenario{
			HTTPScenario{Name: "a", URL: srv.URL + "/a", Anchor: AnchorHello, Conns: 2},
			HTTPScenario{Name: "b", URL: srv.URL + "/b", Anchor: "a", Conns: 2},
		},
		Cold: func(_ context.Context, name string) error {
			colds = append(colds, name)
			servedAtCold = append(servedAtCold, served.Load())
			return nil
		}}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(colds, []string{"a", "b"}) || servedAtCold[0] != 0 || servedAtCold[1] == servedAtCold[0] {
		t.Fatalf("cold before %v with %v requests served; want a then b, nothing before a (no warm-up)", colds, servedAtCold)
	}
	if len(rep.Records) != 2 {
		t.Fatalf("%d records, want one per scenario and no anchor: %+v", len(rep.Records), rep.Records)
	}
	for _, r := range rep.Records {
		if r.Phase != "cold" || r.Round != 1 || r.Kind != "scenario" || r.Ratio != nil || r.Value <= 0 {
			t.Errorf("record %+v: want a cold scenario figure without a ratio", r)
		}
	}
	cfg.Cold = func(context.Context, string) error { return errors.New("restart failed") }
	if _, err := Run(context.Background(), cfg); errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("failing Cold: %v, want errs.Unavailable", err)
	}
}
