package bench

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// Metric selects the figure a ratio is taken on.
type Metric uint8

const (
	// Ops compares operations (requests) per second; the default.
	Ops Metric = iota
	// Bytes compares payload bytes per second.
	Bytes
	// Resources compares FHIR resources per second: for an HTTPScenario the entries of every
	// searchset Bundle answered (the answers must be Bundles); for a FuncScenario what its
	// ops add to Items.
	Resources
)

// Scenario is something measured against a reference: HTTPScenario or FuncScenario.
type Scenario interface {
	// ScenarioName is the name in reports; unique within a run, distinct from anchor names.
	ScenarioName() string
	// Reference names what the scenario is a ratio to: an anchor (AnchorPG, ...), another
	// scenario's name (a peer server), or "" for none.
	Reference() string
	build(env *runEnv) (*target, func(), error)
}

// runEnv is what scenarios may share during a run.
type runEnv struct {
	timeout time.Duration
}

// HTTPScenario drives one request shape over keep-alive connections.
type HTTPScenario struct {
	Name   string
	Method string   // default GET
	URL    string   // one URL, or
	URLs   []string // several, used round-robin
	// Header is called for every request, e.g. to set a fresh bearer token.
	Header func() http.Header
	Body   []byte
	// Check judges every successful answer; an error counts as a check failure and fails
	// the run.
	Check func(status int, body []byte) error
	// Status, when set, is the only status that succeeds (a deny path's 404); default any 2xx.
	Status int
	// Count, when set, extracts the result count of every 2xx answer (see BundleCount). All
	// answers must agree, and when the reference is a scenario with Count too, both sides
	// must agree per round; a mismatch fails the run. With Metric Resources and no Count,
	// BundleCount is the count.
	Count  func(body []byte) (int, error)
	Anchor string // the reference (see Scenario.Reference)
	Conns  int    // concurrent connections; default 16
	Metric Metric // what the ratio compares; default Ops
}

// ScenarioName implements Scenario.
func (s HTTPScenario) ScenarioName() string { return s.Name }

// Reference implements Scenario.
func (s HTTPScenario) Reference() string { return s.Anchor }

func (s HTTPScenario) build(env *runEnv) (*target, func(), error) {
	urls := s.URLs
	if s.URL != "" {
		urls = append([]string{s.URL}, urls...)
	}
	if len(urls) == 0 {
		return nil, nil, errs.E("bench.HTTPScenario", errs.Invalid, "scenario "+s.Name+" has no URL")
	}
	conns := s.Conns
	if conns <= 0 {
		conns = 16
	}
	client := NewHTTPClient(conns, env.timeout)
	t := &target{name: s.Name, unit: "req/s", metric: s.Metric, workers: conns}
	switch s.Metric {
	case Bytes:
		t.unit = "B/s"
	case Resources:
		t.unit = "res/s"
	}
	check := s.Check
	if s.Count != nil || s.Metric == Resources {
		t.counts = &countTracker{}
		t.items = &t.counts.items
		count, inner, resources := s.Count, s.Check, s.Metric == Resources
		check = func(status int, body []byte) error {
			if inner != nil {
				if err := inner(status, body); err != nil {
					return err
				}
			}
			var n, entries int
			var err error
			if resources {
				var total *int
				var isBundle bool
				total, entries, isBundle, err = parseBundle(body)
				if err == nil && !isBundle {
					err = fmt.Errorf("answer is not a Bundle")
				}
				if err != nil {
					return err
				}
				n = entries
				if total != nil {
					n = *total
				}
			}
			if count != nil {
				if n, err = count(body); err != nil {
					return err
				}
			}
			if err := t.counts.see(n); err != nil {
				return err
			}
			t.items.Add(int64(entries))
			return nil
		}
	}
	req := HTTPRequest{Method: s.Method, URLs: urls, Header: s.Header, Body: s.Body, Check: check, Status: s.Status}
	t.newOp = func(w int) Op { return HTTPOp(client, req, w) }
	return t, client.CloseIdleConnections, nil
}

// FuncScenario measures an in-process operation.
type FuncScenario struct {
	Name    string
	Anchor  string
	Workers int // default 8
	Metric  Metric
	// NewOp returns worker w's Op (see Load.NewOp).
	NewOp func(w int) Op
	// Items, required with Metric Resources, is where the ops add the resources they
	// handled (e.g. the entries of a transaction Bundle that was stored). The run sets it to
	// zero before each measurement.
	Items *atomic.Int64
}

// ScenarioName implements Scenario.
func (s FuncScenario) ScenarioName() string { return s.Name }

// Reference implements Scenario.
func (s FuncScenario) Reference() string { return s.Anchor }

func (s FuncScenario) build(*runEnv) (*target, func(), error) {
	if s.NewOp == nil {
		return nil, nil, errs.E("bench.FuncScenario", errs.Invalid, "scenario "+s.Name+" has no op")
	}
	if s.Metric == Resources && s.Items == nil {
		return nil, nil, errs.E("bench.FuncScenario", errs.Invalid, "scenario "+s.Name+": resources need Items")
	}
	w := s.Workers
	if w <= 0 {
		w = 8
	}
	t := &target{name: s.Name, unit: "ops/s", metric: s.Metric, workers: w, newOp: s.NewOp}
	switch s.Metric {
	case Bytes:
		t.unit = "B/s"
	case Resources:
		t.unit, t.items = "res/s", s.Items
	}
	return t, func() {}, nil
}

// countTracker remembers the result count answers carried during one measurement, and the
// resources they returned.
type countTracker struct {
	items    atomic.Int64
	mu       sync.Mutex
	n        int
	seen     bool
	mismatch bool
}

func (c *countTracker) reset() {
	c.mu.Lock()
	c.n, c.seen, c.mismatch = 0, false, false
	c.mu.Unlock()
	c.items.Store(0)
}

// see records n and returns an error if an earlier answer carried a different count.
func (c *countTracker) see(n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.seen {
		c.n, c.seen = n, true
		return nil
	}
	if n != c.n {
		c.mismatch = true
		return fmt.Errorf("result count %d, earlier %d", n, c.n)
	}
	return nil
}

func (c *countTracker) get() (n int, seen, mismatch bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, c.seen, c.mismatch
}

// BundleCount returns a FHIR Bundle's total, or the number of its entries when it has no
// total. It returns an error when body is not a Bundle.
func BundleCount(body []byte) (int, error) {
	n, isBundle, err := bundleCount(body)
	if err == nil && !isBundle {
		return 0, fmt.Errorf("answer is not a Bundle")
	}
	return n, err
}

// bundleCount is BundleCount that also reports whether body was a Bundle at all.
func bundleCount(body []byte) (n int, isBundle bool, err error) {
	total, entries, isBundle, err := parseBundle(body)
	if total != nil {
		return *total, isBundle, err
	}
	return entries, isBundle, err
}

// parseBundle returns a Bundle's total (nil when absent) and number of entries; isBundle is
// false for any other resource.
func parseBundle(body []byte) (total *int, entries int, isBundle bool, err error) {
	rt, total, entries, err := scanBundle(body)
	if err != nil {
		return nil, 0, false, err
	}
	if rt != "Bundle" {
		return nil, 0, false, nil
	}
	return total, entries, true, nil
}
