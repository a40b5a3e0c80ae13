package portal

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// ageBrowserAuth moves the authentication time of the browser's portal session d into the
// past, as ageAuth does for an HTTP client.
func ageBrowserAuth(t *testing.T, ctx context.Context, e *env, d time.Duration) {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{e.base}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range res.Cookies {
		if ck.Name != e.srv.cookie.session {
			continue
		}
		sess, err := e.srv.sessions.Load(t.Context(), ck.Value)
		if err != nil {
			t.Fatal(err)
		}
		sess.AuthTime = sess.AuthTime.Add(-d)
		if err := e.srv.sessions.Save(t.Context(), ck.Value, sess); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("the browser holds no portal session")
}

// TestBrowserStepUpKeepsTypedForm: in Chromium, an officer types a signed paper consent
// while the sign-in grows old. Sending it asks for a fresh sign-in (with the second factor)
// and says the form is kept; after it, the consent page shows the form as typed, with a
// note, and sending it records the consent. On the old sign-in the reviews page offers
// the sign-in instead of identity decisions. Screenshots to $CONCORD_SCREENSHOT_DIR.
func TestBrowserStepUpKeepsTypedForm(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	pe := newPrivacyEnv(t, true)
	browserSignIn(t, ctx, pe.base, "privo", "privo-pw", "dl.facts")
	path := "/officer/consent?patient=" + alicePerson
	signed := time.Now().UTC().AddDate(0, 0, -2).Format("2006-01-02")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1100, 900), chromedp.Navigate(pe.base+path),
		chromedp.WaitVisible(chromedp.CSS("form.paper-consent")),
		chromedp.SetValue(chromedp.ID("kind"), "optout"),
		chromedp.SetValue(chromedp.ID("signed"), signed),
		chromedp.SendKeys(chromedp.ID("formref"), "F-2026-0042")); err != nil {
		t.Fatalf("filling the form: %v", err)
	}
	ageBrowserAuth(t, ctx, pe.env, DefaultStepUpWindow+time.Minute)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("form.paper-consent button[type=submit]")),
		chromedp.WaitVisible(chromedp.ID("stepup-title"))); err != nil {
		t.Fatalf("sending on an old sign-in: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil || !strings.Contains(text, "with the form filled in as you left it") {
		t.Errorf("the step-up page does not say the form is kept: %q %v", text, err)
	}
	screenshot(t, ctx, "portal-step-up")
	axeCheck(t, ctx, "step-up page")

	// Meanwhile the reviews page offers the sign-in, not decisions.
	if err := chromedp.Do(ctx, chromedp.Navigate(pe.base+"/officer/reviews"), chromedp.WaitVisible(chromedp.CSS("#mpi-h"))); err != nil {
		t.Fatal(err)
	}
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('form[action="/officer/mpi/resolve"]').length`)); err != nil || n != 0 {
		t.Errorf("old sign-in: %d identity decision forms (%v); want none", n, err)
	}
	screenshot(t, ctx, "portal-officer-reviews-stale")

	// The fresh sign-in from the reviews page's own offer comes back there; the consent
	// page then shows the kept form.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#mpi-h ~ .stepup form.signin button")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "privo"),
		chromedp.SendKeys(chromedp.ID("password"), "privo-pw"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("otp")),
		chromedp.SendKeys(chromedp.ID("otp"), otpFor("privo")),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/officer/mpi/resolve"]`))); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("step-up sign-in from the reviews page: %v (at %s)", err, loc)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(pe.base+path), chromedp.WaitVisible(chromedp.CSS("form.paper-consent"))); err != nil {
		t.Fatal(err)
	}
	ref, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("formref")))
	if err != nil || ref != "F-2026-0042" {
		t.Fatalf("after the step-up the form reference is %q (%v); want it as typed", ref, err)
	}
	if text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main"))); !strings.Contains(text, draftNote) {
		t.Errorf("the restored form has no note")
	}
	screenshot(t, ctx, "portal-officer-consent-restored")
	axeCheck(t, ctx, "restored consent form")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("form.paper-consent button[type=submit]"))); err != nil {
		t.Fatalf("sending the restored form: %v", err)
	}
	// The page already shows a flash (the draft note): wait for the directive itself.
	var n int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := pe.pool.QueryRow(t.Context(), `SELECT count(*) FROM consent_directives WHERE resource::text LIKE '%F-2026-0042%'`).Scan(&n)
		if err != nil || n == 1 || time.Now().After(deadline) {
			if n != 1 {
				t.Errorf("directives recorded from the restored form: %d (%v); want 1", n, err)
			}
			break
		}
	}
}
