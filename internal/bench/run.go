// Package bench is the load harness behind `concord bench`: a closed-loop engine with
// per-worker latency histograms, the anchors of docs/benchmarks.md (PostgreSQL point-select,
// Redis GET, signed S3 GET, HTTP hello-world), and scenarios measured against them
// interleaved A-B-A-B in the same run, with a noise gate before every round, a human table
// and one JSON record per measurement.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// Workers sets the concurrency of each anchor. Zero fields take the documented defaults.
type Workers struct {
	PG    int // default 8 (pool connections = workers)
	Redis int // default 8
	S3    int // default 8
	HTTP  int // hello-world connections; default 64
}

// Config is one bench run. Anchors run for the services that are configured (hello-world
// always); a scenario whose reference is missing makes Run fail before measuring.
type Config struct {
	DatabaseURL string // pgbench_accounts is created here when absent
	PGScale     int    // pgbench scale when the table must be created; default 10 (1,000,000 rows)
	RedisURL    string
	RedisPrefix string // keys go under it; default "concord:bench:<random>:"
	S3          S3Config

	Duration  time.Duration // per measurement; default 5 s
	MaxOps    int64         // per measurement; 0 = bounded by Duration only
	Warmup    time.Duration // once per target before round 1, not reported; default Duration/5 (≤ 1 s); <0 disables
	Rounds    int           // default 2; fewer than 2 is raised to 2
	Timeout   time.Duration // per request / operation grace; default 10 s
	Workers   Workers
	Anchors   []string // which anchors to run; empty = every configured read anchor (AnchorPGInsert only when named)
	Scenarios []Scenario
	Gate      Gate

	Out        io.Writer // the table; nil = no table
	JSONPath   string    // one JSON record per line, per target and round; "" = none
	AppendJSON bool      // append to JSONPath instead of replacing it (a second phase of one run)

	// Labels copied into every JSON record.
	Commit string
	Seed   uint64 // also seeds key choice; default 1
	Size   int    // dataset size (patients)
	Phase  string // "cold" or "warm"; default "warm" ("cold" with Cold)

	// Cold, when set, makes this a cold pass: no anchors and no warm-up; every scenario is
	// measured once, right after Cold returns (Cold restarts the database and empties the
	// caches the scenarios use), and its records are labelled "cold". A cold figure has no
	// ratio: its anchor would be warm. An error from Cold ends the run.
	Cold func(ctx context.Context, scenario string) error
}

// Record is one measurement of one target in one round, as written to the JSON file.
type Record struct {
	Time        time.Time  `json:"time"`
	Commit      string     `json:"commit,omitempty"`
	Seed        uint64     `json:"seed"`
	Size        int        `json:"size,omitempty"`
	Phase       string     `json:"phase"`
	Round       int        `json:"round"`
	Name        string     `json:"name"`
	Kind        string     `json:"kind"` // "anchor" or "scenario"
	Reference   string     `json:"reference,omitempty"`
	RefValue    *float64   `json:"reference_value,omitempty"`
	Value       float64    `json:"value"`
	Unit        string     `json:"unit"`
	Ratio       *float64   `json:"ratio,omitempty"`
	OpsPerSec   float64    `json:"ops_per_s"`
	BytesPerSec float64    `json:"bytes_per_s"`
	Ops         int64      `json:"ops"`
	Workers     int        `json:"workers"`
	ElapsedMs   float64    `json:"elapsed_ms"`
	P50Ms       float64    `json:"p50_ms"`
	P95Ms       float64    `json:"p95_ms"`
	P99Ms       float64    `json:"p99_ms"`
	MaxMs       float64    `json:"max_ms"`
	Errors      Errors     `json:"errors"`
	Count       *int       `json:"count,omitempty"`
	CountCheck  string     `json:"count_check"` // "ok", "mismatch" or "n/a"
	Gate        GateResult `json:"gate"`
}

