package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/fhir/store"
)

func TestParseSubscription(t *testing.T) {
	base := func(mod string) string {
		return `{"resourceType":"Subscription","status":"requested","reason":"r","criteria":"` + TopicAdmission + `",` +
			`"channel":{"type":"rest-hook","endpoint":"https://ehr.example.org/hook"` + mod + `}}`
	}
	s, err := ParseSubscription([]byte(base(`,"header":["Authorization: Bearer x"]`)))
	if err != nil || s.Payload != PayloadIDOnly || len(s.Headers) != 1 || s.Topic != TopicAdmission {
		t.Fatalf("valid: %+v, %v", s, err)
	}
	out, _ := s.JSON()
	if strings.Contains(string(out), "Bearer x") || !strings.Contains(string(out), "Authorization: [redacted]") {
		t.Fatalf("rendered headers: %s", out)
	}
	if s, err := ParseSubscription([]byte(base(`,"_payload":{"extension":[{"url":"` + ExtPayloadContent + `","valueCode":"empty"}]}`))); err != nil || s.Payload != PayloadEmpty {
		t.Fatalf("empty payload: %+v %v", s, err)
	}
	bad := []string{
		base(`,"_payload":{"extension":[{"url":"` + ExtPayloadContent + `","valueCode":"full-resource"}]}`),
		base(`,"header":["Host: evil.example"]`),
		base(`,"header":["NoColon"]`),
		base(`,"header":["X-A: b\r\nX-B: c"]`),
		base(`,"payload":"application/xml"`),
		strings.Replace(base(""), "rest-hook", "websocket", 1),
		strings.Replace(base(""), TopicAdmission, "http://example.org/other", 1),
		strings.Replace(base(""), `"endpoint":"https://ehr.example.org/hook"`, `"endpoint":""`, 1),
		strings.Replace(base(""), `"criteria":"`+TopicAdmission+`"`, `"criteria":"`+TopicAdmission+`","_criteria":{"extension":[{"url":"`+ExtFilterCriteria+`","valueString":"Observation?code=x"}]}`, 1),
	}
	for _, b := range bad {
		if _, err := ParseSubscription([]byte(b)); err == nil {
			t.Errorf("accepted %s", b)
		}
	}
}

func TestWantsTopicAndFilter(t *testing.T) {
	adm := EncounterEvent{EncounterID: "e", PatientID: "p", MemberID: "a", Kind: KindAdmission, Class: "IMP"}
	dis := adm
	dis.Kind = KindDischarge
	cases := []struct {
		sub  Subscription
		ev   EncounterEvent
		want bool
	}{
		{Subscription{Topic: TopicAdmission}, adm, true},
		{Subscription{Topic: TopicAdmission}, dis, false},
		{Subscription{Topic: TopicDischarge}, dis, true},
		{Subscription{Topic: TopicEncounter}, dis, true},
		{Subscription{Topic: TopicAdmission, Filter: "Encounter?class=EMER,IMP"}, adm, true},
		{Subscription{Topic: TopicAdmission, Filter: "Encounter?class=AMB"}, adm, false},
		{Subscription{Topic: "http://hl7.org/fhir/us/core/SubscriptionTopic/patient-admission"}, adm, true},
	}
	for i, c := range cases {
		if got := c.sub.Wants(c.ev); got != c.want {
			t.Errorf("case %d: %v; want %v", i, got, c.want)
		}
	}
}

func TestEncounterEventOf(t *testing.T) {
	st := func(status string) store.Stored {
		return store.Stored{Type: "Encounter", ID: "e1", MemberID: "a", PatientID: "p1",
			Body: []byte(`{"resourceType":"Encounter","status":"` + status + `","class":{"code":"EMER"}}`)}
	}
	for status, want := range map[string]EventKind{"in-progress": KindAdmission, "arrived": KindAdmission, "finished": KindDischarge, "planned": KindUpdate} {
		ev, ok := EncounterEventOf(st(status))
		if !ok || ev.Kind != want || ev.Class != "EMER" || ev.PatientID != "p1" {
			t.Errorf("%s: %+v %v; want %s", status, ev, ok, want)
		}
	}
	noCompartment := st("finished")
	noCompartment.PatientID = ""
	obs := st("final")
	obs.Type = "Observation"
	for _, s := range []store.Stored{noCompartment, obs} {
		if _, ok := EncounterEventOf(s); ok {
			t.Errorf("%+v: an event", s)
		}
	}
}

func TestNotificationBundleIsIDOnly(t *testing.T) {
	sub := Subscription{ID: "s1", Topic: TopicAdmission, Status: StatusActive, Events: 7, Payload: PayloadIDOnly}
	b, err := Notification{FHIRBase: "https://c.test/fhir", Sub: sub, Type: TypeEvent,
		Events: []Notified{{EventNumber: 7, Focus: "Encounter/e1", At: "2026-01-01T00:00:00.000Z"}}, At: time.Now()}.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Type  string
		Entry []struct {
			FullURL  string
			Resource *struct {
				ResourceType string
				Parameter    []struct {
					Name        string
					ValueString string
					ValueCode   string
				}
			}
		}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != "history" || len(got.Entry) != 2 || got.Entry[0].Resource.ResourceType != "Parameters" ||
		got.Entry[1].FullURL != "https://c.test/fhir/Encounter/e1" || got.Entry[1].Resource != nil {
		t.Fatalf("bundle %s", b)
	}
	params := map[string]string{}
	for _, p := range got.Entry[0].Resource.Parameter {
		params[p.Name] = p.ValueString + p.ValueCode
	}
	if params["type"] != TypeEvent || params["events-since-subscription-start"] != "7" || params["status"] != "active" {
		t.Fatalf("status parameters %v", params)
	}
	sub.Payload = PayloadEmpty
	b, _ = Notification{FHIRBase: "https://c.test/fhir", Sub: sub, Type: TypeEvent, Events: []Notified{{EventNumber: 7, Focus: "Encounter/e1"}}, At: time.Now()}.Bundle()
	if strings.Contains(string(b), "Encounter/e1") {
		t.Fatalf("empty payload names the focus: %s", b)
	}
}

func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	d := NewDispatcher(nil, nil, nil, nil, nil, DispatcherConfig{BaseBackoff: time.Second, MaxBackoff: 16 * time.Second}, nil)
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 5: 16 * time.Second, 30: 16 * time.Second} {
		seen := map[time.Duration]bool{}
		for range 50 {
			b := d.backoff(attempt)
			if b < want/2 || b > want {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, b, want/2, want)
			}
			seen[b] = true
		}
		if len(seen) < 2 {
			t.Fatalf("attempt %d: no jitter", attempt)
		}
	}
}
