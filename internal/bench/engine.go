package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// Op performs one operation and returns the number of payload bytes it moved. A nil error
// is a success; see Classify for how failures are counted. An Op belongs to one worker and
// is never called concurrently with itself, so it may reuse buffers between calls.
type Op func(ctx context.Context) (int64, error)

// Load describes one closed-loop measurement: Workers goroutines each call their own Op
// back to back until Duration has passed or MaxOps operations have started, whichever
// comes first. At least one of Duration and MaxOps must be set; both bound the run.
type Load struct {
	Workers  int
	Duration time.Duration // 0 with MaxOps set: at most MaxOpsDuration
	MaxOps   int64         // 0: no count bound
	// Grace bounds an operation still in flight when Duration ends: its context is cancelled
	// Grace after the end (default 5 s), so the whole Drive ends by Duration + Grace.
	Grace time.Duration
	// NewOp returns worker w's Op; it is called once per worker before the clock starts.
	NewOp func(w int) Op
}

// MaxOpsDuration bounds in time a Load that gives only MaxOps.
const MaxOpsDuration = time.Minute

// Errors counts failed operations by kind. Latency percentiles count successes only.
type Errors struct {
	NonOK     int64 `json:"non_2xx"`   // the server answered with a failure status
	Timeout   int64 `json:"timeouts"`  // a deadline passed before the answer
	Transport int64 `json:"transport"` // connection, protocol or client errors
	Check     int64 `json:"check"`     // the answer arrived but was wrong (body, size, count)
}

// Total returns the number of failed operations.
func (e Errors) Total() int64 { return e.NonOK + e.Timeout + e.Transport + e.Check }

func (e *Errors) add(o Errors) {
	e.NonOK += o.NonOK
	e.Timeout += o.Timeout
	e.Transport += o.Transport
	e.Check += o.Check
}

// StatusError is the failure of a request that the server answered with a non-2xx status.
type StatusError struct{ Status int }

func (e *StatusError) Error() string { return fmt.Sprintf("bench: status %d", e.Status) }

// CheckError is the failure of an answer that arrived but was wrong.
type CheckError struct{ Err error }

func (e *CheckError) Error() string { return "bench: check: " + e.Err.Error() }
func (e *CheckError) Unwrap() error { return e.Err }

// ErrorKind names how Classify counted an error.
type ErrorKind uint8

// Kinds of failure, as counted in Errors.
const (
	KindTransport ErrorKind = iota
	KindNonOK
	KindTimeout
	KindCheck
)

// Classify says which Errors field err belongs to: *StatusError is NonOK, *CheckError is
// Check, a context deadline or a net.Error reporting Timeout is Timeout, anything else is
// Transport.
func Classify(err error) ErrorKind {
	var se *StatusError
	var ce *CheckError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return KindNonOK
	case errors.As(err, &ce):
		return KindCheck
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return KindTimeout
	}
	return KindTransport
}

// Result is what one Drive measured.
type Result struct {
	Workers int
	Ops     int64         // successful operations
	Bytes   int64         // payload bytes moved by successful operations
	Elapsed time.Duration // from the start until the last worker stopped
	Errors  Errors
	Hist    Histogram // latency of successful operations
	// FirstErr is the first error seen, kept for diagnosis (it may carry server text; do
	// not show it to end users).
	FirstErr error
}

// OpsPerSec returns successful operations per second.
func (r *Result) OpsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// BytesPerSec returns payload bytes of successful operations per second.
func (r *Result) BytesPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) / r.Elapsed.Seconds()
}

type workerStats struct {
	hist   Histogram
	ops    int64
	bytes  int64
	errs   Errors
	first  error
	_      [64]byte // keep neighbouring workers' hot counters off one cache line
	worker int
}

// Drive runs l and returns what it measured. It returns errs.Invalid for a Load without
// workers, without an Op or without any bound, and the context's error if ctx ends first.
func Drive(ctx context.Context, l Load) (*Result, error) {
	const op = "bench.Drive"
	if l.Workers <= 0 || l.NewOp == nil {
		return nil, errs.E(op, errs.Invalid, "load needs workers and an op")
	}
	if l.Duration <= 0 && l.MaxOps <= 0 {
		return nil, errs.E(op, errs.Invalid, "load needs a duration or a maximum count")
	}
	grace := l.Grace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	if l.Duration <= 0 {
		l.Duration = MaxOpsDuration
	}
	ops := make([]Op, l.Workers)
	for w := range ops {
		ops[w] = l.NewOp(w)
	}
	stats := make([]*workerStats, l.Workers)
	for w := range stats {
		stats[w] = &workerStats{worker: w}
	}

	var started atomic.Int64
	start := time.Now()
	stopAt := start.Add(l.Duration)
	opCtx, cancel := context.WithDeadline(ctx, stopAt.Add(grace))
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < l.Workers; w++ {
		wg.Add(1)
		go func(s *workerStats, do Op) {
			defer wg.Done()
			for {
				if opCtx.Err() != nil {
					return
				}
				if l.MaxOps > 0 && started.Add(1) > l.MaxOps {
					return
				}
				t0 := time.Now()
				if !t0.Before(stopAt) {
					return
				}
				n, err := do(opCtx)
				d := time.Since(t0)
				if err == nil {
					s.hist.Record(d)
					s.ops++
					s.bytes += n
					continue
				}
				if opCtx.Err() != nil && ctx.Err() != nil {
					return // the caller gave up: not the system's failure
				}
				s.count(err)
			}
		}(stats[w], ops[w])
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &Result{Workers: l.Workers, Elapsed: elapsed}
	for _, s := range stats {
		r.add(s)
	}
	return r, nil
}

// add sums one worker's figures into r; r keeps the first error seen.
func (r *Result) add(s *workerStats) {
	r.Hist.Merge(&s.hist)
	r.Ops += s.ops
	r.Bytes += s.bytes
	r.Errors.add(s.errs)
	if r.FirstErr == nil {
		r.FirstErr = s.first
	}
}
