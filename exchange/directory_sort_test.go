package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
)

// putOrganization stores an Organization named name as member sent it at at, and returns
// its id.
func (env *dirEnv) putOrganization(t *testing.T, member, name string, at time.Time) string {
	t.Helper()
	st, err := store.New(env.pool).Put(context.Background(), env.pool, store.Write{
		Resource: fhir.MustParse([]byte(`{"resourceType":"Organization","name":"` + name + `"}`)), MemberID: member, At: at,
		Source: searchBase + "/members/" + member, Tags: []fhir.Coding{{System: systemSourceMember, Code: member}}})
	if err != nil {
		t.Fatal(err)
	}
	return st.ID
}

// pages follows next links from first and returns every entry's Type/id in order, failing
// t when a page holds more than count entries or, with wantTotal >= 0, gives another total.
func (env *dirEnv) pages(t *testing.T, tok, first string, count, wantTotal int) []string {
	t.Helper()
	var all []string
	for next, n := first, 1; next != ""; n++ {
		if n > 20 {
			t.Fatalf("%s: more than 20 pages", first)
		}
		b := env.search(t, tok, next)
		if len(b.Entry) > count {
			t.Fatalf("%s page %d: %d entries over _count %d", first, n, len(b.Entry), count)
		}
		if wantTotal >= 0 && (b.Total == nil || *b.Total != wantTotal) {
			t.Errorf("%s page %d: total %s, want %d", first, n, showTotal(b.Total), wantTotal)
		}
		all, next = append(all, b.ids()...), b.next()
	}
	return all
}

// TestDirectoryOrganizationSort: _sort=_lastUpdated and -_lastUpdated order the whole
// Organization result, directory entries and member-sent Organizations together: the
// member-sent ones by when they changed, then the directory's, which have no lastUpdated
// and sort last either way (by id), the same whatever the page size, each page giving the
// same total. A _sort the two sources cannot be ordered by together (_id, name beside
// another key) is a 400 OperationOutcome naming _sort.
func TestDirectoryOrganizationSort(t *testing.T) {
	env := newDirEnv(t)
	gamma := env.putOrganization(t, "a", "Gamma", time.Now().Add(time.Minute))
	tok := token(t, "client-b", "b", "system/Organization.rs")
	stored, dir := "Organization/"+env.storedOrg, []string{"Organization/concord", "Organization/member-a", "Organization/member-b"}
	for _, tt := range []struct {
		sort string
		want []string
	}{
		{"_lastUpdated", append([]string{stored, "Organization/" + gamma}, dir...)},
		{"-_lastUpdated", append([]string{"Organization/" + gamma, stored}, dir...)},
	} {
		for _, count := range []int{1, 2, 3, 4, 5, 20} {
			got := env.pages(t, tok, fmt.Sprintf("/fhir/Organization?_sort=%s&_count=%d&_total=accurate", tt.sort, count), count, 5)
			if !slices.Equal(got, tt.want) {
				t.Errorf("_sort=%s _count=%d:\n got %v\nwant %v", tt.sort, count, got, tt.want)
			}
		}
	}
	// With a filter, and without _total.
	if got, want := env.pages(t, tok, "/fhir/Organization?identifier=urn:oid:1.2.3.97&_sort=-_lastUpdated&_count=1", 1, -1), []string{stored, "Organization/member-a"}; !slices.Equal(got, want) {
		t.Errorf("by identifier: %v, want %v", got, want)
	}
	// Without _sort the directory still comes first.
	if got, want := env.pages(t, tok, "/fhir/Organization?_count=2", 2, -1), append(slices.Clone(dir), "Organization/"+gamma, stored); !slices.Equal(got, want) {
		t.Errorf("no _sort: %v, want %v", got, want)
	}
	// The CapabilityStatement says what _sort takes.
	code, body := env.do(t, "", http.MethodGet, "/fhir/metadata", "")
	var cs struct {
		Rest []struct {
			Resource []struct{ Type, Documentation string }
		}
	}
	if err := json.Unmarshal(body, &cs); code != http.StatusOK || err != nil {
		t.Fatalf("metadata: %d %v", code, err)
	}
	for _, r := range cs.Rest[0].Resource {
		if r.Type == "Organization" && !strings.Contains(r.Documentation, "_sort takes _lastUpdated, -_lastUpdated, name or -name") {
			t.Errorf("Organization documentation: %q", r.Documentation)
		}
	}
	for _, sort := range []string{"_id", "-_id", "_lastUpdated,name", "name,_lastUpdated", "-name,name", "name&_sort=-name", "alias"} {
		code, body := env.do(t, tok, http.MethodGet, "/fhir/Organization?_sort="+sort, "")
		if code != http.StatusBadRequest || !bytes.Contains(body, []byte(`"resourceType":"OperationOutcome"`)) || !bytes.Contains(body, []byte("_sort")) {
			t.Errorf("_sort=%s: %d %s", sort, code, body)
		}
	}
}

