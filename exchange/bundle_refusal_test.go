package exchange

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestBundleRefusalAudit: PUT and DELETE entries of transaction and batch Bundles, and a
// PUT of a Group roster, aimed at an id that is not the member's own resource answer as
// before (a DELETE entry 204, a PUT entry 404, failing a transaction whole) and each
// leaves one deny event like the plain PUT and DELETE do: naming the person behind the
// other member's resource and the reason. A failed transaction writes nothing else.
func TestBundleRefusalAudit(t *testing.T) {
	env, ta, tb, pa, oa := foreignObservation(t)
	q := env.pool
	ga := env.create(t, ta, "/Group", []byte(`{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+pa+`"}}]}`))
	pb := env.create(t, tb, "/Patient", patientBJSON("mrn-b"))
	personA := personOf(t, q, pa)
	const unknown = unknownID

	obsB := string(obsJSON("", pb, "b"))
	del := func(path string) string { return `{"request":{"method":"DELETE","url":"` + path + `"}}` }
	put := func(path, body string) string {
		return `{"resource":` + body + `,"request":{"method":"PUT","url":"` + path + `"}}`
	}
	post := `{"resource":` + obsB + `,"request":{"method":"POST","url":"Observation"}}`
	bundle := func(typ string, entries ...string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	group := func(id string) []byte {
		return []byte(`{"resourceType":"Group","id":"` + id + `","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/` + pb + `"}}]}`)
	}
	type deny struct{ action, person, resource, reason string }

	tests := []struct {
		name, method, path string
		body               []byte
		status             int
		statuses           []string // entry statuses, in order
		denies             []deny
		writes             []string // the actions of the permitted write events
	}{
		{"transaction deleting a foreign and an unknown id", "POST", "", bundle("transaction", del("Observation/"+oa), del("Observation/"+unknown), post), 200,
			[]string{"204", "204", "201"},
			[]deny{{"delete", personA, "Observation/" + oa, "not-owner"}, {"delete", "", "Observation/" + unknown, "not-found"}},
			[]string{"create"}},
		{"transaction updating a foreign id", "POST", "", bundle("transaction", post, put("Observation/"+oa, string(obsJSON(oa, pb, "x")))), 404, nil,
			[]deny{{"update", personA, "Observation/" + oa, "not-owner"}}, nil},
		{"transaction deleting a foreign id, then failing on an unknown one", "POST", "", bundle("transaction", del("Observation/"+oa), put("Observation/"+unknown, string(obsJSON(unknown, pb, "x")))), 404, nil,
			[]deny{{"delete", personA, "Observation/" + oa, "not-owner"}, {"update", "", "Observation/" + unknown, "not-found"}}, nil},
		{"batch", "POST", "", bundle("batch", put("Observation/"+oa, string(obsJSON(oa, pb, "x"))), del("Observation/"+oa), put("Observation/"+unknown, string(obsJSON(unknown, pb, "x"))), post), 200,
			[]string{"404", "204", "404", "201"},
			[]deny{{"update", personA, "Observation/" + oa, "not-owner"}, {"delete", personA, "Observation/" + oa, "not-owner"}, {"update", "", "Observation/" + unknown, "not-found"}},
			[]string{"create"}},
		{"Group PUT of another member's roster", "PUT", "/Group/" + ga, group(ga), 404, nil,
			[]deny{{"update", "", "Group/" + ga, "not-owner"}}, nil},
		{"Group PUT of an unknown id", "PUT", "/Group/" + unknown, group(unknown), 404, nil,
			[]deny{{"update", "", "Group/" + unknown, "not-found"}}, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rid := "rq-bundle-refused-" + string(rune('a'+i))
			before := env.count(t, env.b.ID, "Observation")
			st, body, _ := do(t, tt.method, env.base+tt.path, tb, tt.body, "X-Request-Id", rid)
			if st != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, st, body, tt.status)
			}
			for j, want := range tt.statuses {
				if got := entryStatus(t, body, j); got != want {
					t.Errorf("entry %d: status %s, want %s (%s)", j, got, want, body)
				}
			}
			var denies []deny
			var writes []string
			for _, e := range eventsOf(t, q, rid) {
				if e.Org != env.b.ID || e.Client != "client-"+env.b.ID {
					t.Errorf("event %+v is not B's", e)
				}
				if e.Outcome != "deny" {
					writes = append(writes, e.Action)
					continue
				}
				if len(e.Resources) != 1 {
					t.Fatalf("deny event %+v: want one resource", e)
				}
				denies = append(denies, deny{e.Action, e.Patient, e.Resources[0], e.Reason})
			}
			if !sameDenies(denies, tt.denies) {
				t.Errorf("deny events %+v, want %+v", denies, tt.denies)
			}
			if strings.Join(writes, ",") != strings.Join(tt.writes, ",") {
				t.Errorf("write events %v, want %v", writes, tt.writes)
			}
			if tt.status == 404 && env.count(t, env.b.ID, "Observation") != before {
				t.Errorf("a failed request stored B's Observation")
			}
		})
	}
	if n := env.scalar(t, `SELECT count(*) FROM fhir_resources WHERE member_id = $1 AND (version > 1 OR deleted)`, env.a.ID); n != 0 {
		t.Errorf("%d of A's resources changed by refused writes", n)
	}
}

