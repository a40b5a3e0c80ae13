package notify_test

import (
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/notify"
)

// subscribeUntil is subscribe with Subscription.end = end.
func (e *env) subscribeUntil(t testing.TB, member, pb string, r *receiver, end string) (string, error) {
	t.Helper()
	return e.subscribeWith(member, pb, r, notify.Subscription{Topic: notify.TopicAdmission, Payload: notify.PayloadIDOnly, End: end})
}

// A Subscription whose end has already passed is refused (400 naming Subscription.end
// over FHIR), not stored and never handshaken: Concord would only ever turn it off.
func TestSubscriptionWithPastEndRefused(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, 0)
	d := e.dispatcher(r.addr())
	_, _, pb := e.person(t, "mrn-past-end")
	for _, end := range []string{"2001-01-01T00:00:00Z", time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)} {
		id, err := e.subscribeUntil(t, "b", pb, r, end)
		if errs.CodeOf(err) != errs.Invalid || errs.PathOf(err) != "Subscription.end" {
			t.Fatalf("end %s: %v (path %q); want Invalid naming Subscription.end", end, err, errs.PathOf(err))
		}
		var n int
		if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM notify_subscriptions WHERE id = $1`, id).Scan(&n); err != nil || n != 0 {
			t.Fatalf("end %s: %d rows stored (%v); want none", end, n, err)
		}
	}
	stop := d.Start(t.Context())
	time.Sleep(200 * time.Millisecond)
	stop()
	if hs, _, _ := r.snapshot(); hs != 0 {
		t.Fatalf("%d handshakes for refused subscriptions", hs)
	}
}

// Subscription.end is enforced: events before the end are delivered; once it passes the
// subscription turns off (R4: "the subscription has expired"), reads say off at once, no
// event is numbered for it and a notification still due for it (its first attempt
// failed) is not tried again.
func TestSubscriptionStopsAtItsEnd(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, 0)
	d := e.dispatcher(r.addr())
	_, pa, pb := e.person(t, "mrn-end")
	end := time.Now().Add(2 * time.Second)
	sub, err := e.subscribeUntil(t, "b", pb, r, end.UTC().Format(time.RFC3339Nano))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	stop := d.Start(ctx)
	waitFor(t, "the handshake", func() bool { s, _ := e.status(t, sub); return s == "active" })
	e.admit(t, pa)
	waitFor(t, "the event before the end", func() bool { _, _, ev := r.snapshot(); return len(ev) == 1 })
	r.mu.Lock()
	r.failFirst = r.posts + 1 // the next event's first attempt fails: it is due again
	r.mu.Unlock()
	e.admit(t, pa)
	waitFor(t, "the second event's failed attempt", func() bool { _, posts, _ := r.snapshot(); return posts == 2 })
	stop()
	due := func() (attempts int) {
		if err := e.pool.QueryRow(ctx, `SELECT attempts FROM notify_deliveries WHERE subscription_id = $1 AND event_number = 2 AND delivered_at IS NULL`, sub).Scan(&attempts); err != nil {
			t.Fatalf("the second event's delivery is not due: %v", err)
		}
		return attempts
	}
	before := due()

	time.Sleep(time.Until(end) + 50*time.Millisecond)
	got, err := e.notify.Subscription(ctx, e.pool, "b", sub)
	if err != nil || got.Status != notify.StatusOff {
		t.Fatalf("read after the end: status %q (%v); want off before the dispatcher runs", got.Status, err)
	}
	e.admit(t, pa)
	stop = d.Start(ctx)
	time.Sleep(500 * time.Millisecond) // many passes and backoff periods
	stop()
	if hs, posts, ev := r.snapshot(); hs != 1 || posts != 2 || len(ev) != 1 {
		t.Fatalf("%d handshakes, %d event POSTs, events %v; want nothing after the end", hs, posts, ev)
	}
	if s, n := e.status(t, sub); s != string(notify.StatusOff) || n != 2 {
		t.Fatalf("stored status %s, %d events numbered; want off, 2 (none after the end)", s, n)
	}
	if after := due(); after != before {
		t.Fatalf("the due notification was attempted %d more times after the end", after-before)
	}
}
