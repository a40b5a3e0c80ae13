package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestDriveStopsAtMaxOps(t *testing.T) {
	var calls atomic.Int64
	res, err := Drive(context.Background(), Load{Workers: 4, MaxOps: 1000, NewOp: func(int) Op {
		return func(context.Context) (int64, error) { calls.Add(1); return 10, nil }
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 1000 || calls.Load() != 1000 || res.Bytes != 10000 || res.Hist.Count() != 1000 {
		t.Fatalf("ops %d calls %d bytes %d hist %d, want 1000/1000/10000/1000", res.Ops, calls.Load(), res.Bytes, res.Hist.Count())
	}
}

func TestDriveStopsAtDuration(t *testing.T) {
	start := time.Now()
	res, err := Drive(context.Background(), Load{Workers: 3, Duration: 100 * time.Millisecond, NewOp: func(int) Op {
		return func(context.Context) (int64, error) { time.Sleep(time.Millisecond); return 0, nil }
	}})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("ran %v for a 100 ms load", el)
	}
	if res.Ops < 30 || res.OpsPerSec() <= 0 {
		t.Fatalf("only %d ops (%.0f/s) in 100 ms with 3 workers", res.Ops, res.OpsPerSec())
	}
	if p := res.Hist.Quantile(.5); p < time.Millisecond {
		t.Fatalf("p50 %v below the 1 ms sleep", p)
	}
}

func TestDriveBoundsAHungOp(t *testing.T) {
	start := time.Now()
	res, err := Drive(context.Background(), Load{Workers: 2, Duration: 50 * time.Millisecond, Grace: 50 * time.Millisecond,
		NewOp: func(int) Op {
			return func(ctx context.Context) (int64, error) { <-ctx.Done(); return 0, ctx.Err() }
		}})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("hung ops held the load for %v", el)
	}
	if res.Errors.Timeout != 2 || res.Ops != 0 {
		t.Fatalf("errors %+v ops %d, want 2 timeouts and no successes", res.Errors, res.Ops)
	}
}

func TestDriveCountsErrorsApart(t *testing.T) {
	kinds := []error{
		nil,
		&StatusError{Status: 503},
		fmt.Errorf("wrapped: %w", context.DeadlineExceeded),
		&net.OpError{Op: "dial", Err: errors.New("connection refused")},
		&CheckError{Err: errors.New("wrong count")},
	}
	res, err := Drive(context.Background(), Load{Workers: 1, MaxOps: 50, NewOp: func(int) Op {
		i := 0
		return func(context.Context) (int64, error) {
			e := kinds[i%len(kinds)]
			i++
			return 1, e
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := Errors{NonOK: 10, Timeout: 10, Transport: 10, Check: 10}
	if res.Errors != want || res.Ops != 10 || res.Hist.Count() != 10 || res.Bytes != 10 {
		t.Fatalf("errors %+v ops %d hist %d bytes %d; want %+v and 10 successes", res.Errors, res.Ops, res.Hist.Count(), res.Bytes, want)
	}
	if res.Errors.Total() != 40 {
		t.Fatalf("total %d", res.Errors.Total())
	}
}

func TestDriveRejectsUnboundedLoad(t *testing.T) {
	_, err := Drive(context.Background(), Load{Workers: 1, NewOp: func(int) Op { return nil }})
	if err == nil {
		t.Fatal("a load with neither duration nor count was accepted")
	}
}

func TestHTTPOpSplitsStatusAndCheck(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/bad":
			w.WriteHeader(http.StatusInternalServerError)
		default:
			n.Add(1)
			fmt.Fprintf(w, `{"resourceType":"Bundle","total":%d}`, 3)
		}
	}))
	defer srv.Close()
	c := NewHTTPClient(4, time.Second)
	hdr := func() http.Header { return http.Header{"Authorization": {"Bearer t"}} }
	res, err := Drive(context.Background(), Load{Workers: 2, MaxOps: 40, NewOp: func(w int) Op {
		return HTTPOp(c, HTTPRequest{URLs: []string{srv.URL + "/ok", srv.URL + "/bad"}, Header: hdr, Check: func(_ int, b []byte) error {
			if got, err := BundleCount(b); err != nil || got != 3 {
				return fmt.Errorf("count %d, %v", got, err)
			}
			return nil
		}}, w)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 20 || res.Errors.NonOK != 20 || res.Errors.Check != 0 || n.Load() != 20 {
		t.Fatalf("ops %d errors %+v served %d; want 20 ok and 20 non-2xx", res.Ops, res.Errors, n.Load())
	}
	res, _ = Drive(context.Background(), Load{Workers: 1, MaxOps: 5, NewOp: func(w int) Op {
		return HTTPOp(c, HTTPRequest{URLs: []string{srv.URL}, Header: hdr, Check: func(int, []byte) error { return errors.New("no") }}, w)
	}})
	if res.Errors.Check != 5 {
		t.Fatalf("check failures %+v, want 5", res.Errors)
	}
}

func TestBundleCount(t *testing.T) {
	for _, tt := range []struct {
		body    string
		want    int
		wantErr bool
	}{
		{`{"resourceType":"Bundle","total":12,"entry":[{}]}`, 12, false},
		{`{"resourceType":"Bundle","entry":[{},{}]}`, 2, false},
		{`{"resourceType":"Bundle","total":0}`, 0, false},
		{`{"resourceType":"OperationOutcome"}`, 0, true},
		{`not json`, 0, true},
	} {
		got, err := BundleCount([]byte(tt.body))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("BundleCount(%s) = %d, %v; want %d, error %v", tt.body, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseQueryList(t *testing.T) {
	in := "# lab searches\nObservation?patient=1&category=laboratory\n\n  Patient/2  \n# end\n/Patient?family=x\n"
	got, err := ParseQueryList(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Observation?patient=1&category=laboratory", "Patient/2", "Patient?family=x"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := ParseQueryList(strings.NewReader("http://elsewhere/Patient\n")); err == nil {
		t.Fatal("an absolute URL was accepted")
	}
}

func TestProcParsers(t *testing.T) {
	busy, total, err := parseProcStat([]byte("cpu  100 5 50 800 20 1 4 2 7 0\ncpu0 1 2 3 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if total != 982 || busy != 162 {
		t.Fatalf("busy %d total %d, want 162 982", busy, total)
	}
	self, err := parseSelfStat([]byte("1234 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 41 17 0 0 20 0 1 0"))
	if err != nil {
		t.Fatal(err)
	}
	if self != 58 {
		t.Fatalf("self %d, want 58", self)
	}
	if _, err := os.Stat("/proc/stat"); err == nil {
		a, err := sampleCPU()
		if err != nil || a.total == 0 {
			t.Fatalf("sampleCPU: %+v %v", a, err)
		}
	}
	a := cpuSample{busy: 100, total: 1000, self: 40}
	b := cpuSample{busy: 300, total: 2000, self: 140}
	if got := otherShare(a, b); got != 0.1 {
		t.Fatalf("otherShare = %v, want 0.1", got)
	}
}

func TestCountTracker(t *testing.T) {
	var c countTracker
	if err := c.see(3); err != nil {
		t.Fatal(err)
	}
	if err := c.see(3); err != nil {
		t.Fatal(err)
	}
	if err := c.see(4); err == nil {
		t.Fatal("a different count was accepted")
	}
	if n, seen, mismatch := c.get(); n != 3 || !seen || !mismatch {
		t.Fatalf("get = %d %v %v", n, seen, mismatch)
	}
}

func TestDriveDoesNotAllocatePerOp(t *testing.T) {
	drive := func(n int64) float64 {
		return testing.AllocsPerRun(3, func() {
			if _, err := Drive(context.Background(), Load{Workers: 2, MaxOps: n, NewOp: func(int) Op {
				return func(context.Context) (int64, error) { return 1, nil }
			}}); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, large := drive(100), drive(100000)
	if large > small+20 {
		t.Fatalf("%.0f allocations for 100 ops, %.0f for 100,000: the loop allocates per op", small, large)
	}
}

func TestGate(t *testing.T) {
	if g := (Gate{Disabled: true}).Wait(context.Background()); !g.Skipped || g.Passed {
		t.Fatalf("disabled gate: %+v", g)
	}
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	start := time.Now()
	g := Gate{Window: 100 * time.Millisecond, Interval: 20 * time.Millisecond, Threshold: 1.01, MaxWait: time.Second}.Wait(context.Background())
	if !g.Passed || g.OtherCPU < 0 || g.OtherCPU > 1 || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("a gate anything passes: %+v after %v", g, time.Since(start))
	}
	// A window longer than the wait can never be observed: the gate gives up, bounded.
	start = time.Now()
	g = Gate{Window: time.Hour, Interval: 20 * time.Millisecond, MaxWait: 150 * time.Millisecond}.Wait(context.Background())
	if g.Passed || time.Since(start) > time.Second {
		t.Fatalf("gate with an unreachable window: %+v after %v", g, time.Since(start))
	}
}

func TestInsertDocSize(t *testing.T) {
	d := insertDoc()
	if len(d) < 1650 || len(d) > 1800 || !json.Valid(d) {
		t.Fatalf("insert document of %d bytes, valid JSON %v; want ≈ 1.7 KB", len(d), json.Valid(d))
	}
}
