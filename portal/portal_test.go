package portal

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

func TestPatientSignInSeesLabsAndSignsOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	c := newClient(t)
	preID := ""
	authURL := e.startSignIn(t, c)
	preID = e.sessionID(c)
	r := c.get(e.opLogin(t, authURL, "alice", "alice-pw"))
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/labs" {
		t.Fatalf("callback: %d to %q: %s", r.status, r.header.Get("Location"), r.body)
	}
	sid := e.sessionID(c)
	if sid == "" || sid == preID {
		t.Fatalf("session ID not rotated at sign-in: pre %q, post %q", preID, sid)
	}
	if _, err := e.srv.Sessions().Load(context.Background(), preID); !errs.Is(err, errs.NotFound) {
		t.Fatalf("pre-login session still loads: %v", err)
	}

	labs := c.get(e.base + "/labs")
	if labs.status != http.StatusOK {
		t.Fatalf("labs: %d %s", labs.status, labs.body)
	}
	for _, want := range []string{"Glucose", "7.9", "North Valley Laboratory", "Riverside Family Clinic", "St Mary&#39;s Hospital", "High", "Low", "3.9-5.6", "<svg class=\"trend\"", "Preliminary, may change", "Alice Nguyen"} {
		if !strings.Contains(labs.body, want) {
			t.Errorf("labs page lacks %q", want)
		}
	}
	// Newest first within a test: 7.9 (Sep) before 6.1 (Jun) before 5.4 (Mar).
	if i, j, k := strings.Index(labs.body, ">7.9<"), strings.Index(labs.body, ">6.1<"), strings.Index(labs.body, ">5.4<"); !(i < j && j < k) {
		t.Errorf("glucose rows not newest first: %d %d %d", i, j, k)
	}
	h := labs.header
	if h.Get("Cache-Control") != "no-store" {
		t.Errorf("labs Cache-Control %q", h.Get("Cache-Control"))
	}
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "frame-ancestors 'none'", "form-action 'self' " + strings.TrimSuffix(e.op.Issuer(), "/"), "base-uri 'self'", "object-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "same-origin" {
		t.Errorf("headers: nosniff %q referrer %q", h.Get("X-Content-Type-Options"), h.Get("Referrer-Policy"))
	}
	if len(e.records.viewers) != 1 {
		t.Fatalf("Records called %d times", len(e.records.viewers))
	}
	v := e.records.viewers[0]
	if v.PersonID != "person-1" || v.Role != RolePatient || v.Actor != e.op.Issuer()+"|sub-pat-1" || v.RequestID == "" || v.SourceIP == "" {
		t.Errorf("viewer %+v", v)
	}
	// The landing page sends a signed-in patient to the labs.
	if r := c.get(e.base + "/"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/labs" {
		t.Errorf("landing when signed in: %d %q", r.status, r.header.Get("Location"))
	}
	// A patient does not reach the staff area: it looks absent.
	if r := c.get(e.base + "/staff"); r.status != http.StatusNotFound {
		t.Errorf("patient on /staff: %d", r.status)
	}

	out := c.post(e.base+"/logout", url.Values{"_csrf": {csrfFrom(t, labs.body)}}, "")
	if out.status != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", out.status, out.body)
	}
	if got := out.header.Get("Clear-Site-Data"); got != `"cache", "cookies", "storage"` {
		t.Errorf("Clear-Site-Data %q", got)
	}
	if loc := out.header.Get("Location"); !strings.HasPrefix(loc, e.op.Issuer()) || !strings.Contains(loc, "id_token_hint=") {
		t.Errorf("logout redirects to %q, want the OP's end_session", loc)
	}
	if _, err := e.srv.Sessions().Load(context.Background(), sid); !errs.Is(err, errs.NotFound) {
		t.Errorf("session survives logout: %v", err)
	}
	// The old session ID no longer works, even if a client replays it.
	replay := newClient(t)
	u, _ := url.Parse(e.base)
	replay.hc.Jar.SetCookies(u, []*http.Cookie{{Name: e.srv.cookie.session, Value: sid, Path: "/"}})
	if r := replay.get(e.base + "/labs"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Errorf("replayed session after logout: %d %q", r.status, r.header.Get("Location"))
	}
}

