package httpx

import (
	"bufio"
	"cmp"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

// budgetStep is how much more a body is charged at a time as it is read.
const budgetStep = 64 << 10

// BodyBudget bounds the memory that request bodies hold at once. Handlers read a FHIR or
// upload body whole (up to the body limit each), so without a bound a few dozen concurrent
// large bodies would take the process's memory.
//
// A body is charged as it is read, not as it is declared. Its first small bytes are read
// uncharged, as a small body's are; past them, before a read goes beyond what its request
// has been charged, the request is charged one step (64 KiB) more, the first step covering
// the bytes already read, waiting for it when the budget is spent. So a connection that
// declares a large Content-Length and sends nothing holds nothing, and the bytes read from
// the bodies being charged never exceed the budget. A request is charged at most its
// Content-Length, and at most the per-request limit; bytes past the limit are not charged
// (the body limit in front ends the body there). Its charge comes back when its handler
// returns, by panic too.
//
// Bodies of at most the small size pass free and never wait: one of a known length is not
// looked at, and one of unknown length (chunked) is read uncharged up to small+1 bytes,
// which show whether it is larger. A few clients trickling large bodies can hold the
// budget, and must not hold up every form post and ordinary FHIR write with it.
//
// Budget goes to waiting requests in arrival order: while the earliest-arrived one waits,
// no later one is charged more, so a large body is not starved by smaller ones. A request
// waits at most the Middleware's wait in all. Its body's read then fails with
// errs.Unavailable, and so it does at once when every request holding budget waits for
// more (none could finish and give any back): the last to arrive of them is refused, so the
// earlier ones can go on. Whatever the handler makes of that failed read, the client gets
// 503 with Retry-After, unless the handler had already begun its response.
type BodyBudget struct {
	mu      sync.Mutex
	free    int64
	max     int64 // the per-request limit: the most one request is charged
	small   int64 // a body up to this passes free
	step    int64 // how much more a body is charged at a time
	arrived uint64
	waiters []*budgetAccount // in arrival order (ticket)
	holders int              // accounts with a charge
	waiting int              // of the holders, those in waiters
}

// budgetAccount is what one request is charged. Its fields are guarded by the budget's mu,
// but for two that the request's reader (the one goroutine that calls acquire for it) may
// touch without: left, which only that reader uses, and held, which it reads; held changes
// only while that reader is inside acquire.
type budgetAccount struct {
	ticket  uint64        // arrival order
	left    time.Duration // how long it may still wait: the reader's own
	held    int64         // charged
	closed  bool          // released: charged no more
	want    int64         // while queued: how much more
	queued  bool          // in waiters
	granted bool          // the last acquire charged want
	ready   chan struct{} // closed when the last acquire is decided
}

// NewBodyBudget returns a budget of total bytes, charging any one request at most
// perRequest (the body limit) and bodies of up to small bytes nothing. total is raised to
// perRequest when smaller, so that one request of the largest size can always be admitted.
func NewBodyBudget(total, perRequest, small int64) *BodyBudget {
	return &BodyBudget{free: max(total, perRequest), max: perRequest, small: small, step: budgetStep}
}

// open returns an account for a request arriving now, which may wait up to wait in all.
func (b *BodyBudget) open(wait time.Duration) *budgetAccount {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.arrived++
	return &budgetAccount{ticket: b.arrived, left: wait}
}

// acquire charges a n bytes more, waiting behind the accounts that arrived before it for
// at most a.left, which it reduces by the time it waited. It reports whether it charged
// them: it does not when ctx ends or a.left runs out first, when a is refused to end a
// standstill (see grantLocked), or when a was released.
func (b *BodyBudget) acquire(ctx context.Context, a *budgetAccount, n int64) bool {
	b.mu.Lock()
	if a.closed {
		b.mu.Unlock()
		return false
	}
	a.want, a.granted, a.ready = n, false, make(chan struct{})
	i, _ := slices.BinarySearchFunc(b.waiters, a.ticket, func(w *budgetAccount, t uint64) int { return cmp.Compare(w.ticket, t) })
	b.waiters = slices.Insert(b.waiters, i, a)
	a.queued = true
	if a.held > 0 {
		b.waiting++
	}
	b.grantLocked()
	ready := a.ready
	b.mu.Unlock()

	select {
	case <-ready:
		return a.granted // written before ready closed
	default:
	}
	start := time.Now()
	timer := time.NewTimer(a.left)
	defer timer.Stop()
	defer func() { a.left = max(0, a.left-time.Since(start)) }()
	select {
	case <-ready:
		return a.granted
	case <-ctx.Done():
	case <-timer.C:
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.queued {
		b.dequeueLocked(a)
		b.grantLocked() // a waiter leaving may let later ones in, or leave a standstill
	}
	return a.granted // charged meanwhile: keep it
}

// dequeueLocked removes a from the waiters, undecided. b.mu must be held.
func (b *BodyBudget) dequeueLocked(a *budgetAccount) {
	if i := slices.Index(b.waiters, a); i >= 0 {
		b.waiters = slices.Delete(b.waiters, i, i+1)
	}
	a.queued = false
	if a.held > 0 {
		b.waiting--
	}
}

// grantLocked charges waiters in arrival order while the first one fits. If the first
// still does not fit and every account holding budget is waiting, none will give any back
// before its wait runs out: it refuses the last to arrive of them, whose charge comes back
// when its handler returns. b.mu must be held.
func (b *BodyBudget) grantLocked() {
	for len(b.waiters) > 0 && b.free >= b.waiters[0].want {
		a := b.waiters[0]
		b.dequeueLocked(a)
		b.free -= a.want
		if a.held == 0 {
			b.holders++
		}
		a.held += a.want
		a.granted = true
		close(a.ready)
	}
	if len(b.waiters) == 0 || b.holders == 0 || b.waiting < b.holders {
		return
	}
	for i := len(b.waiters) - 1; i >= 0; i-- {
		if a := b.waiters[i]; a.held > 0 {
			b.dequeueLocked(a)
			close(a.ready)
			return
		}
	}
}

// release returns a's charge; a is charged nothing more, and stops waiting if it was.
func (b *BodyBudget) release(a *budgetAccount) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.queued {
		b.dequeueLocked(a)
		close(a.ready)
	}
	a.closed = true
	if a.held > 0 {
		b.free += a.held
		b.holders--
	}
	b.grantLocked()
}

// budgetBody is a request body charged as it is read.
type budgetBody struct {
	io.ReadCloser
	b       *BodyBudget
	a       *budgetAccount
	ctx     context.Context
	head    int64 // read uncharged until the body goes past it: the small size
	sized   bool  // the body has a Content-Length (over head)
	cap     int64 // the most it is charged
	read    int64
	err     error       // the refusal, once refused
	refused atomic.Bool // err is set
}

// Read reads no further than the request has been charged, charging it the next step
// first when it must. Once the budget refuses, Read returns the refusal, an
// errs.Unavailable error.
func (r *budgetBody) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	held := r.a.held
	switch {
	case len(p) == 0:
	case r.read < held:
		p = p[:min(int64(len(p)), held-r.read)]
	case held == 0 && r.read < r.head:
		p = p[:min(int64(len(p)), r.head-r.read)]
	case held >= r.cap: // all it can be charged; the body limit ends the body past it
	case held == 0 && !r.sized:
		// At the end of an unsized body's free head: one more byte shows whether it is
		// small, and if not, what was read is charged with the first step.
		n, err := r.ReadCloser.Read(p[:1])
		r.read += int64(n)
		if n == 0 {
			return 0, err
		}
		if !r.charge() {
			return 0, r.err
		}
		return n, err
	default:
		if !r.charge() {
			return 0, r.err
		}
		if r.a.held > r.read {
			p = p[:min(int64(len(p)), r.a.held-r.read)]
		}
	}
	n, err := r.ReadCloser.Read(p)
	r.read += int64(n)
	return n, err
}