// Row is one line of the report: a target over all rounds.
type Row struct {
	Name      string
	Kind      string // "anchor" or "scenario"
	Unit      string
	Value     Spread // the target's value per round
	Reference string
	RefValue  Spread // the reference's value in the same rounds
	Ratio     Spread // value / reference value, per round; N == 0 without a reference
	P50       time.Duration
	P95       time.Duration
	P99       time.Duration // over all rounds' successful operations
	Max       time.Duration
	Errors    Errors // summed over rounds
	Count     string // "ok", "mismatch" or "n/a"
	// FirstError is the first failure seen, for the operator (it may carry server text and is
	// never written to the JSON records).
	FirstError string
}

// Report is what Run measured.
type Report struct {
	Rows     []Row
	Records  []Record
	Gates    []GateResult // one per round
	Failures []string     // wrong answers and count mismatches; non-empty means the run failed
}

// Row returns the row named name.
func (r *Report) Row(name string) (Row, bool) {
	for _, x := range r.Rows {
		if x.Name == name {
			return x, true
		}
	}
	return Row{}, false
}

// step is one measurement in a round: a target, and the target it is a ratio to.
type step struct {
	t   *target
	ref *target // nil for none
}

type measured struct {
	res   *Result
	value float64
	count *int
	rec   int // index in Report.Records
}

