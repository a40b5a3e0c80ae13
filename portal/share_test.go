package portal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/httpx"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// switchAudit is the real audit log with a switch that makes every append fail, as a dead
// audit database would.
type switchAudit struct {
	log  *audit.Log
	fail atomic.Bool
}

func (a *switchAudit) Append(ctx context.Context, ev audit.Event) error {
	if a.fail.Load() {
		return errors.New("audit database down")
	}
	return a.log.Append(ctx, ev)
}

// recordsAdapter serves the portal from the real enforcement point, as cmd/concord's
// adapter does, decoding only what these tests show.
type recordsAdapter struct{ rec *records.Service }

type testObs struct {
	Meta struct {
		Security []struct {
			Code string `json:"code"`
		} `json:"security"`
	} `json:"meta"`
	Code struct {
		Text string `json:"text"`
	} `json:"code"`
	ValueQuantity struct {
		Value json.Number `json:"value"`
		Unit  string      `json:"unit"`
	} `json:"valueQuantity"`
	EffectiveDateTime string `json:"effectiveDateTime"`
}

func labsOf(sts []store.Stored) []LabResult {
	out := make([]LabResult, 0, len(sts))
	for _, st := range sts {
		var o testObs
		_ = json.Unmarshal(st.Body, &o)
		eff, _ := time.Parse("2006-01-02", o.EffectiveDateTime)
		var labels []string
		for _, c := range o.Meta.Security {
			labels = append(labels, c.Code)
		}
		out = append(out, LabResult{ID: st.ID, Display: o.Code.Text, Value: o.ValueQuantity.Value.String(), Unit: o.ValueQuantity.Unit,
			Effective: eff, Status: "final", SourceMember: st.MemberID, Sensitive: consent.Sensitive(labels)})
	}
	return out
}

func (a recordsAdapter) Labs(ctx context.Context, v Viewer, personID string) ([]LabResult, error) {
	sts, err := a.rec.Compartment(ctx, records.Viewer{Actor: v.Actor, Role: string(v.Role), PersonID: v.PersonID,
		Purpose: consent.PurposePatientRequest, RequestID: v.RequestID, SourceIP: v.SourceIP}, personID, "Observation", nil, 1000)
	return labsOf(sts), err
}

// Summary is not shown by these tests.
func (a recordsAdapter) Summary(context.Context, Viewer, string) (HealthSummary, error) {
	return HealthSummary{}, nil
}

// Export is not used by these tests.
func (a recordsAdapter) Export(context.Context, Viewer, string, io.Writer) error {
	return errs.E("recordsAdapter", errs.Unsupported, "not in these tests")
}

