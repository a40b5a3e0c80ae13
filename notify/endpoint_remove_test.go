package notify_test

import (
	"context"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/notify"
)

// TestRemovedOriginIsNotDeliveredTo: member b has two active subscriptions, each at its
// own registered origin. Once one origin is removed, an admission reaches the other
// receiver only; the subscription at the removed origin is set to error by the removal,
// no event is even queued for it, a new subscription there is refused, and removing the
// origin again is errs.NotFound.
func TestRemovedOriginIsNotDeliveredTo(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	gone, kept := newReceiver(t, 0), newReceiver(t, 0)
	d := e.dispatcher(gone.addr(), kept.addr())
	_, pa, pb := e.person(t, "mrn-remove")
	subGone := e.subscribe(t, "b", pb, gone)
	subKept := e.subscribe(t, "b", pb, kept)
	stop := d.Start(ctx)
	defer stop()
	waitFor(t, "both handshakes", func() bool {
		s1, _ := e.status(t, subGone)
		s2, _ := e.status(t, subKept)
		return s1 == "active" && s2 == "active"
	})

	o, err := e.notify.RemoveEndpointOrigin(ctx, e.pool, "b", gone.srv.URL+"/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	if o.String() != gone.srv.URL {
		t.Fatalf("removed origin %s, want %s", o, gone.srv.URL)
	}
	origins, err := e.notify.EndpointOrigins(ctx, e.pool, []string{"b"})
	if err != nil || len(origins["b"]) != 1 || origins["b"][0] != kept.srv.URL {
		t.Fatalf("origins after removal: %v %v", origins, err)
	}

	// The subscription at the removed origin is stopped by the removal itself.
	if s, _ := e.status(t, subGone); s != "error" {
		t.Fatalf("the subscription at the removed origin is %s right after the removal, want error", s)
	}
	e.admit(t, pa)
	waitFor(t, "the kept receiver's event", func() bool { _, _, ev := kept.snapshot(); return len(ev) == 1 })
	e.admit(t, pa)
	waitFor(t, "the kept receiver's second event", func() bool { _, _, ev := kept.snapshot(); return len(ev) == 2 })
	time.Sleep(300 * time.Millisecond) // several backoffs (MaxBackoff 100 ms): a retry would have been claimed
	stop()

	if hs, posts, _ := gone.snapshot(); hs != 1 || posts != 0 {
		t.Fatalf("removed origin: %d handshakes, %d event POSTs; want 1 and 0", hs, posts)
	}
	var rows, attempts int
	if err := e.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(attempts), 0) FROM notify_deliveries
		WHERE subscription_id = $1 AND kind = 'event-notification'`, subGone).Scan(&rows, &attempts); err != nil {
		t.Fatal(err)
	}
	if rows != 0 || attempts != 0 {
		t.Fatalf("removed origin: %d queued notifications tried %d times; want none", rows, attempts)
	}
	if s, _ := e.status(t, subKept); s != "active" {
		t.Fatalf("the kept subscription is %s", s)
	}

	_, err = e.notify.CreateSubscription(ctx, e.pool, notify.Subscription{ID: "sub-again", MemberID: "b", Topic: notify.TopicAdmission,
		Endpoint: gone.srv.URL + "/hook", Payload: notify.PayloadIDOnly})
	if errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("a subscription at the removed origin: %v, want errs.Invalid", err)
	}
	if _, err := e.notify.RemoveEndpointOrigin(ctx, e.pool, "b", gone.srv.URL); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("removed twice: %v, want errs.NotFound", err)
	}
}

// TestRemoveEndpointOriginPrivate: a private origin registered while the allowlist named
// it can be removed by a store whose allowlist no longer does; a URL that is no endpoint
// is refused before anything is looked up.
func TestRemoveEndpointOriginPrivate(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	r := newReceiver(t, 0)
	e.dispatcher(r.addr())
	if err := e.notify.RegisterEndpoint(ctx, e.pool, "b", r.srv.URL); err != nil {
		t.Fatal(err)
	}
	strict := notify.NewStore(nil)
	if err := strict.RegisterEndpoint(ctx, e.pool, "c", r.srv.URL); errs.CodeOf(err) != errs.Forbidden {
		t.Fatalf("registered without the allowlist: %v", err)
	}
	if _, err := strict.RemoveEndpointOrigin(ctx, e.pool, "b", r.srv.URL+"/hook"); err != nil {
		t.Fatalf("remove without the allowlist: %v", err)
	}
	if origins, err := strict.EndpointOrigins(ctx, e.pool, []string{"b"}); err != nil || len(origins) != 0 {
		t.Fatalf("origins after removal: %v %v", origins, err)
	}
	var removed bool
	if err := e.pool.QueryRow(ctx, `SELECT removed_at IS NOT NULL FROM notify_endpoints WHERE member_id = 'b' AND origin = $1`, r.srv.URL).Scan(&removed); err != nil || !removed {
		t.Fatalf("the removal of the private origin is not on record: %v %v", removed, err)
	}
	for _, raw := range []string{"ftp://hooks.b.example/x", "https://user@hooks.b.example/x", "hooks.b.example"} {
		if _, err := strict.RemoveEndpointOrigin(ctx, e.pool, "b", raw); errs.CodeOf(err) != errs.Invalid {
			t.Errorf("%s: %v, want errs.Invalid", raw, err)
		}
	}
}

// TestRemovedOriginKeepsItsRecord: removing an origin keeps its row with the time of the
// removal, which a failed second removal leaves alone, while every reader treats it as
// absent; registering it again makes it live (removed_at cleared, one row), so it is listed
// and subscribable again, and can be removed again.
func TestRemovedOriginKeepsItsRecord(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	gone, kept := newReceiver(t, 0), newReceiver(t, 0)
	e.dispatcher(gone.addr(), kept.addr()) // the allowlist names both; nothing is started
	for _, r := range []*receiver{gone, kept} {
		if err := e.notify.RegisterEndpoint(ctx, e.pool, "b", r.srv.URL); err != nil {
			t.Fatal(err)
		}
	}
	// removedAt returns the row's removed_at (nil while registered), failing t unless
	// the member has exactly one row for origin.
	removedAt := func(origin string) *time.Time {
		t.Helper()
		var n int
		var at *time.Time
		if err := e.pool.QueryRow(ctx, `SELECT count(*), max(removed_at) FROM notify_endpoints WHERE member_id = 'b' AND origin = $1`,
			origin).Scan(&n, &at); err != nil || n != 1 {
			t.Fatalf("rows of %s: %d (%v), want 1", origin, n, err)
		}
		return at
	}
	subscribe := func(id string) error {
		_, err := e.notify.CreateSubscription(ctx, e.pool, notify.Subscription{ID: id, MemberID: "b", Topic: notify.TopicAdmission,
			Endpoint: gone.srv.URL + "/hook", Payload: notify.PayloadIDOnly})
		return err
	}

	before := time.Now()
	if _, err := e.notify.RemoveEndpointOrigin(ctx, e.pool, "b", gone.srv.URL); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	at := removedAt(gone.srv.URL)
	if at == nil || at.Before(before.Add(-time.Second)) || at.After(after.Add(time.Second)) {
		t.Fatalf("removed_at = %v, want the time of the removal (%v to %v)", at, before, after)
	}
	if removedAt(kept.srv.URL) != nil {
		t.Fatal("the kept origin has a removed_at")
	}
	if origins, err := e.notify.EndpointOrigins(ctx, e.pool, []string{"b"}); err != nil || len(origins["b"]) != 1 || origins["b"][0] != kept.srv.URL {
		t.Fatalf("origins after removal: %v %v", origins, err)
	}
	if err := subscribe("sub-removed"); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("a subscription at the removed origin: %v, want errs.Invalid", err)
	}
	if _, err := e.notify.RemoveEndpointOrigin(ctx, e.pool, "b", gone.srv.URL); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("removed twice: %v, want errs.NotFound", err)
	}
	if again := removedAt(gone.srv.URL); again == nil || !again.Equal(*at) {
		t.Fatalf("removed_at after a failed second removal: %v, want %v", again, at)
	}

	// Registered again: live, listed and subscribable.
	if err := e.notify.RegisterEndpoint(ctx, e.pool, "b", gone.srv.URL+"/new-path"); err != nil {
		t.Fatal(err)
	}
	if at := removedAt(gone.srv.URL); at != nil {
		t.Fatalf("removed_at after registering again: %v, want NULL", at)
	}
	if origins, err := e.notify.EndpointOrigins(ctx, e.pool, []string{"b"}); err != nil || len(origins["b"]) != 2 {
		t.Fatalf("origins after registering again: %v %v", origins, err)
	}
	if err := subscribe("sub-back"); err != nil {
		t.Fatalf("a subscription at the origin registered again: %v", err)
	}
	if _, err := e.notify.RemoveEndpointOrigin(ctx, e.pool, "b", gone.srv.URL); err != nil {
		t.Fatalf("removing the origin registered again: %v", err)
	}
	if removedAt(gone.srv.URL) == nil {
		t.Fatal("the second removal left removed_at NULL")
	}
}
