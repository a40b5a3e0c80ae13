package portal

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/concord-hie/concord/internal/testkit"
)

// TestBrowserDocuments has a patient open her documents, read a rendered C-CDA and upload a
// file in Chromium, checking the list and the document with axe-core at 1100 px and 375 px,
// with screenshots documents-list and documents-ccda to $CONCORD_SCREENSHOT_DIR.
func TestBrowserDocuments(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	docs := &memDocuments{person: "person-1", uploads: map[string][]byte{}, bytes: map[string][]byte{
		"ccda-1": []byte(testCCDA), "note-1": []byte("Visit note: walk daily.\n")}}
	docs.items = []DocumentItem{
		{ID: "ccda-1", Title: "Discharge summary", Date: time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC), Sources: []string{"Riverside Family Clinic"}, ContentType: "application/xml", Size: int64(len(testCCDA)), Status: "current"},
		{ID: "note-1", Title: "Progress note", Date: time.Date(2026, 8, 12, 0, 0, 0, 0, time.UTC), Sources: []string{"Riverside Family Clinic", "Valley Labs"}, Copies: "2 copies from 2 organizations", ContentType: "text/plain", Size: 24, Status: "current"},
	}
	e := newEnv(t, envOpts{documents: docs, secureCookies: true})
	browserSignIn(t, ctx, e.base, "alice", "alice-pw", "table.results")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`nav a[href="/documents"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.documents")),
	); err != nil {
		t.Fatalf("documents page: %v", err)
	}
	checkWidths(t, ctx, "documents-list", "/documents")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href="/documents/ccda-1"]`)),
		chromedp.WaitVisible(chromedp.CSS(".ccda-body")),
	); err != nil {
		t.Fatalf("open the C-CDA: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil || !strings.Contains(text, "Medications") || !strings.Contains(text, "Atorvastatin") {
		t.Errorf("C-CDA page: %.300s (%v)", text, err)
	}
	checkWidths(t, ctx, "documents-ccda", "/documents/{id}")
	file := filepath.Join(t.TempDir(), "card.txt")
	if err := os.WriteFile(file, []byte("Vaccination card, typed out.\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.base+"/documents"),
		chromedp.WaitVisible(chromedp.ID("file")),
		chromedp.SetUploadFiles(chromedp.ID("file"), []string{file}),
		chromedp.Click(chromedp.CSS("form.upload-form button")),
		chromedp.WaitVisible(chromedp.CSS("p.flash")),
	); err != nil {
		t.Fatalf("upload: %v", err)
	}
	if text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("ul.uploads"))); err != nil || !strings.Contains(text, "Your upload") {
		t.Errorf("uploads after the upload: %q (%v)", text, err)
	}
}

// TestBrowserDocumentClusters has a patient open her documents in Chromium at 1280 px and
// 390 px: the discharge summary two members sent three times is one row saying "3 copies
// from 2 members", its copies open from a disclosure under it, and each copy opens its own
// page and downloads. Nothing overflows; axe-core finds nothing. Screenshots
// documents-clusters-1280 and documents-clusters-390 go to $CONCORD_SCREENSHOT_DIR.
func TestBrowserDocumentClusters(t *testing.T) {
	t.Parallel()
	ctx := testkit.Browser(t, 1280, 900)
	docs := dischargeCopies(t)
	e := newEnv(t, envOpts{documents: docs, secureCookies: true})
	browserSignIn(t, ctx, e.base, "alice", "alice-pw", "table.results")
	open := func() {
		t.Helper()
		if err := chromedp.Do(ctx,
			chromedp.Navigate(e.base+"/documents"),
			chromedp.WaitVisible(chromedp.CSS("tr.clustered")),
			chromedp.Click(chromedp.CSS("details.copies summary")),
			chromedp.WaitVisible(chromedp.CSS("details.copies li")),
		); err != nil {
			t.Fatalf("documents page, copies open: %v", err)
		}
	}
	open()
	count, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("tr.clustered .copies-count")))
	if err != nil || count != "3 copies from 2 organizations" {
		t.Errorf("cluster count %q (%v)", count, err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("table.documents tbody tr:not(.copies-row)").length`))
	if err != nil || rows != 2 {
		t.Errorf("%d document rows, want 2 (three copies listed once, and the note) (%v)", rows, err)
	}
	links, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("details.copies li a")].map(a => a.getAttribute("href"))`))
	want := []string{"/documents/ds-river", "/documents/ds-river/file", "/documents/ds-valley-2", "/documents/ds-valley-2/file", "/documents/ds-valley", "/documents/ds-valley/file"}
	if err != nil || strings.Join(links, " ") != strings.Join(want, " ") {
		t.Errorf("links of the copies %q, want %q (%v)", links, want, err)
	}
	for _, w := range []int64{1280, 390} {
		name := fmt.Sprintf("documents-clusters-%d", w)
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(w, 844)); err != nil {
			t.Fatal(err)
		}
		overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth ||
			[...document.querySelectorAll("details.copies li")].some(li => li.scrollWidth > li.clientWidth)`))
		if err != nil || overflow {
			t.Errorf("documents with copies open overflow at %d px (%v)", w, err)
		}
		screenshot(t, ctx, name)
		axeCheck(t, ctx, name)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ds-river", "ds-valley-2", "ds-valley"} {
		open()
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(`details.copies a[href="/documents/`+id+`"]`)),
			chromedp.WaitVisible(chromedp.CSS("section.document h1")),
		); err != nil {
			t.Fatalf("open the copy %s: %v", id, err)
		}
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil || loc != e.base+"/documents/"+id {
			t.Errorf("copy %s opened %q (%v)", id, loc, err)
		}
		status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/documents/`+id+`/file").then(r => r.status)`, chromedp.EvalAwaitPromise))
		if err != nil || status != 200 {
			t.Errorf("download of the copy %s: %d (%v)", id, status, err)
		}
	}
}
