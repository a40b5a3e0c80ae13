package portal

import (
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

// TestParseGrantEnd: the day a grant ends is a real date, typed as year-month-day, after
// today and at most maxYears ahead, in the portal's zone; access stops at its start.
func TestParseGrantEnd(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no time zone data:", err)
	}
	// 03:30 UTC on 14 May is still 13 May in New York.
	now := time.Date(2026, 5, 14, 3, 30, 0, 0, time.UTC)
	for _, tt := range []struct {
		name, in string
		loc      *time.Location
		want     time.Time
		problem  string
	}{
		{"tomorrow", "2026-05-15", time.UTC, time.Date(2026, 5, 15, 0, 0, 0, 0, time.UTC), ""},
		{"today", "2026-05-14", time.UTC, time.Time{}, "must be after today"},
		{"yesterday", "2026-05-13", time.UTC, time.Time{}, "must be after today"},
		{"today in New York is the 13th", "2026-05-14", ny, time.Date(2026, 5, 14, 0, 0, 0, 0, ny), ""},
		{"ten years", "2036-05-14", time.UTC, time.Date(2036, 5, 14, 0, 0, 0, 0, time.UTC), ""},
		{"ten years and a day", "2036-05-15", time.UTC, time.Time{}, "at most 10 years"},
		{"empty", "  ", time.UTC, time.Time{}, "Please enter the date"},
		{"no such day", "2027-02-30", time.UTC, time.Time{}, "real date"},
		{"day first", "15/05/2027", time.UTC, time.Time{}, "real date"},
		{"with a time", "2027-05-15T10:00", time.UTC, time.Time{}, "real date"},
		{"unpadded", "2027-5-15", time.UTC, time.Time{}, "real date"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, problem := parseGrantEnd(tt.in, now, tt.loc, 10)
			if !got.Equal(tt.want) || !strings.Contains(problem, tt.problem) || (tt.problem == "") != (problem == "") {
				t.Errorf("parseGrantEnd(%q) = %v, %q; want %v, %q", tt.in, got, problem, tt.want, tt.problem)
			}
		})
	}
}

// newProxyEnv is env with caregiver access in a ProxyStore, audited, on e.pool, and a
// fake clock at the current second.
func newProxyEnv(t *testing.T) (*env, *ProxyStore, *fakeClock) {
	t.Helper()
	pool := testkit.DB(t)
	clock := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	store := NewProxyStore(pool, auditLog(t, pool))
	return newEnv(t, envOpts{pool: pool, proxies: store, clock: clock}), store, clock
}

