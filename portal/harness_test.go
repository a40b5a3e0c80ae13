package portal

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/devoidc"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/httpx"
	"github.com/concord-hie/concord/internal/testkit"
)

// memIdentity links logins to persons in memory, as enrolment would.
type memIdentity map[string]string // "iss|sub" → person ID

func (m memIdentity) PersonForLogin(_ context.Context, iss, sub string) (string, error) {
	if p, ok := m[iss+"|"+sub]; ok {
		return p, nil
	}
	return "", errs.E("memIdentity", errs.NotFound, "not enrolled")
}

// memRecords returns fixed labs per person and records every viewer it was asked for.
type memRecords struct {
	mu      sync.Mutex
	labs    map[string][]LabResult
	fail    error
	viewers []Viewer
}

func (m *memRecords) Labs(_ context.Context, v Viewer, personID string) ([]LabResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.viewers = append(m.viewers, v)
	if m.fail != nil {
		return nil, m.fail
	}
	if (v.PersonID != personID || (v.Role != RolePatient && v.Role != RoleProxy)) && (v.Role != RoleClinician || v.Org == "") {
		return nil, errs.E("memRecords", errs.NotFound, "no such person")
	}
	return m.labs[personID], nil
}

// Summary returns a fixed summary for anyone with labs, under Labs' access rule.
func (m *memRecords) Summary(ctx context.Context, v Viewer, personID string) (HealthSummary, error) {
	if _, err := m.Labs(ctx, v, personID); err != nil {
		return HealthSummary{}, err
	}
	m.mu.Lock()
	has := len(m.labs[personID]) > 0
	m.mu.Unlock()
	if !has {
		return HealthSummary{}, nil
	}
	d := func(s string) time.Time { t, _ := time.Parse("2006-01-02", s); return t }
	return HealthSummary{
		Conditions:  []SummaryItem{{Display: "Hyperlipidemia", Date: d("2025-05-01"), Status: "Active", SourceMemberName: "Riverside Family Clinic"}},
		Medications: []SummaryItem{{Display: "Atorvastatin 20 mg tablet", Detail: "Once daily at night", Date: d("2025-05-01"), Status: "active", SourceMemberName: "Riverside Family Clinic"}},
		Allergies:   []SummaryItem{{Display: "Penicillin", Detail: "Hives", Status: "Active", SourceMemberName: "St Mary's Hospital"}},
	}, nil
}

