package portal

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/testkit"
)

var inviteURLRe = regexp.MustCompile(`id="new-url"[^>]*value="([^"]+)"`)

// TestCaregiverAccess: a patient invites a caregiver; the link shows once and opens for
// anyone holding it; the caregiver accepts with their own login and reads the patient's labs
// as role proxy, with a banner naming whose record it is, but cannot reach the patient-only
// pages; the invitation cannot be used twice; revoking ends the caregiver's next request;
// every change is audited.
func TestCaregiverAccess(t *testing.T) {
	t.Parallel()
	pool := testkit.DB(t)
	alog := auditLog(t, pool)
	e := newEnv(t, envOpts{proxies: NewProxyStore(pool, alog), messageStore: NewMessageStore(pool).WithAudit(alog)})

	alice := newClient(t)
	e.signIn(t, alice, "alice", "alice-pw")
	form := alice.getPrivate(e.base, "/caregivers")
	tok := csrfFrom(t, form.body)
	if r := alice.post(e.base+"/caregivers", url.Values{"_csrf": {tok}, "name": {"  "}, "relationship": {"parent"}}, "same-origin"); r.status != http.StatusBadRequest {
		t.Errorf("invitation without a name: %d", r.status)
	}
	r := alice.post(e.base+"/caregivers", url.Values{"_csrf": {tok}, "name": {"Nora Nguyen"}, "relationship": {"parent"}}, "same-origin")
	m := inviteURLRe.FindStringSubmatch(r.body)
	if r.status != http.StatusOK || m == nil || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("invite: %d\n%s", r.status, r.body)
	}
	link := html.UnescapeString(m[1])
	if page := alice.getPrivate(e.base, "/caregivers"); strings.Contains(page.body, link) || !strings.Contains(page.body, "invitation not yet accepted") {
		t.Errorf("the caregivers page shows the link again, or not the pending invitation")
	}

	// Opened signed out, the invitation names the patient and asks to sign in.
	if r := newClient(t).get(link); r.status != http.StatusOK || !strings.Contains(r.body, "Alice Nguyen invited you") || !strings.Contains(r.body, "Sign in with your own account") {
		t.Fatalf("invitation signed out: %d\n%s", r.status, r.body)
	}
	if r := newClient(t).get(e.base + "/caregiver/" + strings.Repeat("A", 43)); r.status != http.StatusNotFound {
		t.Errorf("unknown invitation: %d", r.status)
	}

	// The caregiver (a login with no record of their own) accepts and lands on Alice's labs.
	nora := newClient(t)
	e.signIn(t, nora, "newbie", "newbie-pw")
	inv := nora.getPrivate(e.base, strings.TrimPrefix(link, e.base))
	acc := nora.post(link, url.Values{"_csrf": {csrfFrom(t, inv.body)}}, "same-origin")
	if acc.status != http.StatusSeeOther || acc.header.Get("Location") != "/labs" {
		t.Fatalf("accept: %d %q\n%s", acc.status, acc.header.Get("Location"), acc.body)
	}
	labs := nora.getPrivate(e.base, "/labs")
	if !strings.Contains(labs.body, "Glucose") || !strings.Contains(labs.body, "viewing <strong>Alice Nguyen</strong>") || strings.Contains(labs.body, `href="/labs/share"`) {
		t.Errorf("caregiver's labs page:\n%s", labs.body)
	}
	e.records.mu.Lock()
	last := e.records.viewers[len(e.records.viewers)-1]
	e.records.mu.Unlock()
	if last.Role != RoleProxy || last.PersonID != "person-1" || !strings.HasSuffix(last.Actor, "|sub-new-1") {
		t.Errorf("labs read as %+v; want the caregiver's login as proxy for person-1", last)
	}
	// The caregiver writes to one of Alice's clinics for her: signed as her caregiver, on
	// the patient's side of the thread; opening it is audited as the caregiver's read.
	newMsg := nora.getPrivate(e.base, "/messages/new")
	sent := nora.post(e.base+"/messages/new", url.Values{"_csrf": {csrfFrom(t, newMsg.body)}, "clinic": {"riverside"},
		"subject": {"Mum's refill"}, "body": {"Could Alice's prescription be renewed?"}}, "same-origin")
	if sent.status != http.StatusSeeOther {
		t.Fatalf("caregiver's message: %d\n%s", sent.status, sent.body)
	}
	if th := nora.getPrivate(e.base, sent.header.Get("Location")); !strings.Contains(th.body, "Caregiver") {
		t.Errorf("the caregiver's message is not signed as a caregiver's:\n%s", th.body)
	}
	var kind, person string
	if err := pool.QueryRow(t.Context(), `SELECT m.author_kind, t.person_id FROM portal_messages m JOIN portal_message_threads t ON t.id = m.thread_id`).Scan(&kind, &person); err != nil || kind != "patient" || person != "person-1" {
		t.Errorf("stored message: kind %q person %q, %v", kind, person, err)
	}
	var reads int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE action = 'read' AND reason = 'portal-message' AND role = 'proxy' AND patient = 'person-1'`).Scan(&reads); err != nil || reads != 1 {
		t.Errorf("audited caregiver reads of the thread: %d, %v; want 1", reads, err)
	}
	// The site's address (the brand link) takes the caregiver to the patient's labs, not
	// round a redirect loop.
	if r := nora.get(e.base + "/"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/labs" {
		t.Errorf("caregiver on /: %d to %q; want 303 to /labs", r.status, r.header.Get("Location"))
	}
	for _, p := range []string{"/caregivers", "/labs/share", "/privacy"} {
		if r := nora.get(e.base + p); r.status != http.StatusNotFound {
			t.Errorf("caregiver on %s: %d, want 404", p, r.status)
		}
	}
	if r := nora.post(link, url.Values{"_csrf": {csrfFrom(t, inv.body)}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("a second acceptance: %d, want 404", r.status)
	}
	// Switching to a grant that is not this login's is the normal 404.
	if r := nora.post(e.base+"/act-for", url.Values{"_csrf": {csrfFrom(t, labs.body)}, "grant": {"999999"}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("act for a foreign grant: %d", r.status)
	}

	// Alice sees who accepted, and removes the access: Nora's next request is her own again.
	page := alice.getPrivate(e.base, "/caregivers")
	gm := regexp.MustCompile(`name="grant" value="(\d+)"`).FindStringSubmatch(page.body)
	if gm == nil || !strings.Contains(page.body, "Accepted") {
		t.Fatalf("caregivers page after acceptance:\n%s", page.body)
	}
	// Sensitive information: hidden from the caregiver until Alice lets this caregiver see
	// it, from their next request; and hidden again when she takes it back.
	lastViewer := func() Viewer {
		t.Helper()
		nora.getPrivate(e.base, "/labs")
		e.records.mu.Lock()
		defer e.records.mu.Unlock()
		return e.records.viewers[len(e.records.viewers)-1]
	}
	if lastViewer().ProxySensitive {
		t.Errorf("a new caregiver sees sensitive information")
	}
	for _, on := range []string{"1", "0"} {
		if r := alice.post(e.base+"/caregivers/sensitive", url.Values{"_csrf": {csrfFrom(t, page.body)}, "grant": {gm[1]}, "on": {on}}, "same-origin"); r.status != http.StatusSeeOther {
			t.Fatalf("sensitive %s: %d", on, r.status)
		}
		if got := lastViewer().ProxySensitive; got != (on == "1") {
			t.Errorf("after sensitive=%s the caregiver's read has ProxySensitive %v", on, got)
		}
		if on == "1" && !strings.Contains(alice.getPrivate(e.base, "/caregivers").body, "Sees sensitive information too.") {
			t.Errorf("the caregivers page does not say the caregiver sees sensitive information")
		}
	}
	if r := alice.post(e.base+"/caregivers/sensitive", url.Values{"_csrf": {csrfFrom(t, page.body)}, "grant": {"999999"}, "on": {"1"}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("sensitive for a grant that is not Alice's: %d", r.status)
	}
	if r := alice.post(e.base+"/caregivers/revoke", url.Values{"_csrf": {csrfFrom(t, page.body)}, "grant": {gm[1]}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Fatalf("revoke: %d", r.status)
	}
	if r := nora.get(e.base + "/labs"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/enrol" {
		t.Errorf("caregiver after revocation: %d to %q", r.status, r.header.Get("Location"))
	}
	if r := nora.get(e.base + "/labs"); r.status != http.StatusNotFound {
		t.Errorf("caregiver's labs after revocation: %d", r.status)
	}
	var reasons []string
	rows, err := pool.Query(t.Context(), `SELECT reason FROM audit_events WHERE action = 'consent-change' AND token_id LIKE 'proxy/%' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		reasons = append(reasons, s)
	}
	if strings.Join(reasons, ",") != "proxy-invited,proxy-accepted,proxy-sensitive-on,proxy-sensitive-off,proxy-revoked" {
		t.Errorf("audited changes %v", reasons)
	}
}

