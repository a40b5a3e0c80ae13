package httpx

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/internal/errs"
)

// serveBudget serves h at / behind b's middleware, and returns its URL and the number of
// requests that have reached the server (counted before the budget sees them).
func serveBudget(t *testing.T, b *BodyBudget, wait time.Duration, h echo.HandlerFunc) (string, *atomic.Int32) {
	t.Helper()
	var arrived atomic.Int32
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) { _ = c.String(Status(err), err.Error()) }
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error { arrived.Add(1); return next(c) }
	})
	e.Use(b.Middleware(wait))
	e.POST("/", h)
	e.GET("/", h)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv.URL, &arrived
}

// budgetServer serves POST /: the handler reads the body and blocks until release is
// closed; entered counts handlers that have read their body and not yet returned.
func budgetServer(t *testing.T, b *BodyBudget, wait time.Duration, release chan struct{}, entered *atomic.Int32) string {
	t.Helper()
	url, _ := serveBudget(t, b, wait, func(c echo.Context) error {
		if _, err := io.Copy(io.Discard, c.Request().Body); err != nil {
			return err
		}
		entered.Add(1)
		defer entered.Add(-1)
		<-release
		return c.NoContent(http.StatusNoContent)
	})
	return url
}

// readAll reads the body whole, as Concord's handlers do, and answers 204.
func readAll(c echo.Context) error {
	if _, err := io.ReadAll(c.Request().Body); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// stall opens a connection that sends a POST declaring n body bytes and then nothing more
// than sent; it is closed when the test ends.
func stall(t *testing.T, url string, n int64, sent []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: budget\r\nContent-Length: %d\r\n\r\n%s", n, sent); err != nil {
		t.Fatal(err)
	}
}

func freeBytes(b *BodyBudget) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.free
}