// TestCaregiverInviteEndChoices: the invitation form's "Access ends" choices store the
// right end (none, 30 days, 90 days, a year, a date), each shown on the caregivers page
// and recorded in the invitation's audit event; a bad choice or date is a sentence on the
// form, 400, and stores nothing.
func TestCaregiverInviteEndChoices(t *testing.T) {
	t.Parallel()
	e, _, clock := newProxyEnv(t)

	alice := newClient(t)
	e.signIn(t, alice, "alice", "alice-pw")
	form := alice.getPrivate(e.base, "/caregivers")
	if !strings.Contains(form.body, "Access ends") || !strings.Contains(form.body, `name="end_date" type="date"`) {
		t.Fatalf("the invitation form has no end choice:\n%s", form.body)
	}
	tok := csrfFrom(t, form.body)
	invite := func(name, ends, date string) resp {
		t.Helper()
		v := url.Values{"_csrf": {tok}, "name": {name}, "relationship": {"caregiver"}, "ends": {ends}}
		if date != "" {
			v.Set("end_date", date)
		}
		return alice.post(e.base+"/caregivers", v, "same-origin")
	}
	today := startOfDay(clock.Now(), time.UTC)
	day := func(years, days int) string { return today.AddDate(years, 0, days).Format("2006-01-02") }

	for _, bad := range []struct{ ends, date, want string }{
		{"date", "", "Please enter the date access ends."},
		{"date", day(0, -1), "The date access ends must be after today."},
		{"date", day(0, 0), "The date access ends must be after today."},
		{"date", day(10, 1), "The date access ends can be at most 10 years from today."},
		{"date", "2027-02-30", "as a real date"},
		{"date", "31/12/2027", "as a real date"},
		{"forever", "", "Please choose when their access ends."},
	} {
		r := invite("Nora Nguyen", bad.ends, bad.date)
		if r.status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(r.body), bad.want) {
			t.Errorf("ends %q date %q: %d, want 400 with %q", bad.ends, bad.date, r.status, bad.want)
		}
		if !strings.Contains(r.body, `value="Nora Nguyen"`) {
			t.Errorf("ends %q date %q: the form does not come back filled in", bad.ends, bad.date)
		}
	}
	var n int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM portal_proxies`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused forms stored %d grants (%v)", n, err)
	}

	now := clock.Now()
	want := map[string]time.Time{
		"None":    {},
		"Month":   now.Add(30 * 24 * time.Hour),
		"Quarter": now.Add(90 * 24 * time.Hour),
		"Year":    now.AddDate(1, 0, 0),
		"OnDate":  today.AddDate(0, 0, 3),
		"Decade":  today.AddDate(10, 0, 0), // the furthest allowed
	}
	for _, c := range []struct{ name, ends, date string }{
		{"None", "none", ""}, {"Month", "30d", ""}, {"Quarter", "90d", ""}, {"Year", "1y", ""},
		{"OnDate", "date", day(0, 3)}, {"Decade", "date", day(10, 0)},
	} {
		r := invite("Carer "+c.name, c.ends, c.date)
		if r.status != http.StatusOK || inviteURLRe.FindStringSubmatch(r.body) == nil {
			t.Fatalf("invite %s: %d\n%s", c.name, r.status, r.body)
		}
		if w := want[c.name]; w.IsZero() && !strings.Contains(r.body, "Their access has no end date.") ||
			!w.IsZero() && !strings.Contains(r.body, "Their access ends "+w.Format("2 Jan 2006, 15:04")) {
			t.Errorf("invite %s: the new link does not say when access ends", c.name)
		}
	}
	rows, err := e.pool.Query(t.Context(), `SELECT p.caregiver_name, p.ends_at, coalesce(a.query, '')
		FROM portal_proxies p JOIN audit_events a ON a.token_id = 'proxy/' || p.id AND a.reason = 'proxy-invited'`)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for rows.Next() {
		var name, query string
		var ends *time.Time
		if err := rows.Scan(&name, &ends, &query); err != nil {
			t.Fatal(err)
		}
		seen++
		w := want[strings.TrimPrefix(name, "Carer ")]
		switch {
		case w.IsZero() && (ends != nil || query != ""):
			t.Errorf("%s: ends_at %v, audit query %q; want none", name, ends, query)
		case !w.IsZero() && (ends == nil || !ends.Equal(w) || query != "ends_at="+w.UTC().Format(time.RFC3339)):
			t.Errorf("%s: ends_at %v, audit query %q; want %v", name, ends, query, w)
		}
	}
	if seen != len(want) {
		t.Errorf("%d invitations with their audit events, want %d", seen, len(want))
	}
	page := alice.getPrivate(e.base, "/caregivers")
	if !strings.Contains(page.body, "No end date.") || !strings.Contains(page.body, "Access until "+want["Month"].Format("2 Jan 2006, 15:04")+".") ||
		!strings.Contains(page.body, "Access until "+want["OnDate"].Format("2 Jan 2006")+", 00:00.") {
		t.Errorf("the caregivers page does not show each grant's end:\n%s", page.body)
	}
	// The audit events hold no names.
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_events a WHERE strpos(to_jsonb(a)::text, 'Carer') > 0`).Scan(&n); err != nil || n != 0 {
		t.Errorf("audit rows naming a caregiver: %d (%v)", n, err)
	}
}

// grantByName returns the ID of the grant made to caregiver name.
func grantByName(t *testing.T, e *env, name string) int64 {
	t.Helper()
	var id int64
	if err := e.pool.QueryRow(t.Context(), `SELECT id FROM portal_proxies WHERE caregiver_name = $1`, name).Scan(&id); err != nil {
		t.Fatalf("grant to %s: %v", name, err)
	}
	return id
}

