package exchange

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/notify"
)

// TestSubscriptionEventsRedecideLinkEvents: a link-changed notification names the
// subscriber's own Patient, but was decided on another member's Patient of the person;
// $events decides on that one again, and drops the focus and the link details together
// once consent is withdrawn.
func TestSubscriptionEventsRedecideLinkEvents(t *testing.T) {
	env := newNotifyEnv(t)
	ctx := context.Background()
	hook := env.hook.srv.URL
	if code, body := env.do(t, "b", "POST", "/fhir/Group", `{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+env.pb+`"}}]}`); code != http.StatusCreated {
		t.Fatalf("roster: %d %s", code, body)
	}
	if err := env.ns.RegisterEndpoint(ctx, env.pool, "b", hook); err != nil {
		t.Fatal(err)
	}
	code, body := env.do(t, "b", "POST", "/fhir/Subscription", subscriptionBody(hook+"/hook", notify.TopicLinkChanged, ""))
	if code != http.StatusCreated {
		t.Fatalf("subscription: %d %s", code, body)
	}
	var sub struct{ ID string }
	_ = json.Unmarshal([]byte(body), &sub)
	if _, err := env.d.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// A steward's keep-apart decision on a's record of the person, as mpi/store writes it.
	var source int64
	var person string
	if err := env.pool.QueryRow(ctx, `SELECT id, person_id::text FROM mpi_source_records WHERE patient_id = $1`, env.pa).Scan(&source, &person); err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(mpistore.LinkChanged{Action: "keep-apart", Sources: []mpistore.Moved{{Source: source, Member: "a", Patient: env.pa, From: person, To: person}}})
	if _, err := env.pool.Exec(ctx, `INSERT INTO outbox_events(topic, key, payload) VALUES ($1, $2, $3)`, mpistore.TopicLinkChanged, person, payload); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := env.d.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	events := func() string {
		t.Helper()
		req := httptest.NewRequest("GET", "/fhir/Subscription/"+sub.ID+"/$events?eventsSinceNumber=1", nil)
		req.Header.Set("Authorization", "Bearer "+token(t, "client-b", "b", "system/*.cruds"))
		rec := httptest.NewRecorder()
		env.e.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("$events: %d %s", rec.Code, rec.Body.String())
		}
		return rec.Body.String()
	}
	got := events()
	if !strings.Contains(got, "/Patient/"+env.pb) || !strings.Contains(got, `"valueCode":"keep-apart"`) || !strings.Contains(got, person) || strings.Contains(got, env.pa) {
		t.Fatalf("$events under consent: %s; want b's own Patient, the action and the person, never a's Patient", got)
	}
	for p := range env.dirs {
		env.dirs[p] = nil
	}
	got = events()
	if strings.Contains(got, env.pb) || strings.Contains(got, person) || strings.Contains(got, "keep-apart") || !strings.Contains(got, `"name":"event-number","valueString":"1"`) {
		t.Fatalf("$events after consent withdrawn: %s; want event 1 without focus or link details", got)
	}
}
