package bench

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func sleepOp(d time.Duration) Op {
	return func(ctx context.Context) (int64, error) {
		time.Sleep(d)
		return 1, nil
	}
}

func TestDriveOpenKeepsTheSchedule(t *testing.T) {
	// Capacity to spare: about rate × duration operations, each as slow as the op.
	r, err := DriveOpen(context.Background(), Open{Rate: 200, Duration: 500 * time.Millisecond, Workers: 4,
		NewOp: func(int) func(int64) Op { op := sleepOp(2 * time.Millisecond); return func(int64) Op { return op } }})
	if err != nil {
		t.Fatal(err)
	}
	if r.Ops < 90 || r.Ops > 101 || r.Errors.Total() != 0 {
		t.Fatalf("%d ops, %+v errors; want about 100 and none", r.Ops, r.Errors)
	}
	if r.Hist.Quantile(0.5) < 2*time.Millisecond {
		t.Fatalf("p50 %v is below the op's own 2 ms", r.Hist.Quantile(0.5))
	}
}

func TestDriveOpenCountsWaitingAndOverload(t *testing.T) {
	// One worker, 10 ms an op, 100 due in 100 ms: the ones that find a queue as long as
	// the workers are dropped (timeouts), and the waiting of the others counts.
	r, err := DriveOpen(context.Background(), Open{Rate: 1000, Duration: 100 * time.Millisecond, Workers: 1,
		NewOp: func(int) func(int64) Op { op := sleepOp(10 * time.Millisecond); return func(int64) Op { return op } }})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors.Timeout < 50 || r.FirstErr == nil {
		t.Fatalf("%d dropped (%v); want most of the 100", r.Errors.Timeout, r.FirstErr)
	}
	if r.Ops < 2 || r.Hist.Max() < 15*time.Millisecond {
		t.Fatalf("%d ops, max latency %v: waiting for the worker is not counted", r.Ops, r.Hist.Max())
	}
}

func TestRunMixSharesByWeight(t *testing.T) {
	var a, b atomic.Int64
	part := func(name string, n *atomic.Int64) Scenario {
		return FuncScenario{Name: name, NewOp: func(int) Op {
			return func(context.Context) (int64, error) { n.Add(1); time.Sleep(time.Millisecond); return 1, nil }
		}}
	}
	var out bytes.Buffer
	res, err := RunMix(context.Background(), Mix{Parts: []MixPart{{part("a", &a), 3}, {part("b", &b), 1}},
		Workers: 4, Duration: 300 * time.Millisecond, Seed: 7}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if res.MaxRate <= 0 || res.Rate != res.MaxRate/2 || res.Open.Ops == 0 {
		t.Fatalf("max %.0f, rate %.0f, open ops %d", res.MaxRate, res.Rate, res.Open.Ops)
	}
	if share := float64(a.Load()) / float64(a.Load()+b.Load()); share < 0.7 || share > 0.8 {
		t.Fatalf("part a had %.2f of the operations, want 0.75", share)
	}
	if k := res.Open.ByKind; len(k) != 2 || k[0].Count() == 0 || k[0].Count()+k[1].Count() != uint64(res.Open.Ops) {
		t.Fatalf("latency by part does not add up to the %d operations", res.Open.Ops)
	}
	if !strings.Contains(out.String(), "p99/p50") || !strings.Contains(out.String(), "  a ") {
		t.Fatalf("no summary line: %q", out.String())
	}
	failing := FuncScenario{Name: "f", NewOp: func(int) Op {
		return func(context.Context) (int64, error) { return 0, &CheckError{Err: context.Canceled} }
	}}
	if _, err := RunMix(context.Background(), Mix{Parts: []MixPart{{failing, 1}}, Workers: 2, Duration: 50 * time.Millisecond}, nil); err == nil {
		t.Fatal("a mix whose operations fail passed")
	}
}
