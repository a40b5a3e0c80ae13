package records_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/records"
)

// addObservations stores n more Observations about patient from member, in one bulk
// insert; label, when not "", is a security label that hides them from other members
// (PSY under the fixture's default policies). They have no date, so they sort after every
// dated row under _sort=date and _sort=-date alike.
func addObservations(t testing.TB, f *regional, member, patient, label string, n int) {
	t.Helper()
	addDatedObservations(t, f, member, patient, label, "", n)
}

// addDatedObservations is addObservations with effectiveDateTime date ("" for none).
func addDatedObservations(t testing.TB, f *regional, member, patient, label, date string, n int) {
	t.Helper()
	sec := ""
	if label != "" {
		sec = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + label + `"}]},`
	}
	eff := ""
	if date != "" {
		eff = `,"effectiveDateTime":"` + date + `"`
	}
	body := []byte(`{"resourceType":"Observation",` + sec + `"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + patient + `"}` + eff + `}`)
	ws := make([]store.Write, n)
	for i := range ws {
		ws[i] = store.Write{Resource: fhir.MustParse(body), MemberID: member, PatientID: patient, At: time.Now(),
			Source: "https://concord.example/members/" + member}
	}
	ctx := context.Background()
	err := db.InTx(ctx, f.pool, func(tx db.Querier) error {
		_, err := store.New(f.pool).CreateMany(ctx, tx, ws)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSearchTotalIgnoresHiddenRows: whether a total is refused ("narrow the search")
// depends only on the rows the caller may see. Member a may see P's 10 unlabelled results;
// many more PSY-labelled ones that b holds for P, hidden from a, must not turn the total
// into a refusal (that would tell a that more than CountLimit rows exist). Enough rows
// that a may see still are refused.
func TestSearchTotalIgnoresHiddenRows(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	const limit = 20
	h, err := audit.NewHasher(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	x, err := records.NewSearcher(f.svc, records.SearchConfig{CursorKey: bytes.Repeat([]byte{9}, 32), Hasher: h,
		CountLimit: limit, ScanTime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	addObservations(t, f, "b", f.pb, "PSY", 3*limit)
	totals := []string{"_total=accurate", "_total=accurate&_count=3", "_summary=count", "_count=0"}
	check := func(want int) {
		t.Helper()
		for _, raw := range totals {
			p, err := x.Search(ctx, memberA, "Observation", query(t, "patient="+f.pa+"&"+raw))
			if err != nil {
				t.Fatalf("%s with %d visible and %d hidden rows: %v; want total %d", raw, want, 3*limit+1, err, want)
			}
			if p.Total == nil || *p.Total != want {
				t.Fatalf("%s: total %v; want %d (the rows member a may see)", raw, p.Total, want)
			}
		}
	}
	check(len(f.visible))
	// Exactly CountLimit visible rows are still counted.
	addObservations(t, f, "a", f.pa, "", limit-len(f.visible))
	check(limit)
	// One more visible row is refused, alike for every way of asking for a total.
	addObservations(t, f, "a", f.pa, "", 1)
	for _, raw := range totals {
		_, err := x.Search(ctx, memberA, "Observation", query(t, "patient="+f.pa+"&"+raw))
		if errs.CodeOf(err) != errs.Invalid || !strings.Contains(errs.MessageOf(err), "narrow") {
			t.Fatalf("%s over %d visible rows: %v; want Invalid (narrow the search)", raw, limit, err)
		}
	}
}

// TestSearchRevIncludeIgnoresHiddenRows: whether a _revinclude is refused depends only on
// the resources it would add that the caller may see. More than ten times MaxRevIncluded
// hidden Observations about P (PSY-labelled at b) must not refuse member a's Patient search
// that revincludes P's Observations, and must not appear; MaxRevIncluded visible ones are
// added, one more is refused.
func TestSearchRevIncludeIgnoresHiddenRows(t *testing.T) {
	if testing.Short() {
		t.Skip("stores more than 10,000 Observations")
	}
	f := setupRegional(t)
	ctx := context.Background()
	addObservations(t, f, "b", f.pb, "PSY", 10*records.MaxRevIncluded+1)
	q := query(t, "family=smith&_count=100&_revinclude=Observation:patient")
	p, err := f.x.Search(ctx, memberA, "Patient", q)
	if err != nil {
		t.Fatalf("%d visible and %d hidden Observations: %v; want them included", len(f.visible), 10*records.MaxRevIncluded+1, err)
	}
	if got, want := ids(p.Included), keys(f.visible); !slices.Equal(got, want) {
		t.Fatalf("revincluded %d resources; want the %d member a may see", len(got), len(want))
	}
	addObservations(t, f, "a", f.pa, "", records.MaxRevIncluded-len(f.visible))
	p, err = f.x.Search(ctx, memberA, "Patient", q)
	if err != nil || len(p.Included) != records.MaxRevIncluded {
		t.Fatalf("exactly MaxRevIncluded visible: %d included, %v; want %d", len(p.Included), err, records.MaxRevIncluded)
	}
	for _, st := range p.Included {
		if strings.Contains(string(st.Body), "PSY") {
			t.Fatalf("hidden Observation %s revincluded", st.ID)
		}
	}
	addObservations(t, f, "a", f.pa, "", 1)
	_, err = f.x.Search(ctx, memberA, "Patient", q)
	if errs.CodeOf(err) != errs.Invalid || !strings.Contains(errs.MessageOf(err), "_revinclude") {
		t.Fatalf("MaxRevIncluded+1 visible: %v; want Invalid naming _revinclude", err)
	}
}

// TestSearchPagesIgnoreHiddenRows: what a page holds, and whether it links a next page,
// depend only on the rows the caller may see. Member a may see P's 10 results; 150
// PSY-labelled ones that b holds for P, hidden from a and dated later, come first under
// _sort=-date, and 150 more, undated, come last. More than the 100 rows a page used to
// examine lie before the first visible row and after the last, so a page cut short by a
// bound that counted hidden rows (fewer than _count matches, or none, with a next link)
// would tell a that they exist. Every page but the last holds exactly _count rows, the
// last links no next page, and no empty page is ever linked.
func TestSearchPagesIgnoreHiddenRows(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	const hidden = 150
	addDatedObservations(t, f, "b", f.pb, "PSY", "2025-06-01", hidden)
	addObservations(t, f, "b", f.pb, "PSY", hidden)
	for _, count := range []int{3, 5, 10, 11} {
		p, err := f.x.Search(ctx, memberA, "Observation", query(t, fmt.Sprintf("patient=%s&_sort=-date&_count=%d", f.pa, count)))
		if err != nil {
			t.Fatalf("_count=%d: %v", count, err)
		}
		var got []string
		for pages := 1; ; pages++ {
			if pages > len(f.visible)+1 {
				t.Fatalf("_count=%d: paging does not end", count)
			}
			for _, st := range p.Matches {
				if !f.visible[st.ID] {
					t.Fatalf("_count=%d: page %d shows %s, which member a may not see", count, pages, st.ID)
				}
				got = append(got, st.ID)
			}
			if p.Next == "" {
				if len(p.Matches) == 0 && pages > 1 {
					t.Fatalf("_count=%d: page %d is empty but was linked", count, pages)
				}
				break
			}
			if len(p.Matches) != count {
				t.Fatalf("_count=%d: page %d has %d matches and a next link; want %d (hidden rows are not the caller's to count)", count, pages, len(p.Matches), count)
			}
			if p, err = f.x.Search(ctx, memberA, "Observation", url.Values{records.CursorParam: {p.Next}}); err != nil {
				t.Fatalf("_count=%d, page %d: %v", count, pages+1, err)
			}
		}
		if want := keys(f.visible); !slices.Equal(slices.Sorted(slices.Values(got)), want) {
			t.Fatalf("_count=%d: paged through %d results; want the %d member a may see, each once", count, len(got), len(want))
		}
		// A first page that holds every visible row links no next page and gives their total.
		if count >= len(f.visible) {
			p, err := f.x.Search(ctx, memberA, "Observation", query(t, fmt.Sprintf("patient=%s&_sort=-date&_count=%d", f.pa, count)))
			if err != nil || p.Next != "" || p.Total == nil || *p.Total != len(f.visible) {
				t.Fatalf("_count=%d over %d visible rows: next %q, total %v, %v; want no next link and total %d", count, len(f.visible), p.Next, p.Total, err, len(f.visible))
			}
		}
	}
}
