package exchange

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/records"
)

// BenchmarkRetrieve is benchmarks.md S5: consent-gated GET [base]/Binary/{id} through the
// exchange handler (records.Read with in-memory directives standing in for a cached
// decision, an audit event appended to the real chained log, then the object streamed
// from S3 through the SHA-256 check) against the raw signed S3 GET anchor
// (documents.BenchGet) on the same objects, same concurrency, same duration. Run with
//
//	go test ./exchange -run '^$' -bench Retrieve -benchtime 1x
//
// Each sub-benchmark runs once per b.N iteration for benchDur per side and reports ops/s,
// MB/s and p50 of both sides and their ratio.
func BenchmarkRetrieve(b *testing.B) {
	const workers, objects = 8, 8
	benchDur := 3 * time.Second
	if testing.Short() {
		benchDur = 500 * time.Millisecond
	}
	e := newDocEnvAudit(b, func(pool *pgxpool.Pool) records.AuditLog {
		l, err := audit.New(context.Background(), pool, audit.Config{CheckpointEvery: -1, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		return l
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * workers}}
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			var ids, keys []string
			for i := range objects {
				data := bytes.Repeat([]byte(fmt.Sprintf("note %d line. ", i)), size/10+1)[:size]
				ids = append(ids, e.store(b, "text/plain", data))
				keys = append(keys, documents.KeyOf(data))
			}
			for range b.N {
				raw := documents.BenchGet(b.Context(), e.srv.Documents.Blobs(), keys, workers, benchDur)
				gated := gatedGets(b, client, e.http.URL, ids, e.a.ID, workers, benchDur)
				b.ReportMetric(raw.OpsPerS, "raw-ops/s")
				b.ReportMetric(gated.OpsPerS, "gated-ops/s")
				b.ReportMetric(gated.OpsPerS/raw.OpsPerS, "ops-ratio")
				b.ReportMetric(gated.BytesPerS/raw.BytesPerS, "bytes-ratio")
				b.ReportMetric(float64(raw.P50.Microseconds())/1000, "raw-p50-ms")
				b.ReportMetric(float64(gated.P50.Microseconds())/1000, "gated-p50-ms")
				if raw.Errors+gated.Errors > 0 {
					b.Errorf("errors: raw %d, gated %d", raw.Errors, gated.Errors)
				}
			}
		})
	}
}

// gatedGets is BenchGet's closed loop over HTTP: workers GET the Binary ids in turn as
// member, each reading the whole body.
func gatedGets(b *testing.B, client *http.Client, base string, ids []string, member string, workers int, dur time.Duration) documents.BenchResult {
	ctx, cancel := context.WithTimeout(b.Context(), dur)
	defer cancel()
	var mu sync.Mutex
	var res documents.BenchResult
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			var mine []time.Duration
			var ops, errs, n int64
			for i := w; ctx.Err() == nil; i++ {
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/fhir/Binary/"+ids[i%len(ids)], nil)
				req.Header.Set("X-Test-Member", member)
				req.Header.Set("X-Test-Purpose", consent.PurposeTreatment)
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs++
					}
					continue
				}
				k, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					if ctx.Err() == nil {
						errs++
					}
					continue
				}
				ops++
				n += k
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			res.Ops += ops
			res.Errors += errs
			res.Bytes += n
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.OpsPerS = float64(res.Ops) / res.Elapsed.Seconds()
	res.BytesPerS = float64(res.Bytes) / res.Elapsed.Seconds()
	slices.Sort(lat)
	if len(lat) > 0 {
		res.P50, res.P95, res.P99 = lat[len(lat)/2], lat[len(lat)*95/100], lat[len(lat)*99/100]
	}
	return res
}
