package portal

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserPrivacyPages signs a patient in and opens /access, /privacy and /summary, then
// an officer who opens the audit search, the accounting, the simulator, the consent page (recording a signed form) and the reviews, each checked with axe-core at 1100 px and
// 375 px (no horizontal overflow), with screenshots to $CONCORD_SCREENSHOT_DIR.
func TestBrowserPrivacyPages(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	pe := newPrivacyEnv(t, true)
	signIn := func(user, pw, wait string) {
		t.Helper()
		browserSignIn(t, ctx, pe.base, user, pw, wait)
	}
	// check opens path, waits for sel, and checks it at both widths.
	check := func(path, sel, name string) string {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(1100, 900), chromedp.Navigate(pe.base+path), chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		if err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, name)
		axeCheck(t, ctx, path)
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(375, 800)); err != nil {
			t.Fatal(err)
		}
		overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
		if err != nil || overflow {
			t.Errorf("%s overflows at 375 px (%v)", path, err)
		}
		screenshot(t, ctx, name+"-375")
		axeCheck(t, ctx, path+" at 375 px")
		return text
	}

	if _, err := pe.pool.Exec(context.Background(), `INSERT INTO consent_patient_notifications (kind, break_glass_id, person_id)
		SELECT 'break-glass', id, person_id FROM consent_break_glass WHERE person_id = $1`, alicePerson); err != nil {
		t.Fatal(err)
	}
	signIn("alice", "alice-pw", "table.results")
	access := check("/access", "table.results.log", "portal-access")
	for _, want := range []string{"St Mary's Hospital", "Emergency access", "Someone using your share link", "opened your record in an emergency"} {
		if !strings.Contains(access, want) {
			t.Errorf("/access lacks %q", want)
		}
	}
	privacy := check("/privacy", "table.results.log", "portal-privacy")
	if !strings.Contains(privacy, "Riverside Family Clinic") || !strings.Contains(privacy, "Not shared") {
		t.Errorf("/privacy: %.300s", privacy)
	}
	if summary := check("/summary", "#cond-h", "portal-summary"); !strings.Contains(summary, "Hyperlipidemia") {
		t.Errorf("/summary: %.300s", summary)
	}
	signOut(t, ctx)

	signIn("privo", "privo-pw", "dl.facts")
	audit := check("/officer?patient="+alicePerson, "table.results.log", "portal-officer-audit")
	if !strings.Contains(audit, "no-directive") {
		t.Errorf("/officer lacks the denial")
	}
	if acc := check("/officer/accounting?patient="+alicePerson, "table.results.log", "portal-officer-accounting"); !strings.Contains(acc, "Download as CSV") {
		t.Errorf("/officer/accounting: %.300s", acc)
	}
	if sim := check("/officer/simulate?patient="+alicePerson+"&org=riverside&role=clinician&purpose=TREAT", "table.results.log", "portal-officer-simulate"); !strings.Contains(sim, "Shared") {
		t.Errorf("/officer/simulate: %.300s", sim)
	}
	// A signed Part 2 consent recorded from the form, then the page at both widths.
	signed := time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1100, 900), chromedp.Navigate(pe.base+"/officer/consent?patient="+alicePerson),
		chromedp.WaitVisible(chromedp.CSS("form.paper-consent")),
		chromedp.SetValue(chromedp.CSS("#kind"), "part2"), chromedp.SetValue(chromedp.CSS("#org"), "stmary"),
		chromedp.SetValue(chromedp.CSS("#signed"), signed), chromedp.SendKeys(chromedp.CSS("#formref"), "SM-P2-44"),
		chromedp.Click(chromedp.CSS("form.paper-consent button")), chromedp.WaitVisible(chromedp.CSS("p.flash"))); err != nil {
		t.Fatalf("record a signed form: %v", err)
	}
	if cons := check("/officer/consent?patient="+alicePerson, "table.results.log", "portal-officer-consent"); !strings.Contains(cons, "Signed form SM-P2-44") {
		t.Errorf("/officer/consent: %.300s", cons)
	}
	reviews := check("/officer/reviews", "form.review", "portal-officer-reviews")
	if !strings.Contains(reviews, "Unconscious on arrival in ED") || !strings.Contains(reviews, "Date of birth") || strings.Contains(reviews, "birthDate") {
		t.Errorf("/officer/reviews: %.300s", reviews)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1100, 900), chromedp.Click(chromedp.CSS("form.review button")),
		chromedp.WaitVisible(chromedp.CSS("p.flash"))); err != nil {
		t.Fatalf("close review: %v", err)
	}
	screenshot(t, ctx, "portal-officer-reviews-closed")
	axeCheck(t, ctx, "reviews after closing")
}

func signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1100, 900), chromedp.Click(chromedp.CSS("nav.account button")),
		chromedp.WaitVisible(chromedp.CSS("form.signin button"))); err != nil {
		t.Fatalf("sign-out: %v", err)
	}
}
