package notify_test

import (
	"context"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
)

// withdraw saves person's opt-out of treatment sharing, as the portal's revoke does.
func (e *env) withdraw(t testing.TB, person mpistore.PersonID) {
	t.Helper()
	ctx := context.Background()
	err := db.InTx(ctx, e.pool, func(tx db.Querier) error {
		_, _, err := e.consent.Save(ctx, tx, consent.Directive{ID: "optout-" + consent.DirectiveID(testkit.RandomID(6)), Version: 1, PersonID: string(person),
			Kind: consent.KindPatient, PolicyRule: consent.OptOut, Status: consent.StatusActive, DateTime: time.Now().Add(-time.Minute),
			Provision: consent.Provision{Type: consent.Deny, Purposes: []string{consent.PurposeTreatment}}}, "test")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// failedFirstAttempt subscribes b to admissions at a receiver that fails the first event
// notification, admits person's Patient at a and stops the dispatcher once that attempt
// has failed: the notification is numbered (consent permitted it at fan-out) and waits
// for its retry. It returns the receiver and the subscription.
func (e *env) failedFirstAttempt(t *testing.T, mrn string) (r *receiver, sub string, person mpistore.PersonID) {
	t.Helper()
	r = newReceiver(t, 1)
	d := e.dispatcher(r.addr())
	person, pa, pb := e.person(t, mrn)
	sub = e.subscribe(t, "b", pb, r)
	stop := d.Start(context.Background())
	defer stop()
	waitFor(t, "the handshake", func() bool { s, _ := e.status(t, sub); return s == "active" })
	e.admit(t, pa)
	waitFor(t, "the first (failed) attempt", func() bool { _, posts, _ := r.snapshot(); return posts >= 1 })
	return r, sub, person
}

// assertWithheld checks that the receiver got no event after the failed first attempt,
// and that the delivery was settled without anything that names the patient, its number
// kept (events-since-subscription-start still counts it).
func (e *env) assertWithheld(t *testing.T, r *receiver, sub string) {
	t.Helper()
	if _, posts, ev := r.snapshot(); posts != 1 || len(ev) != 0 {
		t.Fatalf("receiver got %d event POSTs, accepted %v; want only the failed first attempt", posts, ev)
	}
	var delivered bool
	var focus string
	var context []byte
	if err := e.pool.QueryRow(t.Context(), `SELECT delivered_at IS NOT NULL, focus, context FROM notify_deliveries
		WHERE subscription_id = $1 AND kind = 'event-notification'`, sub).Scan(&delivered, &focus, &context); err != nil {
		t.Fatal(err)
	}
	if !delivered || focus != "" || context != nil {
		t.Fatalf("delivery settled %v, focus %q, context %s; want settled with neither", delivered, focus, context)
	}
	if _, n := e.status(t, sub); n != 1 {
		t.Fatalf("events-since-subscription-start = %d; want 1 (the withheld event keeps its number)", n)
	}
}

// A notification numbered while consent permitted it, whose first attempt failed, must not
// be sent after the patient withdraws consent (security.md S5: nothing after the revoke
// ack contains the patient). Every attempt decides again, as the member, through records,
// and a denial is audited; the delivery is settled without its focus.
func TestRetryAfterConsentWithdrawnSendsNothing(t *testing.T) {
	e := newEnv(t)
	r, sub, person := e.failedFirstAttempt(t, "mrn-withdraw")
	e.withdraw(t, person)

	d := e.dispatcher(r.addr())
	stop := d.Start(t.Context())
	waitFor(t, "the retry", func() bool {
		var settled bool
		_ = e.pool.QueryRow(t.Context(), `SELECT delivered_at IS NOT NULL FROM notify_deliveries WHERE subscription_id = $1 AND kind = 'event-notification'`, sub).Scan(&settled)
		return settled
	})
	time.Sleep(300 * time.Millisecond) // several backoff periods (MaxBackoff 100 ms): nothing more goes out
	stop()
	e.assertWithheld(t, r, sub)
	var denials int
	if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE org = 'b' AND patient = $1 AND outcome = $2 AND request_id LIKE 'notify-send-%'`,
		string(person), string(audit.Deny)).Scan(&denials); err != nil || denials != 1 {
		t.Fatalf("%d send-time denials audited for b (%v); want 1", denials, err)
	}
}

// A notification whose patient the member took off its roster after fan-out is not sent
// on retry either: the roster is what made the member a recipient (42 CFR 482.24(d)
// attribution), and it is checked again before every attempt.
func TestRetryAfterRosterRemovalSendsNothing(t *testing.T) {
	e := newEnv(t)
	r, sub, _ := e.failedFirstAttempt(t, "mrn-unroster")
	var group string
	if err := e.pool.QueryRow(t.Context(), `SELECT group_id FROM notify_roster_entries WHERE member_id = 'b'`).Scan(&group); err != nil {
		t.Fatal(err)
	}
	if err := e.notify.PutRoster(t.Context(), e.pool, "b", group, nil); err != nil {
		t.Fatal(err)
	}

	d := e.dispatcher(r.addr())
	stop := d.Start(t.Context())
	waitFor(t, "the retry", func() bool {
		var settled bool
		_ = e.pool.QueryRow(t.Context(), `SELECT delivered_at IS NOT NULL FROM notify_deliveries WHERE subscription_id = $1 AND kind = 'event-notification'`, sub).Scan(&settled)
		return settled
	})
	time.Sleep(300 * time.Millisecond)
	stop()
	e.assertWithheld(t, r, sub)
}

// When the decision before a send cannot be made (here the audit log refuses every
// insert, so records cannot record a decision), nothing is sent (fail closed, security.md
// §5) and the delivery stays due: once the log is back, it goes out with its focus.
func TestRetryWaitsWhileConsentCannotBeDecided(t *testing.T) {
	e := newEnv(t)
	r, sub, _ := e.failedFirstAttempt(t, "mrn-undecided")
	ctx := t.Context()
	if _, err := e.pool.Exec(ctx, `CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit down'; END $$;
		CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION fail_audit()`); err != nil {
		t.Fatal(err)
	}
	attempts := func() (n int, delivered bool) {
		_ = e.pool.QueryRow(ctx, `SELECT attempts, delivered_at IS NOT NULL FROM notify_deliveries WHERE subscription_id = $1 AND kind = 'event-notification'`, sub).Scan(&n, &delivered)
		return n, delivered
	}
	d := e.dispatcher(r.addr())
	stop := d.Start(ctx)
	waitFor(t, "attempts while the audit log is down", func() bool { n, _ := attempts(); return n >= 3 })
	stop()
	if _, posts, ev := r.snapshot(); posts != 1 || len(ev) != 0 {
		t.Fatalf("receiver got %d event POSTs while consent could not be decided; want only the failed first attempt", posts)
	}
	if _, delivered := attempts(); delivered {
		t.Fatal("the undecided delivery was settled; want it due again")
	}

	if _, err := e.pool.Exec(ctx, `DROP TRIGGER fail_audit ON audit_events`); err != nil {
		t.Fatal(err)
	}
	stop = d.Start(ctx)
	defer stop()
	waitFor(t, "the delivery once the log is back", func() bool { _, _, ev := r.snapshot(); return len(ev) == 1 })
	stop()
	if _, _, ev := r.snapshot(); len(ev[1]) == 0 || ev[1][0] == "" {
		t.Fatalf("event 1 = %v; want it with its Encounter focus", ev)
	}
}
