package portal

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserShareLink has a patient create a share link in Chromium and opens it, checking
// both pages with axe-core at 1100 px and 375 px, with screenshots share-create and
// share-open to $CONCORD_SCREENSHOT_DIR.
func TestBrowserShareLink(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	se := newShareEnv(t, true)
	browserSignIn(t, ctx, se.base, "alice", "alice-pw", "table.results")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href="/labs/share"]`)),
		chromedp.WaitVisible(chromedp.ID("note")),
		chromedp.SendKeys(chromedp.ID("note"), "Dr. Lee, second opinion"),
		chromedp.Click(chromedp.CSS("form.share-form button")),
		chromedp.WaitVisible(chromedp.ID("new-url")),
	); err != nil {
		t.Fatalf("create link: %v", err)
	}
	link, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("new-url").value`))
	if err != nil || !strings.HasPrefix(link, se.base+"/share/") {
		t.Fatalf("new link %q (%v)", link, err)
	}
	checkWidths(t, ctx, "share-create", "/labs/share")

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1100, 900), chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("table.results"))); err != nil {
		t.Fatalf("open link: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil || !strings.Contains(text, "Alice shared these lab results") || !strings.Contains(text, "Glucose") {
		t.Errorf("shared page: %.300s (%v)", text, err)
	}
	checkWidths(t, ctx, "share-open", "/share/…")
}

// checkWidths screenshots the current page as name at 1100 px and at 375 px (name-375),
// runs axe-core at both, and fails when it overflows horizontally at 375 px.
func checkWidths(t *testing.T, ctx context.Context, name, page string) {
	t.Helper()
	screenshot(t, ctx, name)
	axeCheck(t, ctx, page)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(375, 800)); err != nil {
		t.Fatal(err)
	}
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil || overflow {
		t.Errorf("%s overflows at 375 px (%v)", page, err)
	}
	screenshot(t, ctx, name+"-375")
	axeCheck(t, ctx, page+" at 375 px")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1100, 900)); err != nil {
		t.Fatal(err)
	}
}