func (a recordsAdapter) SharedLabs(ctx context.Context, v Viewer, l ShareLink) ([]LabResult, error) {
	sts, err := a.rec.Shared(ctx, records.Share{LinkID: l.ID, PersonID: l.PersonID, ResourceID: l.ResourceID,
		IncludeSensitive: l.IncludeSensitive, RequestID: v.RequestID, SourceIP: v.SourceIP}, "Observation", nil, 1000)
	if err != nil {
		return nil, err
	}
	return labsOf(sts), nil
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// shareEnv is a portal over the real records, consent and audit log, with Alice's labs
// (glucose and hemoglobin) stored as Riverside sent them, and every log line kept.
type shareEnv struct {
	*env
	pool    *pgxpool.Pool
	audit   *switchAudit
	person  string
	glucose string // the glucose result's ID
	hiv     string // the HIV-labelled result's ID
	logs    *syncBuffer
}

func newShareEnv(t *testing.T, secureCookies bool) *shareEnv {
	t.Helper()
	pool := testkit.DB(t)
	rdb, prefix := testkit.Redis(t)
	ln, base := listenLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	op := startOP(t, ctx, base, demoUsers)
	se := &shareEnv{pool: pool, logs: &syncBuffer{}}
	if _, err := pool.Exec(ctx, `INSERT INTO directory_members (id, name, system) VALUES ('riverside', 'Riverside Family Clinic', 'urn:oid:2.999.1')`); err != nil {
		t.Fatal(err)
	}
	fs, ms := store.New(pool), mpistore.New(pool)
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		p, err := fs.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Patient"}`)), MemberID: "riverside", At: time.Now()})
		if err != nil {
			return err
		}
		src, _, err := ms.Upsert(ctx, tx, "riverside", "urn:oid:2.999.1", "mrn-alice", p.ID, map[string]string{}, "")
		if err != nil {
			return err
		}
		se.person = string(src.PersonID)
		for _, o := range []string{`"code":{"text":"Glucose"},"valueQuantity":{"value":7.9,"unit":"mmol/L"},"effectiveDateTime":"2026-09-14"`,
			`"code":{"text":"Hemoglobin"},"valueQuantity":{"value":13.8,"unit":"g/dL"},"effectiveDateTime":"2026-09-15"`,
			`"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]},"code":{"text":"HIV-1 RNA"},"valueQuantity":{"value":20,"unit":"copies/mL"},"effectiveDateTime":"2026-09-16"`} {
			st, err := fs.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Observation","status":"final","category":[{"coding":[{"code":"laboratory"}]}],` +
				o + `,"subject":{"reference":"Patient/` + p.ID + `"}}`)), MemberID: "riverside", PatientID: p.ID, At: time.Now()})
			if err != nil {
				return err
			}
			if strings.Contains(o, "Glucose") {
				se.glucose = st.ID
			}
			if strings.Contains(o, "HIV") {
				se.hiv = st.ID
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	alog, err := audit.New(ctx, pool, audit.Config{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alog.Close() })
	se.audit = &switchAudit{log: alog}
	cs := consent.NewStore()
	if _, err := records.EnsureDefaultPolicies(ctx, pool, cs, consent.PolicyConfig{}); err != nil {
		t.Fatal(err)
	}
	dirs := records.NewStoreDirectives(pool, cs, 0, nil)
	adapter := recordsAdapter{records.New(fs, ms, dirs, se.audit, nil)}
	log := slog.New(slog.NewJSONHandler(se.logs, nil))
	clock := &fakeClock{t: time.Now()}
	se.env = &env{op: op, base: base, clock: clock, identity: memIdentity{op.Issuer() + "|sub-pat-1": se.person}}
	se.srv, err = New(Config{BaseURL: base, Issuer: op.Issuer(), ClientID: "concord-portal", ClientSecret: "portal-secret",
		RedisPrefix: prefix, InsecureCookies: !secureCookies},
		Deps{Identity: se.identity, Staff: NewStaffStore(pool), Records: adapter, Redis: rdb, Logger: log, Now: clock.Now,
			Privacy: NewPrivacyStore(pool, dirs, mpistore.NewOps(pool, alog, "test-model")).WithAudit(alog),
			Shares:  NewShareStore(pool).WithAudit(alog), Shared: adapter, Messages: NewMessageStore(pool).WithAudit(se.audit)})
	if err != nil {
		t.Fatal(err)
	}
	// The production middleware: request IDs and the access log, into the kept logs.
	ec := echo.New()
	ec.HideBanner, ec.HidePort = true, true
	ec.Use(httpx.RequestID(), httpx.AccessLog(log))
	ec.HTTPErrorHandler = se.srv.HTTPErrorHandler
	se.srv.Register(ec)
	hs := &http.Server{Handler: ec, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return se
}

var (
	shareURLRe  = regexp.MustCompile(`id="new-url"[^>]*value="([^"]+)"`)
	shareLinkRe = regexp.MustCompile(`name="link" value="(\d+)"`)
)

// createLink makes a link as the signed-in patient c and returns its URL.
func (se *shareEnv) createLink(t *testing.T, c *client, form url.Values) string {
	t.Helper()
	page := c.getPrivate(se.base, "/labs/share")
	form.Set("_csrf", csrfFrom(t, page.body))
	r := c.post(se.base+"/labs/share", form, "same-origin")
	m := shareURLRe.FindStringSubmatch(r.body)
	if r.status != http.StatusOK || m == nil {
		t.Fatalf("create link: %d\n%s", r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("the page showing a new link: Cache-Control %q", cc)
	}
	return html.UnescapeString(m[1])
}

// notFoundBody is a 404 body without its request ID, to compare 404s byte for byte.
func notFoundBody(t *testing.T, r resp) string {
	t.Helper()
	if r.status != http.StatusNotFound {
		t.Fatalf("status %d, want 404:\n%s", r.status, r.body)
	}
	return regexp.MustCompile(`<code>[^<]*</code>`).ReplaceAllString(r.body, "")
}

func (se *shareEnv) auditRows(t *testing.T, requestID string) (n int, shareLink bool, role, purpose, patient string) {
	t.Helper()
	err := se.pool.QueryRow(context.Background(), `SELECT count(*) OVER (), share_link, role, purpose, patient FROM audit_events WHERE request_id = $1`,
		requestID).Scan(&n, &shareLink, &role, &purpose, &patient)
	if err != nil {
		t.Fatalf("audit event of request %s: %v", requestID, err)
	}
	return
}

func TestShareLinkOpensAuditsRevokesAndExpires(t *testing.T) {
	t.Parallel()
	se := newShareEnv(t, false)
	alice := newClient(t)
	if r := se.signIn(t, alice, "alice", "alice-pw"); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", r.status)
	}
	if r := alice.getPrivate(se.base, "/labs"); !strings.Contains(r.body, `href="/labs/share"`) {
		t.Errorf("labs page offers no share link")
	}
	link := se.createLink(t, alice, url.Values{"what": {"all"}, "for": {"1d"}, "note": {"Dr. Lee, second opinion"}})
	token := strings.TrimPrefix(link, se.base+"/share/")
	if len(token) < 22 || strings.Contains(token, "/") {
		t.Fatalf("link %q: want BASE/share/{token of at least 128 bits}", link)
	}
	var stored int
	if err := se.pool.QueryRow(context.Background(), `SELECT count(*) FROM portal_share_links WHERE token_hash = sha256(convert_to($1, 'UTF8'))`, token).Scan(&stored); err != nil || stored != 1 {
		t.Fatalf("stored by hash: %d, %v", stored, err)
	}
	if err := se.pool.QueryRow(context.Background(), `SELECT count(*) FROM portal_share_links WHERE position(convert_to($1, 'UTF8') in token_hash) > 0 OR note LIKE '%' || $1 || '%'`, token).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("the token itself is stored: %d, %v", stored, err)
	}

	// Anyone with the link, signed out, sees the results read-only.
	anon := newClient(t)
	r := anon.get(link)
	body := html.UnescapeString(r.body)
	if r.status != http.StatusOK {
		t.Fatalf("open link: %d\n%s", r.status, r.body)
	}
	for _, want := range []string{"Alice's lab results", "Alice shared these lab results with you", "Glucose", "7.9", "Hemoglobin", "13.8", "works until"} {
		if !strings.Contains(body, want) {
			t.Errorf("shared page lacks %q", want)
		}
	}
	for _, absent := range []string{"Dr. Lee", "Sign out", "_csrf", "Nguyen"} {
		if strings.Contains(body, absent) {
			t.Errorf("shared page shows %q", absent)
		}
	}
	for h, want := range map[string]string{"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY"} {
		if got := r.header.Get(h); got != want {
			t.Errorf("shared page %s = %q, want %q", h, got, want)
		}
	}
	if ck := r.header.Values("Set-Cookie"); len(ck) != 0 {
		t.Errorf("shared page sets cookies: %q", ck)
	}
	n, shareLink, role, purpose, patient := se.auditRows(t, r.header.Get("X-Request-Id"))
	if n != 1 || !shareLink || role != consent.RoleShare || purpose != consent.PurposePatientRequest || patient != se.person {
		t.Errorf("audit of the use: %d rows, share_link %v, role %q, purpose %q, patient %q", n, shareLink, role, purpose, patient)
	}

	// The patient sees the use: the link's count, and the access log marks it.
	page := html.UnescapeString(alice.getPrivate(se.base, "/labs/share").body)
	if !strings.Contains(page, "Dr. Lee, second opinion") || !strings.Contains(page, "1 time") || strings.Contains(page, token) {
		t.Errorf("active links: want the note and 1 use, never the token:\n%s", page)
	}
	acc := html.UnescapeString(alice.getPrivate(se.base, "/access").body)
	if !strings.Contains(acc, "via share link") || !strings.Contains(acc, "Share link holder") {
		t.Errorf("access log does not mark the share-link use:\n%s", acc)
	}

	// A guessed token, a malformed one and another well-formed unknown one: one 404 page.
	unknown := notFoundBody(t, anon.get(se.base+"/share/"+strings.Repeat("A", len(token))))
	if got := notFoundBody(t, anon.get(se.base+"/share/short")); got != unknown {
		t.Errorf("malformed token 404 differs from unknown token 404")
	}
	if got := notFoundBody(t, anon.get(se.base+"/no-such-page")); got != unknown {
		t.Errorf("share 404 differs from any missing page's 404")
	}

	// Revocation is immediate and looks like absence.
	m := shareLinkRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no revoke form:\n%s", page)
	}
	rv := alice.post(se.base+"/labs/share/revoke", url.Values{"_csrf": {csrfFrom(t, page)}, "link": {m[1]}}, "same-origin")
	if rv.status != http.StatusSeeOther {
		t.Fatalf("revoke: %d %s", rv.status, rv.body)
	}
	if got := notFoundBody(t, anon.get(link)); got != unknown {
		t.Errorf("revoked link 404 differs from unknown token 404")
	}
	var changes int
	if err := se.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE action = 'consent-change' AND patient = $1
		AND token_id = 'share-link/' || $2 AND reason IN ('share-link-created', 'share-link-revoked') AND actor <> ''`, se.person, m[1]).Scan(&changes); err != nil || changes != 2 {
		t.Errorf("creating and revoking the link: %d audit events (%v), want 2", changes, err)
	}
	if page := alice.getPrivate(se.base, "/labs/share").body; !strings.Contains(page, "Link revoked") || !strings.Contains(page, "no active links") {
		t.Errorf("after revoke:\n%s", page)
	}
	// Someone else cannot revoke Alice's links: the form is scoped to the session's person.
	if err := NewShareStore(se.pool).RevokeShareLink(context.Background(), Viewer{PersonID: "someone-else"}, 1, time.Now()); !strings.Contains(err.Error(), "no such share link") {
		t.Errorf("revoke by another person: %v", err)
	}

	// A link to one result shows that result only; it expires on time.
	one := se.createLink(t, alice, url.Values{"what": {"one"}, "result": {se.glucose}, "for": {"1h"}})
	r = anon.get(one)
	body = html.UnescapeString(r.body)
	if r.status != http.StatusOK || !strings.Contains(body, "Glucose") || strings.Contains(body, "Hemoglobin") || !strings.Contains(body, "this lab result") {
		t.Fatalf("one-result link: %d\n%s", r.status, body)
	}
	se.clock.Add(61 * time.Minute)
	if got := notFoundBody(t, anon.get(one)); got != unknown {
		t.Errorf("expired link 404 differs from unknown token 404")
	}

	// Nothing in the logs carries a token; the access log names the route pattern.
	logs := se.logs.String()
	for _, tok := range []string{token, strings.TrimPrefix(one, se.base+"/share/")} {
		if strings.Contains(logs, tok) {
			t.Errorf("a share token is in the logs")
		}
	}
	if !strings.Contains(logs, `"route":"/share/:token"`) {
		t.Errorf("access log lacks the share route pattern:\n%s", logs)
	}
}

func TestShareLinkAuditDownShowsNothing(t *testing.T) {
	t.Parallel()
	se := newShareEnv(t, false)
	alice := newClient(t)
	if r := se.signIn(t, alice, "alice", "alice-pw"); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", r.status)
	}
	link := se.createLink(t, alice, url.Values{"what": {"all"}, "for": {"1h"}})
	se.audit.fail.Store(true)
	r := newClient(t).get(link)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("audit down: %d, want 503", r.status)
	}
	for _, phi := range []string{"Alice", "Glucose", "7.9", "Hemoglobin", "13.8", "Riverside"} {
		if strings.Contains(r.body, phi) {
			t.Errorf("503 page shows %q", phi)
		}
	}
	if !strings.Contains(r.body, "temporarily unavailable") {
		t.Errorf("503 page is not the readable error page:\n%s", r.body)
	}
	var uses int
	if err := se.pool.QueryRow(context.Background(), `SELECT use_count FROM portal_share_links`).Scan(&uses); err != nil || uses != 0 {
		t.Errorf("use counted without an audit event: %d, %v", uses, err)
	}
}

func TestShareLinkRateLimitPerIP(t *testing.T) {
	t.Parallel()
	se := newShareEnv(t, false)
	anon := newClient(t)
	var last resp
	for i := 0; i <= shareRatePerMinute; i++ {
		last = anon.get(se.base + "/share/" + strings.Repeat("B", base64URLLen(shareTokenBytes)))
	}
	if last.status != http.StatusTooManyRequests || last.header.Get("Retry-After") == "" {
		t.Fatalf("request %d from one IP: %d (Retry-After %q), want 429", shareRatePerMinute+1, last.status, last.header.Get("Retry-After"))
	}
}

// TestShareLinkLeavesOutSensitiveUnlessChosen: a link of all results leaves out the
// HIV-labelled one unless the patient ticked the box; a link naming that result shows it
// (and is stored as including sensitive data); the active-links list says which kind each
// link is.
func TestShareLinkLeavesOutSensitiveUnlessChosen(t *testing.T) {
	t.Parallel()
	se := newShareEnv(t, false)
	alice := newClient(t)
	se.signIn(t, alice, "alice", "alice-pw")
	if r := alice.getPrivate(se.base, "/labs"); !strings.Contains(r.body, "HIV-1 RNA") {
		t.Fatalf("the patient's own labs page lacks her HIV result")
	}
	anon := newClient(t)
	for _, c := range []struct {
		form    url.Values
		showHIV bool
	}{
		{url.Values{"what": {"all"}, "for": {"1h"}}, false},
		{url.Values{"what": {"all"}, "for": {"1h"}, "sensitive": {"yes"}}, true},
		{url.Values{"what": {"one"}, "result": {se.hiv}, "for": {"1h"}}, true},
		{url.Values{"what": {"one"}, "result": {se.glucose}, "for": {"1h"}, "sensitive": {"yes"}}, false},
	} {
		link := se.createLink(t, alice, c.form)
		r := anon.get(link)
		if r.status != http.StatusOK || strings.Contains(r.body, "HIV-1 RNA") != c.showHIV {
			t.Errorf("%v: %d, shows the HIV result: %v, want %v", c.form, r.status, !c.showHIV, c.showHIV)
		}
		if all := c.form.Get("what") == "all"; all && !strings.Contains(r.body, "Glucose") {
			t.Errorf("%v: the link of all results lacks Glucose", c.form)
		}
	}
	list := html.UnescapeString(alice.getPrivate(se.base, "/labs/share").body)
	if !strings.Contains(list, "All your lab results except sensitive ones") || !strings.Contains(list, "All your lab results, sensitive ones included") {
		t.Errorf("the active links do not say which include sensitive results:\n%s", list)
	}
	var n int
	if err := se.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE include_sensitive) FROM portal_share_links`).Scan(&n); err != nil || n != 2 {
		t.Errorf("links stored with include_sensitive: %d, %v; want 2 (all with the box ticked, and the HIV result alone)", n, err)
	}
	if err := se.pool.QueryRow(context.Background(), `SELECT count(*) FROM portal_share_links WHERE include_sensitive AND resource_id = $1`, se.glucose).Scan(&n); err != nil || n != 0 {
		t.Errorf("the glucose link, box ticked, stored with include_sensitive: %d, %v; want 0 (the box is for all results)", n, err)
	}
}

