package portal

import (
	"net"
	"net/http"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserCrossSiteLinkIsOffered follows, in Chromium, a link to the labs from a page
// on another site (localhost beside the portal's 127.0.0.1), as from a web mail: the
// browser's own Sec-Fetch-Site gets the continue page, which must pass axe, and its link
// then opens the labs. The sign-in before it lands on the labs though its redirects come
// from the OP's site.
func TestBrowserCrossSiteLinkIsOffered(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	e := newEnv(t, envOpts{})
	browserSignIn(t, ctx, e.base, "alice", "alice-pw", "table.results")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	other := "http://localhost:" + port
	page := `<!DOCTYPE html><html lang="en"><head><title>Mail</title></head><body><a id="deep" href="` + e.base + `/labs">Your new results</a></body></html>`
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	if err := chromedp.Do(ctx, chromedp.Navigate(other+"/"), chromedp.Click(chromedp.ID("deep")), chromedp.WaitVisible(chromedp.ID("continue-title"))); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("cross-site link: %v (at %s: %.300s)", err, loc, body)
	}
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != e.base+"/labs" {
		t.Errorf("continue page at %q", loc)
	}
	screenshot(t, ctx, "portal-continue")
	axeCheck(t, ctx, "continue")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("main a.button.primary")), chromedp.WaitVisible(chromedp.CSS("table.results"))); err != nil {
		t.Fatalf("continue: %v", err)
	}
}