// Run measures the configured anchors and scenarios: each scenario right after its
// reference, for Rounds rounds, each round after the noise gate. It writes the table to
// cfg.Out and the records to cfg.JSONPath and returns the report. It returns errs.Invalid for
// a bad configuration, errs.Unavailable when a configured service cannot be prepared, and
// errs.Invalid with the report when an answer was wrong or result counts disagreed.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	const op = "bench.Run"
	cfg = withDefaults(cfg)

	want := func(name string) bool {
		if cfg.Cold != nil {
			return false // a cold pass measures scenarios alone
		}
		if len(cfg.Anchors) == 0 {
			return true
		}
		for _, a := range cfg.Anchors {
			if a == name {
				return true
			}
		}
		return false
	}
	byName := map[string]*target{}
	var order []*target // every target in first-seen order
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	add := func(t *target) error {
		if _, dup := byName[t.name]; dup {
			return errs.E(op, errs.Invalid, "two targets named "+t.name)
		}
		byName[t.name] = t
		order = append(order, t)
		return nil
	}
	if err := validate(cfg, want); err != nil {
		return nil, err
	}
	if cfg.DatabaseURL != "" && want(AnchorPG) {
		t, c, err := setupPG(ctx, cfg.DatabaseURL, cfg.PGScale, cfg.Workers.PG, cfg.Seed)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, c)
		add(t)
	}
	if cfg.DatabaseURL != "" && len(cfg.Anchors) > 0 && want(AnchorPGInsert) {
		t, c, err := setupPGInsert(ctx, cfg.DatabaseURL, cfg.Workers.PG)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, c)
		add(t)
	}
	if cfg.RedisURL != "" && want(AnchorRedis) {
		t, c, err := setupRedis(ctx, cfg.RedisURL, cfg.RedisPrefix, cfg.Workers.Redis, cfg.Seed)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, c)
		add(t)
	}
	if cfg.S3.Endpoint != "" && (want(AnchorS3_4K) || want(AnchorS3_64K) || want(AnchorS3_1M)) {
		ts, c, err := setupS3(ctx, cfg.S3, cfg.Workers.S3, cfg.Seed)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, c)
		for _, t := range ts {
			if want(t.name) {
				add(t)
			}
		}
	}
	if want(AnchorHello) {
		t, c, err := setupHello(ctx, cfg.Workers.HTTP, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, c)
		add(t)
	}
	anchors := len(order)
	env := &runEnv{timeout: cfg.Timeout}
	for _, s := range cfg.Scenarios {
		name := s.ScenarioName()
		if name == "" || isAnchor(name) {
			return nil, errs.E(op, errs.Invalid, fmt.Sprintf("scenario name %q is empty or an anchor's", name))
		}
		t, c, err := s.build(env)
		if err != nil {
			return nil, err
		}
		cleanups = append(cleanups, c)
		if err := add(t); err != nil {
			return nil, err
		}
	}
	kind := func(t *target) string {
		for _, x := range order[:anchors] {
			if x == t {
				return "anchor"
			}
		}
		return "scenario"
	}

	// Plan a round: every scenario right after its reference; targets that are nobody's
	// reference and have none run alone.
	isRef := map[string]bool{}
	refOf := map[string]*target{}
	for _, s := range cfg.Scenarios {
		r := s.Reference()
		if r == "" || cfg.Cold != nil {
			continue
		}
		rt, ok := byName[r]
		if !ok {
			return nil, errs.E(op, errs.Invalid, "scenario "+s.ScenarioName()+" refers to "+r+", which is not in this run")
		}
		if r == s.ScenarioName() {
			return nil, errs.E(op, errs.Invalid, "scenario "+r+" refers to itself")
		}
		isRef[r] = true
		refOf[s.ScenarioName()] = rt
	}
	var plan []step
	for _, t := range order {
		if rt, ok := refOf[t.name]; ok {
			plan = append(plan, step{t: t, ref: rt})
		} else if !isRef[t.name] {
			plan = append(plan, step{t: t})
		}
	}

	rep := &Report{}
	results := map[string][]measured{}
	measure := func(t *target, d time.Duration, round int, g GateResult) (measured, error) {
		if t.counts != nil {
			t.counts.reset()
		}
		if t.items != nil {
			t.items.Store(0)
		}
		res, err := Drive(ctx, Load{Workers: t.workers, Duration: d, MaxOps: cfg.MaxOps, Grace: cfg.Timeout, NewOp: t.newOp})
		if err != nil {
			return measured{}, err
		}
		m := measured{res: res, value: res.OpsPerSec()}
		switch t.metric {
		case Bytes:
			m.value = res.BytesPerSec()
		case Resources:
			if t.items != nil && res.Elapsed > 0 {
				m.value = float64(t.items.Load()) / res.Elapsed.Seconds()
			}
		}
		rec := Record{
			Time: time.Now().UTC(), Commit: cfg.Commit, Seed: cfg.Seed, Size: cfg.Size, Phase: cfg.Phase,
			Round: round, Name: t.name, Kind: kind(t), Value: m.value, Unit: t.unit,
			OpsPerSec: res.OpsPerSec(), BytesPerSec: res.BytesPerSec(), Ops: res.Ops, Workers: res.Workers,
			ElapsedMs: ms(res.Elapsed), P50Ms: ms(res.Hist.Quantile(.5)), P95Ms: ms(res.Hist.Quantile(.95)),
			P99Ms: ms(res.Hist.Quantile(.99)), MaxMs: ms(res.Hist.Max()), Errors: res.Errors,
			CountCheck: "n/a", Gate: g,
		}
		if t.counts != nil {
			n, seen, mismatch := t.counts.get()
			if seen {
				m.count = &n
				rec.Count = &n
				rec.CountCheck = "ok"
			}
			if mismatch {
				rec.CountCheck = "mismatch"
				rep.Failures = append(rep.Failures, fmt.Sprintf("%s round %d: answers carried different result counts", t.name, round))
			}
		}
		if res.Errors.Check > 0 {
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s round %d: %d wrong answers", t.name, round, res.Errors.Check))
		}
		rep.Records = append(rep.Records, rec)
		m.rec = len(rep.Records) - 1
		return m, nil
	}

	if cfg.Warmup > 0 {
		for _, t := range order {
			if _, err := Drive(ctx, Load{Workers: t.workers, Duration: cfg.Warmup, Grace: cfg.Timeout, NewOp: t.newOp}); err != nil {
				return nil, err
			}
		}
	}
	for round := 1; round <= cfg.Rounds; round++ {
		g := cfg.Gate.Wait(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rep.Gates = append(rep.Gates, g)
		for _, s := range plan {
			if cfg.Cold != nil {
				if err := cfg.Cold(ctx, s.t.name); err != nil {
					return nil, errs.E(op, errs.Unavailable, "cold restart before "+s.t.name, err)
				}
			}
			var ref measured
			if s.ref != nil {
				var err error
				if ref, err = measure(s.ref, cfg.Duration, round, g); err != nil {
					return nil, err
				}
				results[s.ref.name] = append(results[s.ref.name], ref)
			}
			m, err := measure(s.t, cfg.Duration, round, g)
			if err != nil {
				return nil, err
			}
			if s.ref != nil {
				rec := &rep.Records[m.rec]
				rec.Reference = s.ref.name
				rv := ref.value
				rec.RefValue = &rv
				if ref.value > 0 {
					ratio := m.value / ref.value
					rec.Ratio = &ratio
				}
				if m.count != nil && ref.count != nil && *m.count != *ref.count {
					rec.CountCheck = "mismatch"
					rep.Failures = append(rep.Failures, fmt.Sprintf("%s round %d: %d results, %s has %d",
						s.t.name, round, *m.count, s.ref.name, *ref.count))
				}
			}
			results[s.t.name] = append(results[s.t.name], m)
		}
	}

	for _, t := range order {
		ms := results[t.name]
		if len(ms) == 0 {
			continue
		}
		row := Row{Name: t.name, Kind: kind(t), Unit: t.unit, Count: "n/a"}
		var h Histogram
		var vals, refs, ratios []float64
		for _, m := range ms {
			h.Merge(&m.res.Hist)
			row.Errors.add(m.res.Errors)
			if row.FirstError == "" && m.res.FirstErr != nil {
				row.FirstError = m.res.FirstErr.Error()
			}
			vals = append(vals, m.value)
			rec := rep.Records[m.rec]
			if rec.Reference != "" {
				row.Reference = rec.Reference
				refs = append(refs, *rec.RefValue)
				if rec.Ratio != nil {
					ratios = append(ratios, *rec.Ratio)
				}
			}
			switch {
			case rec.CountCheck == "mismatch":
				row.Count = "mismatch"
			case rec.CountCheck == "ok" && row.Count != "mismatch":
				row.Count = "ok"
			}
		}
		row.Value, row.RefValue, row.Ratio = SpreadOf(vals), SpreadOf(refs), SpreadOf(ratios)
		row.P50, row.P95, row.P99, row.Max = h.Quantile(.5), h.Quantile(.95), h.Quantile(.99), h.Max()
		rep.Rows = append(rep.Rows, row)
	}

	if cfg.Out != nil {
		WriteTable(cfg.Out, rep)
	}
	if cfg.JSONPath != "" {
		if err := writeRecords(cfg.JSONPath, cfg.AppendJSON, rep.Records); err != nil {
			return rep, errs.E(op, errs.Internal, "cannot write the JSON records", err)
		}
	}
	if len(rep.Failures) > 0 {
		return rep, errs.E(op, errs.Invalid, fmt.Sprintf("bench failed: %d wrong answers or count mismatches", len(rep.Failures)))
	}
	return rep, nil
}

