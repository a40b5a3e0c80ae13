package exchange

import (
	"strings"
	"testing"
)

// unknownID is an id no test stores.
const unknownID = "00000000-0000-4000-8000-000000000000"

// foreignObservation is an audited write env in which member A stored a Patient (pa, MRN
// mrn-a) and an Observation of it (oa); ta and tb are A's and B's tokens with every scope.
func foreignObservation(t *testing.T) (env *writeEnv, ta, tb, pa, oa string) {
	t.Helper()
	env = newAuditedWriteEnv(t)
	ta = env.token(t, env.a.ID, allScopes)
	tb = env.token(t, env.b.ID, allScopes)
	pa = env.create(t, ta, "/Patient", patientJSON("mrn-a"))
	oa = env.create(t, ta, "/Observation", obsJSON("", pa, "a"))
	return env, ta, tb, pa, oa
}

// TestWriteRefusalAudit: a PUT or DELETE aimed at an id that is not the member's own live
// resource answers as before (404 for PUT, 204 for DELETE; another member's id and an
// unknown one alike), and each leaves one deny event of its action: naming the person
// behind the other member's resource (none for a resource in no compartment or an id
// never stored) and the resource, never the body. A DELETE of the member's own resource
// that is deleted already is no refusal and leaves none.
func TestWriteRefusalAudit(t *testing.T) {
	env, ta, tb, pa, oa := foreignObservation(t)
	q := env.pool
	orgA := env.create(t, ta, "/Organization", []byte(`{"resourceType":"Organization","name":"Lab A"}`))
	gone := env.create(t, ta, "/Observation", obsJSON("", pa, "gone"))
	if st, b, _ := do(t, "DELETE", env.base+"/Observation/"+gone, ta, nil); st != 204 {
		t.Fatalf("setup: DELETE = %d %s", st, b)
	}
	pb := env.create(t, tb, "/Patient", patientBJSON("mrn-b"))
	personA := personOf(t, q, pa)
	const unknown = unknownID

	var notFound string // the 404 body, with its request ID taken out
	tests := []struct {
		name, tok, method, path string
		body                    []byte
		status                  int
		want                    brief
		reason                  string
	}{
		{"PUT another member's Observation", tb, "PUT", "/Observation/" + oa, obsJSON(oa, pb, "x"), 404,
			brief{"update", personA, []string{"Observation/" + oa}}, "not-owner"},
		{"PUT another member's Patient", tb, "PUT", "/Patient/" + pa, withID(patientBJSON("mrn-b"), pa), 404,
			brief{"update", personA, []string{"Patient/" + pa}}, "not-owner"},
		{"PUT another member's Organization", tb, "PUT", "/Organization/" + orgA, []byte(`{"resourceType":"Organization","id":"` + orgA + `","name":"B"}`), 404,
			brief{"update", "", []string{"Organization/" + orgA}}, "not-owner"},
		{"PUT another member's deleted Observation", tb, "PUT", "/Observation/" + gone, obsJSON(gone, pb, "x"), 404,
			brief{"update", personA, []string{"Observation/" + gone}}, "not-owner"},
		{"PUT an unknown id", tb, "PUT", "/Observation/" + unknown, obsJSON(unknown, pb, "x"), 404,
			brief{"update", "", []string{"Observation/" + unknown}}, "not-found"},
		{"PUT the member's own deleted Observation", ta, "PUT", "/Observation/" + gone, obsJSON(gone, pa, "x"), 404,
			brief{"update", personA, []string{"Observation/" + gone}}, "deleted"},
		{"DELETE another member's Observation", tb, "DELETE", "/Observation/" + oa, nil, 204,
			brief{"delete", personA, []string{"Observation/" + oa}}, "not-owner"},
		{"DELETE another member's Patient", tb, "DELETE", "/Patient/" + pa, nil, 204,
			brief{"delete", personA, []string{"Patient/" + pa}}, "not-owner"},
		{"DELETE an unknown id", tb, "DELETE", "/Observation/" + unknown, nil, 204,
			brief{"delete", "", []string{"Observation/" + unknown}}, "not-found"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rid := "rq-refused-" + string(rune('a'+i))
			st, body, _ := do(t, tt.method, env.base+tt.path, tt.tok, tt.body, "X-Request-Id", rid)
			if st != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, st, body, tt.status)
			}
			if st == 404 {
				b := strings.ReplaceAll(string(body), rid, "RID")
				if notFound == "" {
					notFound = b
				} else if b != notFound {
					t.Errorf("404 body %s differs from %s", b, notFound)
				}
			}
			got := eventsOf(t, q, rid)
			if !sameBriefs(briefs(got), []brief{tt.want}) {
				t.Fatalf("events %+v, want %+v", briefs(got), tt.want)
			}
			e := got[0]
			org := env.b.ID
			if tt.tok == ta {
				org = env.a.ID
			}
			if e.Outcome != "deny" || e.Reason != tt.reason || e.Org != org || e.Client != "client-"+org || e.Purpose != "TREAT" {
				t.Errorf("event %+v: want outcome deny, reason %s, org and client of %s, purpose TREAT", e, tt.reason, org)
			}
		})
	}
	// Nothing of A's changed.
	if n := env.scalar(t, `SELECT count(*) FROM fhir_resources WHERE member_id = $1 AND id <> $2 AND (version > 1 OR deleted)`, env.a.ID, gone); n != 0 {
		t.Errorf("%d of A's resources changed by refused writes", n)
	}
	// A deny event names IDs only: no query, nothing of the body.
	if n := env.scalar(t, `SELECT count(*) FROM audit_events WHERE outcome = 'deny' AND query <> ''`); n != 0 {
		t.Errorf("%d deny events carry a query", n)
	}

	// The member's own resource deleted already: a DELETE again refuses nothing, no event.
	if st, b, _ := do(t, "DELETE", env.base+"/Observation/"+gone, ta, nil, "X-Request-Id", "rq-own-again"); st != 204 {
		t.Fatalf("DELETE own deleted = %d %s", st, b)
	}
	if got := eventsOf(t, q, "rq-own-again"); len(got) != 0 {
		t.Errorf("DELETE of the member's own deleted resource: events %+v, want none", briefs(got))
	}
}

