package audit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
)

// Two Logs on one database are two processes: each one's remembered chain head goes stale
// with every commit of the other, and AppendTx moves it too. Every event must still land
// exactly once on one linear chain.
func TestAppendWithStaleHeadFromOtherWriters(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	a := newLog(t, pool, audit.Config{CheckpointEvery: -1, MaxWait: time.Microsecond, MaxInFlight: 4})
	b := newLog(t, pool, audit.Config{CheckpointEvery: -1, MaxWait: time.Microsecond, MaxInFlight: 1})
	const each = 60
	var wg sync.WaitGroup
	errc := make(chan error, 3*each)
	// Several appenders per Log, so a keeps batches in flight behind each other and a stale
	// head fails a whole train of them.
	for w, l := range []*audit.Log{a, b} {
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < each; i += 4 {
					errc <- l.Append(ctx, ev(w*10000+i))
				}
			}()
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < each; i++ {
			errc <- db.InTx(ctx, pool, func(tx db.Querier) error { return a.AppendTx(ctx, tx, ev(50000+i)) })
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	checkChain(t, pool, 3*each)
	// Strictly alternating writers: every Append starts from a stale head.
	for i := 0; i < 10; i++ {
		if err := a.Append(ctx, ev(70000+i)); err != nil {
			t.Fatal(err)
		}
		if err := b.Append(ctx, ev(80000+i)); err != nil {
			t.Fatal(err)
		}
	}
	checkChain(t, pool, 3*each+20)
	var reqs int
	if err := pool.QueryRow(ctx, "SELECT count(DISTINCT request_id) FROM audit_events").Scan(&reqs); err != nil || reqs != 3*each+20 {
		t.Fatalf("distinct request ids = %d, %v; want %d", reqs, err, 3*each+20)
	}
}

// An event's columns must come back exactly as appended, including an empty resource list
// and several resources.
func TestAppendKeepsColumns(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	l := newLog(t, pool, audit.Config{CheckpointEvery: -1})
	e := ev(1)
	e.Resources = nil
	e2 := ev(2)
	e2.Resources = append(e2.Resources, audit.Resource{Type: "Patient", ID: "p-1"}, audit.Resource{Type: "Encounter", ID: "e.2"}, audit.Resource{Type: "Binary", ID: `q"b\\c,{d} NULL`})
	e2.BreakGlass, e2.ShareLink, e2.Consent, e2.ConsentVersion, e2.Query = true, true, "c-9", 7, "code=abc"
	for _, x := range []audit.Event{e, e2} {
		if err := l.Append(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	checkChain(t, pool, 2) // Verify checks every column against the hashed encoding
	var n0, n2 int
	if err := pool.QueryRow(ctx, "SELECT cardinality(resources) FROM audit_events WHERE request_id = $1", e.RequestID).Scan(&n0); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, "SELECT cardinality(resources) FROM audit_events WHERE request_id = $1", e2.RequestID).Scan(&n2); err != nil {
		t.Fatal(err)
	}
	if n0 != 0 || n2 != 4 {
		t.Fatalf("resources: %d and %d; want 0 and 4", n0, n2)
	}
}

// BenchmarkAppendSerial measures one appender's Append latency (no company to wait for), the
// round trips of one group commit, without a MaxWait (the default) and with one:
//
//	go test -run XXX -bench AppendSerial -benchtime 2000x ./audit
func BenchmarkAppendSerial(b *testing.B) {
	for _, wait := range []time.Duration{0, 200 * time.Microsecond} {
		b.Run(fmt.Sprintf("maxwait=%v", wait), func(b *testing.B) {
			pool := testkit.DB(b)
			l := newLog(b, pool, audit.Config{CheckpointEvery: -1, MaxWait: wait})
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := l.Append(ctx, ev(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendInFlight compares batches in flight at 16 appenders, A-B within one run:
//
//	go test -run XXX -bench AppendInFlight -benchtime 3000x ./audit
func BenchmarkAppendInFlight(b *testing.B) {
	for _, k := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("inflight=%d", k), func(b *testing.B) {
			pool := testkit.DB(b)
			l := newLog(b, pool, audit.Config{CheckpointEvery: -1, MaxInFlight: k})
			ctx := context.Background()
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := 0; w < 16; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < b.N; i += 16 {
						if err := l.Append(ctx, ev(i)); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
