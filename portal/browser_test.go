package portal

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/concord-hie/concord/internal/testkit"
)

// browser returns a headless Chromium context (see testkit.Browser).
func browser(t *testing.T) context.Context { return testkit.Browser(t, 1100, 900) }

// browserSignIn signs user in with pw through the portal at base and the OP's login form
// (and its one-time-code page when the user has a code, see otpFor), and waits until the
// selector wait is visible.
func browserSignIn(t *testing.T, ctx context.Context, base, user, pw, wait string) {
	t.Helper()
	steps := []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(base + "/"),
		chromedp.Click(chromedp.CSS("form.signin button")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
	}
	if code := otpFor(user); code != "" {
		steps = append(steps,
			chromedp.WaitVisible(chromedp.ID("otp")),
			chromedp.SendKeys(chromedp.ID("otp"), code),
			chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	}
	steps = append(steps, chromedp.WaitVisible(chromedp.CSS(wait)))
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("sign-in as %s: %v (at %s)", user, err, loc)
	}
}

// screenshot saves a PNG to $CONCORD_SCREENSHOT_DIR when it is set.
func screenshot(t *testing.T, ctx context.Context, name string) { testkit.Screenshot(t, ctx, name) }

// axeCheck runs axe-core 4.14.1 (vendored in testdata, MPL-2.0) against the current page
// for WCAG 2.x A and AA rules and fails the test on any violation.
func axeCheck(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "axe-4.14.1.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](string(src)+";true")); err != nil {
		t.Fatalf("load axe: %v", err)
	}
	violations, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21aa"]}})
		.then(r => r.violations.map(v => v.id + " (" + v.impact + "): " + v.nodes.map(n => n.target.join(" ")).join(", ")))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("axe.run: %v", err)
	}
	for _, v := range violations {
		t.Errorf("%s: accessibility: %s", page, v)
	}
}

// TestBrowserSignInLabsSignOut signs a patient in through the OP's real login form in
// Chromium, with the production cookie settings (__Host-, Secure, SameSite), finds a lab row
// with its source member, and signs out through the OP's end_session.
func TestBrowserSignInLabsSignOut(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	e := newEnv(t, envOpts{secureCookies: true})

	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/")); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "portal-landing")
	axeCheck(t, ctx, "landing")
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("form.signin button")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "alice-pw"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.results")),
	); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("sign-in: %v (at %s: %.300s)", err, loc, body)
	}
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || loc != e.base+"/labs" {
		t.Fatalf("after sign-in at %q (%v)", loc, err)
	}
	row, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("section.test tr.abnormal")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(row, "3.1") || !strings.Contains(row, "St Mary's Hospital") || !strings.Contains(row, "Low") {
		t.Errorf("first abnormal row %q lacks value, flag or source member", row)
	}
	trends, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("svg.trend polyline").length`))
	if err != nil || trends < 1 {
		t.Errorf("trend charts: %d (%v)", trends, err)
	}
	screenshot(t, ctx, "portal-labs")
	axeCheck(t, ctx, "labs")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(375, 800)); err != nil {
		t.Fatal(err)
	}
	// At 375 px nothing may overflow horizontally.
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil || overflow {
		t.Errorf("page overflows at 375 px (%v)", err)
	}
	screenshot(t, ctx, "portal-labs-375")
	axeCheck(t, ctx, "labs at 375 px")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1100, 900)); err != nil {
		t.Fatal(err)
	}

	// Sign out: the form posts, the portal clears the site data and sends the browser through
	// the OP's end_session back to the landing page.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("nav.account button")),
		chromedp.WaitVisible(chromedp.CSS("form.signin button")),
	); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("sign-out: %v (at %s)", err, loc)
	}
	loc, _ = chromedp.Run(ctx, chromedp.Location())
	if loc != e.base+"/" {
		t.Errorf("after sign-out at %q", loc)
	}
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[int](`localStorage.length + sessionStorage.length`))
	if err != nil || stored != 0 {
		t.Errorf("web storage after sign-out: %d (%v)", stored, err)
	}
	// The labs are gone for this browser: back to the sign-in page.
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/labs"), chromedp.WaitVisible(chromedp.CSS("form.signin button"))); err != nil {
		t.Fatal(err)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != e.base+"/" {
		t.Errorf("labs after sign-out went to %q", loc)
	}
}

// TestBrowserStaffEnrolAndErrorPages renders the other pages in Chromium: the staff landing
// for a clinician, the enrolment page for a login linked to nobody, and the error page.
func TestBrowserStaffEnrolAndErrorPages(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	e := newEnv(t, envOpts{secureCookies: true})
	signIn := func(user, pw, wait string) {
		t.Helper()
		browserSignIn(t, ctx, e.base, user, pw, wait)
	}
	signOut := func() {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("nav.account button")), chromedp.WaitVisible(chromedp.CSS("form.signin button"))); err != nil {
			t.Fatalf("sign-out: %v", err)
		}
	}

	signIn("drjones", "jones-pw", "dl.facts")
	facts, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("dl.facts")))
	if err != nil || !strings.Contains(facts, "Clinician") || !strings.Contains(facts, "Riverside Family Clinic") {
		t.Errorf("staff facts %q (%v)", facts, err)
	}
	screenshot(t, ctx, "portal-staff")
	axeCheck(t, ctx, "staff")
	signOut()

	signIn("newbie", "newbie-pw", "section.prose")
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != e.base+"/enrol" {
		t.Errorf("unenrolled login at %q", loc)
	}
	screenshot(t, ctx, "portal-enrol")
	axeCheck(t, ctx, "enrol")
	signOut()

	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/no-such-page"), chromedp.WaitVisible(chromedp.CSS("section.error"))); err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "portal-error")
	axeCheck(t, ctx, "error")

	// A clinician whose sign-in had no second factor gets the page that says why.
	signIn("drsolo", "solo-pw", "#mfa-title")
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("section.error")))
	if err != nil || !strings.Contains(text, "second factor") {
		t.Errorf("MFA refusal page %q (%v)", text, err)
	}
	screenshot(t, ctx, "portal-mfa-required")
	axeCheck(t, ctx, "mfa required")
}