// post sends body and returns the status, 0 (with t.Error, safe off the test goroutine)
// when the request failed.
func post(t *testing.T, url string, body io.Reader) int {
	req, _ := http.NewRequest(http.MethodPost, url, body)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// budgetHeld starts budgetServer with a 200 ms wait and posts a body of n bytes whose
// handler holds its charge until the test ends; once that handler has entered it returns
// the server's URL and the count of handlers that have read their bodies.
func budgetHeld(t *testing.T, b *BodyBudget, n int) (string, *atomic.Int32) {
	t.Helper()
	release := make(chan struct{})
	var entered atomic.Int32
	url := budgetServer(t, b, 200*time.Millisecond, release, &entered)
	t.Cleanup(func() { close(release) }) // before the server's own cleanup, which waits for handlers
	go post(t, url, strings.NewReader(strings.Repeat("a", n)))
	waitFor(t, "the first handler", func() bool { return entered.Load() == 1 })
	return url, &entered
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestBodyBudgetQueuesThenAdmits: a body that does not fit waits for the one holding the
// budget, and runs once it is done; a request without a body is never held.
func TestBodyBudgetQueuesThenAdmits(t *testing.T) {
	b := NewBodyBudget(1000, 1000, 10)
	release := make(chan struct{})
	var entered atomic.Int32
	url := budgetServer(t, b, 5*time.Second, release, &entered)

	first := make(chan int)
	go func() { first <- post(t, url, strings.NewReader(strings.Repeat("a", 600))) }()
	waitFor(t, "the first handler", func() bool { return entered.Load() == 1 })
	second := make(chan int)
	go func() { second <- post(t, url, strings.NewReader(strings.Repeat("b", 600))) }()
	time.Sleep(100 * time.Millisecond)
	if n := entered.Load(); n != 1 {
		t.Fatalf("%d handlers run with 1200 bytes charged against 1000", n)
	}
	// A GET carries no body and passes while the budget is spent.
	get := make(chan int)
	go func() {
		res, err := http.Get(url)
		if err != nil {
			t.Error(err)
			get <- 0
			return
		}
		res.Body.Close()
		get <- res.StatusCode
	}()
	waitFor(t, "the GET handler", func() bool { return entered.Load() == 2 })
	close(release)
	for name, ch := range map[string]chan int{"first": first, "second": second, "get": get} {
		if st := <-ch; st != http.StatusNoContent {
			t.Errorf("%s: %d", name, st)
		}
	}
	if b.free != 1000 || len(b.waiters) != 0 {
		t.Errorf("budget after: free %d, %d waiters; want 1000, 0", b.free, len(b.waiters))
	}
}

// TestBodyBudgetRefusesAfterWait: a body that cannot be charged within the wait is 503 with
// Retry-After, and its handler never gets the body; a chunked body (no length) over the
// small size is charged its first step (here the whole per-request limit) with what it read.
func TestBodyBudgetRefusesAfterWait(t *testing.T) {
	b := NewBodyBudget(1000, 800, 10)
	url, entered := budgetHeld(t, b, 300)

	// 300 + 800 (chunked and over the small size: the limit) > 1000.
	req, _ := http.NewRequest(http.MethodPost, url, io.NopCloser(strings.NewReader(strings.Repeat("x", 50))))
	req.ContentLength = -1
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("chunked body over the budget: %d, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if n := entered.Load(); n != 1 {
		t.Fatalf("%d handlers read their body; the refused one must not", n)
	}
	// A small body passes free while the budget is spent: 300 + 300 are held, and 7 bytes
	// (<= 10) need nothing.
	go post(t, url, strings.NewReader(strings.Repeat("s", 300)))
	waitFor(t, "a second large body", func() bool { return entered.Load() == 2 })
	go post(t, url, strings.NewReader("a form!"))
	waitFor(t, "a small body", func() bool { return entered.Load() == 3 })
	// A sized body that fits is admitted beside the first.
	release2 := b.free // 1000 - 300 - 300
	if release2 != 400 {
		t.Fatalf("free %d, want 400", release2)
	}
	go post(t, url, strings.NewReader(strings.Repeat("c", 400)))
	waitFor(t, "a fitting body", func() bool { return entered.Load() == 4 })
}

// TestBodyBudgetFIFO: a large waiter is not overtaken by smaller bodies that arrive after
// it, so it cannot starve; one that gives up lets those behind it in.
func TestBodyBudgetFIFO(t *testing.T) {
	b := NewBodyBudget(100, 100, 10)
	first, big, small := b.open(5*time.Second), b.open(5*time.Second), b.open(5*time.Second)
	if !b.acquire(context.Background(), first, 60) {
		t.Fatal("first acquire")
	}
	bigCtx, giveUp := context.WithCancel(context.Background())
	bigDone := make(chan bool)
	go func() { bigDone <- b.acquire(bigCtx, big, 80) }()
	waitFor(t, "the big waiter", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 1 })
	smallDone := make(chan bool)
	go func() { smallDone <- b.acquire(context.Background(), small, 30) }()
	waitFor(t, "the small waiter", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 2 })
	select {
	case <-smallDone:
		t.Fatal("a small body overtook the waiting large one")
	case <-time.After(50 * time.Millisecond):
	}
	giveUp()
	if <-bigDone {
		t.Fatal("the cancelled waiter was granted")
	}
	if !<-smallDone {
		t.Fatal("the small waiter was not admitted once the large one left")
	}
	b.release(first)
	b.release(big)
	b.release(small)
	if b.free != 100 || b.holders != 0 || b.waiting != 0 {
		t.Fatalf("after: free %d, %d holders, %d waiting; want 100, 0, 0", b.free, b.holders, b.waiting)
	}
}

// TestBodyBudgetEarlierArrivalFirst: budget goes to waiting requests in the order they
// arrived at the server, not the order they asked: a request that arrived first but sends
// slowly is not put behind later ones when it needs more.
func TestBodyBudgetEarlierArrivalFirst(t *testing.T) {
	b := NewBodyBudget(100, 100, 10)
	early, holder, late := b.open(5*time.Second), b.open(5*time.Second), b.open(5*time.Second)
	if !b.acquire(context.Background(), holder, 90) {
		t.Fatal("holder")
	}
	lateDone := make(chan bool)
	go func() { lateDone <- b.acquire(context.Background(), late, 20) }()
	waitFor(t, "the late waiter", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 1 })
	earlyDone := make(chan bool)
	go func() { earlyDone <- b.acquire(context.Background(), early, 20) }()
	waitFor(t, "the early waiter", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 2 })
	b.release(holder) // 100 free: both fit, early first
	if !<-earlyDone || !<-lateDone {
		t.Fatal("not both admitted")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if early.held != 20 || late.held != 20 || b.free != 60 {
		t.Fatalf("early %d, late %d, free %d; want 20, 20, 60", early.held, late.held, b.free)
	}
}

