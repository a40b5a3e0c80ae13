package records_test

import (
	"bytes"
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/records"
)

// TestSearchBoundsRowsExamined: a regional search whose rows are all denied stops after
// the configured number of rows examined and answers a partial page with a next link
// (paging on reaches the end). A total counts only rows the caller may see against
// CountLimit: over more than CountLimit denied rows it is answered, 0, never refused, so a
// refusal does not tell that hidden rows exist (ScanTime bounds that scan).
func TestSearchBoundsRowsExamined(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	f.dirs.by = map[string][]consent.Directive{} // no consent anywhere: every foreign row is denied
	h, err := audit.NewHasher(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	x, err := records.NewSearcher(f.svc, records.SearchConfig{CursorKey: bytes.Repeat([]byte{9}, 32), Hasher: h,
		ExamineFactor: 1, ExamineMin: 1, CountLimit: 2, ScanTime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	outsider := records.Viewer{Client: "client-z", Org: "z", Role: consent.RoleSystem, Purpose: consent.PurposeTreatment, RequestID: "rz"}
	p, err := x.Search(ctx, outsider, "Patient", query(t, "family=smith&_count=1&_total=none"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Matches) != 0 || p.Next == "" {
		t.Fatalf("first page examined past its bound: %d matches, next %q; want an empty partial page with a next link", len(p.Matches), p.Next)
	}
	pages := 1
	for p.Next != "" {
		if pages++; pages > 10 {
			t.Fatal("paging does not end")
		}
		if p, err = x.Search(ctx, outsider, "Patient", url.Values{records.CursorParam: {p.Next}}); err != nil {
			t.Fatal(err)
		}
		if len(p.Matches) != 0 {
			t.Fatalf("denied Patient shown: %v", ids(p.Matches))
		}
	}
	if pages < 3 {
		t.Fatalf("%d pages for 3 denied Patients examined one per page; want at least 3", pages)
	}
	if p, err := x.Search(ctx, outsider, "Patient", query(t, "family=smith&_total=accurate")); err != nil || p.Total == nil || *p.Total != 0 {
		t.Fatalf("total over more than CountLimit denied rows: %v, %v; want 0", p.Total, err)
	}
	// Within the default bounds the same total is answered.
	p, err = f.x.Search(ctx, outsider, "Patient", query(t, "family=smith&_total=accurate"))
	if err != nil || p.Total == nil || *p.Total != 0 {
		t.Fatalf("default bounds: total %v, %v; want 0", p.Total, err)
	}
}
