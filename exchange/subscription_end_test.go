package exchange

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/notify"
)

// A Subscription whose end has already passed is refused with a 400 OperationOutcome
// whose issue names Subscription.end, and nothing is stored: Concord enforces end, so it
// could only ever turn such a subscription off. One whose end is not an instant is
// refused the same way (R4 types Subscription.end as instant). A future end is accepted
// and echoed.
func TestSubscriptionEndOverFHIR(t *testing.T) {
	env := newNotifyEnv(t)
	ctx := t.Context()
	hook := env.hook.srv.URL
	if err := env.ns.RegisterEndpoint(ctx, env.pool, "b", hook); err != nil {
		t.Fatal(err)
	}
	withEnd := func(end string) string {
		b := subscriptionBody(hook+"/hook", notify.TopicAdmission, "")
		return strings.Replace(b, `"status":"requested",`, `"status":"requested","end":"`+end+`",`, 1)
	}
	for _, end := range []string{"2001-01-01T00:00:00Z", time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), "2030-01-01"} {
		code, body := env.do(t, "b", "POST", "/fhir/Subscription", withEnd(end))
		var oo struct {
			ResourceType string `json:"resourceType"`
			Issue        []struct {
				Expression []string `json:"expression"`
			} `json:"issue"`
		}
		_ = json.Unmarshal([]byte(body), &oo)
		if code != http.StatusBadRequest || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 ||
			len(oo.Issue[0].Expression) == 0 || oo.Issue[0].Expression[0] != "Subscription.end" {
			t.Fatalf("end %s: %d %s; want 400 OperationOutcome naming Subscription.end", end, code, body)
		}
	}
	var n int
	if err := env.pool.QueryRow(ctx, `SELECT count(*) FROM notify_subscriptions`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d subscriptions stored (%v); want none", n, err)
	}
	end := time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05.000Z")
	code, body := env.do(t, "b", "POST", "/fhir/Subscription", withEnd(end))
	if code != http.StatusCreated || !strings.Contains(body, `"end":"`+end+`"`) || !strings.Contains(body, `"status":"requested"`) {
		t.Fatalf("future end: %d %s; want 201 echoing it", code, body)
	}
}

// TestSubscriptionNeedsFocusReadScope: every notification names its focus (an Encounter,
// or the member's Patient for link changes), so subscribing needs the read scope of that
// type as well as Subscription's: a token with Subscription scopes alone got through the
// rest-hook what $events withholds from it (session review).
func TestSubscriptionNeedsFocusReadScope(t *testing.T) {
	env := newNotifyEnv(t)
	hook := env.hook.srv.URL
	if err := env.ns.RegisterEndpoint(t.Context(), env.pool, "b", hook); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		topic, scope string
		want         int
	}{
		{notify.TopicAdmission, "system/Subscription.cruds", http.StatusForbidden},
		{notify.TopicLinkChanged, "system/Subscription.cruds system/Encounter.rs", http.StatusForbidden},
		{notify.TopicAdmission, "system/Subscription.cruds system/Encounter.rs", http.StatusCreated},
		{notify.TopicLinkChanged, "system/Subscription.cruds system/Patient.rs", http.StatusCreated},
	} {
		if code, body := env.doScoped(t, "b", tt.scope, "POST", "/fhir/Subscription", subscriptionBody(hook+"/hook", tt.topic, "")); code != tt.want {
			t.Errorf("%s with %q: %d %.200s; want %d", tt.topic, tt.scope, code, body, tt.want)
		}
	}
}