func TestStaffAndUnenrolledLogins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	c := newClient(t)
	if r := e.signIn(t, c, "drjones", "jones-pw"); r.header.Get("Location") != "/staff" {
		t.Fatalf("staff sign-in lands on %q", r.header.Get("Location"))
	}
	p := c.get(e.base + "/staff")
	if p.status != http.StatusOK || !strings.Contains(p.body, "Clinician") || !strings.Contains(p.body, "Riverside Family Clinic") {
		t.Fatalf("staff page %d:\n%s", p.status, p.body)
	}
	if r := c.get(e.base + "/labs"); r.status != http.StatusNotFound {
		t.Errorf("staff on /labs: %d", r.status)
	}

	n := newClient(t)
	if r := e.signIn(t, n, "newbie", "newbie-pw"); r.header.Get("Location") != "/enrol" {
		t.Fatalf("unenrolled sign-in lands on %q", r.header.Get("Location"))
	}
	en := n.get(e.base + "/enrol")
	if en.status != http.StatusOK || !strings.Contains(en.body, "enrolment code") || !strings.Contains(en.body, "Sign out") {
		t.Fatalf("enrol page %d", en.status)
	}
	if r := n.get(e.base + "/labs"); r.status != http.StatusNotFound {
		t.Errorf("unenrolled on /labs: %d", r.status)
	}
	if len(e.records.viewers) != 0 {
		t.Errorf("Records asked %d times for logins that are not patients", len(e.records.viewers))
	}
}

// TestCallbackRefusals tampers with each part of the flow the callback checks.
func TestCallbackRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, c *client, callback string) string // returns the callback URL to use
	}{
		{"state mismatch", func(t *testing.T, c *client, cb string) string {
			u, _ := url.Parse(cb)
			q := u.Query()
			q.Set("state", "forged"+q.Get("state"))
			u.RawQuery = q.Encode()
			return u.String()
		}},
		{"nonce mismatch", func(t *testing.T, c *client, cb string) string {
			e.editFlow(t, c, func(f *loginFlow) { f.Nonce = "other-nonce" })
			return cb
		}},
		{"missing verifier", func(t *testing.T, c *client, cb string) string {
			e.editFlow(t, c, func(f *loginFlow) { f.Verifier = "" })
			return cb
		}},
		{"wrong verifier", func(t *testing.T, c *client, cb string) string {
			e.editFlow(t, c, func(f *loginFlow) { f.Verifier = f.Verifier[:len(f.Verifier)-4] + "AAAA" })
			return cb
		}},
		{"no pre-login session", func(t *testing.T, c *client, cb string) string {
			u, _ := url.Parse(e.base)
			c.hc.Jar.SetCookies(u, []*http.Cookie{{Name: e.srv.cookie.session, Value: "", Path: "/", MaxAge: -1}})
			return cb
		}},
		{"flow too old", func(t *testing.T, c *client, cb string) string {
			e.editFlow(t, c, func(f *loginFlow) { f.Started = f.Started.Add(-11 * time.Minute) })
			return cb
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t)
			cb := e.opLogin(t, e.startSignIn(t, c), "alice", "alice-pw")
			r := c.get(tc.tamper(t, c, cb))
			if r.status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401:\n%s", r.status, r.body)
			}
			if !strings.Contains(r.body, "Sign-in failed") || !strings.Contains(r.body, r.header.Get(echoRequestID)) {
				t.Errorf("refusal page lacks its title or request ID")
			}
			if sid := e.sessionID(c); sid != "" {
				if s, err := e.srv.Sessions().Load(ctx, sid); err == nil && s.Role != "" {
					t.Fatalf("refused callback left a signed-in session: %+v", s)
				}
			}
			if r := c.get(e.base + "/labs"); r.status != http.StatusSeeOther {
				t.Errorf("labs after refusal: %d", r.status)
			}
		})
	}

	t.Run("replayed callback", func(t *testing.T) {
		c := newClient(t)
		cb := e.opLogin(t, e.startSignIn(t, c), "alice", "alice-pw")
		if r := c.get(cb); r.status != http.StatusSeeOther {
			t.Fatalf("first callback: %d", r.status)
		}
		// The same browser, the same callback again: the flow was used once and is gone.
		c2 := newClient(t)
		if r := c2.get(cb); r.status != http.StatusUnauthorized {
			t.Fatalf("replayed callback: %d", r.status)
		}
	})
}

