package exchange

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
)

// TestDirectoryOrganizationTotalEveryPage: with _total=accurate every page of an
// Organization search gives the same total, the directory's matches and the stored ones
// together: a page the directory fills, the page where the stored matches start, and the
// stored search's own later pages (_cursor).
func TestDirectoryOrganizationTotalEveryPage(t *testing.T) {
	env := newDirEnv(t)
	// A second stored Organization, so the stored matches need a page of their own.
	if _, err := store.New(env.pool).Put(context.Background(), env.pool, store.Write{
		Resource: fhir.MustParse([]byte(`{"resourceType":"Organization","name":"Gamma"}`)), MemberID: "a", At: time.Now(),
		Source: searchBase + "/members/a", Tags: []fhir.Coding{{System: systemSourceMember, Code: "a"}}}); err != nil {
		t.Fatal(err)
	}
	tok := token(t, "client-b", "b", "system/Organization.rs")
	const want = 5 // concord, member-a, member-b, and the two stored
	for _, first := range []string{"/fhir/Organization?_total=accurate&_count=2", "/fhir/Organization?_total=accurate&_count=4"} {
		seen := 0
		for next, page := first, 1; next != ""; page++ {
			b := env.search(t, tok, next)
			if b.Total == nil || *b.Total != want {
				t.Errorf("%s page %d (%s): total %s, want %d", first, page, next, showTotal(b.Total), want)
			}
			seen += len(b.Entry)
			next = b.next()
		}
		if seen != want {
			t.Errorf("%s: %d entries over all pages, want %d", first, seen, want)
		}
	}
}

func showTotal(n *int) string {
	if n == nil {
		return "none"
	}
	return strconv.Itoa(*n)
}
