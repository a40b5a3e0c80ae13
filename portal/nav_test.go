package portal

import (
	"net/http"
	"strings"
	"testing"
)

// TestNavigationMarksCurrentPage: the section link of the page on screen carries
// aria-current ("page" on the section's own page, "true" on a page within it); error pages
// mark none and are titled by what went wrong.
func TestNavigationMarksCurrentPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{documents: &memDocuments{person: "person-1", bytes: map[string][]byte{"n": []byte("x")},
		items: []DocumentItem{{ID: "n", Title: "Note", ContentType: "text/plain", Size: 1, Status: "current"}}}})
	c := newClient(t)
	e.signIn(t, c, "alice", "alice-pw")
	labs := c.getPrivate(e.base, "/labs").body
	if !strings.Contains(labs, `<a href="/labs" aria-current="page">`) || strings.Count(labs, "aria-current") != 1 {
		t.Errorf("labs page does not mark Lab results, alone, as current")
	}
	doc := c.getPrivate(e.base, "/documents/n").body
	if !strings.Contains(doc, `<a href="/documents" aria-current="true">`) || strings.Count(doc, "aria-current") != 1 {
		t.Errorf("a document does not mark Documents as its section")
	}
	missing := c.get(e.base + "/documents/none")
	if missing.status != http.StatusNotFound || strings.Contains(missing.body, "aria-current") ||
		!strings.Contains(missing.body, "<title>Page not found · Concord</title>") {
		t.Errorf("missing document: %d, marks a section or lacks its title", missing.status)
	}
}
