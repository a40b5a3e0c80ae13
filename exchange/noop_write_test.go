package exchange

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// historyLen is the number of entries of GET [base]/typ/id/_history, failing t unless it
// answers 200 with a history Bundle.
func (env *writeEnv) historyLen(t testing.TB, tok, typ, id string) int {
	t.Helper()
	st, body, _ := do(t, "GET", env.base+"/"+typ+"/"+id+"/_history", tok, nil)
	var h struct {
		Type  string            `json:"type"`
		Entry []json.RawMessage `json:"entry"`
	}
	if err := json.Unmarshal(body, &h); st != 200 || err != nil || h.Type != "history" {
		t.Fatalf("GET %s/%s/_history = %d %s", typ, id, st, body)
	}
	return len(h.Entry)
}

// reformatted is body decoded and encoded again indented, its members sorted: the same
// JSON content in other bytes.
func reformatted(t testing.TB, body []byte) []byte {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNoOpUpdate: a PUT of the content the current version has (the body sent before, the
// body read back with its meta, the same JSON formatted otherwise) stores no new version
// and answers 200 with the current version, its ETag, Location and Last-Modified; each is
// still audited as an update. A PUT that changes anything the client controls (a value, a
// decimal's precision, a tag of its own) makes a new version.
func TestNoOpUpdate(t *testing.T) {
	env, ta, _, pa, oa := foreignObservation(t)
	personA := personOf(t, env.pool, pa)
	u := env.base + "/Observation/" + oa
	_, read, readH := do(t, "GET", u, ta, nil)

	for i, body := range [][]byte{obsJSON(oa, pa, "a"), obsJSON(oa, pa, "a"), read, reformatted(t, obsJSON(oa, pa, "a"))} {
		rid := "rq-noop-put-" + itoa(i)
		st, got, h := do(t, "PUT", u, ta, body, "X-Request-Id", rid)
		if st != 200 || h.Get("ETag") != `W/"1"` || !strings.HasSuffix(h.Get("Location"), "/Observation/"+oa+"/_history/1") ||
			h.Get("Last-Modified") != readH.Get("Last-Modified") || string(got) != string(read) {
			t.Fatalf("PUT %d of unchanged content = %d %s, ETag %q, Location %q, Last-Modified %q; want 200 with version 1 as read (%s)",
				i, st, got, h.Get("ETag"), h.Get("Location"), h.Get("Last-Modified"), read)
		}
		if evs := eventsOf(t, env.pool, rid); !sameBriefs(briefs(evs), []brief{{"update", personA, []string{"Observation/" + oa}}}) || evs[0].Outcome != "permit" {
			t.Errorf("PUT %d of unchanged content: events %+v, want one permitted update", i, evs)
		}
	}
	if cur, n := env.version(t, "Observation", oa); cur != 1 || n != 1 {
		t.Fatalf("after unchanged PUTs: version %d with %d history rows, want 1 and 1", cur, n)
	}
	if n := env.historyLen(t, ta, "Observation", oa); n != 1 {
		t.Fatalf("_history has %d entries after unchanged PUTs, want 1", n)
	}
	if st, got, _ := do(t, "PUT", u, ta, obsJSON(oa, pa, "a"), "If-Match", `W/"1"`); st != 200 || !strings.Contains(string(got), `"versionId":"1"`) {
		t.Fatalf("unchanged PUT with If-Match W/\"1\" = %d %s", st, got)
	}

	changed := []struct {
		name string
		body []byte
	}{
		{"a value", obsJSON(oa, pa, "b")},
		{"a tag of the client's", []byte(strings.Replace(string(obsJSON(oa, pa, "b")), `"status"`, `"meta":{"tag":[{"system":"urn:ehr","code":"x"}]},"status"`, 1))},
	}
	for i, tt := range changed {
		want := i + 2
		st, got, h := do(t, "PUT", u, ta, tt.body)
		if st != 200 || h.Get("ETag") != `W/"`+itoa(want)+`"` {
			t.Fatalf("PUT changing %s = %d %s, ETag %q; want version %d", tt.name, st, got, h.Get("ETag"), want)
		}
		if cur, n := env.version(t, "Observation", oa); cur != want || n != want {
			t.Fatalf("after changing %s: version %d with %d history rows, want %d", tt.name, cur, n, want)
		}
	}
	if n := env.historyLen(t, ta, "Observation", oa); n != 3 {
		t.Fatalf("_history has %d entries, want 3", n)
	}

	// Decimals keep their precision: 1.0 and 1.00 are different values in FHIR.
	qty := func(id, v string) []byte {
		idPart := ""
		if id != "" {
			idPart = `"id":"` + id + `",`
		}
		return []byte(`{"resourceType":"Observation",` + idPart + `"status":"final","code":{"text":"dose"},"subject":{"reference":"Patient/` + pa + `"},"valueQuantity":{"value":` + v + `,"unit":"mg"}}`)
	}
	oq := env.create(t, ta, "/Observation", qty("", "1.0"))
	if st, got, h := do(t, "PUT", env.base+"/Observation/"+oq, ta, qty(oq, "1.0")); st != 200 || h.Get("ETag") != `W/"1"` {
		t.Fatalf("PUT of the same quantity = %d %s, ETag %q; want version 1", st, got, h.Get("ETag"))
	}
	if st, got, h := do(t, "PUT", env.base+"/Observation/"+oq, ta, qty(oq, "1.00")); st != 200 || h.Get("ETag") != `W/"2"` {
		t.Fatalf("PUT of 1.00 over 1.0 = %d %s, ETag %q; want version 2", st, got, h.Get("ETag"))
	}
}

// TestNoOpPatch: a PATCH whose result is the current version's content (a replace with the
// same value, a test alone) stores no new version and answers 200 with the current one,
// audited as an update; a PATCH that changes a value makes version 2.
func TestNoOpPatch(t *testing.T) {
	env, ta, _, pa, oa := foreignObservation(t)
	personA := personOf(t, env.pool, pa)
	u := env.base + "/Observation/" + oa
	for i, patch := range []string{
		`[{"op":"replace","path":"/valueString","value":"a"}]`,
		`[{"op":"test","path":"/valueString","value":"a"}]`,
		`[{"op":"replace","path":"/meta/versionId","value":"7"}]`,
	} {
		rid := "rq-noop-patch-" + itoa(i)
		st, body, h := patchDo(t, u, ta, "", []byte(patch), "X-Request-Id", rid)
		if st != 200 || h.Get("ETag") != `W/"1"` || !strings.Contains(string(body), `"versionId":"1"`) {
			t.Fatalf("PATCH %s = %d %s, ETag %q; want 200 with version 1", patch, st, body, h.Get("ETag"))
		}
		if evs := eventsOf(t, env.pool, rid); !sameBriefs(briefs(evs), []brief{{"update", personA, []string{"Observation/" + oa}}}) {
			t.Errorf("PATCH %s: events %+v, want one update", patch, evs)
		}
	}
	if cur, n := env.version(t, "Observation", oa); cur != 1 || n != 1 {
		t.Fatalf("after no-op PATCHes: version %d with %d history rows, want 1 and 1", cur, n)
	}
	st, body, h := patchDo(t, u, ta, "", []byte(`[{"op":"replace","path":"/valueString","value":"b"}]`))
	if st != 200 || h.Get("ETag") != `W/"2"` {
		t.Fatalf("PATCH changing the value = %d %s, ETag %q; want version 2", st, body, h.Get("ETag"))
	}
	if cur, n := env.version(t, "Observation", oa); cur != 2 || n != 2 {
		t.Fatalf("after a changing PATCH: version %d with %d history rows, want 2 and 2", cur, n)
	}
}

// TestNoOpWriteNoOutbox: an Encounter's create puts its event in the outbox
// (outbox_events, which notifications and subscriptions are sent from); a PUT, a PATCH, a
// conditional update and a transaction's PUT entry that change nothing add no event and
// no version, and neither does an unchanged PUT of the Patient (no MPI re-link event);
// the first PUT that changes the Encounter adds its event.
func TestNoOpWriteNoOutbox(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	pid := env.create(t, ta, "/Patient", patientJSON("mrn-noop"))
	eid := env.create(t, ta, "/Encounter", encounterJSON("", pid, "visit-noop"))
	events := func() int {
		return env.scalar(t, `SELECT count(*) FROM outbox_events WHERE key = $1`, "Encounter/"+eid)
	}
	all := func() int { return env.scalar(t, `SELECT count(*) FROM outbox_events`) }
	if n := events(); n != 1 {
		t.Fatalf("the create left %d outbox events, want 1", n)
	}
	before := all()
	same := encounterJSON(eid, pid, "visit-noop")
	tx := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + string(same) +
		`,"request":{"method":"PUT","url":"Encounter/` + eid + `"}}]}`)
	writes := []struct {
		name string
		send func() (int, []byte, http.Header)
	}{
		{"PUT", func() (int, []byte, http.Header) { return do(t, "PUT", env.base+"/Encounter/"+eid, ta, same) }},
		{"PATCH", func() (int, []byte, http.Header) {
			return patchDo(t, env.base+"/Encounter/"+eid, ta, "", []byte(`[{"op":"replace","path":"/status","value":"finished"}]`))
		}},
		{"conditional PUT", func() (int, []byte, http.Header) {
			return do(t, "PUT", env.base+"/Encounter?identifier=urn:visit|visit-noop", ta, encounterJSON("", pid, "visit-noop"))
		}},
		{"PUT of the Patient", func() (int, []byte, http.Header) {
			return do(t, "PUT", env.base+"/Patient/"+pid, ta, withID(patientJSON("mrn-noop"), pid))
		}},
	}
	for _, w := range writes {
		if st, body, h := w.send(); st != 200 || h.Get("ETag") != `W/"1"` {
			t.Fatalf("%s of unchanged content = %d %s, ETag %q; want 200 with version 1", w.name, st, body, h.Get("ETag"))
		}
	}
	st, body, _ := do(t, "POST", env.base, ta, tx)
	if statuses, locations := bundleResponse(t, body); st != 200 || len(statuses) != 1 || statuses[0] != "200 OK" || locations[0] != "Encounter/"+eid+"/_history/1" {
		t.Fatalf("transaction PUT of unchanged content = %d %s; want 200 OK at version 1", st, body)
	}
	if cur, n := env.version(t, "Encounter", eid); cur != 1 || n != 1 {
		t.Fatalf("after unchanged writes: Encounter version %d with %d history rows, want 1 and 1", cur, n)
	}
	if cur, _ := env.version(t, "Patient", pid); cur != 1 {
		t.Fatalf("after an unchanged PUT: Patient version %d, want 1", cur)
	}
	if n, m := events(), all(); n != 1 || m != before {
		t.Fatalf("after unchanged writes: %d events of the Encounter (want 1), %d in the outbox (want %d)", n, m, before)
	}

	changed := []byte(strings.Replace(string(same), `"status":"finished"`, `"status":"in-progress"`, 1))
	if st, body, h := do(t, "PUT", env.base+"/Encounter/"+eid, ta, changed); st != 200 || h.Get("ETag") != `W/"2"` {
		t.Fatalf("PUT changing the status = %d %s, ETag %q; want version 2", st, body, h.Get("ETag"))
	}
	if n := events(); n != 2 {
		t.Fatalf("after a changing PUT: %d events of the Encounter, want 2", n)
	}
}
