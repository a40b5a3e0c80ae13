package blobstest

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Fault describes what FaultTransport does to the requests it matches. The zero Fault does
// nothing.
type Fault struct {
	// Method limits the fault to requests with this method ("" matches all).
	Method string
	// Times limits the fault to the first Times matching requests (0: every one).
	Times int
	// Down fails the request with "connection refused" before it reaches the server.
	Down bool
	// Delay holds the request this long before sending it (or until its context ends).
	Delay time.Duration
	// CutRequest makes the request body fail with "connection reset" after
	// CutRequestAfter bytes: an upload dying mid-way.
	CutRequest      bool
	CutRequestAfter int64
	// CutResponse makes the response body fail with "connection reset" after
	// CutResponseAfter bytes: a download dying mid-way.
	CutResponse      bool
	CutResponseAfter int64
	// Corrupt flips the lowest bit of the response body byte at offset CorruptAt.
	Corrupt   bool
	CorruptAt int64
}

// FaultTransport is an http.RoundTripper for S3 clients (documents.S3Config.Transport) that
// injects one Fault at a time and counts the requests that reach the server. It is safe for
// concurrent use.
type FaultTransport struct {
	Base http.RoundTripper // nil: http.DefaultTransport

	mu      sync.Mutex
	fault   Fault
	applied int

	sent atomic.Int64
}

// Set replaces the current fault.
func (f *FaultTransport) Set(fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault, f.applied = fault, 0
}

// Clear removes the current fault.
func (f *FaultTransport) Clear() { f.Set(Fault{}) }

// Requests returns how many requests were handed to the server (Down ones are not).
func (f *FaultTransport) Requests() int64 { return f.sent.Load() }

// ResetRequests sets the request count to zero.
func (f *FaultTransport) ResetRequests() { f.sent.Store(0) }

// ErrInjectedReset is the cause of the connection resets FaultTransport injects.
var ErrInjectedReset = &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}

func (f *FaultTransport) pick(r *http.Request) (Fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := f.fault
	if ft == (Fault{}) || (ft.Method != "" && ft.Method != r.Method) || (ft.Times > 0 && f.applied >= ft.Times) {
		return Fault{}, false
	}
	f.applied++
	return ft, true
}

// RoundTrip implements http.RoundTripper.
func (f *FaultTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	base := f.Base
	if base == nil {
		base = http.DefaultTransport
	}
	ft, ok := f.pick(r)
	if !ok {
		f.sent.Add(1)
		return base.RoundTrip(r)
	}
	if ft.Down {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	if ft.Delay > 0 {
		t := time.NewTimer(ft.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			if r.Body != nil {
				r.Body.Close()
			}
			return nil, r.Context().Err()
		}
	}
	if ft.CutRequest && r.Body != nil {
		r = r.Clone(r.Context())
		r.Body = &cutBody{rc: r.Body, left: ft.CutRequestAfter}
		r.GetBody = nil
	}
	f.sent.Add(1)
	resp, err := base.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	switch {
	case ft.CutResponse:
		resp.Body = &cutBody{rc: resp.Body, left: ft.CutResponseAfter}
	case ft.Corrupt:
		resp.Body = &corruptBody{rc: resp.Body, at: ft.CorruptAt}
	}
	return resp, nil
}

// cutBody yields left bytes, then fails with a connection reset.
type cutBody struct {
	rc   io.ReadCloser
	left int64
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, ErrInjectedReset
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	if errors.Is(err, io.EOF) && c.left > 0 {
		return n, io.EOF // the body was shorter than the cut
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return n, err
	}
	return n, nil
}

func (c *cutBody) Close() error { return c.rc.Close() }

// corruptBody flips one bit at offset at.
type corruptBody struct {
	rc  io.ReadCloser
	at  int64
	off int64
}

func (c *corruptBody) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	if c.at >= c.off && c.at < c.off+int64(n) {
		p[c.at-c.off] ^= 1
	}
	c.off += int64(n)
	return n, err
}

func (c *corruptBody) Close() error { return c.rc.Close() }
