package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// Open describes an open-model measurement (benchmarks.md "mix", k6's
// constant-arrival-rate): operations are due on a fixed schedule, Rate per second, whatever
// earlier ones are doing, and each is taken by the first free one of Workers. Latency counts
// from the moment an operation was due, so time spent waiting for a worker counts (no
// coordinated omission). An operation due while Workers more are already waiting is not
// started and counts as a timeout: the system could not keep up.
type Open struct {
	Rate     float64 // operations per second
	Duration time.Duration
	Workers  int
	Grace    time.Duration // see Load.Grace
	// NewOp returns, for worker w, the Op that performs the i-th operation due (an Op
	// stays with its worker, see Op). It is called once per worker before the clock starts.
	NewOp func(w int) func(i int64) Op
	// Kinds and Kind, when set, sort operations into kinds (the i-th is of kind Kind(i),
	// 0 <= Kind(i) < Kinds) whose latencies DriveOpen also reports apart (OpenResult.ByKind).
	Kinds int
	Kind  func(i int64) int
}

// OpenResult is what DriveOpen measured: the whole, and by kind when Open.Kinds was set.
type OpenResult struct {
	Result
	ByKind []Histogram
}

// DriveOpen runs o and returns what it measured. It returns errs.Invalid for an Open
// without a rate, duration, workers or op, and the context's error if ctx ends first.
func DriveOpen(ctx context.Context, o Open) (*OpenResult, error) {
	const op = "bench.DriveOpen"
	if o.Rate <= 0 || o.Duration <= 0 || o.Workers <= 0 || o.NewOp == nil || (o.Kinds > 0) != (o.Kind != nil) {
		return nil, errs.E(op, errs.Invalid, "an open load needs a rate, a duration, workers and an op")
	}
	grace := o.Grace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	type job struct {
		i   int64
		due time.Time
	}
	queue := make(chan job, o.Workers)
	stats := make([]*workerStats, o.Workers)
	byKind := make([][]Histogram, o.Workers)
	pick := make([]func(int64) Op, o.Workers)
	for w := range stats {
		stats[w], byKind[w], pick[w] = &workerStats{worker: w}, make([]Histogram, o.Kinds), o.NewOp(w)
	}
	start := time.Now()
	stopAt := start.Add(o.Duration)
	opCtx, cancel := context.WithDeadline(ctx, stopAt.Add(grace))
	defer cancel()
	var wg sync.WaitGroup
	for w := range o.Workers {
		wg.Add(1)
		go func(s *workerStats, kinds []Histogram, pick func(int64) Op) {
			defer wg.Done()
			for j := range queue {
				if opCtx.Err() != nil {
					continue // drain: the run is over
				}
				n, err := pick(j.i)(opCtx)
				d := time.Since(j.due)
				if err == nil {
					s.hist.Record(d)
					if o.Kind != nil {
						kinds[o.Kind(j.i)].Record(d)
					}
					s.ops++
					s.bytes += n
					continue
				}
				if opCtx.Err() != nil && ctx.Err() != nil {
					continue
				}
				s.count(err)
			}
		}(stats[w], byKind[w], pick[w])
	}
	var dropped int64
	interval := time.Duration(float64(time.Second) / o.Rate)
	for i := int64(0); ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if !due.Before(stopAt) || ctx.Err() != nil {
			break
		}
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait) // late wake-ups are caught up: due times stay on schedule
		}
		select {
		case queue <- job{i: i, due: due}:
		default:
			dropped++
		}
	}
	close(queue)
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &OpenResult{Result: Result{Workers: o.Workers, Elapsed: elapsed}, ByKind: make([]Histogram, o.Kinds)}
	for w, s := range stats {
		for k := range r.ByKind {
			r.ByKind[k].Merge(&byKind[w][k])
		}
		r.add(s)
	}
	if dropped > 0 {
		r.Errors.Timeout += dropped
		if r.FirstErr == nil {
			r.FirstErr = fmt.Errorf("bench: %d operations found %d already waiting for a worker", dropped, o.Workers)
		}
	}
	return r, nil
}

// count records a failed operation in s.
func (s *workerStats) count(err error) {
	if s.first == nil {
		s.first = err
	}
	switch Classify(err) {
	case KindNonOK:
		s.errs.NonOK++
	case KindTimeout:
		s.errs.Timeout++
	case KindCheck:
		s.errs.Check++
	default:
		s.errs.Transport++
	}
}

// MixPart is one scenario of a mix and its share of the operations.
type MixPart struct {
	Scenario Scenario
	Weight   int
}

// Mix is benchmarks.md's "mix": the parts' operations interleaved by weight (a seeded
// choice per operation), first closed-loop with Workers workers to find the maximum rate,
// then open-model at Load (a fraction) of that rate, for Duration each.
type Mix struct {
	Parts    []MixPart
	Workers  int
	Load     float64 // fraction of the closed-loop maximum; default 0.5
	Duration time.Duration
	Timeout  time.Duration // per operation; default 10 s
	Seed     uint64
}