// TestBodyBudgetStandstill: when every request holding budget waits for more, none could
// finish before its wait runs out; the last to arrive is refused at once, and its charge,
// once its handler returns it, lets the earlier one go on.
func TestBodyBudgetStandstill(t *testing.T) {
	b := NewBodyBudget(100, 100, 10)
	older, newer := b.open(5*time.Second), b.open(5*time.Second)
	if !b.acquire(context.Background(), older, 60) || !b.acquire(context.Background(), newer, 40) {
		t.Fatal("first charges")
	}
	olderDone := make(chan bool)
	go func() { olderDone <- b.acquire(context.Background(), older, 20) }()
	waitFor(t, "the older waiter", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 1 })
	select {
	case <-olderDone:
		t.Fatal("granted with nothing free")
	case <-time.After(20 * time.Millisecond): // the newer one may yet finish and give back
	}
	start := time.Now()
	if b.acquire(context.Background(), newer, 20) {
		t.Fatal("the newer request was charged with nothing free")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the standstill lasted %v", d)
	}
	b.release(newer)
	if !<-olderDone {
		t.Fatal("the older request was not charged once the newer one gave back")
	}
	b.release(older)
	if b.free != 100 {
		t.Fatalf("free %d, want 100", b.free)
	}
}

// TestBodyBudgetChunkedSmallPassesFree: a small body passes free however it is framed; a
// chunked one (no Content-Length, as many FHIR clients stream) must not be charged the
// whole limit and held up behind large bodies. The handler still reads all of it.
func TestBodyBudgetChunkedSmallPassesFree(t *testing.T) {
	b := NewBodyBudget(1000, 1000, 10)
	budgetHeld(t, b, 600)

	got := make(chan string, 1)
	e := echo.New()
	e.Use(b.Middleware(200 * time.Millisecond))
	e.POST("/", func(c echo.Context) error {
		body, err := io.ReadAll(c.Request().Body)
		got <- string(body)
		if err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	})
	srv := httptest.NewServer(e)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, io.NopCloser(strings.NewReader("tiny")))
	req.ContentLength = -1
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("chunked 4-byte body while 600 of 1000 are held: %d; want it to pass free", res.StatusCode)
	}
	if s := <-got; s != "tiny" {
		t.Fatalf("handler read %q; want the whole body", s)
	}
	if b.free != 400 {
		t.Fatalf("free %d; want 400 (only the first body charged)", b.free)
	}
}

// TestBodyBudgetDeclaredIsNotHeld: connections that declare the largest body and send
// nothing hold nothing, so another client's large body is read at once instead of waiting
// for them (up to the server's read timeout) and getting 503.
func TestBodyBudgetDeclaredIsNotHeld(t *testing.T) {
	const limit, small = 256 << 10, 16 << 10
	b := NewBodyBudget(4*limit, limit, small)
	const wait = 3 * time.Second
	url, arrived := serveBudget(t, b, wait, readAll)
	for range 4 {
		stall(t, url, limit, nil)
	}
	waitFor(t, "the silent requests", func() bool { return arrived.Load() == 4 })
	time.Sleep(50 * time.Millisecond) // let the budget see them
	if free := freeBytes(b); free != 4*limit {
		t.Errorf("4 connections that sent no body hold %d of %d bytes; want none", 4*limit-free, 4*limit)
	}
	start := time.Now()
	if st := post(t, url, bytes.NewReader(make([]byte, limit))); st != http.StatusNoContent {
		t.Fatalf("a %d-byte body beside 4 silent ones: %d after %v; want 204", limit, st, time.Since(start))
	}
	if d := time.Since(start); d > wait/2 {
		t.Fatalf("a %d-byte body beside 4 silent ones took %v", limit, d)
	}
}

