package portal

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
)

// getFrom GETs u as a browser navigating from a page would, with Sec-Fetch-Site site
// ("": an old browser that sends none).
func (c *client) getFrom(u, site string) resp {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if site != "" {
		req.Header.Set("Sec-Fetch-Site", site)
		req.Header.Set("Sec-Fetch-Mode", "navigate")
	}
	return c.do(req)
}

// offered reports whether r is the "continue" page linking to path.
func offered(r resp, path string) bool {
	return r.status == http.StatusOK && strings.Contains(r.body, "<h1 id=\"continue-title\">") &&
		strings.Contains(html.UnescapeString(r.body), `href="`+path+`"`)
}

// TestCrossSiteGETDoesNotMarkThreadRead: a clinician's thread page marks the patient's
// messages read and writes an audited read, and the session cookie (SameSite=Lax) goes with
// a top-level navigation from another site. A link there, or on a sibling site, must
// change nothing: the clinician gets the "continue" page, with the same path linked from
// this origin, and only following it opens the thread.
func TestCrossSiteGETDoesNotMarkThreadRead(t *testing.T) {
	t.Parallel()
	se := newShareEnv(t, false)
	ctx := context.Background()
	id := se.clinicThread(t, "Chest pain since this morning", "Should I come in?")
	doc := newClient(t)
	se.signIn(t, doc, "drjones", "jones-pw")
	path := "/staff/messages/" + strconv.FormatInt(id, 10)
	counts := func() (unread, reads int) {
		t.Helper()
		if err := se.pool.QueryRow(ctx, `SELECT count(*) FROM portal_messages WHERE thread_id = $1 AND read_at IS NULL`, id).Scan(&unread); err != nil {
			t.Fatal(err)
		}
		if err := se.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = 'read' AND reason = 'portal-message' AND patient = $1`, se.person).Scan(&reads); err != nil {
			t.Fatal(err)
		}
		return unread, reads
	}

	for _, site := range []string{"cross-site", "same-site"} {
		r := doc.getFrom(se.base+path, site)
		if !offered(r, path) {
			t.Errorf("%s GET: %d, not the continue page:\n%s", site, r.status, r.body)
		}
		if strings.Contains(r.body, "Should I come in?") {
			t.Errorf("%s GET shows the thread", site)
		}
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s GET: Cache-Control %q", site, cc)
		}
		if unread, reads := counts(); unread != 1 || reads != 0 {
			t.Errorf("%s GET changed state: unread patient messages %d (want 1), audited reads %d (want 0)", site, unread, reads)
		}
	}
	// Following the link: the same path, now from this origin.
	r := doc.getFrom(se.base+path, "same-origin")
	if r.status != http.StatusOK || !strings.Contains(r.body, "Should I come in?") {
		t.Errorf("same-origin GET: %d, thread not shown", r.status)
	}
	if unread, reads := counts(); unread != 0 || reads != 1 {
		t.Errorf("same-origin GET: unread %d (want 0), audited reads %d (want 1)", unread, reads)
	}
}

// TestCrossSiteGETBySecFetchSite: which navigations a signed-in page is shown to. Another
// site's (cross-site, same-site) get the continue page and read nothing; this origin's and
// the user's own (typed, a bookmark: none) get the page; so does a browser that sends no
// Sec-Fetch-Site, since the check is depth over SameSite and the forms' CSRF check and would
// otherwise stop such a browser at every click. Without a session nothing is held: the page
// sends the browser to sign in, as always.
func TestCrossSiteGETBySecFetchSite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	alice := newClient(t)
	e.signIn(t, alice, "alice", "alice-pw")
	alice.get(e.base + "/labs") // the landing after sign-in
	for _, tt := range []struct {
		site  string
		shown bool
	}{
		{"cross-site", false},
		{"same-site", false},
		{"same-origin", true},
		{"none", true},
		{"", true},
	} {
		e.records.mu.Lock()
		before := len(e.records.viewers)
		e.records.mu.Unlock()
		r := alice.getFrom(e.base+"/labs?from=mail", tt.site)
		e.records.mu.Lock()
		read := len(e.records.viewers) > before
		e.records.mu.Unlock()
		if shown := r.status == http.StatusOK && strings.Contains(r.body, "Glucose"); shown != tt.shown || read != tt.shown {
			t.Errorf("Sec-Fetch-Site %q: page shown %v, records read %v; want %v", tt.site, shown, read, tt.shown)
		}
		if !tt.shown && !offered(r, "/labs?from=mail") {
			t.Errorf("Sec-Fetch-Site %q: not the continue page to /labs?from=mail:\n%s", tt.site, r.body)
		}
	}
	if r := newClient(t).getFrom(e.base+"/labs", "cross-site"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Errorf("cross-site GET without a session: %d to %q, want 303 to /", r.status, r.header.Get("Location"))
	}
}

// TestSignInLandsFromOPSite: after the OP's login form, the browser follows the OP's
// redirect to the callback and the callback's to the page it lands on, so both arrive
// from the OP's site (cross-site, or same-site for an OP on a sibling host). Sign-in must
// still land on the page, the home page or the return path (a caregiver invitation's),
// once: the next navigation from another site gets the continue page again.
func TestSignInLandsFromOPSite(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, site, returnTo, want string
	}{
		{"home, cross-site", "cross-site", "", "/labs"},
		{"home, same-site", "same-site", "", "/labs"},
		{"return path", "cross-site", "/summary?section=meds", "/summary?section=meds"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{})
			alice := newClient(t)
			land := alice.get(e.base + "/")
			form := url.Values{"_csrf": {csrfFrom(t, land.body)}}
			if tt.returnTo != "" {
				form.Set("return_to", tt.returnTo)
			}
			start := alice.post(e.base+"/auth/login", form, "same-origin")
			cb := alice.getFrom(e.opLogin(t, start.header.Get("Location"), "alice", "alice-pw"), tt.site)
			if cb.status != http.StatusSeeOther || cb.header.Get("Location") != tt.want {
				t.Fatalf("callback: %d to %q, want 303 to %s", cb.status, cb.header.Get("Location"), tt.want)
			}
			if r := alice.getFrom(e.base+tt.want, tt.site); r.status != http.StatusOK || offered(r, tt.want) {
				t.Errorf("landing on %s after sign-in: %d, continue page %v; want the page", tt.want, r.status, offered(r, tt.want))
			}
			if r := alice.getFrom(e.base+tt.want, tt.site); !offered(r, tt.want) {
				t.Errorf("second %s GET of %s: %d, not the continue page", tt.site, tt.want, r.status)
			}
		})
	}
}

// TestLandingPassUsedUpByAnyFirstRequest: the one cross-site request let through after
// sign-in is the session's first, whatever stops it. Here the login look-up fails on it
// (503, before the cross-site check runs); a later cross-site GET of the same landing
// path gets the continue page, not the page (session review: the pass outlived a first
// request that a check stopped).
func TestLandingPassUsedUpByAnyFirstRequest(t *testing.T) {
	t.Parallel()
	e, l := newLoginsEnv(t)
	alice := newClient(t)
	land := alice.get(e.base + "/")
	start := alice.post(e.base+"/auth/login", url.Values{"_csrf": {csrfFrom(t, land.body)}}, "same-origin")
	cb := alice.getFrom(e.opLogin(t, start.header.Get("Location"), "alice", "alice-pw"), "cross-site")
	if cb.status != http.StatusSeeOther || cb.header.Get("Location") != "/labs" {
		t.Fatalf("callback: %d to %q", cb.status, cb.header.Get("Location"))
	}
	l.set(func(l *logins) { l.fail = errs.E("test", errs.Unavailable, "database down") })
	if r := alice.getFrom(e.base+"/labs", "cross-site"); r.status != http.StatusServiceUnavailable {
		t.Fatalf("first request with the look-up failing: %d; want 503", r.status)
	}
	l.set(func(l *logins) { l.fail = nil })
	if r := alice.getFrom(e.base+"/labs", "cross-site"); !offered(r, "/labs") {
		t.Errorf("cross-site GET of the landing path after a stopped first request: %d, not the continue page", r.status)
	}
}
