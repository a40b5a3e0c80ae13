package portal

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// trend is a small server-rendered SVG sparkline of one test's numeric results, oldest to
// newest, with the reference range as a band when it parses as "low-high".
type trend struct {
	Width, Height int
	Points        string // polyline points, "x,y x,y ..."
	LastX, LastY  string
	BandY, BandH  string // the reference band; empty when there is none
	Label         string // the accessible description
}

const (
	trendW   = 180
	trendH   = 52
	trendPad = 5
)

// newTrend returns nil when fewer than two results (rows newest first) have numeric values.
// A cancelled or entered-in-error row is never plotted, whatever value it carries. The
// reference band is the newest plotted row's.
func newTrend(rows []labRow) *trend {
	type pt struct {
		t time.Time
		v float64
	}
	var pts []pt
	ref := ""
	for i := len(rows) - 1; i >= 0; i-- {
		if rows[i].state == "cancelled" || rows[i].state == "entered-in-error" {
			continue
		}
		v, ok := numeric(rows[i].Value)
		if ok {
			pts = append(pts, pt{rows[i].Effective, v})
			ref = rows[i].RefRange
		}
	}
	if len(pts) < 2 {
		return nil
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		lo, hi = math.Min(lo, p.v), math.Max(hi, p.v)
	}
	rlo, rhi, hasRange := refRange(ref)
	if hasRange {
		lo, hi = math.Min(lo, rlo), math.Max(hi, rhi)
	}
	if hi == lo {
		hi, lo = hi+1, lo-1
	}
	margin := (hi - lo) * 0.08
	lo, hi = lo-margin, hi+margin
	t0, t1 := pts[0].t, pts[len(pts)-1].t
	span := t1.Sub(t0).Seconds()
	x := func(i int, t time.Time) float64 {
		if span <= 0 {
			return trendPad + float64(i)*float64(trendW-2*trendPad)/float64(len(pts)-1)
		}
		return trendPad + t.Sub(t0).Seconds()/span*float64(trendW-2*trendPad)
	}
	y := func(v float64) float64 {
		return trendPad + (hi-v)/(hi-lo)*float64(trendH-2*trendPad)
	}
	var b strings.Builder
	var lx, ly float64
	for i, p := range pts {
		lx, ly = x(i, p.t), y(p.v)
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", lx, ly)
	}
	tr := &trend{
		Width: trendW, Height: trendH, Points: b.String(),
		LastX: fmt.Sprintf("%.1f", lx), LastY: fmt.Sprintf("%.1f", ly),
		Label: fmt.Sprintf("Trend of %d results from %s to %s", len(pts), t0.Format("2 Jan 2006"), t1.Format("2 Jan 2006")),
	}
	if hasRange {
		top, bottom := y(rhi), y(rlo)
		tr.BandY, tr.BandH = fmt.Sprintf("%.1f", top), fmt.Sprintf("%.1f", bottom-top)
		tr.Label += fmt.Sprintf("; shaded band is the reference range %s", ref)
	}
	return tr
}

// numeric parses a result value such as "5.4", "<0.5" or ">200" (the comparator dropped).
func numeric(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimLeft(s, "<>=≤≥ ")
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

// refRange parses "low-high" or "low - high" (also with an en dash).
func refRange(s string) (lo, hi float64, ok bool) {
	s = strings.ReplaceAll(s, "–", "-")
	a, b, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		return 0, 0, false
	}
	lo, ok1 := numeric(a)
	hi, ok2 := numeric(b)
	if !ok1 || !ok2 || hi <= lo {
		return 0, 0, false
	}
	return lo, hi, true
}