// rawPost sends a POST of n bytes, chunked or with its length, on a connection of its own,
// and returns the answer with its body; it writes the body while it reads the answer, so a
// server that answers before reading all of it is heard. Safe off the test goroutine.
func rawPost(t *testing.T, url string, n int, chunked bool) (*http.Response, string) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Error(err)
		return nil, ""
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		w := bufio.NewWriter(conn)
		if chunked {
			fmt.Fprintf(w, "POST / HTTP/1.1\r\nHost: budget\r\nTransfer-Encoding: chunked\r\n\r\n")
		} else {
			fmt.Fprintf(w, "POST / HTTP/1.1\r\nHost: budget\r\nContent-Length: %d\r\n\r\n", n)
		}
		chunk := bytes.Repeat([]byte("x"), 4<<10)
		for left := n; left > 0; left -= len(chunk) {
			c := chunk[:min(left, len(chunk))]
			if chunked {
				fmt.Fprintf(w, "%x\r\n%s\r\n", len(c), c)
			} else {
				w.Write(c)
			}
		}
		if chunked {
			fmt.Fprintf(w, "0\r\n\r\n")
		}
		w.Flush() // an error means the server stopped reading: its answer tells why
	}()
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Error(err)
		return nil, ""
	}
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

// TestBodyBudgetHeldNeverExceeded: with more large bodies sent at once, and sent whole,
// than the budget holds, the bytes that handlers have read from bodies past the small size
// never exceed the budget. Each body is read (204) or refused with 503 and Retry-After,
// and the two that arrived first always fit beside each other and are read.
func TestBodyBudgetHeldNeverExceeded(t *testing.T) {
	const limit, small, bodies = 256 << 10, 16 << 10, 6
	b := NewBodyBudget(2*limit, limit, small)
	b.step = 16 << 10
	const wait = 10 * time.Second
	var held, peak atomic.Int64 // bytes read by handlers from bodies past small
	url, arrived := serveBudget(t, b, wait, func(c echo.Context) error {
		var read int64
		defer func() {
			if read > small {
				held.Add(-read)
			}
		}()
		buf := make([]byte, 8<<10)
		for {
			n, err := c.Request().Body.Read(buf)
			before := read
			read += int64(n)
			var add int64
			switch {
			case read > small && before <= small: // past small: the free head counts too
				add = read
			case read > small:
				add = int64(n)
			}
			if add > 0 {
				h := held.Add(add)
				for p := peak.Load(); h > p && !peak.CompareAndSwap(p, h); p = peak.Load() {
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		time.Sleep(20 * time.Millisecond) // hold it a little, as a handler at work does
		return c.NoContent(http.StatusNoContent)
	})

	type result struct {
		seq    int
		status int
		retry  string
	}
	results := make(chan result, bodies)
	start := time.Now()
	for i := range bodies {
		// One at a time into the server, so arrival order is i; then all at once.
		go func() {
			res, _ := rawPost(t, url, limit, i%2 == 1)
			if res == nil {
				results <- result{seq: i}
				return
			}
			results <- result{i, res.StatusCode, res.Header.Get("Retry-After")}
		}()
		waitFor(t, "the request to arrive", func() bool { return arrived.Load() == int32(i+1) })
	}
	ok := 0
	for range bodies {
		r := <-results
		switch {
		case r.status == http.StatusNoContent:
			ok++
		case r.status == http.StatusServiceUnavailable && r.retry != "":
			if r.seq < 2 {
				t.Errorf("body %d, among the first two to arrive, was refused", r.seq)
			}
		default:
			t.Errorf("body %d: %d, Retry-After %q; want 204, or 503 with Retry-After", r.seq, r.status, r.retry)
		}
	}
	if d := time.Since(start); d > wait/2 {
		t.Errorf("%d bodies took %v: some waited for budget that no one would give back", bodies, d)
	}
	if p := peak.Load(); p > 2*limit {
		t.Errorf("handlers held %d bytes of bodies at once; the budget is %d", p, 2*limit)
	}
	t.Logf("%d of %d bodies read, peak %d of %d bytes", ok, bodies, peak.Load(), 2*limit)
	if free := freeBytes(b); free != 2*limit {
		t.Errorf("free %d after all; want %d", free, 2*limit)
	}
}

// TestBodyBudgetRefusedMidBody: a body refused after part of it was read (its request
// waited out the wait for more) fails the handler's read, and the client gets 503 with
// Retry-After, whatever the handler made of the failed read: returned it, wrapped it as a
// bad request as exchange.readBody does, or answered a page of its own as the portal's
// upload does.
func TestBodyBudgetRefusedMidBody(t *testing.T) {
	handlers := []struct {
		name  string
		onErr func(c echo.Context, err error) error
	}{
		{"returns the error", func(c echo.Context, err error) error { return err }},
		{"wraps it as Invalid", func(c echo.Context, err error) error {
			return errs.E("test.readBody", errs.Invalid, "could not read the request body", err)
		}},
		{"answers 400 itself", func(c echo.Context, err error) error {
			return c.HTML(http.StatusBadRequest, "<p>Please choose a file to upload.</p>")
		}},
	}
	for _, h := range handlers {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/chunked=%v", h.name, chunked), func(t *testing.T) {
				const limit, small = 64 << 10, 4 << 10
				b := NewBodyBudget(limit, limit, small)
				b.step = 4 << 10
				readErr := make(chan error, 1)
				url, _ := serveBudget(t, b, 200*time.Millisecond, func(c echo.Context) error {
					if _, err := io.ReadAll(c.Request().Body); err != nil {
						select {
						case readErr <- err: // the first; the held body fails too, at the end
						default:
						}
						return h.onErr(c, err)
					}
					return c.NoContent(http.StatusNoContent)
				})
				// Another client sends 40 KiB of a large body and then waits, holding them.
				stall(t, url, limit, bytes.Repeat([]byte("h"), 40<<10))
				waitFor(t, "the first body to be charged", func() bool { return freeBytes(b) <= limit-40<<10 })

				res, body := rawPost(t, url, limit, chunked)
				if res == nil {
					return
				}
				if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
					t.Fatalf("%d, Retry-After %q, body %q; want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"), body)
				}
				if ct := res.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/html") || strings.Contains(body, "upload") {
					t.Errorf("the handler's own answer leaked into the 503: %s %q", ct, body)
				}
				select {
				case err := <-readErr:
					if errs.CodeOf(err) != errs.Unavailable {
						t.Errorf("the handler's read failed with %v; want errs.Unavailable", err)
					}
				default:
					t.Error("the handler's read did not fail")
				}
			})
		}
	}
}

