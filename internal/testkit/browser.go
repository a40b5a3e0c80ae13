package testkit

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is where Debian's chromium package installs the browser.
const ChromiumPath = "/usr/bin/chromium"

// browserBudget bounds one test's browser session, every step included.
const browserBudget = 3 * time.Minute

// Browser returns a chromedp context on a fresh headless Chromium with the flags a closed
// network needs (stack.md) and an empty profile, closed when the test ends or after
// browserBudget. It skips the test when Chromium is not installed, unless
// CONCORD_TEST_STRICT=1 makes that a failure.
func Browser(t testing.TB, width, height int) context.Context {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		if os.Getenv("CONCORD_TEST_STRICT") == "1" {
			t.Fatalf("%s not found: install chromium (apt-get install -y chromium)", ChromiumPath)
		}
		t.Skipf("%s not found: browser tests skipped (apt-get install -y chromium)", ChromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(width, height),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	// The whole session has browserBudget: a hung wait still fails well inside go test's
	// 10 minutes, and a test that walks many pages is not cut short on two cores loaded by
	// the other packages' tests.
	ctx, cancelC := context.WithTimeout(ctx, browserBudget)
	t.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	return ctx
}

// Screenshot saves a full-page PNG named name to $CONCORD_SCREENSHOT_DIR when it is set.
func Screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("CONCORD_SCREENSHOT_DIR")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}
