package httpx

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
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
// Retry-After, and its handler never runs; a chunked body (no length) over the small size
// is charged the whole per-request limit.
func TestBodyBudgetRefusesAfterWait(t *testing.T) {
	b := NewBodyBudget(1000, 800, 10)
	release := make(chan struct{})
	defer close(release)
	var entered atomic.Int32
	url := budgetServer(t, b, 200*time.Millisecond, release, &entered)
	go post(t, url, strings.NewReader(strings.Repeat("a", 300)))
	waitFor(t, "the first handler", func() bool { return entered.Load() == 1 })

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
	if !b.acquire(context.Background(), 60) {
		t.Fatal("first acquire")
	}
	bigCtx, giveUp := context.WithCancel(context.Background())
	big := make(chan bool)
	go func() { big <- b.acquire(bigCtx, 80) }()
	waitFor(t, "the big waiter", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 1 })
	small := make(chan bool)
	go func() { small <- b.acquire(context.Background(), 30) }()
	waitFor(t, "the small waiter", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.waiters) == 2 })
	select {
	case <-small:
		t.Fatal("a small body overtook the waiting large one")
	case <-time.After(50 * time.Millisecond):
	}
	giveUp()
	if <-big {
		t.Fatal("the cancelled waiter was granted")
	}
	if !<-small {
		t.Fatal("the small waiter was not admitted once the large one left")
	}
	b.release(60)
	b.release(30)
	if b.free != 100 {
		t.Fatalf("free %d, want 100", b.free)
	}
}

// TestBodyBudgetChunkedSmallPassesFree: a small body passes free however it is framed; a
// chunked one (no Content-Length, as many FHIR clients stream) must not be charged the
// whole limit and held up behind large bodies. The handler still reads all of it.
func TestBodyBudgetChunkedSmallPassesFree(t *testing.T) {
	b := NewBodyBudget(1000, 1000, 10)
	release := make(chan struct{})
	defer close(release)
	var entered atomic.Int32
	url := budgetServer(t, b, 200*time.Millisecond, release, &entered)
	go post(t, url, strings.NewReader(strings.Repeat("a", 600)))
	waitFor(t, "the first handler", func() bool { return entered.Load() == 1 })

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