// validate checks names and references before any service is touched, so a typo does not
// cost a table fill.
func validate(cfg Config, want func(string) bool) error {
	const op = "bench.Run"
	for _, a := range cfg.Anchors {
		if !isAnchor(a) {
			return errs.E(op, errs.Invalid, "unknown anchor "+a)
		}
	}
	names := map[string]bool{}
	for _, a := range []struct {
		name string
		on   bool
	}{
		{AnchorPG, cfg.DatabaseURL != ""},
		{AnchorPGInsert, cfg.DatabaseURL != "" && len(cfg.Anchors) > 0},
		{AnchorRedis, cfg.RedisURL != ""},
		{AnchorS3_4K, cfg.S3.Endpoint != ""}, {AnchorS3_64K, cfg.S3.Endpoint != ""}, {AnchorS3_1M, cfg.S3.Endpoint != ""},
		{AnchorHello, true},
	} {
		names[a.name] = a.on && want(a.name)
	}
	for _, s := range cfg.Scenarios {
		n := s.ScenarioName()
		if n == "" || isAnchor(n) {
			return errs.E(op, errs.Invalid, fmt.Sprintf("scenario name %q is empty or an anchor's", n))
		}
		if names[n] {
			return errs.E(op, errs.Invalid, "two scenarios named "+n)
		}
		names[n] = true
	}
	for _, s := range cfg.Scenarios {
		r := s.Reference()
		if cfg.Cold != nil {
			continue // a cold pass runs no references
		}
		if r == s.ScenarioName() {
			return errs.E(op, errs.Invalid, "scenario "+r+" refers to itself")
		}
		if r != "" && !names[r] {
			return errs.E(op, errs.Invalid, "scenario "+s.ScenarioName()+" refers to "+r+", which is not in this run (service not configured?)")
		}
	}
	return nil
}