// TestBodyBudgetNoStandstill: three bodies, sent whole, are each read 60% of the way, two
// limits' worth of budget between them; then none can be read to the end before another
// gives budget back. The last to arrive is refused at once (503 with Retry-After) instead
// of all three waiting out the wait, and the other two are read.
func TestBodyBudgetNoStandstill(t *testing.T) {
	const limit, small, bodies = 256 << 10, 16 << 10, 3
	b := NewBodyBudget(2*limit, limit, small)
	b.step = 16 << 10
	const wait = 10 * time.Second
	var partway atomic.Int32
	allPartway := make(chan struct{})
	url, arrived := serveBudget(t, b, wait, func(c echo.Context) error {
		if _, err := io.ReadFull(c.Request().Body, make([]byte, limit*6/10)); err != nil {
			return err
		}
		if partway.Add(1) == bodies {
			close(allPartway)
		}
		select {
		case <-allPartway:
		case <-time.After(5 * time.Second):
			t.Error("not all bodies were read 60% of the way")
		}
		return readAll(c)
	})
	statuses := make([]chan *http.Response, bodies)
	start := time.Now()
	for i := range statuses {
		statuses[i] = make(chan *http.Response, 1)
		go func() {
			res, _ := rawPost(t, url, limit, false)
			statuses[i] <- res
		}()
		waitFor(t, "the request to arrive", func() bool { return arrived.Load() == int32(i+1) })
	}
	for i, want := range []int{http.StatusNoContent, http.StatusNoContent, http.StatusServiceUnavailable} {
		res := <-statuses[i]
		if res == nil {
			continue
		}
		if res.StatusCode != want || (want == http.StatusServiceUnavailable && res.Header.Get("Retry-After") == "") {
			t.Errorf("body %d: %d, Retry-After %q; want %d", i, res.StatusCode, res.Header.Get("Retry-After"), want)
		}
	}
	if d := time.Since(start); d > wait/2 {
		t.Errorf("the bodies took %v: they waited for budget that none would give back", d)
	}
}
