package records_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

// TestSearchBoundsRowsExamined: what bounds the rows a search examines is ScanTime alone.
// A regional search whose rows are all denied answers an empty last page, with no next
// link (no count of rows examined cuts it short, which would tell that hidden rows exist),
// and a total over more than CountLimit denied rows is answered, 0, never refused. When
// ScanTime passes before the store's first rows come back (the store is slow), a page and
// a total are errs.Unavailable alike, whether the rows are the caller's own or hidden from
// it: a client may retry, and is not told to narrow a search the store was slow to answer.
// (TestSearchPagesResumeAfterScanTime and TestSearchScanTimeIsPerRequest run out of
// ScanTime later in a search.)
func TestSearchBoundsRowsExamined(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	f.dirs.by = map[string][]consent.Directive{} // no consent anywhere: every foreign row is denied
	h, err := audit.NewHasher(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	searcher := func(scan time.Duration) *records.Searcher {
		t.Helper()
		x, err := records.NewSearcher(f.svc, records.SearchConfig{CursorKey: bytes.Repeat([]byte{9}, 32), Hasher: h,
			CountLimit: 2, ScanTime: scan})
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	x := searcher(time.Minute)
	outsider := records.Viewer{Client: "client-z", Org: "z", Role: consent.RoleSystem, Purpose: consent.PurposeTreatment, RequestID: "rz"}
	p, err := x.Search(ctx, outsider, "Patient", query(t, "family=smith&_count=1&_total=none"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Matches) != 0 || p.Next != "" {
		t.Fatalf("3 denied Patients: %d matches, next %q; want an empty last page, no next link", len(p.Matches), p.Next)
	}
	if p, err := x.Search(ctx, outsider, "Patient", query(t, "family=smith&_total=accurate")); err != nil || p.Total == nil || *p.Total != 0 {
		t.Fatalf("total over more than CountLimit denied rows: %v, %v; want 0", p.Total, err)
	}
	// Within the default bounds the same total is answered.
	p, err = f.x.Search(ctx, outsider, "Patient", query(t, "family=smith&_total=accurate"))
	if err != nil || p.Total == nil || *p.Total != 0 {
		t.Fatalf("default bounds: total %v, %v; want 0", p.Total, err)
	}
	// ScanTime over before the first rows come back: unavailable, for the caller's own rows
	// as for hidden ones.
	slow := searcher(time.Nanosecond)
	for _, v := range []records.Viewer{outsider, memberA} {
		for _, raw := range []string{"family=smith&_count=1&_total=none", "family=smith&_total=accurate", "family=smith&_summary=count"} {
			_, err := slow.Search(ctx, v, "Patient", query(t, raw))
			if errs.CodeOf(err) != errs.Unavailable {
				t.Fatalf("%s for %s, ScanTime over before the store answered: %v; want Unavailable (the store is slow)", raw, v.Org, err)
			}
		}
	}
}

// steppingClock returns a clock for records.SetScanClock that moves on by step each time
// it is read, so a search runs out of ScanTime after a known number of checks: with a
// ScanTime of n steps, after about n reads.
func steppingClock(step time.Duration) func() time.Time {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(step)
		return now
	}
}

// scanSearcher is a Searcher over f whose ScanTime runs out after about steps reads of
// its clock.
func scanSearcher(t *testing.T, f *regional, steps int) *records.Searcher {
	t.Helper()
	h, err := audit.NewHasher(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	x, err := records.NewSearcher(f.svc, records.SearchConfig{CursorKey: bytes.Repeat([]byte{9}, 32), Hasher: h,
		ScanTime: time.Duration(steps) * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	records.SetScanClock(x, steppingClock(time.Millisecond))
	return x
}

// TestSearchPagesResumeAfterScanTime: a page that runs out of ScanTime is answered as far
// as it got, never refused. With a ScanTime that lets each request examine only its first
// store batch and a few rows more, member a pages P's Observations under _sort=-date with
// 150 rows hidden from it before the 10 it may see and 150 after: every request answers,
// pages come back short (or empty) with a next link while hidden rows are examined, and
// following the links yields every visible row exactly once, and never a hidden one. Each
// request's audit events name exactly the rows its page shows.
func TestSearchPagesResumeAfterScanTime(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	const hidden = 150
	addDatedObservations(t, f, "b", f.pb, "PSY", "2025-06-01", hidden)
	addObservations(t, f, "b", f.pb, "PSY", hidden)
	x := scanSearcher(t, f, 10)
	for _, count := range []int{3, 10} {
		q := query(t, fmt.Sprintf("patient=%s&_sort=-date&_count=%d", f.pa, count))
		var got []string
		short := 0
		for pages := 1; ; pages++ {
			if pages > 2*hidden+len(f.visible)+2 {
				t.Fatalf("_count=%d: paging does not end", count)
			}
			f.log.events = nil
			p, err := x.Search(ctx, memberA, "Observation", q)
			if err != nil {
				t.Fatalf("_count=%d, page %d: %v; want the page found so far", count, pages, err)
			}
			var audited []string
			for _, ev := range f.log.events {
				for _, r := range ev.Resources {
					audited = append(audited, r.ID)
				}
			}
			if slices.Sort(audited); !slices.Equal(audited, ids(p.Matches)) {
				t.Fatalf("_count=%d, page %d: audit names %v; want exactly the page's %v", count, pages, audited, ids(p.Matches))
			}
			for _, st := range p.Matches {
				if !f.visible[st.ID] {
					t.Fatalf("_count=%d: page %d shows %s, which member a may not see", count, pages, st.ID)
				}
				got = append(got, st.ID)
			}
			if len(p.Matches) > count {
				t.Fatalf("_count=%d: page %d has %d matches", count, pages, len(p.Matches))
			}
			if p.Next == "" {
				break
			}
			if len(p.Matches) < count {
				short++
			}
			q = url.Values{records.CursorParam: {p.Next}}
		}
		if short == 0 {
			t.Fatalf("_count=%d: no page came back short with a next link; the test does not run out of ScanTime", count)
		}
		if slices.Sort(got); !slices.Equal(got, keys(f.visible)) {
			t.Fatalf("_count=%d: paged through %v; want the %d rows member a may see, each once", count, got, len(f.visible))
		}
	}
}

// TestSearchScanTimeIsPerRequest: one ScanTime deadline bounds a whole request, its page,
// total and _revinclude together, not each afresh. A page that ran out of time leaves none
// for a total (errs.Invalid, narrow the search) or a _revinclude (errs.Invalid, naming
// it), though either would fit in one store batch. A total alone that runs out of time
// after its first batch is refused the same way; one whose deadline passes before the
// store answers at all is errs.Unavailable.
func TestSearchScanTimeIsPerRequest(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	// 150 hidden rows after P's 10 visible ones under _sort=-date: a page of 20 reads the
	// visible ones in its first batch and is still short when its time runs out.
	addObservations(t, f, "b", f.pb, "PSY", 150)
	x := scanSearcher(t, f, 10)
	base := "patient=" + f.pa + "&_sort=-date&_count=20"
	p, err := x.Search(ctx, memberA, "Observation", query(t, base))
	if err != nil || len(p.Matches) != len(f.visible) || p.Next == "" {
		t.Fatalf("page alone: %d matches, next %q, %v; want the %d visible rows and a next link", len(p.Matches), p.Next, err, len(f.visible))
	}
	_, err = x.Search(ctx, memberA, "Observation", query(t, base+"&_total=accurate"))
	if errs.CodeOf(err) != errs.Invalid || !strings.Contains(errs.MessageOf(err), "narrow") {
		t.Fatalf("total after a page that ran out of time: %v; want Invalid (narrow the search)", err)
	}
	_, err = x.Search(ctx, memberA, "Observation", query(t, base+"&_revinclude=DiagnosticReport:result"))
	if errs.CodeOf(err) != errs.Invalid || !strings.Contains(errs.MessageOf(err), "_revinclude") {
		t.Fatalf("_revinclude after a page that ran out of time: %v; want Invalid naming _revinclude", err)
	}
	// With the time its own, the same total fits in its first batch and is answered.
	for _, raw := range []string{"_summary=count", "_count=0"} {
		p, err := x.Search(ctx, memberA, "Observation", query(t, "patient="+f.pa+"&"+raw))
		if err != nil || p.Total == nil || *p.Total != len(f.visible) {
			t.Fatalf("%s: total %v, %v; want %d", raw, p.Total, err, len(f.visible))
		}
	}
	// More rows than one batch of a total: out of time after the first, refused.
	addObservations(t, f, "b", f.pb, "PSY", 500)
	for _, raw := range []string{"_summary=count", "_count=0"} {
		_, err := x.Search(ctx, memberA, "Observation", query(t, "patient="+f.pa+"&"+raw))
		if errs.CodeOf(err) != errs.Invalid || !strings.Contains(errs.MessageOf(err), "narrow") {
			t.Fatalf("%s over more than a batch, out of time: %v; want Invalid (narrow the search)", raw, err)
		}
	}
	// A deadline that has passed before the store answers: the store is slow.
	slow := scanSearcher(t, f, 1)
	records.SetScanClock(slow, steppingClock(time.Second)) // each read a second on: past it at once
	for _, raw := range []string{"_count=5", "_summary=count", "_total=accurate"} {
		_, err := slow.Search(ctx, memberA, "Observation", query(t, "patient="+f.pa+"&"+raw))
		if errs.CodeOf(err) != errs.Unavailable {
			t.Fatalf("%s, the store slower than ScanTime: %v; want Unavailable", raw, err)
		}
	}
}