func withDefaults(c Config) Config {
	if c.PGScale <= 0 {
		c.PGScale = 10
	}
	if c.RedisPrefix == "" {
		c.RedisPrefix = "concord:bench:" + randomHex(4) + ":"
	}
	if c.Duration <= 0 {
		c.Duration = 5 * time.Second
	}
	if c.Cold != nil {
		c.Warmup, c.Rounds, c.Phase = -1, 1, "cold"
	}
	if c.Warmup == 0 {
		c.Warmup = min(c.Duration/5, time.Second)
	}
	if c.Rounds < 2 && c.Cold == nil {
		c.Rounds = 2
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Workers.PG <= 0 {
		c.Workers.PG = 8
	}
	if c.Workers.Redis <= 0 {
		c.Workers.Redis = 8
	}
	if c.Workers.S3 <= 0 {
		c.Workers.S3 = 8
	}
	if c.Workers.HTTP <= 0 {
		c.Workers.HTTP = 64
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Phase == "" {
		c.Phase = "warm"
	}
	return c
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// writeRecords writes one JSON object per line, replacing the file or appending to it.
func writeRecords(path string, appendTo bool, recs []Record) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if appendTo {
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// WriteTable prints the report as an aligned table, then the gate results and failures.
func WriteTable(w io.Writer, rep *Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tvalue [min–max]\tunit\treference\tref value\tratio median [min–max]\tp50\tp95\tp99\tmax\terrors (non2xx/timeout/transport/check)\tcount\t")
	for _, r := range rep.Rows {
		ref, refv, ratio := "-", "-", "-"
		if r.Reference != "" {
			ref, refv = r.Reference, num(r.RefValue.Median)
			if r.Ratio.N > 0 {
				ratio = fmt.Sprintf("%.3f [%.3f–%.3f]", r.Ratio.Median, r.Ratio.Min, r.Ratio.Max)
			}
		}
		fmt.Fprintf(tw, "%s\t%s [%s–%s]\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d/%d/%d\t%s\t\n",
			r.Name, num(r.Value.Median), num(r.Value.Min), num(r.Value.Max), r.Unit, ref, refv, ratio,
			dur(r.P50), dur(r.P95), dur(r.P99), dur(r.Max),
			r.Errors.NonOK, r.Errors.Timeout, r.Errors.Transport, r.Errors.Check, r.Count)
	}
	tw.Flush()
	var gates []string
	for i, g := range rep.Gates {
		switch {
		case g.Skipped:
			gates = append(gates, fmt.Sprintf("round %d: gate off", i+1))
		case g.Passed:
			gates = append(gates, fmt.Sprintf("round %d: quiet (others %.1f%% CPU)", i+1, 100*g.OtherCPU))
		default:
			gates = append(gates, fmt.Sprintf("round %d: NOT quiet after %s (others %.1f%% CPU)", i+1, g.Waited.Round(time.Second), 100*g.OtherCPU))
		}
	}
	fmt.Fprintln(w, "noise gate:", strings.Join(gates, "; "))
	for _, r := range rep.Rows {
		if r.FirstError != "" {
			fmt.Fprintf(w, "first error of %s: %s\n", r.Name, r.FirstError)
		}
	}
	for _, f := range rep.Failures {
		fmt.Fprintln(w, "FAIL:", f)
	}
}

func num(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