// charge charges the request up to one step past what it has read, within its cap.
func (r *budgetBody) charge() bool {
	if r.b.acquire(r.ctx, r.a, min(r.cap, r.read+r.b.step)-r.a.held) {
		return true
	}
	r.err = errs.E("httpx.BodyBudget", errs.Unavailable, "the server is receiving too much at once; try again shortly")
	r.refused.Store(true)
	return false
}

// budgetWriter holds back the response of a handler whose body the budget refused, so the
// refusal can be answered instead: once the body is refused and unless the response had
// begun, headers go to a scratch map and writes are dropped.
type budgetWriter struct {
	http.ResponseWriter
	body    *budgetBody
	began   bool
	scratch http.Header
}

func (w *budgetWriter) held() bool { return !w.began && w.body.refused.Load() }

func (w *budgetWriter) Header() http.Header {
	if !w.held() {
		return w.ResponseWriter.Header()
	}
	if w.scratch == nil {
		w.scratch = http.Header{}
	}
	return w.scratch
}

func (w *budgetWriter) WriteHeader(code int) {
	if !w.held() {
		w.began = true
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *budgetWriter) Write(p []byte) (int, error) {
	if w.held() {
		return len(p), nil
	}
	w.began = true
	return w.ResponseWriter.Write(p)
}

func (w *budgetWriter) Flush() { _ = w.FlushError() }

func (w *budgetWriter) FlushError() error {
	if w.held() {
		return nil
	}
	w.began = true
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *budgetWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *budgetWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Middleware charges each request's body to the budget as the handler reads it, letting a
// request wait at most wait in all. When the budget refuses a body, the handler's read
// fails and the answer is errs.Unavailable (503) with Retry-After, unless the handler had
// begun its response before.
func (b *BodyBudget) Middleware(wait time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.Body == nil || r.Body == http.NoBody || (r.ContentLength >= 0 && r.ContentLength <= b.small) {
				return next(c)
			}
			body := &budgetBody{ReadCloser: r.Body, b: b, a: b.open(wait), ctx: r.Context(), head: b.small, cap: b.max}
			if r.ContentLength >= 0 {
				body.sized, body.cap = true, min(r.ContentLength, b.max)
			}
			r.Body = body
			res := c.Response()
			w := &budgetWriter{ResponseWriter: res.Writer, body: body}
			res.Writer = w
			defer func() {
				res.Writer = w.ResponseWriter
				b.release(body.a)
			}()
			err := next(c)
			if !w.held() {
				return err
			}
			res.Writer = w.ResponseWriter
			res.Status, res.Size, res.Committed = http.StatusOK, 0, false
			res.Header().Set("Retry-After", "5")
			return body.err
		}
	}
}
