package portal

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserMessages has a patient write to her clinic in Chromium and read the thread and
// her inbox, checking both with axe-core at 1100 px and 375 px, with screenshots
// messages-thread and messages-inbox, and the clinician's messages-clinician-inbox and
// messages-clinician-thread, to $CONCORD_SCREENSHOT_DIR.
func TestBrowserMessages(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	se := newShareEnv(t, true)
	browserSignIn(t, ctx, se.base, "alice", "alice-pw", "table.results")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`nav a[href="/messages"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/messages/new"]`)),
		chromedp.Click(chromedp.CSS(`a[href="/messages/new"]`)),
		chromedp.WaitVisible(chromedp.ID("subject")),
		chromedp.SendKeys(chromedp.ID("subject"), "Question about my glucose result"),
		chromedp.SendKeys(chromedp.ID("body"), "Hello, my glucose was 7.9. Should I come in for a follow-up visit?"),
		chromedp.Click(chromedp.CSS("form.share-form button")),
		chromedp.WaitVisible(chromedp.CSS("ol.messages")),
	); err != nil {
		t.Fatalf("send message: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil || !strings.Contains(text, "Should I come in") || !strings.Contains(text, "Alice") {
		t.Errorf("thread page: %.300s (%v)", text, err)
	}
	checkWidths(t, ctx, "messages-thread", "/messages/{id}")
	if err := chromedp.Do(ctx, chromedp.Navigate(se.base+"/messages"), chromedp.WaitVisible(chromedp.CSS("ul.threads"))); err != nil {
		t.Fatalf("inbox: %v", err)
	}
	checkWidths(t, ctx, "messages-inbox", "/messages")

	// The clinic's clinician finds it in the staff inbox and opens it.
	if err := NewStaffStore(se.pool).AddStaff(context.Background(), se.op.Issuer(), "sub-doc-1", Staff{Role: RoleClinician, Org: "riverside", Name: "Dr. Sam Jones"}); err != nil {
		t.Fatal(err)
	}
	doc := browser(t)
	browserSignIn(t, doc, se.base, "drjones", "jones-pw", "ul.threads")
	checkWidths(t, doc, "messages-clinician-inbox", "/staff")
	if err := chromedp.Do(doc, chromedp.Click(chromedp.CSS(`ul.threads a`)), chromedp.WaitVisible(chromedp.CSS("ol.messages"))); err != nil {
		t.Fatalf("clinician opens the thread: %v", err)
	}
	checkWidths(t, doc, "messages-clinician-thread", "/staff/messages/{id}")
}
