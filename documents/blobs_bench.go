package documents

import (
	"context"
	"io"
	"slices"
	"sync"
	"time"
)

// BenchResult is one closed-loop load run.
type BenchResult struct {
	Ops           int64         // completed GETs, whole body read
	Errors        int64         // failed GETs (not in the latencies)
	Bytes         int64         // body bytes read by completed GETs
	Elapsed       time.Duration // wall time of the run
	OpsPerS       float64
	BytesPerS     float64
	P50, P95, P99 time.Duration // of completed GETs, request to last byte
}

// maxSamples bounds the latencies kept per worker.
const maxSamples = 1 << 20

// BenchGet runs workers goroutines that GET keys in turn from b, each reading the whole body
// into io.Discard, for dur or until ctx is done. It is the raw signed-GET anchor of
// benchmarks.md when b is an *S3Blobs (minio-go signs every request). keys must exist.
func BenchGet(ctx context.Context, b Blobs, keys []string, workers int, dur time.Duration) BenchResult {
	if workers < 1 {
		workers = 1
	}
	if len(keys) == 0 {
		return BenchResult{}
	}
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	type tally struct {
		ops, errs, bytes int64
		lat              []time.Duration
	}
	tallies := make([]tally, workers)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			t := &tallies[w]
			buf := make([]byte, 32<<10)
			for i := w; ctx.Err() == nil; i++ {
				t0 := time.Now()
				rc, _, err := b.Get(ctx, keys[i%len(keys)], nil)
				if err != nil {
					if ctx.Err() == nil {
						t.errs++
					}
					continue
				}
				n, err := io.CopyBuffer(io.Discard, rc, buf)
				rc.Close()
				if err != nil {
					if ctx.Err() == nil {
						t.errs++
					}
					continue
				}
				t.ops++
				t.bytes += n
				if len(t.lat) < maxSamples {
					t.lat = append(t.lat, time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	r := BenchResult{Elapsed: time.Since(start)}
	var lat []time.Duration
	for _, t := range tallies {
		r.Ops += t.ops
		r.Errors += t.errs
		r.Bytes += t.bytes
		lat = append(lat, t.lat...)
	}
	if s := r.Elapsed.Seconds(); s > 0 {
		r.OpsPerS = float64(r.Ops) / s
		r.BytesPerS = float64(r.Bytes) / s
	}
	slices.Sort(lat)
	r.P50, r.P95, r.P99 = percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)
	return r
}

// percentile returns the p-th percentile (nearest rank) of sorted latencies, 0 when empty.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100 // ceil(n*p/100), 1-based rank
	return sorted[max(i, 1)-1]
}
