package bench

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"time"
)

// NewHTTPClient returns a client for conns concurrent keep-alive connections to one host:
// one shared Transport with at least conns idle connections per host, no proxy, no
// compression (bytes counted are bytes sent), and timeout per request (default 10 s).
func NewHTTPClient(conns int, timeout time.Duration) *http.Client {
	if conns <= 0 {
		conns = 1
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          conns * 2,
		MaxIdleConnsPerHost:   conns * 2,
		MaxConnsPerHost:       0,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: timeout,
		ForceAttemptHTTP2:     false,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// HTTPRequest describes the request an HTTP Op sends. Header, when set, is called for every
// request (for example to fetch a fresh bearer token); URLs are used round-robin.
type HTTPRequest struct {
	Method string
	URLs   []string
	Header func() http.Header
	Body   []byte
	// Check, when set, judges every 2xx answer; an error counts as a Check failure.
	Check func(status int, body []byte) error
	// Status, when set, is the only status that succeeds (e.g. 404 for a deny path);
	// otherwise any 2xx does. Any other status is a StatusError after the body is drained.
	Status int
}

// HTTPOp returns an Op for one worker that sends r with client, reads the whole answer into
// a buffer the worker reuses, and returns the body size. Worker w starts at URL w so workers
// spread over the list.
func HTTPOp(client *http.Client, r HTTPRequest, w int) Op {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	next := w
	var buf bytes.Buffer
	return func(ctx context.Context) (int64, error) {
		u := r.URLs[next%len(r.URLs)]
		next++
		var body io.Reader
		if r.Body != nil {
			body = bytes.NewReader(r.Body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return 0, err
		}
		if r.Header != nil {
			for k, v := range r.Header() {
				req.Header[k] = v
			}
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		buf.Reset()
		_, err = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		if r.Status != 0 && resp.StatusCode != r.Status || r.Status == 0 && (resp.StatusCode < 200 || resp.StatusCode > 299) {
			return 0, &StatusError{Status: resp.StatusCode}
		}
		if r.Check != nil {
			if err := r.Check(resp.StatusCode, buf.Bytes()); err != nil {
				return 0, &CheckError{Err: err}
			}
		}
		return int64(buf.Len()), nil
	}
}

// CloseIdle releases the idle connections of a client made by NewHTTPClient.
func CloseIdle(c *http.Client) { c.CloseIdleConnections() }
