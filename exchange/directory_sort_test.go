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
// same total. A _sort the two sources cannot be ordered by together (name, _id) is a 400
// OperationOutcome naming _sort.
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
		if r.Type == "Organization" && !strings.Contains(r.Documentation, "_sort takes only _lastUpdated or -_lastUpdated") {
			t.Errorf("Organization documentation: %q", r.Documentation)
		}
	}
	for _, sort := range []string{"name", "-name", "_id", "-_id", "_lastUpdated,name"} {
		code, body := env.do(t, tok, http.MethodGet, "/fhir/Organization?_sort="+sort, "")
		if code != http.StatusBadRequest || !bytes.Contains(body, []byte(`"resourceType":"OperationOutcome"`)) || !bytes.Contains(body, []byte("_sort")) {
			t.Errorf("_sort=%s: %d %s", sort, code, body)
		}
	}
}
