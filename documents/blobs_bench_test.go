package documents_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/documents/blobstest"
)

// putObjects stores n objects of size bytes and returns their keys.
func putObjects(t testing.TB, b documents.Blobs, n, size int) []string {
	keys := make([]string, n)
	for i := range n {
		data, key := blobstest.Content(uint64(size*1000+i), size)
		if err := b.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), "application/octet-stream"); err != nil {
			t.Fatalf("Put: %v", err)
		}
		keys[i] = key
	}
	return keys
}

// TestBenchGet checks BenchGet's accounting on a short run, and prints the raw signed-GET
// anchor figures. CONCORD_TEST_BENCH_SECONDS lengthens each run (default 0.3 s).
func TestBenchGet(t *testing.T) {
	b := newS3(t)
	dur := 300 * time.Millisecond
	if s, err := strconv.ParseFloat(os.Getenv("CONCORD_TEST_BENCH_SECONDS"), 64); err == nil && s > 0 {
		dur = time.Duration(s * float64(time.Second))
	}
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		keys := putObjects(t, b, 8, size)
		r := documents.BenchGet(t.Context(), b, keys, 8, dur)
		t.Logf("raw signed GET %7d B, 8 workers, %v: %8.0f ops/s %7.1f MB/s p50 %v p95 %v p99 %v errors %d",
			size, dur, r.OpsPerS, r.BytesPerS/1e6, r.P50, r.P95, r.P99, r.Errors)
		if r.Ops == 0 || r.Errors != 0 {
			t.Errorf("%d B: %d ops, %d errors", size, r.Ops, r.Errors)
		}
		if r.Bytes != r.Ops*int64(size) {
			t.Errorf("%d B: %d bytes for %d ops", size, r.Bytes, r.Ops)
		}
		if !(r.P50 > 0 && r.P50 <= r.P95 && r.P95 <= r.P99) {
			t.Errorf("%d B: percentiles out of order: %v %v %v", size, r.P50, r.P95, r.P99)
		}
		if r.Elapsed < dur || r.Elapsed > dur+5*time.Second {
			t.Errorf("%d B: ran %v for a %v run", size, r.Elapsed, dur)
		}
	}
	// A missing key counts as an error, never as an op.
	_, missing := blobstest.Content(999, 3)
	if r := documents.BenchGet(t.Context(), b, []string{missing}, 2, 100*time.Millisecond); r.Ops != 0 || r.Errors == 0 {
		t.Errorf("missing key: %d ops, %d errors; want 0 ops and some errors", r.Ops, r.Errors)
	}
}

// BenchmarkS3Get is the raw signed GET through S3Blobs, one object size per sub-benchmark.
func BenchmarkS3Get(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			blobs := newS3B(b)
			keys := putObjects(b, blobs, 8, size)
			b.SetBytes(int64(size))
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					rc, _, err := blobs.Get(b.Context(), keys[i%len(keys)], nil)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, rc); err != nil {
						b.Fatal(err)
					}
					rc.Close()
					i++
				}
			})
		})
	}
}
