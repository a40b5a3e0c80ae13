package portal

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestAuthTime(t *testing.T) {
	now := time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)
	iat := time.Date(2026, 3, 3, 11, 59, 0, 0, time.FixedZone("op", 3600)) // the OP's clock may differ
	cases := []struct {
		name   string
		claim  int64
		stepUp bool
		want   time.Time
	}{
		{"no auth_time, plain sign-in", 0, false, now},
		{"no auth_time, step-up", 0, true, time.Time{}},
		{"authenticated as the token was made", iat.Unix(), true, now},
		{"an OP session two hours old", iat.Add(-2 * time.Hour).Unix(), false, now.Add(-2 * time.Hour)},
		{"an OP session two hours old, asked for step-up", iat.Add(-2 * time.Hour).Unix(), true, now.Add(-2 * time.Hour)},
		{"auth_time after iat", iat.Add(time.Minute).Unix(), false, now},
	}
	for _, c := range cases {
		if got := authTime(now, iat, c.claim, c.stepUp); !got.Equal(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// ageAuth moves the authentication time of c's session d into the past, as if the user
// had signed in d earlier.
func ageAuth(t *testing.T, e *env, c *client, d time.Duration) {
	t.Helper()
	id := e.sessionID(c)
	sess, err := e.srv.sessions.Load(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	sess.AuthTime = sess.AuthTime.Add(-d)
	if err := e.srv.sessions.Save(t.Context(), id, sess); err != nil {
		t.Fatal(err)
	}
}

// stepUpSignIn posts the step-up form of page (its return_to as the page gives it) and
// signs user in again at the OP; it returns the portal's answer to the callback.
func (e *env) stepUpSignIn(t *testing.T, c *client, page, user, pw string) resp {
	t.Helper()
	ret := returnToRe.FindStringSubmatch(page)
	if ret == nil || !strings.Contains(page, `name="step_up" value="1"`) {
		t.Fatalf("no step-up form on the page:\n%s", page)
	}
	form := url.Values{"_csrf": {csrfFrom(t, page)}, "step_up": {"1"}, "return_to": {ret[1]}}
	if strings.Contains(page, `name="mfa" value="1"`) {
		form.Set("mfa", "1")
	}
	r := c.post(e.base+"/auth/login", form, "same-origin")
	auth, err := url.Parse(r.header.Get("Location"))
	if r.status != http.StatusSeeOther || err != nil {
		t.Fatalf("step-up sign-in: %d to %q", r.status, r.header.Get("Location"))
	}
	if q := auth.Query(); q.Get("prompt") != "login" || q.Get("max_age") != "0" {
		t.Errorf("step-up asks the OP for %v; want prompt=login and max_age=0", q)
	}
	return c.get(e.opLogin(t, auth.String(), user, pw))
}

var returnToRe = regexp.MustCompile(`name="return_to" value="([^"]*)"`)

// TestStepUpBreakGlass: break-the-glass needs a sign-in from the last StepUpWindow. Past
// it, the patient page offers a fresh sign-in instead of the form, a declaration posted
// anyway does nothing and says why, and the fresh sign-in (prompt=login, max_age=0, with
// the second factor) comes back to the patient page, where the declaration goes through.
func TestStepUpBreakGlass(t *testing.T) {
	t.Parallel()
	e, em, c := newBreakGlassEnv(t)
	if page := c.getPrivate(e.base, "/staff/patients/pat-1"); !strings.Contains(page.body, `action="/staff/patients/pat-1/break-glass"`) {
		t.Fatalf("fresh sign-in: no emergency form:\n%s", page.body)
	}

	ageAuth(t, e, c, DefaultStepUpWindow+time.Minute)
	page := c.getPrivate(e.base, "/staff/patients/pat-1")
	if strings.Contains(page.body, `action="/staff/patients/pat-1/break-glass"`) || !strings.Contains(page.body, "Sign in again to declare") {
		t.Fatalf("old sign-in: the page still offers the form, or no step-up:\n%s", page.body)
	}
	r := c.post(e.base+"/staff/patients/pat-1/break-glass", url.Values{"_csrf": {csrfFrom(t, page.body)}, "reason": {"unresponsive"}, "text": {"Unconscious in the ED"}}, "same-origin")
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "Confirm it") || !strings.Contains(r.body, `value="/staff/patients/pat-1"`) {
		t.Fatalf("declaration on an old sign-in: %d\n%s", r.status, r.body)
	}
	if u, _ := em.Active(t.Context(), Viewer{}, "person-1"); !u.IsZero() || len(em.until) != 0 {
		t.Fatal("a declaration on an old sign-in was recorded")
	}

	back := e.stepUpSignIn(t, c, page.body, "drjones", "jones-pw")
	if back.status != http.StatusSeeOther || back.header.Get("Location") != "/staff/patients/pat-1" {
		t.Fatalf("step-up callback: %d to %q; want the patient page", back.status, back.header.Get("Location"))
	}
	page = c.getPrivate(e.base, "/staff/patients/pat-1")
	if !strings.Contains(page.body, `action="/staff/patients/pat-1/break-glass"`) {
		t.Fatalf("after step-up: no emergency form:\n%s", page.body)
	}
	if r := c.post(e.base+"/staff/patients/pat-1/break-glass", url.Values{"_csrf": {csrfFrom(t, page.body)}, "reason": {"unresponsive"}, "text": {"Unconscious in the ED"}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Fatalf("declaration after step-up: %d\n%s", r.status, r.body)
	}
	if len(em.until) != 1 {
		t.Errorf("declarations after step-up: %d, want 1", len(em.until))
	}
}

// TestStepUpRecordExport: the whole-record download needs a recent sign-in too; an old one
// gets the step-up page pointing back to the summary, never the file.
func TestStepUpRecordExport(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	c := newClient(t)
	e.signIn(t, c, "alice", "alice-pw")
	if r := c.get(e.base + "/summary/record.json"); r.status != http.StatusOK {
		t.Fatalf("download on a fresh sign-in: %d", r.status)
	}
	ageAuth(t, e, c, DefaultStepUpWindow+time.Second)
	r := c.get(e.base + "/summary/record.json")
	if r.status != http.StatusForbidden || strings.Contains(r.body, "resourceType") || !strings.Contains(r.body, `name="return_to" value="/summary"`) {
		t.Fatalf("download on an old sign-in: %d\n%s", r.status, r.body)
	}
	page := c.getPrivate(e.base, "/summary")
	if strings.Contains(page.body, `href="/summary/record.json"`) || !strings.Contains(page.body, "Sign in again to download") {
		t.Fatalf("summary on an old sign-in offers the download:\n%s", page.body)
	}
	if back := e.stepUpSignIn(t, c, page.body, "alice", "alice-pw"); back.status != http.StatusSeeOther || back.header.Get("Location") != "/summary" {
		t.Fatalf("step-up callback: %d to %q", back.status, back.header.Get("Location"))
	}
	if r := c.get(e.base + "/summary/record.json"); r.status != http.StatusOK {
		t.Fatalf("download after step-up: %d", r.status)
	}
}

// TestStepUpOfficerOperations: recording a paper consent, registering or removing a
// guardian and resolving an identity review all refuse an old sign-in and change nothing.
func TestStepUpOfficerOperations(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	off := pe.signedIn(t, "privo", "privo-pw")
	page := off.getPrivate(pe.base, "/officer/consent?patient="+alicePerson)
	if !strings.Contains(page.body, `action="/officer/consent"`) {
		t.Fatalf("fresh sign-in: no paper-consent form")
	}
	ageAuth(t, pe.env, off, DefaultStepUpWindow+time.Minute)
	page = off.getPrivate(pe.base, "/officer/consent?patient="+alicePerson)
	if strings.Contains(page.body, `class="share-form paper-consent"`) || strings.Contains(page.body, `action="/officer/guardians"`) ||
		!strings.Contains(page.body, "Sign in again to record") {
		t.Fatalf("old sign-in: the consent page still offers its forms:\n%s", page.body)
	}
	tok := csrfFrom(t, page.body)
	var before int
	if err := pe.pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM consent_directives) + (SELECT count(*) FROM portal_proxies)`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		form url.Values
		back string
	}{
		{"/officer/consent", url.Values{"patient": {alicePerson}, "kind": {"optout"}, "action": {"on"}, "signed": {"2026-01-02"}, "formref": {"F-1"}},
			"/officer/consent?patient=" + alicePerson},
		{"/officer/guardians", url.Values{"patient": {alicePerson}, "patient_name": {"Alice"}, "name": {"Bob"}, "relationship": {"parent"}, "evidence": {"E-1"}},
			"/officer/consent?patient=" + alicePerson},
		{"/officer/guardians/revoke", url.Values{"patient": {alicePerson}, "grant": {"1"}}, "/officer/consent?patient=" + alicePerson},
		{"/officer/mpi/resolve", url.Values{"item": {"1"}, "decision": {"keep-apart"}}, "/officer/reviews"},
	} {
		c.form.Set("_csrf", tok)
		r := off.post(pe.base+c.path, c.form, "same-origin")
		if r.status != http.StatusForbidden || !strings.Contains(r.body, "Confirm it") ||
			!strings.Contains(r.body, `name="return_to" value="`+strings.ReplaceAll(c.back, "&", "&amp;")+`"`) {
			t.Errorf("%s on an old sign-in: %d\n%s", c.path, r.status, r.body)
		}
	}
	var after int
	if err := pe.pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM consent_directives) + (SELECT count(*) FROM portal_proxies)`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("rows changed on an old sign-in: %d then %d", before, after)
	}
}

// TestSecondFactorRefusalKeepsReturnPath: a staff step-up sign-in refused for want of a
// second factor offers a retry that is still a step-up and still comes back to the page.
func TestSecondFactorRefusalKeepsReturnPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	c := newClient(t)
	land := c.get(e.base + "/")
	r := c.post(e.base+"/auth/login", url.Values{"_csrf": {csrfFrom(t, land.body)}, "step_up": {"1"}, "return_to": {"/staff/patients/pat-1"}}, "")
	if r.status != http.StatusSeeOther {
		t.Fatalf("sign in: %d", r.status)
	}
	refused := c.get(e.opLogin(t, r.header.Get("Location"), "drsolo", "solo-pw"))
	if refused.status != http.StatusForbidden || !strings.Contains(refused.body, `name="return_to" value="/staff/patients/pat-1"`) ||
		!strings.Contains(refused.body, `name="step_up" value="1"`) || !strings.Contains(refused.body, `name="mfa" value="1"`) {
		t.Fatalf("refused step-up: %d\n%s", refused.status, refused.body)
	}
}