const echoRequestID = "X-Request-Id"

// editFlow rewrites the pre-login flow stored for c's session.
func (e *env) editFlow(t *testing.T, c *client, edit func(*loginFlow)) {
	t.Helper()
	ctx := context.Background()
	id := e.sessionID(c)
	s, err := e.srv.Sessions().Load(ctx, id)
	if err != nil || s.Flow == nil {
		t.Fatalf("pre-login session: %v", err)
	}
	edit(s.Flow)
	if err := e.srv.Sessions().Save(ctx, id, s); err != nil {
		t.Fatal(err)
	}
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	c := newClient(t)
	if r := e.signIn(t, c, "alice", "alice-pw"); r.status != http.StatusSeeOther {
		t.Fatalf("sign in %d", r.status)
	}
	labs := c.get(e.base + "/labs")
	tok := csrfFrom(t, labs.body)
	sid := e.sessionID(c)
	for _, tc := range []struct {
		name      string
		form      url.Values
		fetchSite string
		want      int
	}{
		{"no token, no fetch metadata", url.Values{}, "", http.StatusBadRequest},
		{"wrong token", url.Values{"_csrf": {"x" + tok}}, "", http.StatusForbidden},
		{"cross-site form with the token", url.Values{"_csrf": {tok}}, "cross-site", http.StatusForbidden},
		{"same-site, no token", url.Values{}, "same-site", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.post(e.base+"/logout", tc.form, tc.fetchSite)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d", r.status, tc.want)
			}
			if _, err := e.srv.Sessions().Load(context.Background(), sid); err != nil {
				t.Fatalf("a refused logout ended the session: %v", err)
			}
		})
	}
	// A forged sign-in start is refused too (login CSRF).
	if r := newClient(t).post(e.base+"/auth/login", url.Values{}, "cross-site"); r.status != http.StatusForbidden {
		t.Errorf("cross-site sign-in start: %d", r.status)
	}
	if r := c.post(e.base+"/logout", url.Values{"_csrf": {tok}}, ""); r.status != http.StatusSeeOther {
		t.Fatalf("logout with token: %d", r.status)
	}
	if r := c.post(e.base+"/logout", url.Values{}, "same-origin"); r.status != http.StatusSeeOther {
		t.Fatalf("same-origin logout (fetch metadata): %d", r.status)
	}
}

func TestRecordsUnavailableShows503(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	c := newClient(t)
	e.signIn(t, c, "alice", "alice-pw")
	e.records.fail = errs.E("test.Labs", errs.Unavailable, "audit unavailable", errs.E("audit.Append", "row for person-1 at Glucose 7.9"))
	r := c.get(e.base + "/labs")
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("status %d", r.status)
	}
	rid := r.header.Get(echoRequestID)
	if rid == "" || !strings.Contains(r.body, rid) || !strings.Contains(r.body, "temporarily unavailable") {
		t.Errorf("503 page lacks request ID or sentence:\n%s", r.body)
	}
	for _, leak := range []string{"Glucose", "7.9", "person-1", "audit"} {
		if strings.Contains(r.body, leak) {
			t.Errorf("error page leaks %q", leak)
		}
	}
	// A write whose COMMIT went unanswered may have been saved: the page must not say
	// that nothing changed.
	e.records.fail = errs.E("db.InTx", errs.Unavailable, db.CommitUnknown)
	if r := c.get(e.base + "/labs"); r.status != http.StatusServiceUnavailable || strings.Contains(r.body, "Nothing was shown or changed") ||
		!strings.Contains(r.body, "could not confirm that your change was saved") {
		t.Errorf("unconfirmed commit page: %d\n%s", r.status, r.body)
	}
	if r := c.get(e.base + "/no-such-page"); r.status != http.StatusNotFound || !strings.Contains(r.body, "Page not found") ||
		r.header.Get("Content-Security-Policy") == "" || r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("unknown route: %d, headers %v", r.status, r.header)
	}
}

