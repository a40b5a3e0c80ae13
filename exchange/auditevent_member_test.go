package exchange

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/concord-hie/concord/audit"
)

// TestAuditEventMemberRedaction: a member's own audit trail is no existence oracle. Member
// B vreads, PUTs and DELETEs another member's Observation (and PUTs an unknown id), each
// answered as absent; reading its own AuditEvents, with or without a patient filter, B
// finds none of its refusals (whose presence alone would tell A's id from an unknown
// one). An officer (audit.Search, as the portal calls it) reads the person and the true
// reasons.
func TestAuditEventMemberRedaction(t *testing.T) {
	env, _, tb, pa, oa := foreignObservation(t)
	q := env.pool
	// B's own record of the same person (same demographics, B's namespace).
	pb := env.create(t, tb, "/Patient", []byte(`{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.840.1.113883.3.7777","value":"mrn-b"}],"name":[{"family":"Test","given":["Ada"]}],"gender":"female","birthDate":"1970-01-01"}`))
	personA := personOf(t, q, pa)
	if personOf(t, q, pb) != personA {
		t.Fatalf("setup: B's Patient is not linked to A's person")
	}
	const unknown = unknownID

	for _, r := range []struct {
		method, path string
		body         []byte
		status       int
	}{
		{"GET", "/Observation/" + oa + "/_history/1", nil, 404},
		{"GET", "/Observation/" + oa + "/_history", nil, 404},
		{"PUT", "/Observation/" + oa, obsJSON(oa, pb, "x"), 404},
		{"PUT", "/Observation/" + unknown, obsJSON(unknown, pb, "x"), 404},
		{"DELETE", "/Observation/" + oa, nil, 204},
	} {
		if st, b, _ := do(t, r.method, env.base+r.path, tb, r.body); st != r.status {
			t.Fatalf("%s %s = %d %s, want %d", r.method, r.path, st, b, r.status)
		}
	}

	// What the member reads.
	type entity struct {
		What *struct {
			Reference string `json:"reference"`
		} `json:"what"`
		Type *struct {
			Code string `json:"code"`
		} `json:"type"`
	}
	type auditEvent struct {
		Outcome     string   `json:"outcome"`
		OutcomeDesc string   `json:"outcomeDesc"`
		Entity      []entity `json:"entity"`
		Meta        *struct {
			Profile []string `json:"profile"`
		} `json:"meta"`
	}
	read := func(query string) ([]auditEvent, string) {
		t.Helper()
		st, body, _ := do(t, "GET", env.base+"/AuditEvent?"+query, tb, nil)
		if st != 200 {
			t.Fatalf("GET AuditEvent?%s = %d %s", query, st, body)
		}
		var set struct {
			Entry []struct {
				Resource auditEvent `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(body, &set); err != nil {
			t.Fatal(err)
		}
		var out []auditEvent
		for _, e := range set.Entry {
			out = append(out, e.Resource)
		}
		return out, string(body)
	}

	// B's own trail holds none of the refusals: an event for A's resource but none for the
	// unknown id would itself tell the two apart.
	if denials, body := read("outcome=4&_count=100"); len(denials) != 0 {
		t.Fatalf("B reads %d deny events, want none: %s", len(denials), body)
	}
	all, body := read("_count=100")
	if len(all) == 0 {
		t.Fatalf("B reads no events at all; want its own creates: %s", body)
	}
	// (personA may appear: it is also the person of B's own Patient, whose create B reads.)
	for _, leak := range []string{"not-owner", "not-found", "deleted", oa, unknown} {
		if strings.Contains(body, leak) {
			t.Errorf("B's own audit trail shows %q: %s", leak, body)
		}
	}
	for _, ev := range all {
		if ev.Outcome == "4" {
			t.Errorf("B reads a refusal %+v", ev)
		}
	}
	// A patient filter naming B's own Patient of the same person finds B's own events
	// about it, never the refusals.
	if got, body := read("patient=" + pb + "&_count=100"); len(got) == 0 {
		t.Fatalf("AuditEvent?patient=%s finds nothing; want B's own create: %s", pb, body)
	}
	if got, body := read("patient=" + pb + "&outcome=4"); len(got) != 0 {
		t.Errorf("AuditEvent?patient=&outcome=4 finds %d refusals: %s", len(got), body)
	}

	// The officer's search (the portal's) reads the full events.
	evs, _, err := audit.Search(context.Background(), q, audit.Filter{Org: env.b.ID, Outcome: audit.Deny, Count: 100})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, ev := range evs {
		reasons[ev.Reason]++
		if ev.Reason == "not-owner" && ev.Patient != personA {
			t.Errorf("officer reads %+v: want person %s", ev, personA)
		}
	}
	if reasons["not-owner"] != 4 || reasons["not-found"] != 1 {
		t.Errorf("officer reads reasons %v; want 4 not-owner and 1 not-found", reasons)
	}
	evs, _, err = audit.Search(context.Background(), q, audit.Filter{Patient: personA, Org: env.b.ID, Outcome: audit.Deny})
	if err != nil || len(evs) != 4 {
		t.Errorf("officer's patient filter finds %d refusals (%v); want 4", len(evs), err)
	}
	fhirEv := string(audit.ToFHIR(evs[0], env.issuer+"/fhir"))
	if !strings.Contains(fhirEv, "/Patient/"+personA) || !strings.Contains(fhirEv, "not-owner") {
		t.Errorf("officer's AuditEvent %s lacks the person or the reason", fhirEv)
	}
}
