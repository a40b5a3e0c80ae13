package portal

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/testkit"
)

func TestAuthTime(t *testing.T) {
	now := time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)
	iat := time.Date(2026, 3, 3, 11, 59, 0, 0, time.FixedZone("op", 3600)) // the OP's clock may differ
	cases := []struct {
		name  string
		iat   time.Time
		claim int64
		want  time.Time
	}{
		// Every request asks for max_age, so an answer without auth_time is no recent
		// sign-in, whether or not it was a step-up: an OP may answer from an old session.
		{"no auth_time", iat, 0, time.Time{}},
		{"authenticated as the token was made", iat, iat.Unix(), now},
		{"an OP session two hours old", iat, iat.Add(-2 * time.Hour).Unix(), now.Add(-2 * time.Hour)},
		{"auth_time after iat", iat, iat.Add(time.Minute).Unix(), now},
		// Without iat there is nothing on the OP's clock to measure auth_time against.
		{"no iat, an OP session eight hours old", time.Time{}, iat.Add(-8 * time.Hour).Unix(), time.Time{}},
		{"no iat, no auth_time", time.Time{}, 0, time.Time{}},
	}
	for _, c := range cases {
		if got := authTime(now, c.iat, c.claim); !got.Equal(c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestSignInAsksForMaxAge: a plain sign-in asks the OP for max_age, the absolute session
// timeout in seconds, and not for prompt=login, so a compliant OP must say when the user
// authenticated; the development OP does, and the sign-in it makes counts as recent.
func TestSignInAsksForMaxAge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	c := newClient(t)
	authURL := e.startSignIn(t, c)
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	if q, want := u.Query(), strconv.FormatInt(int64(e.srv.cfg.Absolute/time.Second), 10); q.Get("max_age") != want || want != "43200" || q.Has("prompt") {
		t.Errorf("a plain sign-in asks the OP for %v; want max_age=%s and no prompt", q, want)
	}
	if r := c.get(e.opLogin(t, authURL, "alice", "alice-pw")); r.status != http.StatusSeeOther {
		t.Fatalf("callback: %d\n%s", r.status, r.body)
	}
	sess, err := e.srv.sessions.Load(t.Context(), e.sessionID(c))
	if err != nil {
		t.Fatal(err)
	}
	if sess.AuthTime.IsZero() || !e.srv.freshAuth(&sess) {
		t.Errorf("a sign-in just made: AuthTime %v, fresh %v", sess.AuthTime, e.srv.freshAuth(&sess))
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

	back := e.stepUpSignIn(t, c, r.body, "drjones", "jones-pw")
	if back.status != http.StatusSeeOther || back.header.Get("Location") != "/staff/patients/pat-1" {
		t.Fatalf("step-up callback: %d to %q; want the patient page", back.status, back.header.Get("Location"))
	}
	page = c.getPrivate(e.base, "/staff/patients/pat-1")
	if !strings.Contains(page.body, `action="/staff/patients/pat-1/break-glass"`) {
		t.Fatalf("after step-up: no emergency form:\n%s", page.body)
	}
	// What the clinician typed before is filled in again (TestStepUpKeepsTypedForm).
	if !strings.Contains(page.body, `value="Unconscious in the ED"`) || !strings.Contains(page.body, `value="unresponsive" selected`) {
		t.Errorf("after step-up the declaration is not as typed:\n%s", page.body)
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
	if r := off.getPrivate(pe.base, "/officer/reviews"); !strings.Contains(r.body, `action="/officer/mpi/resolve"`) || strings.Contains(r.body, "Sign in again to decide") {
		t.Fatalf("fresh sign-in: the identity review offers no decision:\n%s", r.body)
	}
	ageAuth(t, pe.env, off, DefaultStepUpWindow+time.Minute)
	// The reviews page offers a sign-in instead of buttons that would only lead to one.
	if r := off.getPrivate(pe.base, "/officer/reviews"); strings.Contains(r.body, `action="/officer/mpi/resolve"`) || !strings.Contains(r.body, "Sign in again to decide") ||
		!strings.Contains(r.body, `name="return_to" value="/officer/reviews"`) {
		t.Fatalf("old sign-in: the reviews page still offers the decision buttons:\n%s", r.body)
	}
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

// TestStepUpWideningCaregiverAccess: on a sign-in older than the step-up window, inviting
// a caregiver and letting one see sensitive information are refused with the step-up page
// (back to /caregivers) and change nothing, and the caregivers page offers a fresh sign-in
// in their place; hiding sensitive information and removing access still go through at
// once. After the step-up sign-in, which comes back to the page, the invitation goes
// through.
func TestStepUpWideningCaregiverAccess(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	alice := pe.signedIn(t, "alice", "alice-pw")
	page := alice.getPrivate(pe.base, "/caregivers")
	if !strings.Contains(page.body, `action="/caregivers"`) {
		t.Fatalf("fresh sign-in: no invitation form:\n%s", page.body)
	}
	tok := csrfFrom(t, page.body)
	grant := map[string]string{}
	for _, name := range []string{"Nora Nguyen", "Sam Nguyen"} {
		if r := alice.post(pe.base+"/caregivers", url.Values{"_csrf": {tok}, "name": {name}, "relationship": {"parent"}}, "same-origin"); r.status != http.StatusOK {
			t.Fatalf("invite %s on a fresh sign-in: %d", name, r.status)
		}
		var id int64
		if err := pe.pool.QueryRow(t.Context(), `SELECT id FROM portal_proxies WHERE caregiver_name = $1`, name).Scan(&id); err != nil {
			t.Fatal(err)
		}
		grant[name] = strconv.FormatInt(id, 10)
	}
	if r := alice.post(pe.base+"/caregivers/sensitive", url.Values{"_csrf": {tok}, "grant": {grant["Sam Nguyen"]}, "on": {"1"}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Fatalf("sensitive on, fresh sign-in: %d", r.status)
	}
	state := func() string {
		t.Helper()
		var n int
		var sens []string
		rows, err := pe.pool.Query(t.Context(), `SELECT caregiver_name FROM portal_proxies WHERE include_sensitive AND revoked_at IS NULL ORDER BY caregiver_name`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			sens = append(sens, s)
		}
		if err := pe.pool.QueryRow(t.Context(), `SELECT count(*) FROM portal_proxies WHERE revoked_at IS NULL`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return strconv.Itoa(n) + " active, sensitive: " + strings.Join(sens, ",")
	}

	ageAuth(t, pe.env, alice, DefaultStepUpWindow+time.Minute)
	page = alice.getPrivate(pe.base, "/caregivers")
	if strings.Contains(page.body, `action="/caregivers"`) || strings.Contains(page.body, `name="on" value="1"`) ||
		!strings.Contains(page.body, "Sign in again to invite") || !strings.Contains(page.body, "Sign in again to let Nora Nguyen see sensitive information") ||
		!strings.Contains(page.body, "Hide sensitive information") || !strings.Contains(page.body, `action="/caregivers/revoke"`) {
		t.Fatalf("old sign-in: the caregivers page offers the widening forms, or no step-up, or not the narrowing ones:\n%s", page.body)
	}
	tok = csrfFrom(t, page.body)
	before := state()
	for _, c := range []struct {
		path string
		form url.Values
	}{
		{"/caregivers", url.Values{"name": {"Eve Mallory"}, "relationship": {"other"}}},
		{"/caregivers/sensitive", url.Values{"grant": {grant["Nora Nguyen"]}, "on": {"1"}}},
	} {
		c.form.Set("_csrf", tok)
		r := alice.post(pe.base+c.path, c.form, "same-origin")
		if r.status != http.StatusForbidden || !strings.Contains(r.body, "Confirm it") || inviteURLRe.MatchString(r.body) ||
			!strings.Contains(r.body, `name="return_to" value="/caregivers"`) {
			t.Errorf("%s on an old sign-in: %d\n%s", c.path, r.status, r.body)
		}
	}
	if after := state(); after != before {
		t.Errorf("an old sign-in widened caregiver access: %q, then %q", before, after)
	}
	// Narrowing is never held back.
	if r := alice.post(pe.base+"/caregivers/sensitive", url.Values{"_csrf": {tok}, "grant": {grant["Sam Nguyen"]}, "on": {"0"}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Errorf("sensitive off on an old sign-in: %d\n%s", r.status, r.body)
	}
	if r := alice.post(pe.base+"/caregivers/revoke", url.Values{"_csrf": {tok}, "grant": {grant["Sam Nguyen"]}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Errorf("revoke on an old sign-in: %d\n%s", r.status, r.body)
	}
	if got := state(); got != "1 active, sensitive: " {
		t.Errorf("after hiding and revoking on an old sign-in: %q", got)
	}

	if back := pe.stepUpSignIn(t, alice, page.body, "alice", "alice-pw"); back.status != http.StatusSeeOther || back.header.Get("Location") != "/caregivers" {
		t.Fatalf("step-up callback: %d to %q", back.status, back.header.Get("Location"))
	}
	page = alice.getPrivate(pe.base, "/caregivers")
	if !strings.Contains(page.body, `action="/caregivers"`) || !strings.Contains(page.body, `name="on" value="1"`) {
		t.Fatalf("after step-up: no invitation form or sensitive button:\n%s", page.body)
	}
	tok = csrfFrom(t, page.body)
	if r := alice.post(pe.base+"/caregivers", url.Values{"_csrf": {tok}, "name": {"Eve Mallory"}, "relationship": {"other"}}, "same-origin"); r.status != http.StatusOK || !inviteURLRe.MatchString(r.body) {
		t.Errorf("invite after step-up: %d", r.status)
	}
	if r := alice.post(pe.base+"/caregivers/sensitive", url.Values{"_csrf": {tok}, "grant": {grant["Nora Nguyen"]}, "on": {"1"}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Errorf("sensitive on after step-up: %d", r.status)
	}
	if got := state(); got != "2 active, sensitive: Nora Nguyen" {
		t.Errorf("after step-up: %q", got)
	}
}

// TestStepUpWideningSharingChoices: on an old sign-in, the sharing choices that widen
// sharing (withdrawing an opt-out or a block of one organization, letting an organization
// see sensitive information) are refused with the step-up page (back to /privacy) and
// saved nowhere, and the privacy page offers a fresh sign-in in their place; the choices
// that narrow sharing still go through at once.
func TestStepUpWideningSharingChoices(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	alice := pe.signedIn(t, "alice", "alice-pw")
	choices := func() string {
		t.Helper()
		dirs, err := pe.srv.privacy.Directives(t.Context(), alicePerson)
		if err != nil {
			t.Fatal(err)
		}
		var on []string
		for _, c := range []struct{ kind, org string }{{choiceOptOut, ""}, {choiceDenyOrg, "stmary"}, {choiceSensitive, "riverside"}, {choiceSensitive, "stmary"}} {
			if choiceActive(dirs, alicePerson, c.kind, c.org) {
				on = append(on, c.kind+" "+c.org)
			}
		}
		return strings.Join(on, ",")
	}
	page := alice.getPrivate(pe.base, "/privacy")
	tok := csrfFrom(t, page.body)
	set := func(kind, org, on string) resp {
		t.Helper()
		return alice.post(pe.base+"/privacy/choice", url.Values{"_csrf": {tok}, "kind": {kind}, "org": {org}, "on": {on}}, "same-origin")
	}
	if r := set(choiceSensitive, "stmary", "1"); r.status != http.StatusSeeOther {
		t.Fatalf("sensitive for St Mary's on a fresh sign-in: %d", r.status)
	}

	ageAuth(t, pe.env, alice, DefaultStepUpWindow+time.Minute)
	// Narrowing on an old sign-in: opt out, stop one organization, withdraw sensitive.
	for _, c := range [][3]string{{choiceOptOut, "", "1"}, {choiceDenyOrg, "stmary", "1"}, {choiceSensitive, "stmary", "0"}} {
		if r := set(c[0], c[1], c[2]); r.status != http.StatusSeeOther {
			t.Errorf("narrowing %v on an old sign-in: %d\n%s", c, r.status, r.body)
		}
	}
	if got, want := choices(), "optout ,deny-org stmary"; got != want {
		t.Fatalf("after narrowing on an old sign-in: %q, want %q", got, want)
	}
	page = alice.getPrivate(pe.base, "/privacy")
	for _, widen := range []string{"Share my record for treatment again", "Share with St Mary's Hospital again", "Let Riverside Family Clinic see sensitive information"} {
		if !strings.Contains(html.UnescapeString(page.body), "Sign in again to "+strings.ToLower(widen[:1])+widen[1:]) {
			t.Errorf("old sign-in: no step-up button for %q", widen)
		}
	}
	for _, widen := range []string{"Share my record for treatment again", "Share with St Mary's Hospital again", "Let Riverside Family Clinic see sensitive information"} {
		if strings.Contains(html.UnescapeString(page.body), ">"+widen+"</button>") {
			t.Errorf("old sign-in: the privacy page still offers %q", widen)
		}
	}
	tok = csrfFrom(t, page.body)
	for _, c := range [][3]string{{choiceOptOut, "", "0"}, {choiceDenyOrg, "stmary", "0"}, {choiceSensitive, "riverside", "1"}, {"part2", "riverside", "1"}, {"no-such-choice", "", "1"}} {
		r := set(c[0], c[1], c[2])
		if r.status != http.StatusForbidden || !strings.Contains(r.body, "Confirm it") || !strings.Contains(r.body, `name="return_to" value="/privacy"`) {
			t.Errorf("widening %v on an old sign-in: %d\n%s", c, r.status, r.body)
		}
	}
	if got, want := choices(), "optout ,deny-org stmary"; got != want {
		t.Errorf("an old sign-in widened sharing: %q, want %q", got, want)
	}

	if back := pe.stepUpSignIn(t, alice, page.body, "alice", "alice-pw"); back.status != http.StatusSeeOther || back.header.Get("Location") != "/privacy" {
		t.Fatalf("step-up callback: %d to %q", back.status, back.header.Get("Location"))
	}
	tok = csrfFrom(t, alice.getPrivate(pe.base, "/privacy").body)
	for _, c := range [][3]string{{choiceOptOut, "", "0"}, {choiceDenyOrg, "stmary", "0"}, {choiceSensitive, "riverside", "1"}} {
		if r := set(c[0], c[1], c[2]); r.status != http.StatusSeeOther {
			t.Errorf("widening %v after step-up: %d", c, r.status)
		}
	}
	if got, want := choices(), "sensitive riverside"; got != want {
		t.Errorf("after step-up: %q, want %q", got, want)
	}
}

// TestStepUpShareLink: making a share link needs a recent sign-in; on an old one the page
// offers a fresh sign-in instead of the form, a link posted anyway is not made, and
// revoking a link still goes through. After the step-up sign-in, back on the page, the
// link is made.
func TestStepUpShareLink(t *testing.T) {
	t.Parallel()
	se := newShareEnv(t, false)
	alice := newClient(t)
	se.signIn(t, alice, "alice", "alice-pw")
	se.createLink(t, alice, url.Values{"what": {"all"}, "for": {"1d"}})
	links := func() int {
		t.Helper()
		var n int
		if err := se.pool.QueryRow(t.Context(), `SELECT count(*) FROM portal_share_links WHERE revoked_at IS NULL`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	ageAuth(t, se.env, alice, DefaultStepUpWindow+time.Minute)
	page := alice.getPrivate(se.base, "/labs/share")
	if strings.Contains(page.body, `action="/labs/share"`) || !strings.Contains(page.body, "Sign in again to make a link") || !strings.Contains(page.body, `action="/labs/share/revoke"`) {
		t.Fatalf("old sign-in: the share page offers the form, or no step-up, or no revoke:\n%s", page.body)
	}
	tok := csrfFrom(t, page.body)
	r := alice.post(se.base+"/labs/share", url.Values{"_csrf": {tok}, "what": {"all"}, "for": {"7d"}, "sensitive": {"yes"}}, "same-origin")
	if r.status != http.StatusForbidden || shareURLRe.MatchString(r.body) || !strings.Contains(r.body, `name="return_to" value="/labs/share"`) {
		t.Errorf("a link on an old sign-in: %d\n%s", r.status, r.body)
	}
	if n := links(); n != 1 {
		t.Errorf("active links after a refused one: %d, want 1", n)
	}
	lm := shareLinkRe.FindStringSubmatch(page.body)
	if lm == nil {
		t.Fatalf("no link to revoke:\n%s", page.body)
	}
	if r := alice.post(se.base+"/labs/share/revoke", url.Values{"_csrf": {tok}, "link": {lm[1]}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Errorf("revoke on an old sign-in: %d\n%s", r.status, r.body)
	}
	if n := links(); n != 0 {
		t.Errorf("active links after revoking on an old sign-in: %d, want 0", n)
	}

	if back := se.stepUpSignIn(t, alice, page.body, "alice", "alice-pw"); back.status != http.StatusSeeOther || back.header.Get("Location") != "/labs/share" {
		t.Fatalf("step-up callback: %d to %q", back.status, back.header.Get("Location"))
	}
	se.createLink(t, alice, url.Values{"what": {"all"}, "for": {"1d"}})
	if n := links(); n != 1 {
		t.Errorf("active links after step-up: %d, want 1", n)
	}
}

// TestStepUpCaregiverKeepsActingFor: a caregiver's step-up sign-in, started while acting
// for the patient, comes back acting for her: the summary is hers and the download is
// her record, read as her caregiver. A step-up finished by another login, or after the
// grant was revoked, lands as that login's own, without an error.
func TestStepUpCaregiverKeepsActingFor(t *testing.T) {
	t.Parallel()
	pool := testkit.DB(t)
	e := newEnv(t, envOpts{pool: pool, proxies: NewProxyStore(pool, auditLog(t, pool))})
	alice := newClient(t)
	e.signIn(t, alice, "alice", "alice-pw")
	nora := acceptCaregiver(t, e, alice)
	gid := grantByName(t, e, "Nora Nguyen")
	lastViewer := func() Viewer {
		e.records.mu.Lock()
		defer e.records.mu.Unlock()
		return e.records.viewers[len(e.records.viewers)-1]
	}
	// sessionOf returns c's session, and its role, person, grant and own role for messages.
	sessionOf := func(c *client) (Session, string) {
		t.Helper()
		sess, err := e.srv.sessions.Load(t.Context(), e.sessionID(c))
		if err != nil {
			t.Fatal(err)
		}
		return sess, fmt.Sprintf("role %s, person %q, grant %d, own role %q", sess.Role, sess.PersonID, sess.ProxyGrant, sess.OwnRole)
	}

	ageAuth(t, e, nora, DefaultStepUpWindow+time.Minute)
	page := nora.getPrivate(e.base, "/summary")
	if back := e.stepUpSignIn(t, nora, page.body, "newbie", "newbie-pw"); back.status != http.StatusSeeOther || back.header.Get("Location") != "/summary" {
		t.Fatalf("step-up callback: %d to %q", back.status, back.header.Get("Location"))
	}
	if sess, got := sessionOf(nora); sess.Role != RoleProxy || sess.ProxyGrant != gid || sess.PersonID != "person-1" || sess.OwnRole != RoleUnenrolled {
		t.Errorf("after step-up the caregiver's session has %s; want acting for person-1 through grant %d", got, gid)
	}
	if sum := nora.getPrivate(e.base, "/summary"); !strings.Contains(sum.body, "viewing <strong>Alice Nguyen</strong>") || !strings.Contains(sum.body, `href="/summary/record.json"`) {
		t.Errorf("summary after step-up is not Alice's, or offers no download:\n%s", sum.body)
	}
	r := nora.get(e.base + "/summary/record.json")
	if v := lastViewer(); r.status != http.StatusOK || !strings.Contains(r.body, "Glucose") || v.Role != RoleProxy || v.PersonID != "person-1" || !strings.HasSuffix(v.Actor, "|sub-new-1") {
		t.Errorf("download after step-up: %d, read as %+v; want Alice's record read by her caregiver", r.status, v)
	}

	// stepUp starts a step-up from the summary and returns the OP's URL.
	stepUp := func(c *client) string {
		t.Helper()
		ageAuth(t, e, c, DefaultStepUpWindow+time.Minute)
		page := c.getPrivate(e.base, "/summary")
		r := c.post(e.base+"/auth/login", url.Values{"_csrf": {csrfFrom(t, page.body)}, "step_up": {"1"}, "return_to": {"/summary"}}, "same-origin")
		if r.status != http.StatusSeeOther {
			t.Fatalf("step-up: %d", r.status)
		}
		return r.header.Get("Location")
	}
	// Another login finishes the step-up: it is its own, not the caregiver's.
	if back := nora.get(e.opLogin(t, stepUp(nora), "alice", "alice-pw")); back.status != http.StatusSeeOther {
		t.Fatalf("step-up as another login: %d", back.status)
	}
	if sess, got := sessionOf(nora); sess.Role != RolePatient || sess.ProxyGrant != 0 || sess.Subject != "sub-pat-1" {
		t.Errorf("a step-up finished by another login: %s; want that login's own", got)
	}

	// The grant is revoked while the caregiver signs in again: their own role, no error.
	nora = newClient(t)
	e.signIn(t, nora, "newbie", "newbie-pw")
	acts := nora.getPrivate(e.base, "/enrol")
	if r := nora.post(e.base+"/act-for", url.Values{"_csrf": {csrfFrom(t, acts.body)}, "grant": {strconv.FormatInt(gid, 10)}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Fatalf("act for Alice: %d", r.status)
	}
	authURL := stepUp(nora)
	cg := alice.getPrivate(e.base, "/caregivers")
	if r := alice.post(e.base+"/caregivers/revoke", url.Values{"_csrf": {csrfFrom(t, cg.body)}, "grant": {strconv.FormatInt(gid, 10)}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Fatalf("revoke: %d", r.status)
	}
	if back := nora.get(e.opLogin(t, authURL, "newbie", "newbie-pw")); back.status != http.StatusSeeOther || back.header.Get("Location") != "/summary" {
		t.Fatalf("step-up after the revocation: %d to %q", back.status, back.header.Get("Location"))
	}
	if sess, got := sessionOf(nora); sess.Role != RoleUnenrolled || sess.ProxyGrant != 0 || sess.PersonID != "" {
		t.Errorf("a step-up after the revocation: %s; want the login's own", got)
	}
	if r := nora.get(e.base + "/summary/record.json"); r.status == http.StatusOK {
		t.Errorf("download after the revocation: %d", r.status)
	}
}

// TestStepUpKeepsTypedForm: a form refused because the sign-in had grown old is not lost.
// The officer's paper-consent form comes back as typed after the fresh sign-in, once, with
// a note; a draft is given back only to the login that typed it, and only on its page.
func TestStepUpKeepsTypedForm(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	off := pe.signedIn(t, "privo", "privo-pw")
	pagePath := "/officer/consent?patient=" + alicePerson
	ageAuth(t, pe.env, off, DefaultStepUpWindow+time.Minute)
	page := off.getPrivate(pe.base, pagePath)
	typed := url.Values{"_csrf": {csrfFrom(t, page.body)}, "patient": {alicePerson}, "kind": {"optout"}, "action": {"off"},
		"signed": {"2026-01-02"}, "formref": {"F-2026-0077"}}
	r := off.post(pe.base+"/officer/consent", typed, "same-origin")
	if r.status != http.StatusForbidden {
		t.Fatalf("paper consent on an old sign-in: %d", r.status)
	}
	// Another page first: the draft waits for its own.
	if other := off.getPrivate(pe.base, "/officer/reviews"); strings.Contains(other.body, draftNote) {
		t.Fatal("the reviews page shows the consent form's draft note")
	}
	back := pe.stepUpSignIn(t, off, r.body, "privo", "privo-pw")
	if back.status != http.StatusSeeOther || back.header.Get("Location") != pagePath {
		t.Fatalf("step-up callback: %d to %q", back.status, back.header.Get("Location"))
	}
	page = off.getPrivate(pe.base, pagePath)
	for _, want := range []string{draftNote, `value="F-2026-0077"`, `value="2026-01-02"`, `value="off" checked`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("after the step-up the form lacks %q:\n%s", want, page.body)
		}
	}
	if again := off.getPrivate(pe.base, pagePath); strings.Contains(again.body, "F-2026-0077") || strings.Contains(again.body, draftNote) {
		t.Error("the draft is shown a second time")
	}

	// A draft kept by one login never reaches another that signs in from the same browser.
	ageAuth(t, pe.env, off, DefaultStepUpWindow+time.Minute)
	page = off.getPrivate(pe.base, pagePath)
	r = off.post(pe.base+"/officer/guardians", url.Values{"_csrf": {csrfFrom(t, page.body)}, "patient": {alicePerson},
		"patient_name": {"Alice"}, "name": {"Grace Guardian"}, "relationship": {"guardian"}, "evidence": {"E-9"}}, "same-origin")
	if r.status != http.StatusForbidden {
		t.Fatalf("guardian on an old sign-in: %d", r.status)
	}
	if sess, err := pe.srv.sessions.Load(t.Context(), pe.sessionID(off)); err != nil || sess.Draft == nil || sess.Draft.Form.Get("name") != "Grace Guardian" || sess.Draft.Form.Has("_csrf") {
		t.Fatalf("the refused guardian form was not kept as it should be: %+v %v", sess.Draft, err)
	}
	pe.stepUpSignIn(t, off, r.body, "drjones", "jones-pw")
	sess, err := pe.srv.sessions.Load(t.Context(), pe.sessionID(off))
	if err != nil || sess.Subject != "sub-doc-1" {
		t.Fatalf("signed in as %q: %v", sess.Subject, err)
	}
	if sess.Draft != nil {
		t.Fatalf("another login's session got the officer's draft: %+v", sess.Draft)
	}

	// A patient's caregiver invitation comes back too.
	alice := pe.signedIn(t, "alice", "alice-pw")
	ageAuth(t, pe.env, alice, DefaultStepUpWindow+time.Minute)
	page = alice.getPrivate(pe.base, "/caregivers")
	r = alice.post(pe.base+"/caregivers", url.Values{"_csrf": {csrfFrom(t, page.body)}, "name": {"Eve Mallory"}, "relationship": {"other"},
		"ends": {"date"}, "end_date": {"2027-03-01"}}, "same-origin")
	if r.status != http.StatusForbidden {
		t.Fatalf("invitation on an old sign-in: %d", r.status)
	}
	pe.stepUpSignIn(t, alice, r.body, "alice", "alice-pw")
	page = alice.getPrivate(pe.base, "/caregivers")
	for _, want := range []string{draftNote, `value="Eve Mallory"`, `value="other" checked`, `value="date" checked`, `value="2027-03-01"`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("after the step-up the invitation lacks %q", want)
		}
	}
}