// inviteEnding makes, in store, Alice's invitation to caregiver name with an end at ends
// (zero: none), as the form would, and returns its link.
func inviteEnding(t *testing.T, e *env, store *ProxyStore, name string, ends time.Time) string {
	t.Helper()
	token, sum, err := newInviteToken()
	if err != nil {
		t.Fatal(err)
	}
	v := Viewer{Role: RolePatient, PersonID: "person-1", Actor: e.op.Issuer() + "|sub-pat-1"}
	if _, err := store.Invite(t.Context(), v, ProxyGrant{PatientName: "Alice Nguyen", CaregiverName: name, Relationship: "child", EndsAt: ends}, sum, e.clock.Now()); err != nil {
		t.Fatalf("invite %s: %v", name, err)
	}
	return e.base + "/caregiver/" + token
}

// accept has c accept the invitation at link; it must land on the patient's labs.
func accept(t *testing.T, e *env, c *client, link string) {
	t.Helper()
	inv := c.getPrivate(e.base, strings.TrimPrefix(link, e.base))
	if acc := c.post(link, url.Values{"_csrf": {csrfFrom(t, inv.body)}}, "same-origin"); acc.status != http.StatusSeeOther || acc.header.Get("Location") != "/labs" {
		t.Fatalf("accept: %d %q\n%s", acc.status, acc.header.Get("Location"), acc.body)
	}
}