// TestWriteRefusalAuditFailsClosed: when the refusal's deny event cannot be written, the
// PUT and the DELETE answer 503 (not their usual 404 and 204), and nothing is changed.
func TestWriteRefusalAuditFailsClosed(t *testing.T) {
	env, _, tb, _, oa := foreignObservation(t)
	pb := env.create(t, tb, "/Patient", patientBJSON("mrn-b"))
	before := env.scalar(t, `SELECT count(*) FROM fhir_history`)

	restore := failAudit(t, env.pool)
	defer restore()
	for _, tt := range []struct {
		method, path string
		body         []byte
	}{
		{"PUT", "/Observation/" + oa, obsJSON(oa, pb, "x")},
		{"DELETE", "/Observation/" + oa, nil},
		{"PUT", "/Observation/" + unknownID, obsJSON(unknownID, pb, "x")},
		{"DELETE", "/Observation/" + unknownID, nil},
	} {
		st, body, h := do(t, tt.method, env.base+tt.path, tb, tt.body)
		if st != 503 || !strings.Contains(string(body), `"OperationOutcome"`) || h.Get("Retry-After") == "" {
			t.Errorf("%s %s with the audit log failing = %d %s; want 503 OperationOutcome with Retry-After", tt.method, tt.path, st, body)
		}
	}
	if n := env.scalar(t, `SELECT count(*) FROM fhir_history`); n != before {
		t.Errorf("%d versions written by refused writes", n-before)
	}
}

// patientBJSON is a Patient with an MRN in the other member's (B's) namespace.
func patientBJSON(mrn string) []byte {
	return []byte(`{"resourceType":"Patient","identifier":[{"system":"urn:oid:2.16.840.1.113883.3.7777","value":"` + mrn + `"}],"name":[{"family":"Other"}],"gender":"male","birthDate":"1970-02-02"}`)
}

// withID sets the id of a JSON resource that has none.
func withID(b []byte, id string) []byte {
	return []byte(strings.Replace(string(b), `{"resourceType":"Patient",`, `{"resourceType":"Patient","id":"`+id+`",`, 1))
}