// MixResult is what RunMix measured.
type MixResult struct {
	MaxRate float64 // closed-loop operations per second
	Rate    float64 // the open model's arrival rate
	Open    *OpenResult
}

// RunMix measures m and writes one line about it to out (nil: none). It returns
// errs.Invalid for a mix without parts or weights, and errs.Invalid with the result when an
// operation failed in either phase.
func RunMix(ctx context.Context, m Mix, out io.Writer) (*MixResult, error) {
	const op = "bench.RunMix"
	total := 0
	for _, p := range m.Parts {
		if p.Weight < 0 {
			return nil, errs.E(op, errs.Invalid, "negative weight")
		}
		total += p.Weight
	}
	if total == 0 || m.Workers <= 0 || m.Duration <= 0 {
		return nil, errs.E(op, errs.Invalid, "a mix needs parts with weight, workers and a duration")
	}
	if m.Load <= 0 {
		m.Load = 0.5
	}
	if m.Timeout <= 0 {
		m.Timeout = 10 * time.Second
	}
	env := &runEnv{timeout: m.Timeout}
	targets := make([]*target, len(m.Parts))
	for i, p := range m.Parts {
		t, cleanup, err := p.Scenario.build(env)
		if err != nil {
			return nil, errs.E(op, err)
		}
		defer cleanup()
		targets[i] = t
	}
	// kind maps the i-th operation to a part: the same sequence in both phases.
	kind := func(i int64) int {
		r := rand.New(rand.NewPCG(m.Seed, uint64(i))).IntN(total)
		for k, p := range m.Parts {
			if r < p.Weight {
				return k
			}
			r -= p.Weight
		}
		return len(m.Parts) - 1
	}
	opsOf := func(w int) []Op {
		ops := make([]Op, len(targets))
		for k, t := range targets {
			ops[k] = t.newOp(w)
		}
		return ops
	}
	var seq atomic.Int64 // the operations started so far
	closed, err := Drive(ctx, Load{Workers: m.Workers, Duration: m.Duration, Grace: m.Timeout, NewOp: func(w int) Op {
		ops := opsOf(w)
		return func(ctx context.Context) (int64, error) { return ops[kind(seq.Add(1)-1)](ctx) }
	}})
	if err != nil {
		return nil, errs.E(op, err)
	}
	res := &MixResult{MaxRate: closed.OpsPerSec()}
	if closed.Errors.Total() > 0 {
		return res, errs.E(op, errs.Invalid, "mix: closed-loop operations failed", closed.FirstErr)
	}
	res.Rate = m.Load * res.MaxRate
	// Four times the closed loop's workers: enough that a worker is free for every
	// operation due at half the rate they sustained, so waiting shows queueing in the
	// server rather than a shortage of clients.
	res.Open, err = DriveOpen(ctx, Open{Rate: res.Rate, Duration: m.Duration, Workers: 4 * m.Workers, Grace: m.Timeout,
		Kinds: len(m.Parts), Kind: kind,
		NewOp: func(w int) func(int64) Op {
			ops := opsOf(w)
			return func(i int64) Op { return ops[kind(i)] }
		}})
	if err != nil {
		return res, errs.E(op, err)
	}
	o := res.Open
	p50, p99 := o.Hist.Quantile(0.50), o.Hist.Quantile(0.99)
	if out != nil {
		ratio := 0.0
		if p50 > 0 {
			ratio = float64(p99) / float64(p50)
		}
		fmt.Fprintf(out, "mix: closed-loop max %.0f ops/s with %d workers; open model at %.0f ops/s (%.0f%%): %.0f ops/s done, p50 %s, p95 %s, p99 %s, p99/p50 %.1f (goal <= 3), errors %d\n",
			res.MaxRate, m.Workers, res.Rate, 100*m.Load, o.OpsPerSec(), dur(p50), dur(o.Hist.Quantile(0.95)), dur(p99), ratio, o.Errors.Total())
		for k, p := range m.Parts {
			h := &o.ByKind[k]
			if h.Count() == 0 {
				continue
			}
			fmt.Fprintf(out, "  %-22s %6d ops  p50 %-8s p99 %-8s p99/p50 %.1f\n", p.Scenario.ScenarioName(), h.Count(),
				dur(h.Quantile(0.5)), dur(h.Quantile(0.99)), float64(h.Quantile(0.99))/float64(max(h.Quantile(0.5), 1)))
		}
	}
	if o.Errors.Total() > 0 {
		return res, errs.E(op, errs.Invalid, "mix: open-model operations failed", o.FirstErr)
	}
	return res, nil
}