// TestCaregiverInviteSignInReturns: an invitation opened signed out offers a sign-in that
// comes back to it (the return path kept with the login flow, server-side), so the
// caregiver can accept at once; a return path that is not local, given at the start or
// found at the callback, lands on the normal home instead. The token appears in no log
// line, no audit row and no Referer.
func TestCaregiverInviteSignInReturns(t *testing.T) {
	t.Parallel()
	pool := testkit.DB(t)
	alog := auditLog(t, pool)
	logs := &syncBuffer{}
	e := newEnv(t, envOpts{proxies: NewProxyStore(pool, alog), logs: logs})

	alice := newClient(t)
	e.signIn(t, alice, "alice", "alice-pw")
	form := alice.getPrivate(e.base, "/caregivers")
	r := alice.post(e.base+"/caregivers", url.Values{"_csrf": {csrfFrom(t, form.body)}, "name": {"Nora Nguyen"}, "relationship": {"parent"}}, "same-origin")
	m := inviteURLRe.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("invite: %d\n%s", r.status, r.body)
	}
	link := html.UnescapeString(m[1])
	path := strings.TrimPrefix(link, e.base)
	token := strings.TrimPrefix(path, "/caregiver/")

	// Signed out: the page's sign-in carries its own path, and no request from it names
	// the token in a Referer.
	nora := newClient(t)
	inv := nora.getPrivate(e.base, path)
	if !strings.Contains(inv.body, `name="return_to" value="`+path+`"`) || !strings.Contains(inv.body, "Sign in with your own account") {
		t.Fatalf("signed-out invitation has no return path:\n%s", inv.body)
	}
	if got := inv.header.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("invitation Referrer-Policy %q, want no-referrer", got)
	}
	start := nora.post(e.base+"/auth/login", url.Values{"_csrf": {csrfFrom(t, inv.body)}, "return_to": {path}}, "same-origin")
	if start.status != http.StatusSeeOther || !strings.HasPrefix(start.header.Get("Location"), e.op.Issuer()) || strings.Contains(start.header.Get("Location"), token) {
		t.Fatalf("sign in from the invitation: %d to %q", start.status, start.header.Get("Location"))
	}
	back := nora.get(e.opLogin(t, start.header.Get("Location"), "newbie", "newbie-pw"))
	if back.status != http.StatusSeeOther || back.header.Get("Location") != path {
		t.Fatalf("callback: %d to %q, want the invitation", back.status, back.header.Get("Location"))
	}
	signed := nora.getPrivate(e.base, back.header.Get("Location"))
	if !strings.Contains(signed.body, "Accept and open the record") || strings.Contains(signed.body, `name="return_to"`) {
		t.Fatalf("invitation after sign-in:\n%s", signed.body)
	}
	acc := nora.post(link, url.Values{"_csrf": {csrfFrom(t, signed.body)}}, "same-origin")
	if acc.status != http.StatusSeeOther || acc.header.Get("Location") != "/labs" {
		t.Fatalf("accept: %d %q\n%s", acc.status, acc.header.Get("Location"), acc.body)
	}
	if labs := nora.getPrivate(e.base, "/labs"); !strings.Contains(labs.body, "viewing <strong>Alice Nguyen</strong>") {
		t.Errorf("the caregiver does not read Alice's labs after accepting")
	}

	// A return path that is not local is dropped at the start, silently.
	signInVia := func(c *client, returnTo string, tamper func(*Session)) resp {
		t.Helper()
		land := c.get(e.base + "/")
		r := c.post(e.base+"/auth/login", url.Values{"_csrf": {csrfFrom(t, land.body)}, "return_to": {returnTo}}, "same-origin")
		if r.status != http.StatusSeeOther {
			t.Fatalf("sign in with return_to %q: %d", returnTo, r.status)
		}
		if tamper != nil {
			id := e.sessionID(c)
			sess, err := e.srv.sessions.Load(t.Context(), id)
			if err != nil || sess.Flow == nil {
				t.Fatalf("pre-login session: %+v, %v", sess, err)
			}
			tamper(&sess)
			if err := e.srv.sessions.Save(t.Context(), id, sess); err != nil {
				t.Fatal(err)
			}
		}
		return c.get(e.opLogin(t, r.header.Get("Location"), "newbie", "newbie-pw"))
	}
	for _, bad := range []string{"//evil.example", "/\\evil.example", "https://evil.example/", "/%2F%2Fevil.example"} {
		if r := signInVia(newClient(t), bad, nil); r.status != http.StatusSeeOther || r.header.Get("Location") != "/enrol" {
			t.Errorf("return_to %q: %d to %q, want /enrol", bad, r.status, r.header.Get("Location"))
		}
	}
	// The callback checks the kept path again: one that is not local is not followed.
	if r := signInVia(newClient(t), "/labs", func(s *Session) { s.Flow.ReturnTo = "//evil.example" }); r.status != http.StatusSeeOther || r.header.Get("Location") != "/enrol" {
		t.Errorf("tampered return path: %d to %q, want /enrol", r.status, r.header.Get("Location"))
	}

	// The token is a secret: in no log line and no audit row.
	if strings.Contains(logs.String(), token) {
		t.Errorf("the invitation token is in the logs")
	}
	if !strings.Contains(logs.String(), `"route":"/caregiver/:token"`) {
		t.Errorf("the access log did not see the invitation (the log check proves nothing)")
	}
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_events a WHERE strpos(to_jsonb(a)::text, $1) > 0`, token).Scan(&n); err != nil || n != 0 {
		t.Errorf("audit rows holding the invitation token: %d (%v)", n, err)
	}
}
