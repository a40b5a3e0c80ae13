package portal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
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
		{ID: "note-1", Title: "Progress note", Date: time.Date(2026, 8, 12, 0, 0, 0, 0, time.UTC), Sources: []string{"Riverside Family Clinic", "Valley Labs"}, Copies: "2 copies from 2 members", ContentType: "text/plain", Size: 24, Status: "current"},
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
