package records_test

import (
	"bytes"
	"context"
	"strings"
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
// and a total over more than CountLimit denied rows is answered, 0, never refused. Past
// ScanTime a page and a total are refused alike (errs.Invalid, narrow the search), whether
// the rows are the caller's own or hidden from it, never answered short.
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
	// Past ScanTime: refused, for the caller's own rows as for hidden ones.
	slow := searcher(time.Nanosecond)
	for _, v := range []records.Viewer{outsider, memberA} {
		for _, raw := range []string{"family=smith&_count=1&_total=none", "family=smith&_total=accurate"} {
			_, err := slow.Search(ctx, v, "Patient", query(t, raw))
			if errs.CodeOf(err) != errs.Invalid || !strings.Contains(errs.MessageOf(err), "narrow") {
				t.Fatalf("%s for %s past ScanTime: %v; want Invalid (narrow the search)", raw, v.Org, err)
			}
		}
	}
}