// TestDirectoryOrganizationSortByName: _sort=name and -name order directory entries and
// member-sent Organizations together by name, case and accents ignored, ties by id (a
// member-sent "B" before Organization/member-b, named b), an Organization without a name
// last either way; the order and the total are the same whatever the page size, the next
// links page by _offset, and a filter, a count, the page's _revinclude and
// _include=Organization:endpoint follow the order. _cursor does not page it.
func TestDirectoryOrganizationSortByName(t *testing.T) {
	env := newDirEnv(t)
	now := time.Now()
	gamma := env.putOrganization(t, "a", "Gamma", now.Add(time.Minute))
	abacus := env.putOrganization(t, "a", "ÁBACUS", now.Add(2*time.Minute))
	twin := env.putOrganization(t, "b", "B", now.Add(3*time.Minute))
	st, err := store.New(env.pool).Put(context.Background(), env.pool, store.Write{
		Resource: fhir.MustParse([]byte(`{"resourceType":"Organization","active":true}`)), MemberID: "a", At: now,
		Source: searchBase + "/members/a", Tags: []fhir.Coding{{System: systemSourceMember, Code: "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	unnamed := st.ID
	if _, err := store.New(env.pool).Put(context.Background(), env.pool, store.Write{
		Resource: fhir.MustParse([]byte(`{"resourceType":"PractitionerRole","organization":{"reference":"Organization/` + gamma + `"}}`)), MemberID: "a", At: now,
		Source: searchBase + "/members/a", Tags: []fhir.Coding{{System: systemSourceMember, Code: "a"}}}); err != nil {
		t.Fatal(err)
	}
	tok := token(t, "client-b", "b", "system/Organization.rs system/PractitionerRole.rs system/Endpoint.rs")
	org := func(id string) string { return "Organization/" + id }
	if twin > "member-b" {
		t.Fatalf("test setup: stored id %s does not sort before member-b", twin)
	}
	// Folded names: a, abacus, alpha as b knows it, b (twin), b (member-b), concord, gamma; then no name.
	asc := []string{org("member-a"), org(abacus), org(env.storedOrg), org(twin), org("member-b"), org("concord"), org(gamma), org(unnamed)}
	desc := []string{org(gamma), org("concord"), org(twin), org("member-b"), org(env.storedOrg), org(abacus), org("member-a"), org(unnamed)}
	for _, tt := range []struct {
		sort string
		want []string
	}{{"name", asc}, {"-name", desc}} {
		for _, count := range []int{1, 2, 3, 5, 7, 8, 20} {
			first := fmt.Sprintf("/fhir/Organization?_sort=%s&_count=%d&_total=accurate", tt.sort, count)
			if got := env.pages(t, tok, first, count, len(tt.want)); !slices.Equal(got, tt.want) {
				t.Errorf("_sort=%s _count=%d:\n got %v\nwant %v", tt.sort, count, got, tt.want)
			}
		}
	}
	// The next links keep the query and page by _offset.
	b := env.search(t, tok, "/fhir/Organization?_sort=-name&_count=3")
	if next := b.next(); !strings.Contains(next, "_offset=3") || !strings.Contains(next, "_sort=-name") || strings.Contains(next, "_cursor") {
		t.Errorf("next link %q", next)
	}
	if b.Total == nil || *b.Total != len(desc) {
		t.Errorf("first page total %s, want %d", showTotal(b.Total), len(desc))
	}
	// With a filter; a count alone.
	if got, want := env.pages(t, tok, "/fhir/Organization?identifier=urn:oid:1.2.3.97&_sort=name&_count=1", 1, -1), []string{org("member-a"), org(env.storedOrg)}; !slices.Equal(got, want) {
		t.Errorf("by identifier: %v, want %v", got, want)
	}
	if b := env.search(t, tok, "/fhir/Organization?_sort=name&_summary=count"); b.Total == nil || *b.Total != len(asc) || len(b.Entry) != 0 {
		t.Errorf("_summary=count: total %s, %d entries", showTotal(b.Total), len(b.Entry))
	}
	// The page's includes: the member-sent role naming Gamma comes with Gamma's page only,
	// the directory Endpoints with their Organizations' page.
	for _, tt := range []struct {
		offset int
		want   []string
	}{
		{0, nil},
		{5, []string{"PractitionerRole/"}},
	} {
		b := env.search(t, tok, fmt.Sprintf("/fhir/Organization?_sort=name&_count=3&_offset=%d&_revinclude=PractitionerRole:organization", tt.offset))
		inc := b.withMode("include")
		if len(inc) != len(tt.want) || len(inc) == 1 && !strings.HasPrefix(inc[0], tt.want[0]) {
			t.Errorf("_offset=%d: included %v, want %v", tt.offset, inc, tt.want)
		}
	}
	b = env.search(t, tok, "/fhir/Organization?_sort=-name&_count=2&_offset=2&_include=Organization:endpoint")
	if got, want := b.withMode("match"), []string{org(twin), org("member-b")}; !slices.Equal(got, want) {
		t.Errorf("page with endpoints: matches %v, want %v", got, want)
	}
	for _, e := range b.withMode("include") {
		if !strings.HasPrefix(e, "Endpoint/") {
			t.Errorf("page with endpoints includes %s", e)
		}
	}
	if len(b.withMode("include")) == 0 {
		t.Errorf("member-b's endpoints are not included")
	}
	if code, body := env.do(t, tok, http.MethodGet, "/fhir/Organization?_sort=name&_cursor=x", ""); code != http.StatusBadRequest || !bytes.Contains(body, []byte("_cursor")) {
		t.Errorf("_sort=name with _cursor: %d %s", code, body)
	}
}
