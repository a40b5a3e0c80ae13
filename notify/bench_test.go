package notify_test

import (
	"context"
	"testing"
	"time"
)

// BenchmarkDispatch measures end-to-end delivery: b.N admissions committed to the outbox,
// then fanned out (MPI and roster join, a consent decision and an audit event for the
// recipient) and POSTed to one local receiver, until every one is delivered. One
// subscriber; the dispatcher's defaults (batch 32, sequential sends).
//
//	go test ./notify -run XXX -bench Dispatch -benchtime 500x
func BenchmarkDispatch(b *testing.B) {
	e := newEnv(b)
	r := newReceiver(b, 0)
	d := e.dispatcher(r.addr())
	_, pa, pb := e.person(b, "mrn-bench")
	sub := e.subscribe(b, "b", pb, r)
	ctx := context.Background()
	if _, err := d.RunOnce(ctx); err != nil {
		b.Fatal(err)
	}
	if s, _ := e.status(b, sub); s != "active" {
		b.Fatalf("subscription %s", s)
	}
	for range b.N {
		e.admit(b, pa)
	}
	b.ResetTimer()
	start := time.Now()
	for {
		if _, err := d.RunOnce(ctx); err != nil {
			b.Fatal(err)
		}
		if _, _, ev := r.snapshot(); len(ev) >= b.N {
			break
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
