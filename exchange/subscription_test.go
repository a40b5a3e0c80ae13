package exchange

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/httpx"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/notify"
	"github.com/concord-hie/concord/records"
)

// hookReceiver records the notification Bundles a member's rest-hook endpoint receives.
type hookReceiver struct {
	mu     sync.Mutex
	bodies []string
	srv    *httptest.Server
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, string(b))
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.bodies...)
}

// notifyEnv is an exchange with notifications: person P has Patient pa at member a and
// pb at member b, and consents to treatment sharing (regional default).
type notifyEnv struct {
	e          *echo.Echo
	pool       *pgxpool.Pool
	ns         *notify.Store
	d          *notify.Dispatcher
	hook       *hookReceiver
	pa, pb, pc string
	dirs       personDirs // the directives records decides with; tests may change them
}

func newNotifyEnv(t *testing.T) *notifyEnv {
	t.Helper()
	pool := testkit.DB(t)
	ctx := context.Background()
	insertMembers(t, pool, "a", "b")
	fs := store.New(pool)
	ms, matcher := newMatcher(t, pool)
	env := &notifyEnv{pool: pool, hook: newHookReceiver(t)}
	var person mpistore.PersonID
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		for _, x := range []struct {
			member, mrn string
			id          *string
			link        bool
		}{{"a", "m1", &env.pa, true}, {"b", "m2", &env.pb, true}, {"b", "m3", &env.pc, false}} {
			sys := "urn:oid:1.2.3." + fmt.Sprint(int(x.member[0]))
			st, err := fs.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Patient","identifier":[{"system":"` + sys + `","value":"` + x.mrn + `"}]}`)),
				MemberID: x.member, At: time.Now()})
			if err != nil {
				return err
			}
			p := person
			if !x.link {
				p = ""
			}
			src, _, err := ms.Upsert(ctx, tx, x.member, sys, x.mrn, st.ID, map[string]string{}, p)
			if err != nil {
				return err
			}
			if x.link {
				person = src.PersonID
			}
			*x.id = st.ID
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(ctx, pool, audit.Config{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	env.dirs = personDirs{string(person): consent.DefaultPolicies(consent.PolicyConfig{})}
	rec := records.New(fs, ms, env.dirs, log, nil)
	dir := directory.NewStore(pool)
	toks := newTokens(t, dir, tokenKey, searchBase+"/fhir", searchBase+"/token", time.Hour)
	allow := []netip.AddrPort{netip.MustParseAddrPort(env.hook.srv.Listener.Addr().String())}
	env.ns = notify.NewStore(allow)
	env.d = notify.NewDispatcher(pool, env.ns, ms, rec, notify.NewClient(notify.ClientConfig{Allow: allow}),
		notify.DispatcherConfig{FHIRBase: searchBase + "/fhir", BaseBackoff: 10 * time.Millisecond}, nil)
	srv := New(Config{BaseURL: searchBase, MaxBodyBytes: 1 << 20}, Deps{Pool: pool, Directory: dir, Tokens: toks, FHIR: fs, MPI: ms,
		Matcher: matcher, Records: rec, Notify: env.ns, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	env.e = mountExchange(srv, httpx.RequestID())
	return env
}

func (env *notifyEnv) do(t *testing.T, member, method, path, body string) (int, string) {
	t.Helper()
	return env.doScoped(t, member, "system/*.cruds", method, path, body)
}

// doScoped is do with a token for scope.
func (env *notifyEnv) doScoped(t *testing.T, member, scope, method, path, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	req.Header.Set("Authorization", "Bearer "+token(t, "client-"+member, member, scope))
	rec := httptest.NewRecorder()
	env.e.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func subscriptionBody(endpoint, topic, filter string) string {
	crit := ""
	if filter != "" {
		crit = `,"_criteria":{"extension":[{"url":"` + notify.ExtFilterCriteria + `","valueString":"` + filter + `"}]}`
	}
	return `{"resourceType":"Subscription","status":"requested","reason":"ADT alerts","criteria":"` + topic + `"` + crit +
		`,"channel":{"type":"rest-hook","endpoint":"` + endpoint + `","payload":"application/fhir+json","header":["Authorization: Bearer hook-secret"]}}`
}

func TestRosterAndSubscriptionOverFHIR(t *testing.T) {
	env := newNotifyEnv(t)
	ctx := context.Background()
	hook := env.hook.srv.URL

	// Rosters hold only the member's own Patients, of type person.
	if code, body := env.do(t, "b", "POST", "/fhir/Group", `{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+env.pa+`"}}]}`); code != http.StatusBadRequest {
		t.Fatalf("roster with another member's Patient: %d %s", code, body)
	}
	if code, _ := env.do(t, "b", "POST", "/fhir/Group", `{"resourceType":"Group","type":"device","actual":true}`); code != http.StatusBadRequest {
		t.Fatalf("roster of devices: %d", code)
	}
	code, body := env.do(t, "b", "POST", "/fhir/Group", `{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+env.pb+`"}}]}`)
	if code != http.StatusCreated {
		t.Fatalf("roster: %d %s", code, body)
	}
	var roster struct{ ID string }
	_ = json.Unmarshal([]byte(body), &roster)
	var person string
	if err := env.pool.QueryRow(ctx, `SELECT person_id::text FROM mpi_source_records WHERE patient_id = $1`, env.pa).Scan(&person); err != nil {
		t.Fatal(err)
	}
	entries, err := env.ns.RostersWithPerson(ctx, env.pool, mpistore.PersonID(person))
	if err != nil || len(entries) != 1 || entries[0].MemberID != "b" || entries[0].PatientID != env.pb {
		t.Fatalf("members with the person on a roster: %+v, %v; want b through %s", entries, err, env.pb)
	}

	// Only endpoints at an origin registered to the member, compared exactly.
	if err := env.ns.RegisterEndpoint(ctx, env.pool, "b", hook); err != nil {
		t.Fatal(err)
	}
	u := env.hook.srv.Listener.Addr().String()
	host, port, _ := strings.Cut(u, ":")
	for _, ep := range []string{"https://ehr.example.org/hook", "https://" + u + "/hook", "http://" + host + ":1" + port + "/hook",
		"http://localhost:" + port + "/hook", "http://" + u + ".evil.example/hook"} {
		if code, body := env.do(t, "b", "POST", "/fhir/Subscription", subscriptionBody(ep, notify.TopicAdmission, "")); code != http.StatusBadRequest {
			t.Fatalf("endpoint %s: %d %s; want 400", ep, code, body)
		}
	}
	if code, _ := env.do(t, "a", "POST", "/fhir/Subscription", subscriptionBody(hook+"/hook", notify.TopicAdmission, "")); code != http.StatusBadRequest {
		t.Fatalf("member a used b's endpoint: %d", code)
	}
	if code, _ := env.do(t, "b", "POST", "/fhir/Subscription", subscriptionBody(hook+"/hook", "http://example.org/unknown-topic", "")); code != http.StatusBadRequest {
		t.Fatalf("unknown topic: %d", code)
	}
	code, body = env.do(t, "b", "POST", "/fhir/Subscription", subscriptionBody(hook+"/hook", notify.TopicAdmission, "Encounter?class=IMP,EMER"))
	if code != http.StatusCreated || strings.Contains(body, "hook-secret") {
		t.Fatalf("subscription: %d %s", code, body)
	}
	var sub struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	_ = json.Unmarshal([]byte(body), &sub)
	if sub.Status != "requested" {
		t.Fatalf("new subscription status %q; want requested", sub.Status)
	}
	var created int
	if err := env.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = 'create' AND resources = ARRAY['Subscription/' || $1]`, sub.ID).Scan(&created); err != nil || created != 1 {
		t.Fatalf("%d create events for the subscription (%v); want 1", created, err)
	}
	if code, _ := env.do(t, "a", "GET", "/fhir/Subscription/"+sub.ID, ""); code != http.StatusNotFound {
		t.Fatalf("another member's subscription: %d; want 404", code)
	}

	// The handshake activates it.
	if _, err := env.d.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := env.hook.received(); len(got) != 1 || !strings.Contains(got[0], `"valueCode":"handshake"`) {
		t.Fatalf("receiver got %v; want one handshake", got)
	}
	if _, body := env.do(t, "b", "GET", "/fhir/Subscription/"+sub.ID, ""); !strings.Contains(body, `"status":"active"`) {
		t.Fatalf("after handshake: %s", body)
	}

	// Member a admits the person over FHIR; an ambulatory visit does not pass b's filter.
	enc := func(class string) string {
		code, body := env.do(t, "a", "POST", "/fhir/Encounter", `{"resourceType":"Encounter","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"`+class+`"},"subject":{"reference":"Patient/`+env.pa+`"}}`)
		if code != http.StatusCreated {
			t.Fatalf("Encounter: %d %s", code, body)
		}
		var r struct{ ID string }
		_ = json.Unmarshal([]byte(body), &r)
		return r.ID
	}
	enc("AMB")
	inpatient := enc("IMP")
	for range 3 {
		if _, err := env.d.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := env.hook.received()
	if len(got) != 2 || !strings.Contains(got[1], `"reference":"`+searchBase+`/fhir/Encounter/`+inpatient+`"`) ||
		!strings.Contains(got[1], `"name":"events-since-subscription-start","valueString":"1"`) || strings.Contains(got[1], `"resourceType":"Encounter"`) {
		t.Fatalf("receiver got %d notifications, last %s; want the inpatient admission, id-only, as event 1", len(got), got[len(got)-1])
	}

	// $status and $events.
	if code, body := env.do(t, "b", "GET", "/fhir/Subscription/"+sub.ID+"/$status", ""); code != http.StatusOK ||
		!strings.Contains(body, `"valueString":"1"`) || !strings.Contains(body, `"valueCode":"query-status"`) {
		t.Fatalf("$status: %d %s", code, body)
	}
	if code, body := env.do(t, "b", "GET", "/fhir/Subscription/"+sub.ID+"/$events?eventsSinceNumber=1", ""); code != http.StatusOK ||
		!strings.Contains(body, "/Encounter/"+inpatient) {
		t.Fatalf("$events: %d %s", code, body)
	}
	if code, body := env.do(t, "b", "GET", "/fhir/Subscription", ""); code != http.StatusOK || !strings.Contains(body, `"total":1`) {
		t.Fatalf("search: %d %s", code, body)
	}

	// Delete: only the owner; then nothing more is sent.
	if code, _ := env.do(t, "a", "DELETE", "/fhir/Subscription/"+sub.ID, ""); code != http.StatusNotFound {
		t.Fatalf("delete by another member: %d", code)
	}
	if code, _ := env.do(t, "b", "DELETE", "/fhir/Subscription/"+sub.ID, ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	var deleted int
	if err := env.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = 'delete' AND resources = ARRAY['Subscription/' || $1]`, sub.ID).Scan(&deleted); err != nil || deleted != 1 {
		t.Fatalf("%d delete events for the subscription (%v); want 1 (a refused delete writes none)", deleted, err)
	}
	enc("IMP")
	if _, err := env.d.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(env.hook.received()); n != 2 {
		t.Fatalf("%d notifications after delete; want still 2", n)
	}

	// Deleting the roster Group takes the person off b's roster.
	if code, body := env.do(t, "b", "DELETE", "/fhir/Group/"+roster.ID, ""); code/100 != 2 {
		t.Fatalf("delete roster: %d %s", code, body)
	}
	if entries, err := env.ns.RostersWithPerson(ctx, env.pool, mpistore.PersonID(person)); err != nil || len(entries) != 0 {
		t.Fatalf("after deleting the Group: %+v, %v; want no roster", entries, err)
	}
}
