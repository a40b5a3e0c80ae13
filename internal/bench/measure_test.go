package bench

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/testkit"
)

var measureFor = flag.Duration("anchors", 0, "measure every anchor at pgbench scale 10 for this long per round (e.g. -args -anchors=5s) and print the table")

// TestMeasureAnchors is the manual full-size anchor run: 3 gated rounds of every anchor in a
// fresh database filled at scale 10. It only runs when asked with -anchors.
func TestMeasureAnchors(t *testing.T) {
	if *measureFor == 0 {
		t.Skip("manual measurement: go test ./internal/bench -run MeasureAnchors -v -args -anchors=5s")
	}
	dbURL := testkit.DatabaseURL(t)
	_, prefix := testkit.Redis(t)
	s3 := testkit.S3(t)
	out := filepath.Join(t.TempDir(), "anchors.jsonl")
	start := time.Now()
	_, err := Run(context.Background(), Config{
		DatabaseURL: dbURL, RedisURL: os.Getenv("CONCORD_TEST_REDIS_URL"), RedisPrefix: prefix + "bench:",
		S3:       S3Config{Endpoint: s3.Endpoint, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, Bucket: s3.Bucket, Region: s3.Region},
		Duration: *measureFor, Rounds: 3, Out: os.Stdout, JSONPath: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("took %v; records in %s", time.Since(start).Round(time.Second), out)
}
