package httpx

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

// BodyBudget bounds the request bodies the server holds at once. Handlers read a FHIR or
// upload body whole (up to the body limit each), so without a bound a few dozen
// concurrent large bodies would take the process's memory. Each request with a large body
// is charged its Content-Length, or the whole per-request limit when it sends none
// (chunked), before its handler runs, and the charge is returned when the handler ends. A
// request that cannot be charged within the wait is refused with errs.Unavailable (503,
// Retry-After) before a byte of a sized body is read (a chunked body's first small+1 bytes
// are read, outside the budget, to learn whether it is small). Requests without a body, or
// with one of at most the small size, sized or chunked, pass free: a few clients trickling large bodies can hold the
// budget, and must not hold up every form post and ordinary FHIR write with it.
type BodyBudget struct {
	mu      sync.Mutex
	free    int64
	max     int64 // the per-request limit: the most one request is charged
	small   int64 // a sized body up to this passes free
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

// NewBodyBudget returns a budget of total bytes, charging any one request at most
// perRequest (the body limit) and bodies of a known length up to small nothing. total is
// raised to perRequest when smaller, so that one request of the largest size can always
// be admitted.
func NewBodyBudget(total, perRequest, small int64) *BodyBudget {
	return &BodyBudget{free: max(total, perRequest), max: perRequest, small: small}
}

// charge is what r costs: 0 without a body.
func (b *BodyBudget) charge(r *http.Request) int64 {
	switch {
	case r.Body == nil || r.Body == http.NoBody:
		return 0
	case r.ContentLength >= 0 && r.ContentLength <= b.small:
		return 0
	case r.ContentLength > 0:
		return min(r.ContentLength, b.max)
	}
	return b.max // unknown length
}

// peekSmall reads up to small+1 bytes of r's body of unknown length (chunked), outside the
// budget: a small body passes free however it is framed, like one of a known small length.
// r's body is replaced by what was read followed by the rest (a read error included), and
// a body that ended within small gets that length, which charge then lets pass.
func (b *BodyBudget) peekSmall(r *http.Request) {
	head, err := io.ReadAll(io.LimitReader(r.Body, b.small+1))
	rest := io.MultiReader(bytes.NewReader(head), r.Body)
	switch {
	case err != nil:
		rest = io.MultiReader(bytes.NewReader(head), errReader{err})
	case int64(len(head)) <= b.small:
		rest, r.ContentLength = bytes.NewReader(head), int64(len(head))
	}
	r.Body = readCloser{rest, r.Body}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type readCloser struct {
	io.Reader
	io.Closer
}

// acquire takes n bytes, waiting in arrival order until ctx ends. It reports whether it
// took them.
func (b *BodyBudget) acquire(ctx context.Context, n int64) bool {
	b.mu.Lock()
	if len(b.waiters) == 0 && b.free >= n {
		b.free -= n
		b.mu.Unlock()
		return true
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return true
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-w.ready: // granted meanwhile: hand it back
			b.free += n
			b.grantLocked()
			return false
		default:
		}
		for i, x := range b.waiters {
			if x == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
		b.grantLocked() // a large waiter leaving may let smaller ones behind it in
		return false
	}
}

func (b *BodyBudget) release(n int64) {
	b.mu.Lock()
	b.free += n
	b.grantLocked()
	b.mu.Unlock()
}

// grantLocked admits waiters in arrival order while the first one fits.
func (b *BodyBudget) grantLocked() {
	for len(b.waiters) > 0 && b.free >= b.waiters[0].n {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.free -= w.n
		close(w.ready)
	}
}

// Middleware charges each request's body to the budget, waiting at most wait.
func (b *BodyBudget) Middleware(wait time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
				b.peekSmall(r)
			}
			n := b.charge(r)
			if n == 0 {
				return next(c)
			}
			ctx, cancel := context.WithTimeout(c.Request().Context(), wait)
			ok := b.acquire(ctx, n)
			cancel()
			if !ok {
				c.Response().Header().Set("Retry-After", "5")
				return errs.E("httpx.BodyBudget", errs.Unavailable, "the server is receiving too much at once; try again shortly")
			}
			defer b.release(n)
			return next(c)
		}
	}
}
