package exchange

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/concord-hie/concord/notify"
)

// TestSubscriptionEventsRedecided: $events replays a notification's focus only while
// consent still lets the subscriber see it and its token may read the focus's type,
// audits the re-check, and is not cacheable.
func TestSubscriptionEventsRedecided(t *testing.T) {
	env := newNotifyEnv(t)
	ctx := context.Background()
	hook := env.hook.srv.URL
	if code, body := env.do(t, "b", "POST", "/fhir/Group", `{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+env.pb+`"}}]}`); code != http.StatusCreated {
		t.Fatalf("roster: %d %s", code, body)
	}
	if err := env.ns.RegisterEndpoint(ctx, env.pool, "b", hook); err != nil {
		t.Fatal(err)
	}
	code, body := env.do(t, "b", "POST", "/fhir/Subscription", subscriptionBody(hook+"/hook", notify.TopicAdmission, ""))
	if code != http.StatusCreated {
		t.Fatalf("subscription: %d %s", code, body)
	}
	var sub struct{ ID string }
	_ = json.Unmarshal([]byte(body), &sub)
	if _, err := env.d.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	code, body = env.do(t, "a", "POST", "/fhir/Encounter", `{"resourceType":"Encounter","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},"subject":{"reference":"Patient/`+env.pa+`"}}`)
	if code != http.StatusCreated {
		t.Fatalf("Encounter: %d %s", code, body)
	}
	var enc struct{ ID string }
	_ = json.Unmarshal([]byte(body), &enc)
	for range 3 {
		if _, err := env.d.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	events := func(scope string) (*httptest.ResponseRecorder, int) {
		t.Helper()
		var before int
		if err := env.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&before); err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest("GET", "/fhir/Subscription/"+sub.ID+"/$events?eventsSinceNumber=1", nil)
		req.Header.Set("Authorization", "Bearer "+token(t, "client-b", "b", scope))
		rec := httptest.NewRecorder()
		env.e.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("$events: %d %s", rec.Code, rec.Body.String())
		}
		var after int
		if err := env.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&after); err != nil {
			t.Fatal(err)
		}
		return rec, after - before
	}
	rec, audited := events("system/*.cruds")
	if !strings.Contains(rec.Body.String(), "/Encounter/"+enc.ID) {
		t.Fatalf("$events under consent: %s; want the admission's focus", rec.Body.String())
	}
	if audited == 0 || !strings.Contains(rec.Header().Get("Cache-Control"), "no-store") {
		t.Fatalf("$events: %d audit events, Cache-Control %q; want the disclosure audited and no-store", audited, rec.Header().Get("Cache-Control"))
	}
	// A token that may read Subscriptions but not Encounters gets the event without its
	// focus: the focus is a read of the Encounter (security review).
	rec, _ = events("system/Subscription.rs")
	if strings.Contains(rec.Body.String(), enc.ID) || !strings.Contains(rec.Body.String(), `"name":"event-number","valueString":"1"`) {
		t.Fatalf("$events without Encounter.r: %s; want event 1 without its focus", rec.Body.String())
	}
	// The patient withdraws consent: the replay no longer names the Encounter.
	for p := range env.dirs {
		env.dirs[p] = nil
	}
	rec, _ = events("system/*.cruds")
	if strings.Contains(rec.Body.String(), enc.ID) || !strings.Contains(rec.Body.String(), `"name":"event-number","valueString":"1"`) {
		t.Fatalf("$events after consent withdrawn: %s; want event 1 without its focus", rec.Body.String())
	}
}