// TestBundleRefusalAuditFailsClosed: when a refusal's deny event cannot be committed, a
// transaction with a refused DELETE or PUT entry and a Group PUT of a foreign id answer
// 503 and write nothing, and a batch whose first entry is refused fails whole (503).
func TestBundleRefusalAuditFailsClosed(t *testing.T) {
	env, ta, tb, pa, oa := foreignObservation(t)
	ga := env.create(t, ta, "/Group", []byte(`{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+pa+`"}}]}`))
	pb := env.create(t, tb, "/Patient", patientBJSON("mrn-b"))
	before := env.scalar(t, `SELECT count(*) FROM fhir_history`)

	post := `{"resource":` + string(obsJSON("", pb, "b")) + `,"request":{"method":"POST","url":"Observation"}}`
	restore := failAudit(t, env.pool)
	defer restore()
	for _, tt := range []struct {
		name, method, path, body string
	}{
		{"transaction DELETE", "POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Observation/` + oa + `"}},` + post + `]}`},
		{"transaction PUT", "POST", "", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + string(obsJSON(oa, pb, "x")) + `,"request":{"method":"PUT","url":"Observation/` + oa + `"}}]}`},
		{"batch PUT", "POST", "", `{"resourceType":"Bundle","type":"batch","entry":[{"resource":` + string(obsJSON(oa, pb, "x")) + `,"request":{"method":"PUT","url":"Observation/` + oa + `"}}]}`},
		{"batch DELETE", "POST", "", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"DELETE","url":"Observation/` + oa + `"}}]}`},
		{"Group PUT", "PUT", "/Group/" + ga, `{"resourceType":"Group","id":"` + ga + `","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/` + pb + `"}}]}`},
	} {
		st, body, h := do(t, tt.method, env.base+tt.path, tb, []byte(tt.body))
		if st != 503 || !strings.Contains(string(body), `"OperationOutcome"`) || h.Get("Retry-After") == "" {
			t.Errorf("%s with the audit log failing = %d %s; want 503 OperationOutcome with Retry-After", tt.name, st, body)
		}
	}
	if n := env.scalar(t, `SELECT count(*) FROM fhir_history`); n != before {
		t.Errorf("%d versions written by requests whose refusals were not audited", n-before)
	}
}

func sameDenies[T comparable](got, want []T) bool {
	if len(got) != len(want) {
		return false
	}
	left := append([]T(nil), want...)
	for _, g := range got {
		found := false
		for i, w := range left {
			if g == w {
				left = append(left[:i], left[i+1:]...)
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// entryStatus is the status code of entry j of a Bundle response ("" when there is none).
func entryStatus(t testing.TB, body []byte, j int) string {
	t.Helper()
	var b struct {
		Entry []struct {
			Response struct {
				Status string `json:"status"`
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil || j >= len(b.Entry) {
		return ""
	}
	code, _, _ := strings.Cut(b.Entry[j].Response.Status, " ")
	return code
}