// Export writes the person's labs as a JSON array, under Labs' access rule.
func (m *memRecords) Export(ctx context.Context, v Viewer, personID string, w io.Writer) error {
	labs, err := m.Labs(ctx, v, personID)
	if err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(labs)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// demoUsers are the OP's users. drjones (clinician) has a second factor; drsolo
// (clinician) has none, so the OP asserts no MFA for him.
var demoUsers = []devoidc.User{
	{Subject: "sub-pat-1", Username: "alice", Password: "alice-pw", FirstName: "Alice", LastName: "Nguyen", Email: "alice@example.test"},
	{Subject: "sub-doc-1", Username: "drjones", Password: "jones-pw", FirstName: "Sam", LastName: "Jones", OTP: "314159"},
	{Subject: "sub-new-1", Username: "newbie", Password: "newbie-pw"},
	{Subject: "sub-doc-2", Username: "drsolo", Password: "solo-pw", FirstName: "Kim", LastName: "Solo"},
}

// officerUser is the privacy officer of the privacy tests; it has a second factor.
var officerUser = devoidc.User{Subject: "sub-off-1", Username: "privo", Password: "privo-pw", FirstName: "Pat", LastName: "Officer", OTP: "271828"}

// otpFor returns the one-time code of the test user with that username, "" for none.
func otpFor(username string) string {
	for _, u := range append(demoUsers[:len(demoUsers):len(demoUsers)], officerUser) {
		if u.Username == username {
			return u.OTP
		}
	}
	return ""
}

func sampleLabs() []LabResult {
	d := func(s string) time.Time { t, _ := time.Parse("2006-01-02", s); return t }
	return []LabResult{
		{ID: "o1", Code: "2345-7", Display: "Glucose", Value: "5.4", Unit: "mmol/L", RefRange: "3.9-5.6", Flag: "N", Effective: d("2026-03-02"), Status: "final", SourceMember: "riverside", SourceMemberName: "Riverside Family Clinic"},
		{ID: "o2", Code: "2345-7", Display: "Glucose", Value: "7.9", Unit: "mmol/L", RefRange: "3.9-5.6", Flag: "H", Effective: d("2026-09-14"), Status: "final", SourceMember: "northlab", SourceMemberName: "North Valley Laboratory"},
		{ID: "o3", Code: "2345-7", Display: "Glucose", Value: "6.1", Unit: "mmol/L", RefRange: "3.9-5.6", Flag: "H", Effective: d("2026-06-20"), Status: "final", SourceMember: "riverside", SourceMemberName: "Riverside Family Clinic"},
		{ID: "o4", Code: "718-7", Display: "Hemoglobin", Value: "13.8", Unit: "g/dL", RefRange: "12.0-15.5", Effective: d("2026-09-14"), Status: "final", SourceMember: "northlab", SourceMemberName: "North Valley Laboratory"},
		{ID: "o5", Code: "2823-3", Display: "Potassium", Value: "3.1", Unit: "mmol/L", RefRange: "3.5-5.1", Flag: "L", Effective: d("2026-10-01"), Status: "preliminary", SourceMember: "stmary", SourceMemberName: "St Mary's Hospital"},
	}
}

// env is a running OP and portal on loopback.
type env struct {
	pool     *pgxpool.Pool
	op       *devoidc.Server
	srv      *Server
	base     string
	records  *memRecords
	staff    *StaffStore
	clock    *fakeClock
	identity memIdentity
}

type envOpts struct {
	pool          *pgxpool.Pool // the database (Riverside and the clinicians are added); nil for a new one
	secureCookies bool
	clock         *fakeClock
	staffMFAOff   bool
	patients      PatientLookup // the clinicians' look-up; nil leaves it out
	messages      bool          // secure messages on (unaudited: threads can be listed, not opened)
	messageStore  Messaging     // secure messages through this store (overrides messages)
	documents     Documents     // the patient's documents; nil leaves them out
	proxies       Proxies       // caregiver access; nil leaves it out
	emergency     Emergency     // clinicians' break-the-glass; nil leaves it out
	shares        ShareLinks    // share links (with shared); nil leaves them out
	shared        SharedRecords
	privacy       Privacy     // /access, /privacy and /officer; nil leaves them out
	logs          *syncBuffer // when set, the portal's log and the access log (JSON) go here
	// logins wraps the login look-ups the portal is given (memIdentity and the StaffStore);
	// nil gives them as they are.
	logins func(Identity, StaffDirectory) (Identity, StaffDirectory)
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	pool := o.pool
	if pool == nil {
		pool = testkit.DB(t)
	}
	rdb, prefix := testkit.Redis(t)
	ln, base := listenLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	op := startOP(t, ctx, base, demoUsers)

	if _, err := pool.Exec(ctx, `INSERT INTO directory_members (id, name, system) VALUES ('riverside', 'Riverside Family Clinic', 'urn:oid:2.999.1')`); err != nil {
		t.Fatal(err)
	}
	staff := NewStaffStore(pool)
	for sub, st := range map[string]Staff{
		"sub-doc-1": {Role: RoleClinician, Org: "riverside", Name: "Dr Sam Jones"},
		"sub-doc-2": {Role: RoleClinician, Org: "riverside", Name: "Dr Kim Solo"},
	} {
		if err := staff.AddStaff(ctx, op.Issuer(), sub, st); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{op: op, base: base, staff: staff, clock: o.clock,
		pool:     pool,
		records:  &memRecords{labs: map[string][]LabResult{"person-1": sampleLabs()}},
		identity: memIdentity{op.Issuer() + "|sub-pat-1": "person-1"},
	}
	deps := Deps{Identity: e.identity, Staff: staff, Records: e.records, Redis: rdb, Patients: o.patients}
	if o.logins != nil {
		deps.Identity, deps.Staff = o.logins(deps.Identity, deps.Staff)
	}
	if o.messages {
		deps.Messages = NewMessageStore(pool)
	}
	if o.messageStore != nil {
		deps.Messages = o.messageStore
	}
	deps.Documents = o.documents
	deps.Proxies = o.proxies
	deps.Emergency = o.emergency
	deps.Privacy = o.privacy
	deps.Shares, deps.Shared = o.shares, o.shared
	if o.clock != nil {
		deps.Now = o.clock.Now
	}
	var mws []echo.MiddlewareFunc
	if o.logs != nil {
		deps.Logger = slog.New(slog.NewJSONHandler(o.logs, nil))
		mws = append(mws, httpx.AccessLog(deps.Logger))
	}
	var err error
	e.srv, err = New(Config{
		BaseURL: base, Issuer: op.Issuer(), ClientID: "concord-portal", ClientSecret: "portal-secret",
		RedisPrefix: prefix, InsecureCookies: !o.secureCookies, StaffMFAOff: o.staffMFAOff,
	}, deps)
	if err != nil {
		t.Fatal(err)
	}
	servePortal(t, e.srv, ln, mws...)
	return e
}

// listenLoopback reserves a loopback port for a portal; it returns the listener and the
// portal's base URL on it.
func listenLoopback(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, "http://" + ln.Addr().String()
}

// startOP starts the development OpenID provider with users and the portal's client
// (redirects to the portal at base); it is closed at cleanup.
func startOP(t *testing.T, ctx context.Context, base string, users []devoidc.User) *devoidc.Server {
	t.Helper()
	op, err := devoidc.Start(ctx, "127.0.0.1:0", users, []devoidc.Client{{
		ID: "concord-portal", Secret: "portal-secret",
		RedirectURIs: []string{base + "/auth/callback"}, PostLogoutRedirectURIs: []string{base + "/"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { op.Close() })
	return op
}

// servePortal mounts srv on an echo with request IDs, then mws, and srv's error handler
// and serves it on ln until cleanup.
func servePortal(t *testing.T, srv *Server, ln net.Listener, mws ...echo.MiddlewareFunc) {
	ec := echo.New()
	ec.HideBanner, ec.HidePort = true, true
	ec.Use(middleware.RequestID())
	ec.Use(mws...)
	ec.HTTPErrorHandler = srv.HTTPErrorHandler
	srv.Register(ec)
	hs := &http.Server{Handler: ec, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
}

// client is a browser stand-in: a cookie jar, no automatic redirects.
type client struct {
	t  *testing.T
	hc *http.Client
}

func newClient(t *testing.T) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (c *client) do(req *http.Request) resp {
	c.t.Helper()
	res, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, string(b)}
}

func (c *client) get(u string) resp {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return c.do(req)
}

// post sends a form as a same-origin browser would (with the CSRF token from the page), or,
// with fetchSite "", as an old browser that sends no Sec-Fetch-Site.
func (c *client) post(u string, form url.Values, fetchSite string) resp {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if fetchSite != "" {
		req.Header.Set("Sec-Fetch-Site", fetchSite)
	}
	return c.do(req)
}

var csrfRe = regexp.MustCompile(`name="_csrf" value="([^"]*)"`)

func csrfFrom(t *testing.T, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field in page:\n%s", body)
	}
	return m[1]
}

// startSignIn loads the landing page, posts "Sign in" and returns the OP URL it redirects to.
func (e *env) startSignIn(t *testing.T, c *client) string {
	t.Helper()
	land := c.get(e.base + "/")
	if land.status != http.StatusOK {
		t.Fatalf("landing: %d", land.status)
	}
	r := c.post(e.base+"/auth/login", url.Values{"_csrf": {csrfFrom(t, land.body)}}, "")
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), e.op.Issuer()) {
		t.Fatalf("sign in: %d to %q", r.status, r.header.Get("Location"))
	}
	return r.header.Get("Location")
}

// opLogin fills the OP's login form (and its one-time-code page, with the user's code from
// otpFor) and returns the callback URL (with code and state) that the OP redirects the
// browser to.
func (e *env) opLogin(t *testing.T, authURL, user, pw string) string {
	t.Helper()
	oc := newClient(t)
	loc := authURL
	for i := 0; i < 5 && !strings.Contains(loc, "/login/username"); i++ {
		r := oc.get(loc)
		u, _ := url.Parse(loc)
		next, err := u.Parse(r.header.Get("Location"))
		if err != nil || r.header.Get("Location") == "" {
			t.Fatalf("OP answered %d without redirect: %s", r.status, r.body)
		}
		loc = next.String()
	}
	form := oc.get(loc)
	m := regexp.MustCompile(`name="id" value="([^"]+)"`).FindStringSubmatch(form.body)
	if m == nil {
		t.Fatalf("no login form: %s", form.body)
	}
	r := oc.post(loc, url.Values{"id": {m[1]}, "username": {user}, "password": {pw}}, "")
	if tm := regexp.MustCompile(`name="token" value="([^"]+)"`).FindStringSubmatch(r.body); r.status == http.StatusOK && tm != nil {
		u, _ := url.Parse(loc)
		ou, _ := u.Parse("/login/otp")
		r = oc.post(ou.String(), url.Values{"token": {tm[1]}, "otp": {otpFor(user)}}, "")
	}
	for i := 0; i < 5 && r.status == http.StatusFound; i++ {
		next := r.header.Get("Location")
		if strings.HasPrefix(next, e.base+"/auth/callback") {
			return next
		}
		u, _ := url.Parse(loc)
		nu, _ := u.Parse(next)
		loc = nu.String()
		r = oc.get(loc)
	}
	t.Fatalf("OP login did not redirect to the callback: %d %s", r.status, r.body)
	return ""
}

// signIn runs the whole flow and returns the callback's response.
func (e *env) signIn(t *testing.T, c *client, user, pw string) resp {
	t.Helper()
	return c.get(e.opLogin(t, e.startSignIn(t, c), user, pw))
}

// sessionID returns the portal's session cookie value in c's jar.
func (e *env) sessionID(c *client) string {
	u, _ := url.Parse(e.base)
	for _, ck := range c.hc.Jar.Cookies(u) {
		if ck.Name == e.srv.cookie.session {
			return ck.Value
		}
	}
	return ""
}

// auditLog is an audit log on pool for one test, closed when the test ends, with no
// checkpoints.
func auditLog(t *testing.T, pool *pgxpool.Pool) *audit.Log {
	t.Helper()
	alog, err := audit.New(t.Context(), pool, audit.Config{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alog.Close() })
	return alog
}