func TestSessionStoreTimeouts(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)}
	e := newEnv(t, envOpts{clock: clock})
	st := e.srv.Sessions()
	ctx := context.Background()

	pat, err := st.Create(ctx, Session{Role: RolePatient, PersonID: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := st.Create(ctx, Session{Role: RoleClinician, Org: "riverside"})
	pre, _ := st.Create(ctx, Session{Flow: &loginFlow{State: "s"}})
	if len(pat) < 43 || pat == doc { // 32 bytes base64url
		t.Fatalf("session IDs %q %q", pat, doc)
	}

	clock.Add(14 * time.Minute)
	for _, id := range []string{pat, doc} {
		if _, err := st.Load(ctx, id); err != nil {
			t.Fatalf("active session at 14 min: %v", err)
		}
	}
	clock.Add(14 * time.Minute) // 14 min idle since the last load
	if _, err := st.Load(ctx, doc); err != nil {
		t.Fatalf("staff session 14 min idle: %v", err)
	}
	clock.Add(16 * time.Minute) // staff idle 16 min, patient idle 30 min
	if _, err := st.Load(ctx, doc); !errs.Is(err, errs.NotFound) {
		t.Errorf("staff session after 16 idle minutes: %v", err)
	}
	if _, err := st.Load(ctx, pat); !errs.Is(err, errs.NotFound) {
		t.Errorf("patient session after 30 idle minutes: %v", err)
	}
	if _, err := st.Load(ctx, pre); !errs.Is(err, errs.NotFound) {
		t.Errorf("pre-login session after 44 minutes: %v", err)
	}

	// Absolute: activity every 20 minutes keeps a patient session for 12 h, not longer.
	abs, _ := st.Create(ctx, Session{Role: RolePatient, PersonID: "p2"})
	for elapsed := 20 * time.Minute; elapsed < 12*time.Hour; elapsed += 20 * time.Minute {
		clock.Add(20 * time.Minute)
		if _, err := st.Load(ctx, abs); err != nil {
			t.Fatalf("active session at %v: %v", elapsed, err)
		}
	}
	clock.Add(20 * time.Minute)
	if _, err := st.Load(ctx, abs); !errs.Is(err, errs.NotFound) {
		t.Errorf("session past 12 h absolute: %v", err)
	}

	// Redis holds the hash of the ID, never the ID itself, and a TTL.
	live, _ := st.Create(ctx, Session{Role: RolePatient})
	rdb := e.srv.sessions.rdb
	keys, _ := rdb.Keys(ctx, e.srv.cfg.RedisPrefix+"*").Result()
	found := false
	for _, k := range keys {
		if strings.Contains(k, live) {
			t.Errorf("Redis key %q contains the session ID", k)
		}
		if k == st.key(live) {
			found = true
			if ttl := rdb.TTL(ctx, k).Val(); ttl <= 0 || ttl > 30*time.Minute {
				t.Errorf("TTL %v", ttl)
			}
		}
	}
	if !found {
		t.Error("session key not found")
	}
	// Delete is immediate; Save does not resurrect a deleted session.
	s, _ := st.Load(ctx, live)
	if err := st.Delete(ctx, live); err != nil {
		t.Fatal(err)
	}
	if err := st.Save(ctx, live, s); !errs.Is(err, errs.NotFound) {
		t.Errorf("Save after Delete: %v", err)
	}
}

func TestStaffStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	got, err := e.staff.StaffForLogin(ctx, e.op.Issuer(), "sub-doc-1")
	if err != nil || got != (Staff{Role: RoleClinician, Org: "riverside", OrgName: "Riverside Family Clinic", Name: "Dr Sam Jones"}) {
		t.Fatalf("StaffForLogin: %+v %v", got, err)
	}
	if _, err := e.staff.StaffForLogin(ctx, "http://other/", "sub-doc-1"); !errs.Is(err, errs.NotFound) {
		t.Errorf("other issuer: %v", err)
	}
	for _, tc := range []struct {
		name string
		sub  string
		st   Staff
		want errs.Code
	}{
		{"duplicate", "sub-doc-1", Staff{Role: RoleOfficer, Org: "riverside", Name: "x"}, errs.Conflict},
		{"bad role", "s2", Staff{Role: RolePatient, Org: "riverside", Name: "x"}, errs.Invalid},
		{"unknown member", "s3", Staff{Role: RoleOfficer, Org: "nowhere", Name: "x"}, errs.Invalid},
		{"no name", "s4", Staff{Role: RoleOfficer, Org: "riverside"}, errs.Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.staff.AddStaff(ctx, e.op.Issuer(), tc.sub, tc.st); errs.CodeOf(err) != tc.want || err == nil {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRendererChecksRegistrations(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"layout/layout.html": {Data: []byte(`{{define "layout"}}{{template "content" .}}{{end}}`)},
		"partials/p.html":    {Data: []byte(`{{define "p"}}{{end}}`)},
		"pages/a.html":       {Data: []byte(`{{define "content"}}A{{end}}`)},
		"pages/b.html":       {Data: []byte(`{{define "content"}}B{{end}}`)},
	}
	mustPanic := func(name string, names []string) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		newRenderer(fsys, names)
	}
	mustPanic("file without registration", []string{"a"})
	mustPanic("registration without file", []string{"a", "b", "c"})
	r := newRenderer(fsys, []string{"a", "b"})
	var sb strings.Builder
	if err := r.Render(&sb, "b", nil, nil); err != nil || sb.String() != "B" {
		t.Errorf("render b: %q %v", sb.String(), err)
	}
}

func TestGroupLabsAndTrend(t *testing.T) {
	t.Parallel()
	tests := groupLabs(sampleLabs(), time.UTC)
	if len(tests) != 3 {
		t.Fatalf("%d groups", len(tests))
	}
	// Groups by newest result: potassium (Oct), then glucose and hemoglobin (Sep, by name).
	if got := []string{tests[0].Display, tests[1].Display, tests[2].Display}; got[0] != "Potassium" || got[1] != "Glucose" || got[2] != "Hemoglobin" {
		t.Errorf("group order %v", got)
	}
	g := tests[1]
	if len(g.Rows) != 3 || g.Rows[0].Value != "7.9" || g.Rows[2].Value != "5.4" || !g.Rows[0].Abnormal || g.Rows[2].Abnormal {
		t.Errorf("glucose rows %+v", g.Rows)
	}
	if g.Trend == nil || g.Trend.BandH == "" || strings.Count(g.Trend.Points, ",") != 3 {
		t.Fatalf("glucose trend %+v", g.Trend)
	}
	if tests[0].Trend != nil {
		t.Errorf("a single result has a trend")
	}
	// The newest point (highest value) is drawn highest, i.e. with the smallest y.
	first := strings.Split(strings.Fields(g.Trend.Points)[0], ",")
	fy, _ := strconv.ParseFloat(first[1], 64)
	ly, _ := strconv.ParseFloat(g.Trend.LastY, 64)
	if !(ly < fy) || ly < 0 || fy > float64(g.Trend.Height) {
		t.Errorf("newest (7.9) drawn at y=%v, oldest (5.4) at y=%v", ly, fy)
	}
	if _, _, ok := refRange("5.1-3.5"); ok {
		t.Error("inverted range parsed")
	}
	if v, ok := numeric("<0.5"); !ok || v != 0.5 {
		t.Errorf("numeric(<0.5) = %v %v", v, ok)
	}
}

func TestDependenciesDownFailClosed(t *testing.T) {
	t.Parallel()
	// Redis down: the store answers Unavailable, never "no session" (which would look like a
	// signed-out user) and never a session.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer dead.Close()
	st := NewSessionStore(dead, "x:", SessionTimeouts{PatientIdle: time.Minute, StaffIdle: time.Minute, Absolute: time.Hour, Login: time.Minute}, time.Now)
	ctx := context.Background()
	if _, err := st.Load(ctx, "some-id"); !errs.Is(err, errs.Unavailable) {
		t.Errorf("Load with Redis down: %v", err)
	}
	if _, err := st.Create(ctx, Session{Role: RolePatient}); !errs.Is(err, errs.Unavailable) {
		t.Errorf("Create with Redis down: %v", err)
	}

	// IdP down before the first sign-in: a clean 503 page, and no session is made.
	e := newEnv(t, envOpts{})
	e.op.Close()
	c := newClient(t)
	land := c.get(e.base + "/")
	r := c.post(e.base+"/auth/login", url.Values{"_csrf": {csrfFrom(t, land.body)}}, "")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "temporarily unavailable") {
		t.Fatalf("sign-in with the IdP down: %d", r.status)
	}
	if e.sessionID(c) != "" {
		t.Error("a session cookie was set although sign-in could not start")
	}
}

// TestHealthSummary: the patient's summary lists each kind with its source, says so when a
// kind is empty, and is read as the patient.
func TestHealthSummary(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	c := newClient(t)
	e.signIn(t, c, "alice", "alice-pw")
	r := c.getPrivate(e.base, "/summary")
	body := html.UnescapeString(r.body)
	for _, want := range []string{"Your health summary", "Hyperlipidemia", "Atorvastatin 20 mg tablet", "Once daily at night", "Penicillin", "Hives",
		"St Mary's Hospital", "No immunizations on record.", `href="/summary"`} {
		if !strings.Contains(body, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
	e.records.mu.Lock()
	last := e.records.viewers[len(e.records.viewers)-1]
	e.records.mu.Unlock()
	if last.Role != RolePatient || last.PersonID != "person-1" {
		t.Errorf("summary read as %+v", last)
	}
	doc := newClient(t)
	e.signIn(t, doc, "drjones", "jones-pw")
	if r := doc.get(e.base + "/summary"); r.status != http.StatusNotFound {
		t.Errorf("a clinician on the patient's summary: %d", r.status)
	}
}

// TestRecordDownload: the patient's record downloads as an attachment of type
// application/fhir+json that is never cached; when the records cannot be read the answer
// is the 503 page, not a file; staff have no such page.
func TestRecordDownload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	c := newClient(t)
	e.signIn(t, c, "alice", "alice-pw")
	if page := c.getPrivate(e.base, "/summary"); !strings.Contains(page.body, `href="/summary/record.json"`) {
		t.Errorf("the summary page offers no download")
	}
	r := c.getPrivate(e.base, "/summary/record.json")
	if ct := r.header.Get("Content-Type"); ct != "application/fhir+json" || !strings.HasPrefix(r.header.Get("Content-Disposition"), `attachment; filename=health-record-`) ||
		!strings.Contains(r.body, "Glucose") {
		t.Errorf("download: %s, %q\n%.200s", ct, r.header.Get("Content-Disposition"), r.body)
	}
	e.records.fail = errs.E("test.Export", errs.Unavailable, "audit unavailable")
	if r := c.get(e.base + "/summary/record.json"); r.status != http.StatusServiceUnavailable || r.header.Get("Content-Disposition") != "" {
		t.Errorf("download with the records down: %d, %q", r.status, r.header.Get("Content-Disposition"))
	}
	doc := newClient(t)
	e.signIn(t, doc, "drjones", "jones-pw")
	if r := doc.get(e.base + "/summary/record.json"); r.status != http.StatusNotFound {
		t.Errorf("a clinician on the patient's download: %d", r.status)
	}
}