// TestShareLinkOfOneResultHidesItOnceSensitive: a link made for a result that was not
// sensitive shows no result once the member re-sends it with an HIV label, exactly as when
// the result is gone; the patient never chose to share sensitive data.
func TestShareLinkOfOneResultHidesItOnceSensitive(t *testing.T) {
	t.Parallel()
	se := newShareEnv(t, false)
	alice := newClient(t)
	se.signIn(t, alice, "alice", "alice-pw")
	link := se.createLink(t, alice, url.Values{"what": {"one"}, "result": {se.glucose}, "for": {"1d"}})
	anon := newClient(t)
	if r := anon.get(link); r.status != http.StatusOK || !strings.Contains(r.body, "Glucose") {
		t.Fatalf("before the relabel: %d\n%s", r.status, r.body)
	}
	ctx := context.Background()
	fs := store.New(se.pool)
	err := db.InTx(ctx, se.pool, func(tx db.Querier) error {
		cur, err := fs.Get(ctx, tx, "Observation", se.glucose)
		if err != nil {
			return err
		}
		_, err = fs.Put(ctx, tx, store.Write{ID: se.glucose, Resource: fhir.MustParse([]byte(`{"resourceType":"Observation",` +
			`"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]},"status":"final",` +
			`"category":[{"coding":[{"code":"laboratory"}]}],"code":{"text":"Glucose"},"valueQuantity":{"value":7.9,"unit":"mmol/L"},` +
			`"effectiveDateTime":"2026-09-14","subject":{"reference":"Patient/` + cur.PatientID + `"}}`)),
			MemberID: "riverside", PatientID: cur.PatientID, At: time.Now()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r := anon.get(link)
	if r.status != http.StatusOK || strings.Contains(r.body, "Glucose") || strings.Contains(r.body, "7.9") ||
		!strings.Contains(r.body, "There are no lab results to show through this link.") {
		t.Fatalf("after the member labelled it HIV: %d\n%s", r.status, r.body)
	}
	var resources int
	if err := se.pool.QueryRow(ctx, `SELECT cardinality(resources) FROM audit_events WHERE request_id = $1`,
		r.header.Get("X-Request-Id")).Scan(&resources); err != nil || resources != 0 {
		t.Errorf("audit of the use after the relabel names %d resources (%v); want none", resources, err)
	}
}
