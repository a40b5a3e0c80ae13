package portal

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// The persons of the privacy tests: Alice (signed in as "alice"), someone else, and a
// person with many audit events (paging).
const (
	alicePerson = "0a11ce00-0000-4000-8000-000000000001"
	otherPerson = "0a11ce00-0000-4000-8000-000000000002"
	busyPerson  = "0a11ce00-0000-4000-8000-000000000003"
)

// privacyEnv is env with a PrivacyStore on the test database (real audit log, consent
// store with the regional default policies, review tables) and an officer login.
type privacyEnv struct {
	*env
	pool   *pgxpool.Pool
	now    time.Time
	taskID int64
}

func newPrivacyEnv(t *testing.T, secureCookies bool) *privacyEnv {
	t.Helper()
	pool := testkit.DB(t)
	rdb, prefix := testkit.Redis(t)
	ln, base := listenLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	users := append(demoUsers[:len(demoUsers):len(demoUsers)], officerUser)
	op := startOP(t, ctx, base, users)
	pe := &privacyEnv{pool: pool, now: time.Now().UTC()}
	pe.seed(t, ctx, op.Issuer())

	staff := NewStaffStore(pool)
	for sub, st := range map[string]Staff{
		"sub-doc-1": {Role: RoleClinician, Org: "riverside", Name: "Dr Sam Jones"},
		"sub-off-1": {Role: RoleOfficer, Org: "riverside", Name: "Pat Officer"},
	} {
		if err := staff.AddStaff(ctx, op.Issuer(), sub, st); err != nil {
			t.Fatal(err)
		}
	}
	alog, err := audit.New(ctx, pool, audit.Config{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alog.Close() })
	cs := consent.NewStore()
	if _, err := records.EnsureDefaultPolicies(ctx, pool, cs, consent.PolicyConfig{}); err != nil {
		t.Fatal(err)
	}
	e := &env{op: op, base: base, staff: staff,
		records:  &memRecords{labs: map[string][]LabResult{alicePerson: sampleLabs()}},
		identity: memIdentity{op.Issuer() + "|sub-pat-1": alicePerson},
	}
	e.srv, err = New(Config{BaseURL: base, Issuer: op.Issuer(), ClientID: "concord-portal", ClientSecret: "portal-secret",
		RedisPrefix: prefix, InsecureCookies: !secureCookies},
		Deps{Identity: e.identity, Staff: staff, Records: e.records, Redis: rdb, Proxies: NewProxyStore(pool, alog),
			Privacy: NewPrivacyStore(pool, records.NewStoreDirectives(pool, cs, 0, nil), mpistore.NewOps(pool, alog, "test-model")).WithAudit(alog).WithConsentStore(cs)})
	if err != nil {
		t.Fatal(err)
	}
	servePortal(t, e.srv, ln)
	pe.env = e
	return pe
}

