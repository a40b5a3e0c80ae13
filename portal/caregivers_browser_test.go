package portal

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/concord-hie/concord/internal/testkit"
)

// TestBrowserCaregivers has a patient invite a caregiver and the caregiver, opening the link
// signed out, sign in from it, come back to it, accept and read her labs in Chromium,
// checking the caregivers page and the caregiver's view with axe-core at 1100 px and 375 px
// (screenshots caregivers and caregiver-labs).
func TestBrowserCaregivers(t *testing.T) {
	t.Parallel()
	pool := testkit.DB(t)
	alog := auditLog(t, pool)
	e := newEnv(t, envOpts{proxies: NewProxyStore(pool, alog), secureCookies: true})
	ctx := browser(t)
	browserSignIn(t, ctx, e.base, "alice", "alice-pw", "table.results")
	var link string
	if err := chromedp.Do(ctx,
		chromedp.Navigate(e.base+"/caregivers"),
		chromedp.WaitVisible(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), "Nora Nguyen"),
		chromedp.Click(chromedp.CSS(`input[value="parent"]`)),
		chromedp.Click(chromedp.CSS("form.share-form button")),
		chromedp.WaitVisible(chromedp.ID("new-url")),
	); err != nil {
		t.Fatalf("invite: %v", err)
	}
	link, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("new-url")))
	if err != nil || !strings.Contains(link, "/caregiver/") {
		t.Fatalf("invitation link %q (%v)", link, err)
	}
	checkWidths(t, ctx, "caregivers", "/caregivers")

	// The caregiver opens the link signed out and signs in from it: the sign-in comes back
	// to the invitation, ready to accept.
	nora := browser(t)
	if err := chromedp.Do(nora,
		chromedp.Navigate(link),
		chromedp.Click(chromedp.CSS("form.signin button")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "newbie"),
		chromedp.SendKeys(chromedp.ID("password"), "newbie-pw"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action^="/caregiver/"] button`)),
	); err != nil {
		loc, _ := chromedp.Run(nora, chromedp.Location())
		t.Fatalf("sign in from the invitation: %v (at %s)", err, loc)
	}
	if loc, err := chromedp.Run(nora, chromedp.Location()); err != nil || loc != link {
		t.Errorf("after sign-in at %q (%v), want the invitation", loc, err)
	}
	if err := chromedp.Do(nora,
		chromedp.Click(chromedp.CSS(`form[action^="/caregiver/"] button`)),
		chromedp.WaitVisible(chromedp.CSS(".acting")),
		chromedp.WaitVisible(chromedp.CSS("table.results")),
	); err != nil {
		t.Fatalf("accept: %v", err)
	}
	text, err := chromedp.Run(nora, chromedp.Text(chromedp.CSS(".acting")))
	if err != nil || !strings.Contains(text, "Alice Nguyen") {
		t.Errorf("banner: %q (%v)", text, err)
	}
	checkWidths(t, nora, "caregiver-labs", "/labs as a caregiver")
}
