package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/notify"
	"github.com/concord-hie/concord/records"
)

// receiver is a member's rest-hook endpoint. It fails the first failFirst event
// notifications with 500 and records every request it is sent, deduplicating by event
// number as the Backport asks receivers to.
type receiver struct {
	mu         sync.Mutex
	failFirst  int
	block      chan struct{} // when set, event notifications wait on it (a hung receiver)
	handshakes int
	posts      int                // event notifications received, failures included
	events     map[int64][]string // accepted event number → focus references
	auth       []string           // Authorization headers seen
	bundles    []map[string]any   // raw notifications, for shape checks
	srv        *httptest.Server
}

type param struct {
	Name           string `json:"name"`
	ValueString    string `json:"valueString"`
	ValueCode      string `json:"valueCode"`
	ValueReference *struct {
		Reference string `json:"reference"`
	} `json:"valueReference"`
	Part []param `json:"part"`
}

type notification struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Entry        []struct {
		FullURL  string `json:"fullUrl"`
		Resource *struct {
			ResourceType string  `json:"resourceType"`
			Parameter    []param `json:"parameter"`
		} `json:"resource"`
	} `json:"entry"`
}

func newReceiver(t testing.TB, failFirst int) *receiver {
	r := &receiver{failFirst: failFirst, events: map[int64][]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var n notification
		if err := json.Unmarshal(b, &n); err != nil || n.ResourceType != "Bundle" || n.Type != "history" || len(n.Entry) == 0 ||
			n.Entry[0].Resource == nil || n.Entry[0].Resource.ResourceType != "Parameters" {
			t.Errorf("receiver: not a Backport notification Bundle: %s", b)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var typ string
		var nums []int64
		var focus []string
		for _, p := range n.Entry[0].Resource.Parameter {
			switch p.Name {
			case "type":
				typ = p.ValueCode
			case "notification-event":
				for _, q := range p.Part {
					if q.Name == "event-number" {
						var k int64
						fmt.Sscan(q.ValueString, &k)
						nums = append(nums, k)
					}
					if q.Name == "focus" && q.ValueReference != nil {
						focus = append(focus, q.ValueReference.Reference)
					}
				}
			}
		}
		if typ == notify.TypeEvent && r.block != nil {
			<-r.block
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		var raw map[string]any
		_ = json.Unmarshal(b, &raw)
		r.bundles = append(r.bundles, raw)
		switch typ {
		case notify.TypeHandshake:
			r.handshakes++
		case notify.TypeEvent:
			r.posts++
			if r.posts <= r.failFirst {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			for i, k := range nums {
				f := ""
				if i < len(focus) {
					f = focus[i]
				}
				r.events[k] = append(r.events[k], f)
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) addr() netip.AddrPort {
	return netip.MustParseAddrPort(r.srv.Listener.Addr().String())
}

func (r *receiver) snapshot() (handshakes, posts int, events map[int64][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := map[int64][]string{}
	for k, v := range r.events {
		ev[k] = append([]string(nil), v...)
	}
	return r.handshakes, r.posts, ev
}

type env struct {
	pool    *pgxpool.Pool
	fhir    *store.Store
	mpi     *mpistore.Store
	notify  *notify.Store
	rec     *records.Service
	consent *consent.Store
	log     *audit.Log
}

func newEnv(t testing.TB) *env {
	t.Helper()
	pool := testkit.DB(t)
	ctx := context.Background()
	for _, m := range []string{"a", "b", "c"} {
		if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ($1, $1, 'urn:oid:1.2.3.' || ascii($1))`, m); err != nil {
			t.Fatal(err)
		}
	}
	cs := consent.NewStore()
	if _, err := records.EnsureDefaultPolicies(ctx, pool, cs, consent.PolicyConfig{}); err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(ctx, pool, audit.Config{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	e := &env{pool: pool, fhir: store.New(pool), mpi: mpistore.New(pool), consent: cs, log: log}
	e.rec = records.New(e.fhir, e.mpi, records.NewStoreDirectives(pool, cs, time.Second, nil), log, nil)
	return e
}

// person makes one person known to members a and b (one Patient each) and returns the
// person and the two Patient ids.
func (e *env) person(t testing.TB, mrn string) (person mpistore.PersonID, pa, pb string) {
	t.Helper()
	ctx := context.Background()
	err := db.InTx(ctx, e.pool, func(tx db.Querier) error {
		person = ""
		for i, m := range []string{"a", "b"} {
			p, err := e.fhir.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Patient"}`)), MemberID: m, At: time.Now()})
			if err != nil {
				return err
			}
			src, _, err := e.mpi.Upsert(ctx, tx, m, "urn:oid:1.2.3."+fmt.Sprint(97+i), mrn, p.ID, map[string]string{}, person)
			if err != nil {
				return err
			}
			person = src.PersonID
			if m == "a" {
				pa = p.ID
			} else {
				pb = p.ID
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return person, pa, pb
}

// admit stores an in-progress Encounter of member a for Patient pa and enqueues its event
// in the same transaction, as the exchange's Ingest does.
func (e *env) admit(t testing.TB, pa string) string {
	t.Helper()
	ctx := context.Background()
	var id string
	err := db.InTx(ctx, e.pool, func(tx db.Querier) error {
		st, err := e.fhir.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Encounter","status":"in-progress",` +
			`"class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},"subject":{"reference":"Patient/` + pa + `"}}`)),
			MemberID: "a", PatientID: pa, At: time.Now()})
		if err != nil {
			return err
		}
		id = st.ID
		return notify.EnqueueStored(ctx, tx, st)
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// subscribe registers r's origin for member, puts pb on member's roster and subscribes
// member to admissions at r with a bearer header.
func (e *env) subscribe(t testing.TB, member, pb string, r *receiver) string {
	t.Helper()
	id, err := e.subscribeWith(member, pb, r, notify.Subscription{Topic: notify.TopicAdmission,
		Payload: notify.PayloadIDOnly, Headers: []string{"Authorization: Bearer receiver-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// subscribeWith registers r for member, puts patient on member's roster and stores sub
// (its topic, payload, headers and end) as a new Subscription of member's delivering to
// r's /hook, all in one transaction; it returns the Subscription's id.
func (e *env) subscribeWith(member, patient string, r *receiver, sub notify.Subscription) (string, error) {
	ctx := context.Background()
	sub.ID, sub.MemberID, sub.Endpoint = "sub-"+testkit.RandomID(6), member, r.srv.URL+"/hook"
	err := db.InTx(ctx, e.pool, func(tx db.Querier) error {
		if err := e.notify.RegisterEndpoint(ctx, tx, member, r.srv.URL); err != nil {
			return err
		}
		if err := e.roster(ctx, tx, member, patient); err != nil {
			return err
		}
		_, err := e.notify.CreateSubscription(ctx, tx, sub)
		return err
	})
	return sub.ID, err
}

// roster stores member's roster Group of its Patients, as POST [base]/Group does.
func (e *env) roster(ctx context.Context, tx db.Querier, member string, patients ...string) error {
	g, err := e.fhir.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Group","type":"person","actual":true}`)), MemberID: member, At: time.Now()})
	if err != nil {
		return err
	}
	return e.notify.PutRoster(ctx, tx, member, g.ID, patients)
}

func (e *env) dispatcher(allow ...netip.AddrPort) *notify.Dispatcher {
	e.notify = notify.NewStore(allow)
	client := notify.NewClient(notify.ClientConfig{Allow: allow, Timeout: 2 * time.Second})
	return notify.NewDispatcher(e.pool, e.notify, e.mpi, e.rec, client, notify.DispatcherConfig{
		FHIRBase: "https://concord.test/fhir", Interval: 20 * time.Millisecond, BaseBackoff: 20 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond, Lease: time.Second}, nil)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) status(t testing.TB, sub string) (string, int64) {
	var s string
	var n int64
	if err := e.pool.QueryRow(context.Background(), `SELECT status, events FROM notify_subscriptions WHERE id = $1`, sub).Scan(&s, &n); err != nil {
		t.Fatal(err)
	}
	return s, n
}

func TestEncounterReachesRosterMemberOncePerEventNumber(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, 2) // the receiver fails the first two event notifications
	d := e.dispatcher(r.addr())
	_, pa, pb := e.person(t, "mrn-1")
	sub := e.subscribe(t, "b", pb, r)
	stop := d.Start(context.Background())
	defer stop()
	waitFor(t, "the handshake", func() bool { s, _ := e.status(t, sub); return s == "active" })

	enc1 := e.admit(t, pa)
	enc2 := e.admit(t, pa)
	waitFor(t, "two events", func() bool { _, _, ev := r.snapshot(); return len(ev) == 2 })
	stop()
	hs, posts, ev := r.snapshot()
	if hs != 1 {
		t.Fatalf("%d handshakes; want 1", hs)
	}
	if posts != 4 {
		t.Fatalf("%d event POSTs; want 4 (two failures, then each event once)", posts)
	}
	want := map[int64]string{}
	for n, f := range ev {
		if len(f) != 1 {
			t.Fatalf("event %d accepted %d times; want once", n, len(f))
		}
		want[n] = f[0]
	}
	got := map[string]bool{want[1]: true, want[2]: true}
	if !got["https://concord.test/fhir/Encounter/"+enc1] || !got["https://concord.test/fhir/Encounter/"+enc2] {
		t.Fatalf("events 1 and 2 name %v; want Encounter/%s and Encounter/%s", want, enc1, enc2)
	}
	if _, n := e.status(t, sub); n != 2 {
		t.Fatalf("events-since-subscription-start = %d; want 2", n)
	}
	for _, a := range r.auth {
		if a != "Bearer receiver-secret" {
			t.Fatalf("channel.header not sent: Authorization %q", a)
		}
	}
	// Member a sent the Encounter but has no subscription; member c has no roster:
	// exactly one subscription's deliveries exist.
	var rows int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM notify_deliveries WHERE kind = 'event-notification'`).Scan(&rows); err != nil || rows != 2 {
		t.Fatalf("%d event deliveries (%v); want 2", rows, err)
	}
	// The disclosure to b was decided and audited for b once per event at fan-out, and
	// again before each of the four attempts.
	var permits, sends int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE request_id NOT LIKE 'notify-send-%'), count(*) FILTER (WHERE request_id LIKE 'notify-send-%')
		FROM audit_events WHERE org = 'b' AND outcome = $1 AND request_id LIKE 'notify-%'`,
		string(audit.Permit)).Scan(&permits, &sends); err != nil || permits != 2 || sends != 4 {
		t.Fatalf("%d fan-out and %d send-time permit audit events for b (%v); want 2 and 4", permits, sends, err)
	}
}

func TestDeniedRecipientGetsNothingAndDenialIsAudited(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, 0)
	d := e.dispatcher(r.addr())
	denied, paDenied, pbDenied := e.person(t, "mrn-deny")
	_, paOK, pbOK := e.person(t, "mrn-ok")
	ctx := context.Background()
	// The first patient opts out of treatment sharing.
	err := db.InTx(ctx, e.pool, func(tx db.Querier) error {
		_, _, err := e.consent.Save(ctx, tx, consent.Directive{ID: "optout-" + consent.DirectiveID(testkit.RandomID(6)), Version: 1, PersonID: string(denied),
			Kind: consent.KindPatient, PolicyRule: consent.OptOut, Status: consent.StatusActive, DateTime: time.Now().Add(-time.Hour),
			Provision: consent.Provision{Type: consent.Deny, Purposes: []string{consent.PurposeTreatment}}}, "test")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sub := e.subscribe(t, "b", pbDenied, r)
	if err := e.roster(ctx, e.pool, "b", pbOK); err != nil {
		t.Fatal(err)
	}
	stop := d.Start(ctx)
	defer stop()
	waitFor(t, "the handshake", func() bool { s, _ := e.status(t, sub); return s == "active" })
	deniedEnc := e.admit(t, paDenied)
	okEnc := e.admit(t, paOK) // proves the pipeline runs: this one arrives
	waitFor(t, "the permitted event", func() bool { _, _, ev := r.snapshot(); return len(ev) == 1 })
	waitFor(t, "both outbox events settled", func() bool {
		var n int
		_ = e.pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events WHERE delivered_at IS NULL`).Scan(&n)
		return n == 0
	})
	stop()
	_, _, ev := r.snapshot()
	if f := ev[1]; len(f) != 1 || f[0] != "https://concord.test/fhir/Encounter/"+okEnc {
		t.Fatalf("event 1 = %v; want only the consented Encounter %s (numbers have no gap for the denied one)", ev, okEnc)
	}
	if len(ev) != 1 {
		t.Fatalf("receiver got %d events; want 1", len(ev))
	}
	var outcome, reason, resources string
	err = e.pool.QueryRow(ctx, `SELECT outcome, reason, array_to_string(resources, ',') FROM audit_events WHERE org = 'b' AND patient = $1 AND request_id LIKE 'notify-%'`,
		string(denied)).Scan(&outcome, &reason, &resources)
	if err != nil {
		t.Fatalf("no audit event for the denied notification: %v", err)
	}
	if outcome != string(audit.Deny) || resources != "Encounter/"+deniedEnc {
		t.Fatalf("audit = %s %s %s; want a denial of Encounter/%s", outcome, reason, resources, deniedEnc)
	}
}

func TestCrashBeforeAndDuringDeliveryStillDelivers(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, 0)
	d := e.dispatcher(r.addr())
	_, pa, pb := e.person(t, "mrn-crash")
	sub := e.subscribe(t, "b", pb, r)
	ctx := context.Background()
	stop := d.Start(ctx)
	waitFor(t, "the handshake", func() bool { s, _ := e.status(t, sub); return s == "active" })
	stop()

	// Committed while no dispatcher runs (a crash between commit and delivery).
	enc := e.admit(t, pa)
	// A dispatcher that dies while the receiver holds the request: its claim is never
	// settled.
	r.block = make(chan struct{})
	dctx, cancel := context.WithCancel(ctx)
	stop = d.Start(dctx)
	waitFor(t, "a claimed delivery", func() bool {
		var n int
		_ = e.pool.QueryRow(ctx, `SELECT count(*) FROM notify_deliveries WHERE kind = 'event-notification' AND attempts > 0`).Scan(&n)
		return n == 1
	})
	cancel()
	stop()
	close(r.block)
	var delivered bool
	if err := e.pool.QueryRow(ctx, `SELECT delivered_at IS NOT NULL FROM notify_deliveries WHERE kind = 'event-notification'`).Scan(&delivered); err != nil || delivered {
		t.Fatalf("delivered = %v (%v); the crashed attempt must not count", delivered, err)
	}
	// A new dispatcher (a restart) sends it again once the lease runs out.
	d2 := e.dispatcher(r.addr())
	stop = d2.Start(ctx)
	defer stop()
	waitFor(t, "delivery after restart", func() bool {
		_ = e.pool.QueryRow(ctx, `SELECT delivered_at IS NOT NULL FROM notify_deliveries WHERE kind = 'event-notification'`).Scan(&delivered)
		return delivered
	})
	stop()
	_, _, ev := r.snapshot()
	if f := ev[1]; len(f) == 0 || f[0] != "https://concord.test/fhir/Encounter/"+enc {
		t.Fatalf("event 1 = %v; want Encounter/%s at least once", ev, enc)
	}
	if len(ev) != 1 {
		t.Fatalf("%d distinct event numbers; want 1 (receivers dedupe by number)", len(ev))
	}
}

func TestLoopbackReceiverRefusedWithoutAllowlist(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, 0)
	e.dispatcher(r.addr()) // registration happens while the allowlist admits the receiver
	_, _, pb := e.person(t, "mrn-ssrf")
	sub := e.subscribe(t, "b", pb, r)
	d := e.dispatcher() // no allowlist: 127.0.0.1 is refused at send time
	stop := d.Start(context.Background())
	time.Sleep(300 * time.Millisecond)
	stop()
	hs, _, _ := r.snapshot()
	var attempts int
	if err := e.pool.QueryRow(context.Background(), `SELECT attempts FROM notify_deliveries WHERE subscription_id = $1`, sub).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	// The handshake was tried and refused every time, so the subscription never became
	// active (after MaxHandshakeAttempts it is error).
	if s, _ := e.status(t, sub); hs != 0 || attempts == 0 || s == "active" {
		t.Fatalf("handshakes %d, attempts %d, status %s; want 0 received, >0 tried, not active", hs, attempts, s)
	}
}