// seed writes members, persons, audit events, a break-the-glass declaration with its
// review task and an MPI review item.
func (pe *privacyEnv) seed(t *testing.T, ctx context.Context, issuer string) {
	t.Helper()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pe.pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`INSERT INTO directory_members (id, name, system) VALUES
		('riverside', 'Riverside Family Clinic', 'urn:oid:2.999.1'),
		('stmary', 'St Mary''s Hospital', 'urn:oid:2.999.2'),
		('northlab', 'North Valley Laboratory', 'urn:oid:2.999.3')`)
	exec(`INSERT INTO mpi_persons (id) VALUES ($1), ($2), ($3)`, alicePerson, otherPerson, busyPerson)

	log, err := audit.New(ctx, pe.pool, audit.Config{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	n := pe.now
	obs := []audit.Resource{{Type: "Observation", ID: "o1"}, {Type: "Observation", ID: "o2"}}
	evs := []audit.Event{
		{Time: n.Add(-72 * time.Hour), Action: audit.Read, Outcome: audit.Permit, Org: "riverside", Role: consent.RoleClinician,
			Purpose: consent.PurposeTreatment, Patient: alicePerson, Actor: issuer + "|sub-doc-1", Resources: obs},
		{Time: n.Add(-2 * time.Hour), Action: audit.Read, Outcome: audit.Permit, Org: "stmary", Role: consent.RoleClinician,
			Purpose: consent.PurposeBreakGlass, Patient: alicePerson, BreakGlass: true,
			Resources: []audit.Resource{{Type: "Condition", ID: "c1"}}},
		{Time: n.Add(-1 * time.Hour), Action: audit.Read, Outcome: audit.Permit, Purpose: consent.PurposePatientRequest,
			Patient: alicePerson, ShareLink: true, Resources: []audit.Resource{{Type: "AllergyIntolerance", ID: "a1"}}},
		// Not Alice's: another person's access, and a denial of Alice's record.
		{Time: n.Add(-3 * time.Hour), Action: audit.Read, Outcome: audit.Permit, Org: "northlab", Role: consent.RoleSystem,
			Purpose: consent.PurposeTreatment, Patient: otherPerson, Resources: obs},
		{Time: n.Add(-4 * time.Hour), Action: audit.Query, Outcome: audit.Deny, Org: "northlab", Role: consent.RoleSystem,
			Purpose: consent.PurposePayment, Patient: alicePerson, Reason: "no-directive"},
	}
	for i := 0; i < 55; i++ {
		evs = append(evs, audit.Event{Time: n.Add(-time.Duration(10+i) * time.Minute), Action: audit.Read, Outcome: audit.Permit,
			Org: "riverside", Role: consent.RoleClinician, Purpose: consent.PurposeTreatment, Patient: busyPerson,
			Resources: []audit.Resource{{Type: "Observation", ID: fmt.Sprintf("busy-%d", i)}}})
	}
	for _, ev := range evs {
		if err := log.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}

	var bg string
	if err := pe.pool.QueryRow(ctx, `INSERT INTO consent_break_glass (id, person_id, member_id, actor, reason_code, reason_text, declared_at, expires_at)
		VALUES (gen_random_uuid(), $1, 'stmary', 'https://idp.example|er-doc', 'unresponsive', 'Unconscious on arrival in ED', $2, $3) RETURNING id::text`,
		alicePerson, n.Add(-2*time.Hour), n.Add(-90*time.Minute)).Scan(&bg); err != nil {
		t.Fatal(err)
	}
	if err := pe.pool.QueryRow(ctx, `INSERT INTO consent_review_tasks (kind, break_glass_id, person_id) VALUES ('break-glass', $1, $2) RETURNING id`,
		bg, alicePerson).Scan(&pe.taskID); err != nil {
		t.Fatal(err)
	}
	var src int64
	if err := pe.pool.QueryRow(ctx, `INSERT INTO mpi_source_records (member_id, system, value, patient_id, person_id, demographics)
		VALUES ('northlab', 'urn:oid:2.999.3', 'MRN-77', 'nl-77', $1, '{}') RETURNING id`, otherPerson).Scan(&src); err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO mpi_review_items (source_id, candidate, kind, score, evidence, guards, model)
		VALUES ($1, $2, 'review', 7.25, '{"Levels":[3,3,2,0,1,1,1,1],"Weights":[2.5,3.1,1.75,0,0.5,0.4,0.2,-1.5]}', 'sex-mismatch', 'fs-2026-1')`,
		src, alicePerson)
}

// signedIn returns a client signed in as user.
func (pe *privacyEnv) signedIn(t *testing.T, user, pw string) *client {
	t.Helper()
	c := newClient(t)
	if r := pe.signIn(t, c, user, pw); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in as %s: %d", user, r.status)
	}
	return c
}

// getPrivate GETs base+path, which must answer 200 with Cache-Control no-store (a page
// showing one person's data).
func (c *client) getPrivate(base, path string) resp {
	c.t.Helper()
	r := c.get(base + path)
	if r.status != http.StatusOK {
		c.t.Fatalf("%s: %d %s", path, r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		c.t.Errorf("%s: Cache-Control %q, want no-store", path, cc)
	}
	return r
}

func TestAccessPageListsOnlyOwnPermittedAccessesNewestFirst(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	c := pe.signedIn(t, "alice", "alice-pw")

	r := c.getPrivate(pe.base, "/access")
	body := html.UnescapeString(r.body)
	share := strings.Index(body, "Someone using your share link")
	glass := strings.Index(body, "St Mary's Hospital")
	river := strings.Index(body, "Riverside Family Clinic")
	if share < 0 || glass < 0 || river < 0 {
		t.Fatalf("missing rows (share %d, break-glass %d, treatment %d):\n%s", share, glass, river, body)
	}
	if !(share < glass && glass < river) {
		t.Errorf("rows not newest first: share link at %d, break-glass at %d, treatment at %d", share, glass, river)
	}
	for _, want := range []string{"Emergency access", "Share link", "Your own request", "Treatment", "Clinician",
		"Lab results and measurements", "Problems and diagnoses", "Allergies", "Viewed"} {
		if !strings.Contains(body, want) {
			t.Errorf("access page lacks %q", want)
		}
	}
	// Another person's access and a denied request are not Alice's access log.
	for _, absent := range []string{"North Valley Laboratory", "Payment"} {
		if strings.Contains(body, absent) {
			t.Errorf("access page shows %q", absent)
		}
	}
	if n := strings.Count(body, "<tr"); n != 4 { // header + 3 accesses
		t.Errorf("%d table rows, want 4", n)
	}

	// The date filter: only the day of the oldest access.
	day := pe.now.Add(-72 * time.Hour).Format("2006-01-02")
	r = c.get(pe.base + "/access?from=" + day + "&to=" + day)
	body = html.UnescapeString(r.body)
	if r.status != http.StatusOK || !strings.Contains(body, "Riverside Family Clinic") || strings.Contains(body, "St Mary's Hospital") {
		t.Errorf("filtered to %s: %d\n%s", day, r.status, body)
	}
	r = c.get(pe.base + "/access?from=2026-13-01")
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "year-month-day") {
		t.Errorf("malformed date: %d", r.status)
	}
	r = c.get(pe.base + "/access?from=2026-05-02&to=2026-05-01")
	if r.status != http.StatusBadRequest {
		t.Errorf("reversed dates: %d", r.status)
	}

	// Staff do not have an access page; the officer console is not the patient's.
	if r := c.get(pe.base + "/officer"); r.status != http.StatusNotFound {
		t.Errorf("patient /officer: %d, want 404", r.status)
	}
	doc := pe.signedIn(t, "drjones", "jones-pw")
	for _, p := range []string{"/access", "/privacy", "/officer", "/officer/reviews"} {
		if r := doc.get(pe.base + p); r.status != http.StatusNotFound {
			t.Errorf("clinician %s: %d, want 404", p, r.status)
		}
	}
	if r := newClient(t).get(pe.base + "/access"); r.status != http.StatusSeeOther {
		t.Errorf("signed-out /access: %d, want 303 to sign-in", r.status)
	}
}

func TestPrivacyPageShowsPreviewPerMemberWithExplanations(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	c := pe.signedIn(t, "alice", "alice-pw")
	r := c.getPrivate(pe.base, "/privacy")
	body := html.UnescapeString(r.body)
	// The expected decisions, computed independently from the stored default policies.
	dirs, err := consent.NewStore().Load(context.Background(), pe.pool, alicePerson)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{"riverside": "Riverside Family Clinic", "stmary": "St Mary's Hospital", "northlab": "North Valley Laboratory"}
	allowed, denied := 0, 0
	for _, id := range []string{"northlab", "riverside", "stmary"} {
		if !strings.Contains(body, "<h2>"+names[id]+"</h2>") {
			t.Fatalf("no section for %s", names[id])
		}
		req := consent.Request{ActorRole: consent.RoleClinician, Org: id, Purpose: consent.PurposeTreatment, PersonID: alicePerson, At: time.Now()}
		for _, cd := range consent.Preview(dirs, req, consent.StandardClasses()) {
			expl := cd.Decision.Explain(func(ref string) string { return names[strings.TrimPrefix(ref, "Organization/")] })
			if !strings.Contains(body, expl) {
				t.Errorf("%s / %s: explanation %q not shown", id, cd.Class.Title, expl)
			}
			if cd.Decision.Allow {
				allowed++
			} else {
				denied++
			}
		}
	}
	if allowed == 0 || denied == 0 {
		t.Errorf("the default policies should share some classes and withhold others: %d shared, %d not", allowed, denied)
	}
	if got := strings.Count(body, "✓ Shared"); got != allowed {
		t.Errorf("%d shared cells, want %d", got, allowed)
	}
	if got := strings.Count(body, "✕ Not shared"); got != denied {
		t.Errorf("%d not-shared cells, want %d", got, denied)
	}
	if allowed > 0 && !strings.Contains(body, "Decided by the regional") {
		t.Errorf("no deciding directive named")
	}
	first, second := strings.Index(body, "North Valley Laboratory"), strings.Index(body, "Riverside Family Clinic")
	if first < 0 || second < first {
		t.Errorf("members not in name order")
	}
}

func TestOfficerAuditSearchAndPaging(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	c := pe.signedIn(t, "privo", "privo-pw")

	r := c.getPrivate(pe.base, "/officer?patient="+alicePerson+"&outcome=deny")
	if n := strings.Count(r.body, "<tr"); n != 2 || !strings.Contains(r.body, "no-directive") || !strings.Contains(r.body, "North Valley Laboratory") {
		t.Errorf("deny search: %d rows\n%s", n-1, r.body)
	}
	// The actor column names the subject; the issuer is on hover, not wrapped through the cell.
	r = c.get(pe.base + "/officer?patient=" + alicePerson + "&org=riverside")
	if !strings.Contains(r.body, `title="signed in through `+html.EscapeString(pe.op.Issuer())+`">sub-doc-1<`) {
		t.Errorf("actor cell: want subject with the issuer on hover\n%s", r.body)
	}
	// The data column speaks as the patient's access log does; the FHIR type is on hover.
	if !strings.Contains(r.body, `<span title="Observation">Lab results and measurements</span>`) {
		t.Errorf("data cell: want the class in words with the resource type on hover\n%s", r.body)
	}
	r = c.get(pe.base + "/officer?org=stmary")
	if n := strings.Count(r.body, "<tr"); n != 2 || !strings.Contains(r.body, "Break glass") {
		t.Errorf("org search: %d rows", n-1)
	}
	// 55 events for the busy person: 50, then 5 through the next-page link.
	r = c.get(pe.base + "/officer?patient=" + busyPerson)
	if n := strings.Count(r.body, "<tr"); n != 51 {
		t.Errorf("first page: %d rows, want 50", n-1)
	}
	m := strings.Index(r.body, `<a href="/officer?`)
	if m < 0 {
		t.Fatal("no next-page link")
	}
	href := html.UnescapeString(r.body[m+9 : m+9+strings.Index(r.body[m+9:], `"`)])
	r = c.get(pe.base + href)
	if n := strings.Count(r.body, "<tr"); n != 6 || strings.Contains(r.body, "Next page") {
		t.Errorf("second page: %d rows (%s)", n-1, href)
	}
	if r := c.get(pe.base + "/officer?outcome=maybe"); r.status != http.StatusBadRequest {
		t.Errorf("bad outcome: %d", r.status)
	}
	if r := c.get(pe.base + "/officer?cursor=%21%21"); r.status != http.StatusBadRequest {
		t.Errorf("bad cursor: %d", r.status)
	}
	if r := c.get(pe.base + "/access"); r.status != http.StatusNotFound {
		t.Errorf("officer /access: %d, want 404", r.status)
	}
}

func TestOfficerReviewsCloseBreakGlassTask(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	c := pe.signedIn(t, "privo", "privo-pw")
	r := c.get(pe.base + "/officer/reviews")
	if r.status != http.StatusOK {
		t.Fatalf("/officer/reviews: %d %s", r.status, r.body)
	}
	for _, want := range []string{"Unconscious on arrival in ED", "unresponsive", "St Mary&#39;s Hospital", alicePerson,
		"sex-mismatch", "7.25", "-1.50", "North Valley Laboratory", "fs-2026-1"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("reviews page lacks %q", want)
		}
	}
	// The identity evidence names fields and agreement in words, the model's terms on hover
	// (seeded levels 3,3,2,0,1,1,1,1).
	for _, want := range []string{"<td>Given name</td><td title=\"given level 3\">Nearly the same spelling</td>",
		"<td>Family name</td>", "<td>Date of birth</td><td title=\"birthDate level 2\">Day and month swapped</td>",
		"<td>Social Security number</td><td title=\"ssn level 0\">Missing on one side</td>",
		"<td>Address</td><td title=\"address level 1\">Same house number and street</td>", "<td>Sex</td>"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("identity evidence lacks %q", want)
		}
	}
	for _, absent := range []string{"<td>birthDate</td>", "<td>family</td>", "<td>ssn</td>"} {
		if strings.Contains(r.body, absent) {
			t.Errorf("identity evidence shows the model's field name %q", absent)
		}
	}
	task := fmt.Sprint(pe.taskID)
	// Without the CSRF token nothing is closed.
	if r := c.post(pe.base+"/officer/reviews/close", url.Values{"task": {task}}, ""); r.status != http.StatusBadRequest && r.status != http.StatusForbidden {
		t.Errorf("close without CSRF: %d", r.status)
	}
	tok := csrfFrom(t, r.body)
	res := c.post(pe.base+"/officer/reviews/close", url.Values{"_csrf": {tok}, "task": {task}}, "same-origin")
	if res.status != http.StatusSeeOther || res.header.Get("Location") != "/officer/reviews" {
		t.Fatalf("close: %d to %q", res.status, res.header.Get("Location"))
	}
	var status, by string
	if err := pe.pool.QueryRow(context.Background(), `SELECT status, coalesce(closed_by, '') FROM consent_review_tasks WHERE id = $1`, pe.taskID).Scan(&status, &by); err != nil {
		t.Fatal(err)
	}
	if status != "closed" || by != pe.op.Issuer()+"|sub-off-1" {
		t.Errorf("task %s closed by %q", status, by)
	}
	// The closing's audit event carries the officer's request ID and source IP, as every
	// portal audit event does.
	evs, _, err := audit.Search(t.Context(), pe.pool, audit.Filter{Action: []audit.Action{audit.BreakGlass}, Count: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var closed []audit.Event
	for _, ev := range evs {
		if ev.Reason == "review-closed" {
			closed = append(closed, ev)
		}
	}
	if len(closed) != 1 {
		t.Fatalf("%d review-closed events, want 1", len(closed))
	}
	if ev := closed[0]; ev.Actor != pe.op.Issuer()+"|sub-off-1" || ev.Role != consent.RoleOfficer || ev.Org != "riverside" ||
		ev.RequestID == "" || ev.RequestID != res.header.Get("X-Request-Id") || ev.SourceIP == "" {
		t.Errorf("review-closed event %+v (response request ID %q)", ev, res.header.Get("X-Request-Id"))
	}
	r = c.get(pe.base + "/officer/reviews")
	if !strings.Contains(r.body, "Review "+task+" closed.") || strings.Contains(r.body, "Unconscious on arrival") {
		t.Errorf("after close: flash or list wrong\n%s", r.body)
	}
	if r2 := c.get(pe.base + "/officer/reviews"); strings.Contains(r2.body, "closed.") {
		t.Errorf("flash shown twice")
	}
	if r := c.post(pe.base+"/officer/reviews/close", url.Values{"_csrf": {tok}, "task": {task}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("closing a closed task: %d, want 404", r.status)
	}
	// A patient cannot close reviews.
	pc := pe.signedIn(t, "alice", "alice-pw")
	land := pc.get(pe.base + "/labs")
	if r := pc.post(pe.base+"/officer/reviews/close", url.Values{"_csrf": {csrfFrom(t, land.body)}, "task": {task}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("patient close: %d, want 404", r.status)
	}
}

func TestOfficerResolvesMPIReview(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	c := pe.signedIn(t, "privo", "privo-pw")
	r := c.get(pe.base + "/officer/reviews")
	var item int64
	if err := pe.pool.QueryRow(context.Background(), `SELECT id FROM mpi_review_items WHERE status = 'open'`).Scan(&item); err != nil {
		t.Fatal(err)
	}
	tok := csrfFrom(t, r.body)
	id := fmt.Sprint(item)
	if r := c.post(pe.base+"/officer/mpi/resolve", url.Values{"_csrf": {tok}, "item": {id}, "decision": {"maybe"}}, "same-origin"); r.status != http.StatusBadRequest {
		t.Errorf("unknown decision: %d, want 400", r.status)
	}
	res := c.post(pe.base+"/officer/mpi/resolve", url.Values{"_csrf": {tok}, "item": {id}, "decision": {"keep-apart"}}, "same-origin")
	if res.status != http.StatusSeeOther {
		t.Fatalf("resolve: %d %s", res.status, res.body)
	}
	var status, by string
	if err := pe.pool.QueryRow(context.Background(), `SELECT status, coalesce(resolved_by, '') FROM mpi_review_items WHERE id = $1`, item).Scan(&status, &by); err != nil {
		t.Fatal(err)
	}
	if status != "kept-apart" || by != pe.op.Issuer()+"|sub-off-1" {
		t.Errorf("item %s by %q", status, by)
	}
	r = c.get(pe.base + "/officer/reviews")
	if !strings.Contains(r.body, "kept apart from the candidate") || !strings.Contains(r.body, "No open identity reviews.") {
		t.Errorf("after resolving:\n%s", r.body)
	}
	if r := c.post(pe.base+"/officer/mpi/resolve", url.Values{"_csrf": {tok}, "item": {id}, "decision": {"link"}}, "same-origin"); r.status != http.StatusBadRequest {
		t.Errorf("resolving twice: %d, want 400 (conflict)", r.status)
	}
	pc := pe.signedIn(t, "alice", "alice-pw")
	land := pc.get(pe.base + "/labs")
	if r := pc.post(pe.base+"/officer/mpi/resolve", url.Values{"_csrf": {csrfFrom(t, land.body)}, "item": {id}, "decision": {"link"}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("patient resolve: %d, want 404", r.status)
	}
}

// auditQueries returns the audit.AuditQuery events in the log, newest first.
func auditQueries(t *testing.T, pool *pgxpool.Pool) []audit.Event {
	t.Helper()
	evs, _, err := audit.Search(t.Context(), pool, audit.Filter{Action: []audit.Action{audit.AuditQuery}, Count: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestAuditReadsAreAudited: each officer search that runs commits exactly one audit-query
// event (actor the officer, the patient searched for, the filter, the outcome, the request
// ID) before its results are shown, and the next search shows it; a patient reading their
// own access log commits one too, which is not itself listed as an access.
func TestAuditReadsAreAudited(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	if evs := auditQueries(t, pe.pool); len(evs) != 0 {
		t.Fatalf("%d audit-query events before any search", len(evs))
	}
	c := pe.signedIn(t, "privo", "privo-pw")
	r := c.getPrivate(pe.base, "/officer?patient="+alicePerson+"&outcome=deny")
	evs := auditQueries(t, pe.pool)
	if len(evs) != 1 {
		t.Fatalf("%d audit-query events after one search, want 1", len(evs))
	}
	ev := evs[0]
	if ev.Actor != pe.op.Issuer()+"|sub-off-1" || ev.Role != consent.RoleOfficer || ev.Org != "riverside" ||
		ev.Patient != alicePerson || ev.Outcome != audit.Permit || !strings.Contains(ev.Query, "outcome=deny") ||
		ev.RequestID == "" || ev.RequestID != r.header.Get("X-Request-Id") {
		t.Errorf("officer search event %+v (response request ID %q)", ev, r.header.Get("X-Request-Id"))
	}
	// The officer's next search shows the first one.
	r = c.getPrivate(pe.base, "/officer?patient="+alicePerson)
	if !strings.Contains(r.body, string(audit.AuditQuery)) {
		t.Errorf("the log does not show the officer's search:\n%s", r.body)
	}
	if n := len(auditQueries(t, pe.pool)); n != 2 {
		t.Errorf("%d audit-query events after two searches, want 2", n)
	}
	// A form that does not validate runs no search; a search that fails is audited as failed.
	c.get(pe.base + "/officer?outcome=maybe")
	if n := len(auditQueries(t, pe.pool)); n != 2 {
		t.Errorf("%d audit-query events after a rejected form, want 2", n)
	}
	if r := c.get(pe.base + "/officer?cursor=%21%21"); r.status != http.StatusBadRequest {
		t.Errorf("bad cursor: %d", r.status)
	}
	if evs := auditQueries(t, pe.pool); len(evs) != 3 || evs[0].Outcome != audit.Failure {
		t.Errorf("failed search: %d events, newest %+v", len(evs), evs[0])
	}

	pc := pe.signedIn(t, "alice", "alice-pw")
	r = pc.getPrivate(pe.base, "/access")
	evs = auditQueries(t, pe.pool)
	if len(evs) != 4 {
		t.Fatalf("%d audit-query events after the access log, want 4", len(evs))
	}
	ev = evs[0]
	if ev.Actor != pe.op.Issuer()+"|sub-pat-1" || ev.Role != consent.RolePatient || ev.Patient != alicePerson ||
		ev.Outcome != audit.Permit || ev.RequestID != r.header.Get("X-Request-Id") {
		t.Errorf("access log event %+v", ev)
	}
	// Reading the log is not an access to the record: the page still lists three.
	r = pc.getPrivate(pe.base, "/access")
	if n := strings.Count(r.body, "<tr"); n != 4 {
		t.Errorf("%d table rows after reading the log twice, want 4", n)
	}
}

// TestAuditReadsFailClosed: when the audit event cannot be written (closed log, or no
// writer), audit reads return errs.Unavailable and nothing else.
func TestAuditReadsFailClosed(t *testing.T) {
	t.Parallel()
	pool := testkit.DB(t)
	ctx := t.Context()
	alog, err := audit.New(ctx, pool, audit.Config{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := alog.Append(ctx, audit.Event{Action: audit.Read, Outcome: audit.Permit, Patient: alicePerson}); err != nil {
		t.Fatal(err)
	}
	alog.Close()
	v := Viewer{Role: RoleOfficer, Org: "riverside", Actor: "iss|off"}
	for name, ps := range map[string]*PrivacyStore{
		"closed log": NewPrivacyStore(pool, nil, nil).WithAudit(alog),
		"no writer":  NewPrivacyStore(pool, nil, nil),
	} {
		evs, _, err := ps.SearchAudit(ctx, v, audit.Filter{Patient: alicePerson})
		if errs.CodeOf(err) != errs.Unavailable || evs != nil {
			t.Errorf("%s: SearchAudit = %d events, %v; want Unavailable and none", name, len(evs), err)
		}
		acc, err := ps.AccessLog(ctx, Viewer{Role: RolePatient, PersonID: alicePerson, Actor: "iss|pat"}, alicePerson, time.Time{}, time.Time{})
		if errs.CodeOf(err) != errs.Unavailable || acc != nil {
			t.Errorf("%s: AccessLog = %d rows, %v; want Unavailable and none", name, len(acc), err)
		}
	}
}

// TestAccountingOfDisclosures: the officer runs the accounting for one person over the
// default six years, oldest first, with recipients named and break-glass marked, on the
// page and as CSV (formula cells guarded); running it is audited; denials and other persons'
// accesses are not disclosures of hers; the patient downloads her own, and only her own.
func TestAccountingOfDisclosures(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	c := pe.signedIn(t, "privo", "privo-pw")
	form := c.getPrivate(pe.base, "/officer/accounting")
	if !strings.Contains(form.body, `name="patient"`) || strings.Contains(form.body, "<table") {
		t.Fatalf("empty report form:\n%s", form.body)
	}
	before := len(auditQueries(t, pe.pool))
	r := c.getPrivate(pe.base, "/officer/accounting?patient="+alicePerson)
	body := html.UnescapeString(r.body)
	river, glass, share := strings.Index(body, "Riverside Family Clinic"), strings.Index(body, "St Mary's Hospital"), strings.Index(body, "Holder of a share link")
	if river < 0 || glass < 0 || share < 0 || !(river < glass && glass < share) {
		t.Fatalf("report rows not oldest first (treatment %d, break-glass %d, share %d):\n%s", river, glass, share, body)
	}
	if n := strings.Count(body, "<tr"); n != 4 || strings.Contains(body, "North Valley Laboratory") || !strings.Contains(body, "Break glass") ||
		!strings.Contains(body, "(2 items)") {
		t.Errorf("report: %d rows\n%s", n-1, body)
	}
	if n := len(auditQueries(t, pe.pool)); n != before+1 {
		t.Errorf("%d audit-query events after one report, want %d", n, before+1)
	}
	csvResp := c.get(pe.base + "/officer/accounting?patient=" + alicePerson + "&format=csv")
	lines := strings.Split(strings.TrimSpace(csvResp.body), "\n")
	if csvResp.status != http.StatusOK || !strings.HasPrefix(csvResp.header.Get("Content-Type"), "text/csv") ||
		!strings.HasPrefix(csvResp.header.Get("Content-Disposition"), "attachment") || len(lines) != 4 ||
		!strings.HasPrefix(lines[0], "date,recipient,") || !strings.Contains(lines[2], "true") {
		t.Errorf("CSV %d %v:\n%s", csvResp.status, csvResp.header, csvResp.body)
	}
	if r := c.get(pe.base + "/officer/accounting?patient=" + alicePerson + "&from=2026-05-02&to=2026-05-01"); r.status != http.StatusBadRequest {
		t.Errorf("reversed dates: %d", r.status)
	}
	if got := csvSafe("=HYPERLINK(1)", "+1", "ok"); got[0] != "'=HYPERLINK(1)" || got[1] != "'+1" || got[2] != "ok" {
		t.Errorf("csvSafe = %q", got)
	}

	alice := pe.signedIn(t, "alice", "alice-pw")
	own := alice.get(pe.base + "/access/accounting.csv")
	if own.status != http.StatusOK || len(strings.Split(strings.TrimSpace(own.body), "\n")) != 4 || strings.Contains(own.body, "northlab") {
		t.Errorf("patient's own accounting %d:\n%s", own.status, own.body)
	}
	if r := alice.get(pe.base + "/officer/accounting?patient=" + otherPerson); r.status != http.StatusNotFound {
		t.Errorf("a patient on the officer's report: %d", r.status)
	}
	doc := pe.signedIn(t, "drjones", "jones-pw")
	if r := doc.get(pe.base + "/access/accounting.csv"); r.status != http.StatusNotFound {
		t.Errorf("a clinician's accounting download: %d", r.status)
	}
}

// TestAccessDispute: the patient reports an access she does not recognise; it shows as
// under review in her log and on the officers' review list with her words and the access;
// a second report of it and a report of another person's access are refused; the officer
// closes it with a resolution she then reads; both steps are audited.
func TestAccessDispute(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	alice := pe.signedIn(t, "alice", "alice-pw")
	page := alice.getPrivate(pe.base, "/access")
	seqs := regexp.MustCompile(`name="seq" value="(\d+)"`).FindAllStringSubmatch(page.body, -1)
	if len(seqs) != 3 {
		t.Fatalf("%d report forms, want one per access (3)", len(seqs))
	}
	seq := seqs[len(seqs)-1][1] // the oldest: Riverside's treatment read
	tok := csrfFrom(t, page.body)
	dispute := func(c *client, seq, reason string) resp {
		return c.post(pe.base+"/access/dispute", url.Values{"_csrf": {tok}, "seq": {seq}, "reason": {reason}}, "same-origin")
	}
	if r := dispute(alice, seq, "I have never been to Riverside."); r.status != http.StatusSeeOther || r.header.Get("Location") != "/access" {
		t.Fatalf("report: %d %q", r.status, r.header.Get("Location"))
	}
	after := alice.getPrivate(pe.base, "/access")
	if !strings.Contains(after.body, "A privacy officer will review this access") || !strings.Contains(after.body, "Reported, under review") ||
		strings.Count(after.body, `name="seq"`) != 2 {
		t.Fatalf("log after the report:\n%s", after.body)
	}
	dispute(alice, seq, "again")
	if again := alice.getPrivate(pe.base, "/access"); !strings.Contains(again.body, "You have already reported this access.") {
		t.Errorf("a second report of the same access was not refused")
	}
	var otherSeq int64
	if err := pe.pool.QueryRow(t.Context(), `SELECT seq FROM audit_events WHERE patient = $1 LIMIT 1`, otherPerson).Scan(&otherSeq); err != nil {
		t.Fatal(err)
	}
	if r := dispute(alice, strconv.FormatInt(otherSeq, 10), "not mine"); r.status != http.StatusNotFound {
		t.Errorf("report of another person's access: %d, want 404", r.status)
	}

	officer := pe.signedIn(t, "privo", "privo-pw")
	rev := officer.getPrivate(pe.base, "/officer/reviews")
	body := html.UnescapeString(rev.body)
	dm := regexp.MustCompile(`name="dispute" value="(\d+)"`).FindStringSubmatch(rev.body)
	if dm == nil || !strings.Contains(body, "I have never been to Riverside.") || !strings.Contains(body, "Riverside Family Clinic") {
		t.Fatalf("officer's reviews:\n%s", rev.body)
	}
	close := func(resolution string) resp {
		return officer.post(pe.base+"/officer/disputes/close", url.Values{"_csrf": {csrfFrom(t, rev.body)}, "dispute": {dm[1]}, "resolution": {resolution}}, "same-origin")
	}
	if r := close(" "); r.status != http.StatusSeeOther {
		t.Fatalf("close without a resolution: %d", r.status)
	}
	if r := close("Dr Jones opened your labs for a referral you booked on 3 March."); r.status != http.StatusSeeOther {
		t.Fatalf("close: %d", r.status)
	}
	if r := officer.getPrivate(pe.base, "/officer/reviews"); strings.Contains(html.UnescapeString(r.body), "I have never been to Riverside.") {
		t.Errorf("a closed report is still listed")
	}
	if log := alice.getPrivate(pe.base, "/access"); !strings.Contains(html.UnescapeString(log.body), "Reviewed:</strong> Dr Jones opened your labs") {
		t.Errorf("the patient does not see the resolution:\n%s", log.body)
	}
	var reported, closed int
	if err := pe.pool.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE action = 'create' AND reason = 'access-disputed' AND patient = $1),
		count(*) FILTER (WHERE action = 'update' AND reason = 'dispute-closed' AND patient = $1) FROM audit_events`, alicePerson).Scan(&reported, &closed); err != nil || reported != 1 || closed != 1 {
		t.Errorf("audited: %d reports, %d closings, %v; want 1 and 1", reported, closed, err)
	}
}

// TestAccessLogHidesOwnViewsByDefault: the patient's own views are left out of her log
// unless she asks for them, and are never offered for a report.
func TestAccessLogHidesOwnViewsByDefault(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	alog, err := audit.New(t.Context(), pe.pool, audit.Config{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer alog.Close()
	if err := alog.Append(t.Context(), audit.Event{Time: pe.now.Add(-30 * time.Minute), Action: audit.Read, Outcome: audit.Permit,
		Role: consent.RolePatient, Purpose: consent.PurposePatientRequest, Patient: alicePerson, Actor: pe.op.Issuer() + "|sub-pat-1",
		Resources: []audit.Resource{{Type: "Observation", ID: "o1"}}}); err != nil {
		t.Fatal(err)
	}
	alice := pe.signedIn(t, "alice", "alice-pw")
	r := alice.getPrivate(pe.base, "/access")
	if n := strings.Count(r.body, "<tr"); n != 4 || !strings.Contains(r.body, "1 of your own views are not listed") {
		t.Errorf("default log: %d rows\n%s", n-1, r.body)
	}
	r = alice.getPrivate(pe.base, "/access?mine=1")
	if n := strings.Count(r.body, "<tr"); n != 5 || strings.Count(r.body, `name="seq"`) != 3 {
		t.Errorf("log with own views: %d rows, %d report forms; want 4 and 3", n-1, strings.Count(r.body, `name="seq"`))
	}
}

// TestOfficerSimulator: the officer asks what a member's clinician would see of a person
// for treatment and for payment, with the same explanations the patient reads; a bad
// moment is a readable error; each run is audited; patients do not have the simulator.
func TestOfficerSimulator(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	c := pe.signedIn(t, "privo", "privo-pw")
	form := c.getPrivate(pe.base, "/officer/simulate")
	if !strings.Contains(form.body, `name="purpose"`) || strings.Contains(form.body, "Shared?") {
		t.Fatalf("empty simulator:\n%s", form.body)
	}
	treat := c.getPrivate(pe.base, "/officer/simulate?patient="+alicePerson+"&org=riverside&role=clinician&purpose=TREAT")
	pay := c.getPrivate(pe.base, "/officer/simulate?patient="+alicePerson+"&org=riverside&role=clinician&purpose=HPAYMT")
	if strings.Count(treat.body, "✓ Shared") == 0 || !strings.Contains(html.UnescapeString(treat.body), "Riverside Family Clinic, as of") {
		t.Errorf("treatment simulation:\n%s", treat.body)
	}
	if strings.Count(pay.body, "✓ Shared") != 0 || strings.Count(pay.body, "✕ Not shared") == 0 {
		t.Errorf("payment simulation shares something:\n%s", pay.body)
	}
	past := c.getPrivate(pe.base, "/officer/simulate?patient="+alicePerson+"&org=riverside&role=clinician&purpose=TREAT&at=2020-01-01T10:00")
	if !strings.Contains(past.body, "1 January 2020 10:00") {
		t.Errorf("as-of simulation does not name its moment")
	}
	if r := c.get(pe.base + "/officer/simulate?patient=" + alicePerson + "&org=riverside&role=clinician&purpose=TREAT&at=yesterday"); r.status != http.StatusBadRequest {
		t.Errorf("bad moment: %d", r.status)
	}
	var n int
	if err := pe.pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE action = 'authz-consent' AND reason = 'officer-simulation' AND patient = $1`, alicePerson).Scan(&n); err != nil || n != 3 {
		t.Errorf("audited simulations: %d, %v; want 3", n, err)
	}
	alice := pe.signedIn(t, "alice", "alice-pw")
	if r := alice.get(pe.base + "/officer/simulate"); r.status != http.StatusNotFound {
		t.Errorf("patient on the simulator: %d", r.status)
	}
}

// TestPatientSharingChoices: the patient stops sharing with one organization, lets another
// see sensitive information, and opts out for treatment and back in; each choice shows on
// the page at once, is a new version of its own directive, and is audited; an unknown
// organization is the 404 page.
func TestPatientSharingChoices(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	alice := pe.signedIn(t, "alice", "alice-pw")
	page := alice.getPrivate(pe.base, "/privacy")
	tok := csrfFrom(t, page.body)
	choose := func(kind, org, on string) resp {
		t.Helper()
		r := alice.post(pe.base+"/privacy/choice", url.Values{"_csrf": {tok}, "kind": {kind}, "org": {org}, "on": {on}}, "same-origin")
		if r.status != http.StatusSeeOther && r.status != http.StatusNotFound {
			t.Fatalf("choice %s %s %s: %d", kind, org, on, r.status)
		}
		return r
	}
	body := func() string { return html.UnescapeString(alice.getPrivate(pe.base, "/privacy").body) }
	if b := body(); !strings.Contains(b, "Stop sharing with Riverside Family Clinic") || strings.Contains(b, "You have opted out") {
		t.Fatalf("privacy page before any choice:\n%s", b)
	}
	choose("deny-org", "riverside", "1")
	b := body()
	if !strings.Contains(b, "Your choice applies from now on.") || !strings.Contains(b, "Share with Riverside Family Clinic again") {
		t.Fatalf("after stopping Riverside:\n%s", b)
	}
	river := b[strings.Index(b, "<h2>Riverside Family Clinic</h2>"):]
	river = river[:strings.Index(river, "</details>")]
	if strings.Contains(river, "✓ Shared") {
		t.Errorf("Riverside still shares something after the patient stopped it:\n%s", river)
	}
	choose("sensitive", "stmary", "1")
	if b := body(); !strings.Contains(b, "Stop sharing sensitive information with St Mary's Hospital") {
		t.Errorf("sensitive choice not shown")
	}
	choose("optout", "", "1")
	if b := body(); !strings.Contains(b, "You have opted out") || strings.Count(b, "✓ Shared") != 0 {
		t.Errorf("after opting out: %d classes still shared", strings.Count(b, "✓ Shared"))
	}
	choose("optout", "", "0")
	if b := body(); strings.Contains(b, "You have opted out") || strings.Count(b, "✓ Shared") == 0 {
		t.Errorf("after opting back in nothing is shared")
	}
	if r := choose("deny-org", "no-such-org", "1"); r.status != http.StatusNotFound {
		t.Errorf("unknown organization: %d", r.status)
	}
	var versions, events int
	if err := pe.pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM consent_directives WHERE directive_id = $1),
		(SELECT count(*) FROM audit_events WHERE action = 'consent-change' AND patient = $2 AND reason IN ('choice-on', 'choice-off'))`,
		string(choiceID(alicePerson, choiceOptOut, "")), alicePerson).Scan(&versions, &events); err != nil || versions != 2 || events != 4 {
		t.Errorf("opt-out directive versions %d, audited choices %d, %v; want 2 and 4", versions, events, err)
	}
}

// TestOfficerRecordsPaperConsent: an officer records a signed opt-out and a Part 2 consent
// for a person; the patient's privacy page shows the opt-out at once, the officer's page
// lists both with their forms and keeps every version, each recording and each opening of
// the page is audited, and bad forms come back on the page with a readable error.
func TestOfficerRecordsPaperConsent(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	off := pe.signedIn(t, "privo", "privo-pw")
	page := off.getPrivate(pe.base, "/officer/consent?patient="+alicePerson)
	if !strings.Contains(page.body, "No directives of their own") {
		t.Fatalf("person without directives:\n%s", page.body)
	}
	tok := csrfFrom(t, page.body)
	record := func(kind, org, action, signed, ref string) resp {
		t.Helper()
		return off.post(pe.base+"/officer/consent", url.Values{"_csrf": {tok}, "patient": {alicePerson}, "kind": {kind}, "org": {org},
			"action": {action}, "signed": {signed}, "formref": {ref}}, "same-origin")
	}
	yesterday := pe.now.AddDate(0, 0, -1).Format("2006-01-02")
	if r := record("optout", "", "on", yesterday, "RFC-2026-0117"); r.status != http.StatusSeeOther {
		t.Fatalf("record opt-out: %d %s", r.status, r.body)
	}
	if r := record("part2", "stmary", "on", yesterday, "SM-P2-44"); r.status != http.StatusSeeOther {
		t.Fatalf("record Part 2 consent: %d %s", r.status, r.body)
	}
	b := html.UnescapeString(off.getPrivate(pe.base, "/officer/consent?patient="+alicePerson).body)
	if n := strings.Count(b, `class="flash"`); n != 1 {
		t.Errorf("the confirmation shows %d times, want once", n)
	}
	for _, want := range []string{"Do not share my record for treatment", "Signed form RFC-2026-0117", "42 CFR Part 2", "Signed form SM-P2-44", "St Mary's Hospital", "In force"} {
		if !strings.Contains(b, want) {
			t.Errorf("officer page lacks %q", want)
		}
	}
	alice := pe.signedIn(t, "alice", "alice-pw")
	if ab := alice.getPrivate(pe.base, "/privacy").body; !strings.Contains(ab, "You have opted out") {
		t.Errorf("the patient's page does not show the opt-out recorded on paper")
	}
	if r := record("optout", "", "off", pe.now.Format("2006-01-02"), "RFC-2026-0118"); r.status != http.StatusSeeOther {
		t.Fatalf("record withdrawal: %d", r.status)
	}
	if ab := alice.getPrivate(pe.base, "/privacy").body; strings.Contains(ab, "You have opted out") {
		t.Errorf("withdrawal on paper not in force")
	}

	bad := []struct{ kind, org, action, signed, ref, want string }{
		{"optout", "", "on", pe.now.AddDate(0, 0, 2).Format("2006-01-02"), "X-1", "not in the future"},
		{"optout", "", "on", "last week", "X-1", "Enter the date the form was signed."},
		{"deny-org", "", "on", yesterday, "X-1", "Choose the organization the form names."},
		{"deny-org", "nowhere", "on", yesterday, "X-1", "Choose the organization the form names."},
		{"sensitive", "riverside", "off", yesterday, "X-1", "nothing to withdraw"},
		{"optout", "", "on", yesterday, "", "1 to 64 printable characters"},
		{"everything", "", "on", yesterday, "X-1", "Choose what the form says."},
	}
	for _, tt := range bad {
		r := record(tt.kind, tt.org, tt.action, tt.signed, tt.ref)
		if r.status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(r.body), tt.want) {
			t.Errorf("%s %q signed %q ref %q: %d, want 400 with %q", tt.kind, tt.org, tt.signed, tt.ref, r.status, tt.want)
		}
	}
	r := off.post(pe.base+"/officer/consent", url.Values{"_csrf": {tok}, "patient": {"0a11ce00-0000-4000-8000-00000000dead"}, "kind": {"optout"},
		"action": {"on"}, "signed": {yesterday}, "formref": {"X-2"}}, "same-origin")
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "No such person.") {
		t.Errorf("unknown person: %d", r.status)
	}
	if r := off.post(pe.base+"/officer/consent", url.Values{"_csrf": {tok}, "patient": {alicePerson}, "kind": {"optout"}, "action": {"on"},
		"signed": {yesterday}, "formref": {"X-3"}}, "cross-site"); r.status != http.StatusForbidden {
		t.Errorf("a cross-site form: %d", r.status)
	}
	if r := alice.get(pe.base + "/officer/consent?patient=" + alicePerson); r.status != http.StatusNotFound {
		t.Errorf("patient on the officer's consent page: %d", r.status)
	}

	var versions, recorded, opened int
	if err := pe.pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM consent_directives WHERE directive_id = $1),
		(SELECT count(*) FROM audit_events WHERE action = 'consent-change' AND patient = $2 AND reason IN ('paper-form-on', 'paper-form-off') AND role = 'officer'),
		(SELECT count(*) FROM audit_events WHERE action = 'read' AND patient = $2 AND reason = 'officer-consent-review')`,
		string(choiceID(alicePerson, choiceOptOut, "")), alicePerson).Scan(&versions, &recorded, &opened); err != nil {
		t.Fatal(err)
	}
	if versions != 2 || recorded != 3 || opened < 2 {
		t.Errorf("opt-out versions %d, recorded forms %d, audited openings %d; want 2, 3, ≥ 2", versions, recorded, opened)
	}
}

// TestBreakGlassNoticeForPatient: the notification a break-the-glass declaration queues for
// the patient shows as a banner on every page and as a notice on the access log (the
// organization and the reason in words, never the clinician's free text) until the patient
// marks it read; nobody else can mark it.
func TestBreakGlassNoticeForPatient(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	ctx := t.Context()
	var mine, theirs int64
	if err := pe.pool.QueryRow(ctx, `INSERT INTO consent_patient_notifications (kind, break_glass_id, person_id)
		SELECT 'break-glass', id, person_id FROM consent_break_glass WHERE person_id = $1 RETURNING id`, alicePerson).Scan(&mine); err != nil {
		t.Fatal(err)
	}
	if err := pe.pool.QueryRow(ctx, `WITH b AS (INSERT INTO consent_break_glass (id, person_id, member_id, reason_code, reason_text, declared_at, expires_at)
		VALUES (gen_random_uuid(), $1, 'riverside', 'life-threatening', 'x', now(), now() + interval '1 hour') RETURNING id, person_id)
		INSERT INTO consent_patient_notifications (kind, break_glass_id, person_id) SELECT 'break-glass', id, person_id FROM b RETURNING id`,
		otherPerson).Scan(&theirs); err != nil {
		t.Fatal(err)
	}
	alice := pe.signedIn(t, "alice", "alice-pw")
	if b := alice.getPrivate(pe.base, "/privacy").body; !strings.Contains(b, "1 new notice") || !strings.Contains(b, `href="/access#notices"`) {
		t.Fatalf("no notice banner on the privacy page")
	}
	page := alice.getPrivate(pe.base, "/access")
	b := html.UnescapeString(page.body)
	if !strings.Contains(b, "St Mary's Hospital</strong> opened your record in an emergency") || !strings.Contains(b, "Patient cannot communicate consent") {
		t.Errorf("access page notice:\n%s", b)
	}
	if strings.Contains(b, "Unconscious on arrival") || strings.Contains(b, "life-threatening") {
		t.Errorf("the notice shows the clinician's own words or another person's notice")
	}
	tok := csrfFrom(t, page.body)
	mark := func(id int64) int {
		return alice.post(pe.base+"/access/notices/seen", url.Values{"_csrf": {tok}, "notice": {fmt.Sprint(id)}}, "same-origin").status
	}
	if st := mark(theirs); st != http.StatusNotFound {
		t.Errorf("marking another person's notice: %d", st)
	}
	if st := mark(mine); st != http.StatusSeeOther {
		t.Fatalf("mark read: %d", st)
	}
	if st := mark(mine); st != http.StatusNotFound {
		t.Errorf("marking it again: %d", st)
	}
	if b := alice.getPrivate(pe.base, "/access").body; strings.Contains(b, "new notice") || strings.Contains(b, `id="notices"`) {
		t.Errorf("the notice is still shown after it was read")
	}
	var unseen int
	if err := pe.pool.QueryRow(ctx, `SELECT count(*) FROM consent_patient_notifications WHERE seen_at IS NULL`).Scan(&unseen); err != nil || unseen != 1 {
		t.Errorf("unread notices %d (%v), want 1: the other person's", unseen, err)
	}
}

// TestOfficerRegistersGuardian: an officer registers a parent for a person after checking
// documents and gets an invitation link once; the parent accepts it with their own login and
// reads the person's labs as a caregiver; the patient's own caregivers page and the officer's
// list show who registered it; the officer removes the access; every step is audited; a bad
// form comes back with a sentence, and an unknown person is refused.
func TestOfficerRegistersGuardian(t *testing.T) {
	t.Parallel()
	pe := newPrivacyEnv(t, false)
	off := pe.signedIn(t, "privo", "privo-pw")
	page := off.getPrivate(pe.base, "/officer/consent?patient="+alicePerson)
	if !strings.Contains(page.body, "No one can see this person's record on their behalf.") {
		t.Fatalf("guardians section:\n%s", page.body)
	}
	tok := csrfFrom(t, page.body)
	ends := time.Now().AddDate(5, 0, 0).Format("2006-01-02") // the child's 18th birthday
	register := func(person, patientName, name, rel, evidence string) resp {
		t.Helper()
		return off.post(pe.base+"/officer/guardians", url.Values{"_csrf": {tok}, "patient": {person}, "patient_name": {patientName},
			"name": {name}, "relationship": {rel}, "evidence": {evidence}, "end_date": {ends}}, "same-origin")
	}
	for _, bad := range []struct{ person, pname, name, rel, ev, want string }{
		{alicePerson, "", "Nora Nguyen", "parent", "BC-1", "Enter the patient's name"},
		{alicePerson, "Alice Nguyen", "Nora Nguyen", "caregiver", "BC-1", "Choose parent or legal guardian."},
		{alicePerson, "Alice Nguyen", "Nora Nguyen", "parent", "", "Enter the reference of the documents"},
		{"0a11ce00-0000-4000-8000-00000000dead", "Alice Nguyen", "Nora Nguyen", "parent", "BC-1", "No such person."},
	} {
		if r := register(bad.person, bad.pname, bad.name, bad.rel, bad.ev); r.status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(r.body), bad.want) {
			t.Errorf("%+v: %d, want 400 with %q", bad, r.status, bad.want)
		}
	}
	r := register(alicePerson, "Alice Nguyen", "Nora Nguyen", "parent", "BC-2026-77")
	m := inviteURLRe.FindStringSubmatch(r.body)
	if r.status != http.StatusOK || m == nil {
		t.Fatalf("register: %d\n%s", r.status, r.body)
	}
	link := html.UnescapeString(m[1])
	if again := off.getPrivate(pe.base, "/officer/consent?patient="+alicePerson); strings.Contains(again.body, link) ||
		!strings.Contains(again.body, "documents checked: BC-2026-77") {
		t.Errorf("the officer's list shows the link again, or not the registration")
	}
	nora := newClient(t)
	pe.signIn(t, nora, "newbie", "newbie-pw")
	inv := nora.getPrivate(pe.base, strings.TrimPrefix(link, pe.base))
	if !strings.Contains(inv.body, "Alice Nguyen") {
		t.Errorf("the invitation does not name the patient")
	}
	if acc := nora.post(link, url.Values{"_csrf": {csrfFrom(t, inv.body)}}, "same-origin"); acc.status != http.StatusSeeOther {
		t.Fatalf("accept: %d", acc.status)
	}
	if labs := nora.getPrivate(pe.base, "/labs"); !strings.Contains(labs.body, "viewing <strong>Alice Nguyen</strong>") {
		t.Errorf("the guardian does not see Alice's labs")
	}
	alice := pe.signedIn(t, "alice", "alice-pw")
	if cg := alice.getPrivate(pe.base, "/caregivers"); !strings.Contains(cg.body, "Nora Nguyen") || !strings.Contains(cg.body, "Registered by a privacy officer.") {
		t.Errorf("the patient's caregivers page does not show the registered guardian")
	}
	list := off.getPrivate(pe.base, "/officer/consent?patient="+alicePerson)
	gm := regexp.MustCompile(`name="grant" value="(\d+)"`).FindStringSubmatch(list.body)
	if gm == nil {
		t.Fatalf("no grant to remove:\n%s", list.body)
	}
	if r := off.post(pe.base+"/officer/guardians/revoke", url.Values{"_csrf": {tok}, "patient": {otherPerson}, "grant": {gm[1]}}, "same-origin"); r.status != http.StatusNotFound {
		t.Errorf("removing the grant under another person: %d", r.status)
	}
	if r := off.post(pe.base+"/officer/guardians/revoke", url.Values{"_csrf": {tok}, "patient": {alicePerson}, "grant": {gm[1]}}, "same-origin"); r.status != http.StatusSeeOther {
		t.Fatalf("remove: %d", r.status)
	}
	if r := nora.get(pe.base + "/labs"); r.status == http.StatusOK {
		t.Errorf("the guardian still reads the labs after removal")
	}
	var reasons string
	if err := pe.pool.QueryRow(t.Context(), `SELECT string_agg(reason || '/' || role, ',' ORDER BY seq) FROM audit_events
		WHERE action = 'consent-change' AND token_id LIKE 'proxy/%' AND patient = $1`, alicePerson).Scan(&reasons); err != nil ||
		reasons != "proxy-registered/officer,proxy-accepted/proxy,proxy-revoked/officer" {
		t.Errorf("audited changes %q, %v", reasons, err)
	}
}
