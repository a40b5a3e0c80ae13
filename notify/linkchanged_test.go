package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/notify"
)

// linkPatient stores a named Patient of member with MRN mrn as a person of its own and
// returns the person and the Patient id.
func (e *env) linkPatient(t testing.TB, member, mrn, family string) (mpistore.PersonID, string) {
	t.Helper()
	ctx := context.Background()
	var person mpistore.PersonID
	var id string
	err := db.InTx(ctx, e.pool, func(tx db.Querier) error {
		p, err := e.fhir.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Patient","name":[{"family":"` + family +
			`","given":["Ada"]}],"birthDate":"1961-02-03","identifier":[{"system":"urn:oid:1.2.3.` + fmt.Sprint(int(member[0])) + `","value":"` + mrn + `"}]}`)),
			MemberID: member, At: time.Now()})
		if err != nil {
			return err
		}
		src, _, err := e.mpi.Upsert(ctx, tx, member, "urn:oid:1.2.3."+fmt.Sprint(int(member[0])), mrn, p.ID, map[string]string{"family": family}, "")
		person, id = src.PersonID, p.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return person, id
}

// subscribeLinks registers r for member, puts patient on member's roster and subscribes
// member to the patient-link-changed topic at r.
func (e *env) subscribeLinks(t testing.TB, member, patient string, r *receiver) string {
	t.Helper()
	id, err := e.subscribeWith(member, patient, r, notify.Subscription{Topic: notify.TopicLinkChanged, Payload: notify.PayloadIDOnly})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// linkEvent is one received link-changed notification: its raw body and its
// notification-event parts by name (identifiers by value).
type linkEvent struct {
	raw   string
	parts map[string]string
}

// linkEvents returns r's event notifications.
func (r *receiver) linkEvents(t testing.TB) []linkEvent {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []linkEvent
	for _, b := range r.bundles {
		raw, _ := json.Marshal(b)
		var n struct {
			Entry []struct {
				Resource struct {
					Parameter []struct {
						Name      string `json:"name"`
						ValueCode string `json:"valueCode"`
						Part      []struct {
							Name            string                          `json:"name"`
							ValueCode       string                          `json:"valueCode"`
							ValueString     string                          `json:"valueString"`
							ValueReference  *struct{ Reference string }     `json:"valueReference"`
							ValueIdentifier *struct{ System, Value string } `json:"valueIdentifier"`
						} `json:"part"`
					} `json:"parameter"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(raw, &n); err != nil || len(n.Entry) == 0 {
			t.Fatalf("unreadable notification %s", raw)
		}
		ev := linkEvent{raw: string(raw), parts: map[string]string{}}
		event := false
		for _, p := range n.Entry[0].Resource.Parameter {
			if p.Name == "type" && p.ValueCode == notify.TypeEvent {
				event = true
			}
			if p.Name != "notification-event" {
				continue
			}
			for _, q := range p.Part {
				switch {
				case q.ValueReference != nil:
					ev.parts[q.Name] = q.ValueReference.Reference
				case q.ValueIdentifier != nil:
					if q.ValueIdentifier.System != notify.SystemPerson {
						t.Fatalf("%s has identifier system %s", q.Name, q.ValueIdentifier.System)
					}
					ev.parts[q.Name] = q.ValueIdentifier.Value
				default:
					ev.parts[q.Name] = q.ValueCode + q.ValueString
				}
			}
		}
		if event {
			out = append(out, ev)
		}
	}
	return out
}

func (e *env) ops() *mpistore.Ops { return mpistore.NewOps(e.pool, e.log, "test") }

var steward = mpistore.Steward{Subject: "https://idp.test|steward", Org: "hie", Role: "steward", RequestID: "req-1"}

func (e *env) linkEventsSettled(t testing.TB) {
	t.Helper()
	waitFor(t, "the link event fanned out", func() bool {
		var n int
		_ = e.pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox_events WHERE topic = $1 AND delivered_at IS NULL`, mpistore.TopicLinkChanged).Scan(&n)
		return n == 0
	})
}

func TestMergeNotifiesEveryRosterMemberAboutItsOwnPatient(t *testing.T) {
	e := newEnv(t)
	ra, rb, rc := newReceiver(t, 0), newReceiver(t, 0), newReceiver(t, 0)
	d := e.dispatcher(ra.addr(), rb.addr(), rc.addr())
	keep, pa := e.linkPatient(t, "a", "mrn-a", "Quillfeather")
	lose, pb := e.linkPatient(t, "b", "mrn-b", "Quillfeather")
	_, pc := e.linkPatient(t, "c", "mrn-c", "Otherperson")
	subs := []string{e.subscribeLinks(t, "a", pa, ra), e.subscribeLinks(t, "b", pb, rb), e.subscribeLinks(t, "c", pc, rc)}
	// Member a also follows admissions: a link event must not reach that subscription.
	adm := e.subscribe(t, "a", pa, ra)
	ctx := context.Background()
	stop := d.Start(ctx)
	defer stop()
	for _, s := range append(subs, adm) {
		waitFor(t, "the handshakes", func() bool { st, _ := e.status(t, s); return st == "active" })
	}

	if _, err := e.ops().Merge(ctx, keep, lose, steward); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's and b's notifications", func() bool { return len(ra.linkEvents(t)) == 1 && len(rb.linkEvents(t)) == 1 })
	e.linkEventsSettled(t)
	stop()

	base := "https://concord.test/fhir/Patient/"
	for _, tt := range []struct {
		name          string
		r             *receiver
		focus, other  string
		before, after mpistore.PersonID
	}{
		{"kept person's member", ra, pa, pb, keep, keep},
		{"moved record's member", rb, pb, pa, lose, keep},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := tt.r.linkEvents(t)[0]
			want := map[string]string{"event-number": "1", "focus": base + tt.focus, "link-action": "merge",
				"person-before": string(tt.before), "person-after": string(tt.after), "person-retired": string(lose)}
			for k, v := range want {
				if ev.parts[k] != v {
					t.Errorf("%s = %q; want %q (%v)", k, ev.parts[k], v, ev.parts)
				}
			}
			// No PHI and nothing of another member: no name, birth date, MRN or the
			// other member's Patient id. (The birth date whole: "1961" alone turns up
			// in random hex ids, one run in a few hundred.)
			for _, leak := range []string{"Quillfeather", "Ada", "1961-02-03", "19610203", "mrn-", tt.other} {
				if strings.Contains(ev.raw, leak) {
					t.Errorf("notification carries %q: %s", leak, ev.raw)
				}
			}
		})
	}
	if got := rc.linkEvents(t); len(got) != 0 {
		t.Fatalf("member c (no roster entry on either person) got %d notifications", len(got))
	}
	var rows int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM notify_deliveries WHERE kind = 'event-notification'`).Scan(&rows); err != nil || rows != 2 {
		t.Fatalf("%d event deliveries (%v); want 2 (a's and b's link subscriptions only)", rows, err)
	}
	// Decided and audited once at fan-out and again before the (one) send, for each.
	var permits, sends int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE request_id NOT LIKE 'notify-send-%'), count(*) FILTER (WHERE request_id LIKE 'notify-send-%')
		FROM audit_events WHERE org IN ('a', 'b') AND outcome = $1 AND request_id LIKE 'notify-%'`,
		string(audit.Permit)).Scan(&permits, &sends); err != nil || permits != 2 || sends != 2 {
		t.Fatalf("%d fan-out and %d send-time permit audit events (%v); want one of each for a and b", permits, sends, err)
	}
}

