package zzshots

import (
	"context"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/concord-hie/concord/internal/testkit"
)

const base = "http://localhost:8080"

func signIn(t *testing.T, ctx context.Context, user string, otp bool) {
	steps := []chromedp.Action[chromedp.Void]{
		chromedp.Navigate(base + "/"),
		chromedp.Click(chromedp.CSS("form.signin button")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), user),
		chromedp.SendKeys(chromedp.ID("password"), "concord-demo"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
	}
	if otp {
		steps = append(steps, chromedp.WaitVisible(chromedp.ID("otp")), chromedp.SendKeys(chromedp.ID("otp"), "246810"), chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	}
	steps = append(steps, chromedp.WaitVisible(chromedp.CSS("main")))
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("sign in %s: %v", user, err)
	}
}

func shot(t *testing.T, ctx context.Context, path, name string) {
	if err := chromedp.Do(ctx, chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.CSS("main"))); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	testkit.Screenshot(t, ctx, name)
}

func TestShots(t *testing.T) {
	ctx := testkit.Browser(t, 1100, 900)
	signIn(t, ctx, "ana", false)
	shot(t, ctx, "/summary", "demo-summary")
	shot(t, ctx, "/documents", "demo-documents")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`table.documents a`)), chromedp.WaitVisible(chromedp.CSS(".document"))); err != nil {
		t.Fatal(err)
	}
	testkit.Screenshot(t, ctx, "demo-document-1")
	shot(t, ctx, "/caregivers", "demo-caregivers")
	shot(t, ctx, "/access", "demo-access")

	ben := testkit.Browser(t, 1100, 900)
	signIn(t, ben, "ben", false)
	testkit.Screenshot(t, ben, "demo-ben-labs")
	if err := chromedp.Do(ben, chromedp.SetValue(chromedp.ID("act-for"), "1"), chromedp.Click(chromedp.CSS(".acting-bar button")), chromedp.WaitVisible(chromedp.CSS("main"))); err != nil {
		t.Fatal(err)
	}
	testkit.Screenshot(t, ben, "demo-ben-as-ana-labs")
	shot(t, ben, "/summary", "demo-ben-as-ana-summary")
	shot(t, ben, "/documents", "demo-ben-as-ana-documents")

	doc := testkit.Browser(t, 1100, 900)
	signIn(t, doc, "dr.riverside", true)
	testkit.Screenshot(t, doc, "demo-staff")
	off := testkit.Browser(t, 1100, 900)
	signIn(t, off, "privacy", true)
	shot(t, off, "/officer/reviews", "demo-officer-reviews")
}