// TestCaregiverGrantEnds: a grant with an end date works until then and not after: the
// caregiver's session, made before the end, is back to their own role at their next
// request, the patient's pages are 404 and switching back to the patient is refused, with
// the stale entry gone from the switcher. The patient's page shows the grant as ended
// (no sensitive-information switch, which is refused too), and the same caregiver can be
// invited (after a step-up sign-in: the patient's is old by then) and accept again. A grant without an end goes on working.
func TestCaregiverGrantEnds(t *testing.T) {
	t.Parallel()
	e, store, clock := newProxyEnv(t)

	alice := newClient(t)
	e.signIn(t, alice, "alice", "alice-pw")
	ends := clock.Now().Add(45 * time.Minute)
	link := inviteEnding(t, e, store, "Nora Nguyen", ends)

	nora := newClient(t)
	e.signIn(t, nora, "newbie", "newbie-pw")
	if inv := nora.getPrivate(e.base, strings.TrimPrefix(link, e.base)); !strings.Contains(inv.body, "Your access ends "+ends.Format("2 Jan 2006, 15:04")) {
		t.Errorf("the invitation does not say when access ends:\n%s", inv.body)
	}
	accept(t, e, nora, link)
	gid := strconv.FormatInt(grantByName(t, e, "Nora Nguyen"), 10)
	for _, step := range []time.Duration{0, 20 * time.Minute, 24 * time.Minute} { // 44 minutes: still before the end
		clock.Add(step)
		if labs := nora.getPrivate(e.base, "/labs"); !strings.Contains(labs.body, "viewing <strong>Alice Nguyen</strong>") || !strings.Contains(labs.body, "Glucose") {
			t.Fatalf("the caregiver's labs %v before the end:\n%s", ends.Sub(clock.Now()), labs.body)
		}
		alice.getPrivate(e.base, "/labs") // Alice stays signed in
	}
	page := alice.getPrivate(e.base, "/caregivers")
	if !strings.Contains(page.body, "Access until "+ends.Format("2 Jan 2006, 15:04")+".") || strings.Contains(page.body, "access ended") {
		t.Errorf("the caregivers page before the end:\n%s", page.body)
	}

	readsBefore := proxyReads(e)
	clock.Add(time.Minute) // the end
	r := nora.get(e.base + "/labs")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/enrol" {
		t.Fatalf("the caregiver's request at the end: %d to %q; want 303 to their own home", r.status, r.header.Get("Location"))
	}
	if sess, err := e.srv.sessions.Load(t.Context(), e.sessionID(nora)); err != nil || sess.Role != RoleUnenrolled || sess.ProxyGrant != 0 ||
		sess.Flash != "Your access to Alice Nguyen's record has ended." || len(sess.Grants) != 0 {
		t.Errorf("the caregiver's session after the end: %+v, %v", sess, err)
	}
	home := nora.get(e.base + "/enrol")
	for _, p := range []string{"/labs", "/summary"} {
		if r := nora.get(e.base + p); r.status != http.StatusNotFound {
			t.Errorf("caregiver on %s after the end: %d, want 404", p, r.status)
		}
	}
	if strings.Contains(home.body, ">Alice Nguyen</option>") {
		t.Errorf("the switcher still offers the ended grant")
	}
	if r := nora.post(e.base+"/act-for", url.Values{"_csrf": {csrfFrom(t, home.body)}, "grant": {gid}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("switching to the ended grant: %d, want 404", r.status)
	}
	if n := proxyReads(e); n != readsBefore {
		t.Errorf("%d reads as caregiver after the end", n-readsBefore)
	}

	// Alice signed in more than the step-up window ago: she signs in again from the
	// caregivers page before anything that widens access, or the answers below would be
	// the step-up page.
	if back := e.stepUpSignIn(t, alice, alice.getPrivate(e.base, "/caregivers").body, "alice", "alice-pw"); back.status != http.StatusSeeOther {
		t.Fatalf("step-up sign-in: %d", back.status)
	}
	page = alice.getPrivate(e.base, "/caregivers")
	if !strings.Contains(page.body, "access ended") || !strings.Contains(page.body, "Remove from the list") || strings.Contains(page.body, "Show sensitive information too") {
		t.Errorf("the caregivers page does not show the grant as ended:\n%s", page.body)
	}
	if r := alice.post(e.base+"/caregivers/sensitive", url.Values{"_csrf": {csrfFrom(t, page.body)}, "grant": {gid}, "on": {"1"}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("sensitive information for an ended grant: %d, want 404", r.status)
	}

	// Alice invites Nora again, with no end: the ended grant does not stand in the way, and
	// the new one goes on working.
	again := alice.post(e.base+"/caregivers", url.Values{"_csrf": {csrfFrom(t, page.body)}, "name": {"Nora again"}, "relationship": {"child"}, "ends": {"none"}}, "same-origin")
	m := inviteURLRe.FindStringSubmatch(again.body)
	if again.status != http.StatusOK || m == nil {
		t.Fatalf("second invitation: %d\n%s", again.status, again.body)
	}
	accept(t, e, nora, html.UnescapeString(m[1]))
	var revokedAt *time.Time
	if err := e.pool.QueryRow(t.Context(), `SELECT revoked_at FROM portal_proxies WHERE id = $1`, gid).Scan(&revokedAt); err != nil || revokedAt == nil || !revokedAt.Equal(ends) {
		t.Errorf("the ended grant after a new acceptance: revoked_at %v (%v), want its end %v", revokedAt, err, ends)
	}
	for range 3 {
		clock.Add(20 * time.Minute)
		if labs := nora.getPrivate(e.base, "/labs"); !strings.Contains(labs.body, "viewing <strong>Alice Nguyen</strong>") {
			t.Fatalf("a grant without an end stopped working:\n%s", labs.body)
		}
	}
}

// proxyReads counts the record reads made as a caregiver so far.
func proxyReads(e *env) int {
	e.records.mu.Lock()
	defer e.records.mu.Unlock()
	n := 0
	for _, v := range e.records.viewers {
		if v.Role == RoleProxy {
			n++
		}
	}
	return n
}

// TestCaregiverInviteAfterEnd: an invitation whose grant has ended before anyone accepted
// it is the same 404 as an expired one, to open and to accept, and leaves the patient's
// list; it stores nothing for the caregiver.
func TestCaregiverInviteAfterEnd(t *testing.T) {
	t.Parallel()
	e, store, clock := newProxyEnv(t)

	link := inviteEnding(t, e, store, "Nora Nguyen", clock.Now().Add(10*time.Minute))
	nora := newClient(t)
	e.signIn(t, nora, "newbie", "newbie-pw")
	inv := nora.getPrivate(e.base, strings.TrimPrefix(link, e.base))
	alice := newClient(t)
	e.signIn(t, alice, "alice", "alice-pw")
	if !strings.Contains(alice.getPrivate(e.base, "/caregivers").body, "invitation not yet accepted") {
		t.Errorf("the pending invitation is not listed before its end")
	}

	clock.Add(10 * time.Minute)
	unknown := nora.get(e.base + "/caregiver/" + strings.Repeat("A", 43))
	r := nora.get(link)
	if r.status != http.StatusNotFound || stripRequestID(r.body) != stripRequestID(unknown.body) {
		t.Errorf("opening the invitation after its grant's end: %d, want the unknown invitation's 404\n%s", r.status, r.body)
	}
	if r := nora.post(link, url.Values{"_csrf": {csrfFrom(t, inv.body)}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("accepting after the grant's end: %d, want 404", r.status)
	}
	var accepted bool
	if err := e.pool.QueryRow(t.Context(), `SELECT proxy_login IS NOT NULL FROM portal_proxies`).Scan(&accepted); err != nil || accepted {
		t.Errorf("the invitation was accepted after its end (%v)", err)
	}
	if strings.Contains(alice.getPrivate(e.base, "/caregivers").body, "Nora Nguyen") {
		t.Errorf("the patient's list still shows an invitation that can no longer be accepted")
	}
}

// TestCaregiverSignInSkipsEndedGrants: a sign-in after a grant's end offers no switch to it,
// while a grant without an end is offered as before; the database refuses an end that is
// not after the grant was made.
func TestCaregiverSignInSkipsEndedGrants(t *testing.T) {
	t.Parallel()
	e, store, clock := newProxyEnv(t)
	if _, err := e.pool.Exec(t.Context(), `INSERT INTO mpi_persons (id) VALUES ('0a11ce00-0000-4000-8000-0000000000b0')`); err != nil {
		t.Fatal(err)
	}

	// Nora is the caregiver of Alice (ends in 2 minutes) and of Bob (no end, made by an
	// officer: NULL ends_at like every grant from before end dates).
	nora := newClient(t)
	e.signIn(t, nora, "newbie", "newbie-pw")
	accept(t, e, nora, inviteEnding(t, e, store, "Nora Nguyen", clock.Now().Add(2*time.Minute)))
	labs := nora.getPrivate(e.base, "/labs")
	if r := nora.post(e.base+"/act-for", url.Values{"_csrf": {csrfFrom(t, labs.body)}, "grant": {"self"}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Fatalf("back to self: %d", r.status)
	}
	token, sum, err := newInviteToken()
	if err != nil {
		t.Fatal(err)
	}
	off := Viewer{Role: RoleOfficer, Org: "riverside", Actor: e.op.Issuer() + "|sub-off-1"}
	if _, err := store.Invite(t.Context(), off, ProxyGrant{PersonID: "0a11ce00-0000-4000-8000-0000000000b0", PatientName: "Bob Byrne",
		CaregiverName: "Nora for Bob", Relationship: "guardian", Evidence: "CT-1"}, sum, clock.Now()); err != nil {
		t.Fatal(err)
	}
	accept(t, e, nora, e.base+"/caregiver/"+token)

	clock.Add(3 * time.Minute)
	fresh := newClient(t)
	if r := e.signIn(t, fresh, "newbie", "newbie-pw"); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in after the end: %d", r.status)
	}
	home := fresh.get(e.base + "/enrol")
	if strings.Contains(home.body, ">Alice Nguyen</option>") || !strings.Contains(home.body, ">Bob Byrne</option>") {
		t.Errorf("the switcher after sign-in:\n%s", home.body)
	}
	bob := strconv.FormatInt(grantByName(t, e, "Nora for Bob"), 10)
	if r := fresh.post(e.base+"/act-for", url.Values{"_csrf": {csrfFrom(t, home.body)}, "grant": {bob}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Errorf("switching to the grant without an end: %d", r.status)
	}
	alice := strconv.FormatInt(grantByName(t, e, "Nora Nguyen"), 10)
	if r := fresh.post(e.base+"/act-for", url.Values{"_csrf": {csrfFrom(t, home.body)}, "grant": {alice}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("switching to the ended grant: %d, want 404", r.status)
	}

	// The older session still lists Alice (as of its sign-in): switching there is refused
	// too, and the entry leaves its switcher.
	bobLabs := nora.getPrivate(e.base, "/labs")
	if !strings.Contains(bobLabs.body, "viewing <strong>Bob Byrne</strong>") {
		t.Fatalf("the older session does not act for Bob:\n%s", bobLabs.body)
	}
	if r := nora.post(e.base+"/act-for", url.Values{"_csrf": {csrfFrom(t, bobLabs.body)}, "grant": {"self"}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Fatalf("back to self: %d", r.status)
	}
	old := nora.get(e.base + "/enrol")
	if !strings.Contains(old.body, ">Alice Nguyen</option>") {
		t.Fatalf("the older session's switcher does not list Alice (the test proves nothing):\n%s", old.body)
	}
	if r := nora.post(e.base+"/act-for", url.Values{"_csrf": {csrfFrom(t, old.body)}, "grant": {alice}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("the older session switching to the ended grant: %d, want 404", r.status)
	}
	if r := nora.get(e.base + "/enrol"); strings.Contains(r.body, ">Alice Nguyen</option>") {
		t.Errorf("the ended grant is still offered in the older session")
	}

	// The database keeps an end after the grant's making.
	if _, err := e.pool.Exec(t.Context(), `UPDATE portal_proxies SET ends_at = created_at WHERE caregiver_name = 'Nora for Bob'`); err == nil {
		t.Errorf("an end at the grant's making was stored")
	}
	if _, err := store.Invite(t.Context(), off, ProxyGrant{PersonID: "0a11ce00-0000-4000-8000-0000000000b0", PatientName: "Bob Byrne",
		CaregiverName: "Late", Relationship: "guardian", Evidence: "CT-1", EndsAt: clock.Now()}, sum, clock.Now()); err == nil {
		t.Errorf("the store took a grant ending now")
	}
}

var requestIDRe = regexp.MustCompile(`[A-Za-z0-9]{32}`)

// stripRequestID blanks the request ID (and any other 32-character token) in an error page.
func stripRequestID(body string) string { return requestIDRe.ReplaceAllString(body, "") }

var grantIDRe = regexp.MustCompile(`name="grant" value="(\d+)"`)

// TestOfficerGuardianEnds: an officer registers a parent with the day access ends (the
// child's 18th birthday, up to 18 years ahead) and a legal guardian without one; the link
// and the list say so, the audit event records the end (IDs and dates, no names), bad
// dates come back as sentences, and once the end has passed the parent's next request is
// their own again and the officer's list shows the grant as ended.
func TestOfficerGuardianEnds(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	off := pe.signedIn(t, "privo", "privo-pw")
	page := off.getPrivate(pe.base, "/officer/consent?patient="+alicePerson)
	if !strings.Contains(page.body, `name="end_date" type="date"`) || !strings.Contains(html.UnescapeString(page.body), "18th birthday") {
		t.Fatalf("the guardian form has no end date:\n%s", page.body)
	}
	tok := csrfFrom(t, page.body)
	register := func(name, rel, ends string) resp {
		t.Helper()
		return off.post(pe.base+"/officer/guardians", url.Values{"_csrf": {tok}, "patient": {alicePerson}, "patient_name": {"Alice Nguyen"},
			"name": {name}, "relationship": {rel}, "evidence": {"BC-2026-77"}, "end_date": {ends}}, "same-origin")
	}
	today := startOfDay(time.Now(), time.UTC)
	day := func(years, days int) string { return today.AddDate(years, 0, days).Format("2006-01-02") }
	for _, bad := range []struct{ rel, ends, want string }{
		{"parent", day(0, -1), "The date access ends must be after today."},
		{"parent", day(18, 1), "The date access ends can be at most 18 years from today."},
		{"guardian", "2027-13-01", "as a real date"},
		{"parent", "", "Enter the day a parent's access ends"},
	} {
		if r := register("Nora Nguyen", bad.rel, bad.ends); r.status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(r.body), bad.want) {
			t.Errorf("%+v: %d, want 400 with %q", bad, r.status, bad.want)
		}
	}
	birthday := today.AddDate(5, 0, 0)
	r := register("Nora Nguyen", "parent", day(5, 0))
	m := inviteURLRe.FindStringSubmatch(r.body)
	if r.status != http.StatusOK || m == nil || !strings.Contains(r.body, "Their access ends "+birthday.Format("2 Jan 2006")+", 00:00.") {
		t.Fatalf("register a parent with an end: %d\n%s", r.status, r.body)
	}
	link := html.UnescapeString(m[1])
	if r := register("Gus Guardian", "guardian", ""); r.status != http.StatusOK || !strings.Contains(r.body, "Their access has no end date.") {
		t.Fatalf("register a guardian without an end: %d\n%s", r.status, r.body)
	}
	if r := register("Newborn's parent", "parent", day(18, 0)); r.status != http.StatusOK {
		t.Errorf("a parent until a newborn's 18th birthday: %d", r.status)
	}
	list := off.getPrivate(pe.base, "/officer/consent?patient="+alicePerson)
	if !strings.Contains(list.body, "Access until "+birthday.Format("2 Jan 2006")+", 00:00.") || !strings.Contains(list.body, "No end date.") {
		t.Errorf("the officer's list does not show the ends:\n%s", list.body)
	}
	var query string
	if err := pe.pool.QueryRow(t.Context(), `SELECT a.query FROM audit_events a JOIN portal_proxies p ON a.token_id = 'proxy/' || p.id
		WHERE a.reason = 'proxy-registered' AND p.caregiver_name = 'Nora Nguyen'`).Scan(&query); err != nil || query != "ends_at="+birthday.Format(time.RFC3339) {
		t.Errorf("the registration's audit event: query %q (%v), want the end", query, err)
	}

	nora := newClient(t)
	pe.signIn(t, nora, "newbie", "newbie-pw")
	inv := nora.getPrivate(pe.base, strings.TrimPrefix(link, pe.base))
	if !strings.Contains(inv.body, "Your access ends "+birthday.Format("2 Jan 2006")) {
		t.Errorf("the invitation does not say when access ends")
	}
	if acc := nora.post(link, url.Values{"_csrf": {csrfFrom(t, inv.body)}}, "same-origin"); acc.status != http.StatusSeeOther {
		t.Fatalf("accept: %d", acc.status)
	}
	if labs := nora.getPrivate(pe.base, "/labs"); !strings.Contains(labs.body, "viewing <strong>Alice Nguyen</strong>") {
		t.Fatalf("the parent does not see Alice's labs before the end")
	}
	// The child's birthday comes (this environment runs on the real clock: the grant's
	// dates move back instead).
	if _, err := pe.pool.Exec(t.Context(), `UPDATE portal_proxies SET created_at = created_at - interval '2 days', accepted_at = accepted_at - interval '1 day',
		ends_at = now() - interval '1 minute' WHERE caregiver_name = 'Nora Nguyen'`); err != nil {
		t.Fatal(err)
	}
	if r := nora.get(pe.base + "/labs"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/enrol" {
		t.Errorf("the parent's request after the end: %d to %q", r.status, r.header.Get("Location"))
	}
	if r := nora.get(pe.base + "/labs"); r.status != http.StatusNotFound {
		t.Errorf("the parent's labs after the end: %d, want 404", r.status)
	}
	list = off.getPrivate(pe.base, "/officer/consent?patient="+alicePerson)
	if !strings.Contains(list.body, "access ended") || !strings.Contains(list.body, "Remove from the list") {
		t.Errorf("the officer's list does not show the grant as ended:\n%s", list.body)
	}
	if grantIDRe.FindStringSubmatch(list.body) == nil {
		t.Errorf("no grant in the officer's list")
	}
}