func TestLinkEventDeniedByConsentReachesNobody(t *testing.T) {
	e := newEnv(t)
	ra, rb := newReceiver(t, 0), newReceiver(t, 0)
	d := e.dispatcher(ra.addr(), rb.addr())
	keep, pa := e.linkPatient(t, "a", "mrn-a", "Quillfeather")
	lose, pb := e.linkPatient(t, "b", "mrn-b", "Quillfeather")
	ctx := context.Background()
	// The kept person opts out of treatment sharing: after the merge, neither member may
	// see the other's record of the person.
	err := db.InTx(ctx, e.pool, func(tx db.Querier) error {
		_, _, err := e.consent.Save(ctx, tx, consent.Directive{ID: "optout-" + consent.DirectiveID(testkit.RandomID(6)), Version: 1, PersonID: string(keep),
			Kind: consent.KindPatient, PolicyRule: consent.OptOut, Status: consent.StatusActive, DateTime: time.Now().Add(-time.Hour),
			Provision: consent.Provision{Type: consent.Deny, Purposes: []string{consent.PurposeTreatment}}}, "test")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	subs := []string{e.subscribeLinks(t, "a", pa, ra), e.subscribeLinks(t, "b", pb, rb)}
	stop := d.Start(ctx)
	defer stop()
	for _, s := range subs {
		waitFor(t, "the handshakes", func() bool { st, _ := e.status(t, s); return st == "active" })
	}
	if _, err := e.ops().Merge(ctx, keep, lose, steward); err != nil {
		t.Fatal(err)
	}
	e.linkEventsSettled(t)
	stop()
	if n, m := len(ra.linkEvents(t)), len(rb.linkEvents(t)); n != 0 || m != 0 {
		t.Fatalf("a got %d, b got %d notifications; want none (deny looks like absent)", n, m)
	}
	var denials int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE org IN ('a', 'b') AND outcome = $1 AND request_id LIKE 'notify-%' AND patient = $2`,
		string(audit.Deny), string(keep)).Scan(&denials); err != nil || denials != 2 {
		t.Fatalf("%d denial audit events (%v); want one each for a and b", denials, err)
	}
	if _, n := e.status(t, subs[0]); n != 0 {
		t.Fatalf("events-since-subscription-start = %d; a denied event must not be numbered", n)
	}
}

func TestLinkChangedTopicIsServedWithoutFilters(t *testing.T) {
	found := false
	for _, tp := range notify.Topics() {
		found = found || tp == notify.TopicLinkChanged
	}
	if !found {
		t.Fatalf("Topics() = %v; want %s listed", notify.Topics(), notify.TopicLinkChanged)
	}
	body := func(crit string) []byte {
		return []byte(`{"resourceType":"Subscription","status":"requested","reason":"r","criteria":"` + notify.TopicLinkChanged + `"` + crit +
			`,"channel":{"type":"rest-hook","endpoint":"https://ehr.example.org/hook"}}`)
	}
	if s, err := notify.ParseSubscription(body("")); err != nil || s.Topic != notify.TopicLinkChanged {
		t.Fatalf("link topic: %+v %v", s, err)
	}
	if _, err := notify.ParseSubscription(body(`,"_criteria":{"extension":[{"url":"` + notify.ExtFilterCriteria + `","valueString":"Encounter?class=IMP"}]}`)); err == nil {
		t.Fatal("accepted a filter on the link topic")
	}
}

// An HL7 merge of two of member a's records retires one in the MPI: a hears about its
// retired Patient (person before, and the retired person after), b (whose Patient shares
// the survivor's person) about its own Patient, whose person stays.
func TestSourceRetiredNotifiesOwnerAndPersonMembers(t *testing.T) {
	e := newEnv(t)
	ra, rb := newReceiver(t, 0), newReceiver(t, 0)
	d := e.dispatcher(ra.addr(), rb.addr())
	person, a1 := e.linkPatient(t, "a", "mrn-a1", "Quillfeather")
	ctx := context.Background()
	ids := map[string]int64{}
	var a2, b1 string
	err := db.InTx(ctx, e.pool, func(tx db.Querier) error {
		for _, x := range []struct{ member, mrn string }{{"a", "mrn-a2"}, {"b", "mrn-b1"}} {
			p, err := e.fhir.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Patient"}`)), MemberID: x.member, At: time.Now()})
			if err != nil {
				return err
			}
			src, _, err := e.mpi.Upsert(ctx, tx, x.member, "urn:oid:1.2.3."+fmt.Sprint(int(x.member[0])), x.mrn, p.ID, map[string]string{}, person)
			if err != nil {
				return err
			}
			ids[x.mrn] = src.ID
			if x.member == "a" {
				a2 = p.ID
			} else {
				b1 = p.ID
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	subs := []string{e.subscribeLinks(t, "a", a1, ra), e.subscribeLinks(t, "b", b1, rb)}
	stop := d.Start(ctx)
	defer stop()
	for _, s := range subs {
		waitFor(t, "the handshakes", func() bool { st, _ := e.status(t, s); return st == "active" })
	}
	a1src, err := e.mpi.SourceByPatient(ctx, nil, a1)
	if err != nil {
		t.Fatal(err)
	}
	var c mpistore.Change
	err = db.InTx(ctx, e.pool, func(tx db.Querier) error {
		c, err = e.ops().RetireSource(ctx, tx, ids["mrn-a2"], a1src.ID, mpistore.Steward{Subject: "hl7v2|a", Org: "a", Client: "hl7v2"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's and b's notifications", func() bool { return len(ra.linkEvents(t)) == 1 && len(rb.linkEvents(t)) == 1 })
	stop()
	base := "https://concord.test/fhir/Patient/"
	got := map[string]map[string]string{"a": ra.linkEvents(t)[0].parts, "b": rb.linkEvents(t)[0].parts}
	want := map[string]map[string]string{
		"a": {"focus": base + a2, "link-action": "source-retired", "person-before": string(person), "person-after": c.Moved[0].To},
		"b": {"focus": base + b1, "link-action": "source-retired", "person-before": string(person), "person-after": string(person)},
	}
	for m, w := range want {
		for k, v := range w {
			if got[m][k] != v {
				t.Errorf("%s: %s = %q; want %q", m, k, got[m][k], v)
			}
		}
	}
	if strings.Contains(rb.linkEvents(t)[0].raw, a2) || strings.Contains(rb.linkEvents(t)[0].raw, a1) {
		t.Error("b's notification names a's Patients")
	}
}
