package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/records"
)

// hgbJSON is a hemoglobin Observation (LOINC 718-7) of patient at effective, with value.
func hgbJSON(patient, effective, value string) []byte {
	return []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"718-7"}]},"subject":{"reference":"Patient/` +
		patient + `"},"effectiveDateTime":"` + effective + `","valueString":"` + value + `"}`)
}

// hgbCondition is the If-None-Exist an EHR sends for hgbJSON(patient, 2026-01-02T10:00:00Z, ...).
func hgbCondition(patient string) string {
	return "patient=Patient/" + patient + "&code=http://loinc.org|718-7&date=2026-01-02T10:00:00Z"
}

// sendFHIR is do for goroutines: a transport error comes back instead of failing the test.
func sendFHIR(method, u, tok string, body []byte, header ...string) (int, []byte, error) {
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// diagnostics returns the OperationOutcome's first diagnostics, failing the test unless
// body is an OperationOutcome.
func diagnostics(t *testing.T, body []byte) string {
	t.Helper()
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Diagnostics string `json:"diagnostics"`
		} `json:"issue"`
	}
	if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("not an OperationOutcome: %s", body)
	}
	return oo.Issue[0].Diagnostics
}

// TestConditionalCreateOnSearchParameters: If-None-Exist on patient, code and date creates
// the Observation when the member has none (201) and finds it afterwards (200, nothing
// new), however the condition is spelled; another member's matching Observation is never
// matched; a condition with a result parameter or an unknown parameter is 400 naming it,
// on POST and in a Bundle entry; ifNoneExist and a conditional reference in a Bundle take
// the same conditions.
func TestConditionalCreateOnSearchParameters(t *testing.T) {
	env := newWriteEnv(t)
	ta, tb := env.token(t, env.a.ID, allScopes), env.token(t, env.b.ID, allScopes)
	pa := env.create(t, ta, "/Patient", patientJSON("mrn-cond"))
	pb := env.create(t, tb, "/Patient", patientBJSON("mrn-cond-b"))
	obs := hgbJSON(pa, "2026-01-02T10:00:00Z", "13.5 g/dL")

	st, body, _ := do(t, "POST", env.base+"/Observation", ta, obs, "If-None-Exist", hgbCondition(pa))
	if st != 201 {
		t.Fatalf("conditional create with no match = %d %s; want 201", st, body)
	}
	id := idOf(t, body)
	for _, cond := range []string{
		hgbCondition(pa),
		"date=2026-01-02T11:00:00+01:00&code=http://loinc.org|718-7&patient=" + pa, // same condition, other spelling
		"code=http://loinc.org|718-7&patient=" + pa,
	} {
		if st, body, _ := do(t, "POST", env.base+"/Observation", ta, obs, "If-None-Exist", cond); st != 200 || idOf(t, body) != id {
			t.Errorf("conditional create matching %q = %d %s; want 200 with %s", cond, st, body, id)
		}
	}
	if n := env.count(t, env.a.ID, "Observation"); n != 1 {
		t.Fatalf("%d Observations stored; want 1", n)
	}
	// Another day is another Observation.
	if st, body, _ := do(t, "POST", env.base+"/Observation", ta, hgbJSON(pa, "2026-01-03T10:00:00Z", "13.1 g/dL"), "If-None-Exist",
		"patient=Patient/"+pa+"&code=http://loinc.org|718-7&date=2026-01-03T10:00:00Z"); st != 201 {
		t.Fatalf("conditional create of another day = %d %s; want 201", st, body)
	}

	// B's condition that A's Observations satisfy matches nothing of B's: B gets its own.
	if st, body, _ := do(t, "POST", env.base+"/Observation", tb, hgbJSON(pb, "2026-01-02T10:00:00Z", "12 g/dL"), "If-None-Exist",
		"code=http://loinc.org|718-7&date=2026-01-02T10:00:00Z"); st != 201 || idOf(t, body) == id {
		t.Fatalf("B's conditional create = %d %s; want 201 and a new resource", st, body)
	}
	if a, b := env.count(t, env.a.ID, "Observation"), env.count(t, env.b.ID, "Observation"); a != 2 || b != 1 {
		t.Fatalf("A has %d Observations, B %d; want 2 and 1", a, b)
	}

	for _, tt := range []struct{ cond, names string }{
		{hgbCondition(pa) + "&_count=1", "_count"},
		{hgbCondition(pa) + "&_sort=-date", "_sort"},
		{hgbCondition(pa) + "&color=red", "color"},
		{"code=http://loinc.org|718-7&status=", "status"},
		{"patient.identifier=" + syntheaMRN + "|mrn-cond", "patient.identifier"},
		{"_count=1", "_count"},
	} {
		st, body, _ := do(t, "POST", env.base+"/Observation", ta, obs, "If-None-Exist", tt.cond)
		if st != 400 || !strings.Contains(diagnostics(t, body), tt.names) {
			t.Errorf("If-None-Exist %q = %d %s; want 400 naming %s", tt.cond, st, body, tt.names)
		}
		entry := `{"resource":` + string(obs) + `,"request":{"method":"POST","url":"Observation","ifNoneExist":` + jsonString(tt.cond) + `}}`
		st, body, _ = do(t, "POST", env.base, ta, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[`+entry+`]}`))
		if st != 400 || !strings.Contains(diagnostics(t, body), tt.names) {
			t.Errorf("ifNoneExist %q = %d %s; want 400 naming %s", tt.cond, st, body, tt.names)
		}
	}
	if n := env.count(t, env.a.ID, "Observation"); n != 2 {
		t.Fatalf("%d Observations after the refusals; want 2", n)
	}

	// In a transaction: ifNoneExist finds the Observation, and a DiagnosticReport's
	// conditional reference on patient and code resolves to it.
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":` + string(obs) + `,
		 "request":{"method":"POST","url":"Observation","ifNoneExist":` + jsonString(hgbCondition(pa)) + `}},
		{"resource":{"resourceType":"DiagnosticReport","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"58410-2"}]},
		 "subject":{"reference":"Patient/` + pa + `"},"result":[{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"},
		 {"reference":` + jsonString("Observation?patient="+pa+"&code=http://loinc.org|718-7&date=2026-01-03") + `}]},
		 "request":{"method":"POST","url":"DiagnosticReport"}}]}`
	st, body, _ = do(t, "POST", env.base, ta, []byte(bundle))
	if st != 200 {
		t.Fatalf("transaction = %d %s", st, body)
	}
	var resp struct {
		Entry []struct {
			Response struct{ Status, Location string } `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &resp); err != nil || len(resp.Entry) != 2 || !strings.HasPrefix(resp.Entry[0].Response.Status, "200") ||
		!strings.Contains(resp.Entry[0].Response.Location, "Observation/"+id+"/") {
		t.Fatalf("transaction-response = %s; want the existing Observation %s (200) first", body, id)
	}
	var report []byte
	if err := env.pool.QueryRow(context.Background(), `SELECT body FROM fhir_resources WHERE type = 'DiagnosticReport' AND member_id = $1`, env.a.ID).Scan(&report); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(report, []byte(`"Observation/`+id+`"`)) || bytes.Contains(report, []byte("?")) || bytes.Count(report, []byte(`"Observation/`)) != 2 {
		t.Fatalf("DiagnosticReport = %s; want both results resolved, the first to %s", report, id)
	}
	if n := env.count(t, env.a.ID, "Observation"); n != 2 {
		t.Fatalf("%d Observations after the transaction; want 2", n)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestConditionalCreateWaitsForTheSameCondition: while one conditional create of an
// Observation by patient, code and date has created it but not committed, another with
// the same condition (spelled differently) waits on the condition's lock, then finds the
// first one's Observation (200) and creates nothing. Without the lock, or with a key that
// depended on the spelling, the second would see no match and create a duplicate.
func TestConditionalCreateWaitsForTheSameCondition(t *testing.T) {
	env := newWriteEnv(t)
	ctx := context.Background()
	ta := env.token(t, env.a.ID, allScopes)
	pa := env.create(t, ta, "/Patient", patientJSON("mrn-wait"))
	obs := hgbJSON(pa, "2026-01-02T10:00:00Z", "13.5 g/dL")
	res, err := fhir.Parse(obs)
	if err != nil {
		t.Fatal(err)
	}

	first, err := env.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx)
	var w records.Writes
	created, status, err := env.srv.createIfNoneExist(ctx, first, env.a, res, hgbCondition(pa), &w)
	if err != nil || status != 201 {
		t.Fatalf("first conditional create = %d, %v; want 201", status, err)
	}

	type answer struct {
		status int
		body   []byte
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		st, body, err := sendFHIR("POST", env.base+"/Observation", ta, obs,
			"If-None-Exist", "code=http://loinc.org|718-7,http://loinc.org|718-7&patient="+pa+"&date=2026-01-02T05:00:00-05:00")
		done <- answer{st, body, err}
	}()
	// The second must wait on the advisory lock while the first is uncommitted.
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case a := <-done:
			t.Fatalf("the second conditional create answered %d %s (%v) before the first committed; want it to wait", a.status, a.body, a.err)
		default:
		}
		var n int
		if err := env.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second conditional create never waited on the condition's lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.err != nil || a.status != 200 || idOf(t, a.body) != created.ID {
		t.Fatalf("second conditional create = %d %s %v; want 200 with %s", a.status, a.body, a.err, created.ID)
	}
	if n := env.count(t, env.a.ID, "Observation"); n != 1 {
		t.Fatalf("%d Observations stored; want 1", n)
	}
}

// TestConditionalCreateConcurrentOnSearchParameters: concurrent POSTs with the same
// If-None-Exist on patient, code and date create exactly one Observation, which every
// answer names.
func TestConditionalCreateConcurrentOnSearchParameters(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	pa := env.create(t, ta, "/Patient", patientJSON("mrn-race"))
	obs := hgbJSON(pa, "2026-01-02T10:00:00Z", "13.5 g/dL")
	const n = 8
	var wg sync.WaitGroup
	statuses, bodies, failures := make([]int, n), make([][]byte, n), make([]error, n)
	for i := range n {
		wg.Go(func() {
			statuses[i], bodies[i], failures[i] = sendFHIR("POST", env.base+"/Observation", ta, obs, "If-None-Exist", hgbCondition(pa))
		})
	}
	wg.Wait()
	created := 0
	var id string
	for i := range n {
		if failures[i] != nil || statuses[i] != 201 && statuses[i] != 200 {
			t.Fatalf("conditional create %d = %d %s %v", i, statuses[i], bodies[i], failures[i])
		}
		if statuses[i] == 201 {
			created++
		}
		if got := idOf(t, bodies[i]); id == "" {
			id = got
		} else if got != id {
			t.Fatalf("answers name %s and %s; want one Observation", id, got)
		}
	}
	if stored := env.count(t, env.a.ID, "Observation"); created != 1 || stored != 1 {
		t.Fatalf("%d created, %d stored; want exactly 1", created, stored)
	}
}

// TestConditionalUpdateDeletePatchOnSearchParameters: PUT, PATCH and DELETE
// Observation?patient=&code=&date= act on the member's one match (PUT creates when there
// is none); another member's condition never reaches it.
func TestConditionalUpdateDeletePatchOnSearchParameters(t *testing.T) {
	env := newWriteEnv(t)
	ta, tb := env.token(t, env.a.ID, allScopes), env.token(t, env.b.ID, allScopes)
	pa := env.create(t, ta, "/Patient", patientJSON("mrn-upd"))
	pb := env.create(t, tb, "/Patient", patientBJSON("mrn-upd-b"))
	cond := "/Observation?" + strings.ReplaceAll(hgbCondition(pa), "|", "%7C")

	st, body, _ := do(t, "PUT", env.base+cond, ta, hgbJSON(pa, "2026-01-02T10:00:00Z", "13.5 g/dL"))
	if st != 201 {
		t.Fatalf("conditional update with no match = %d %s; want 201", st, body)
	}
	id := idOf(t, body)
	st, body, h := do(t, "PUT", env.base+cond, ta, hgbJSON(pa, "2026-01-02T10:00:00Z", "13.6 g/dL"))
	if st != 200 || idOf(t, body) != id || h.Get("ETag") != `W/"2"` || !strings.Contains(string(body), "13.6") {
		t.Fatalf("conditional update with one match = %d %s %q; want 200, version 2 of %s", st, body, h.Get("ETag"), id)
	}
	patch := []byte(`[{"op":"replace","path":"/valueString","value":"13.7 g/dL"}]`)
	if st, body, h := patchDo(t, env.base+cond, ta, "", patch); st != 200 || idOf(t, body) != id || h.Get("ETag") != `W/"3"` {
		t.Fatalf("conditional PATCH = %d %s; want 200, version 3 of %s", st, body, id)
	}

	// B: the same kind of condition (code and date, which A's Observation satisfies)
	// never matches A's. Its PUT creates B's own; its DELETE deletes only B's own.
	bcond := "/Observation?code=http://loinc.org%7C718-7&date=2026-01-02T10:00:00Z"
	if st, body, _ := do(t, "PUT", env.base+bcond, tb, hgbJSON(pb, "2026-01-02T10:00:00Z", "12 g/dL")); st != 201 || idOf(t, body) == id {
		t.Fatalf("B's conditional update = %d %s; want 201 and a new resource", st, body)
	}
	if st, body, _ := patchDo(t, env.base+bcond+"&patient="+pa, tb, "", patch); st != 404 {
		t.Fatalf("B's conditional PATCH naming A's patient = %d %s; want 404", st, body)
	}
	if st, _, _ := do(t, "DELETE", env.base+bcond, tb, nil); st != 204 || env.count(t, env.b.ID, "Observation") != 0 || env.count(t, env.a.ID, "Observation") != 1 {
		t.Fatalf("B's conditional delete = %d; B has %d, A %d; want 204, 0, 1", st, env.count(t, env.b.ID, "Observation"), env.count(t, env.a.ID, "Observation"))
	}

	// Two matches: 412, nothing changed.
	env.create(t, ta, "/Observation", hgbJSON(pa, "2026-01-02T10:00:00Z", "dup"))
	if st, _, _ := do(t, "DELETE", env.base+"/Observation?patient="+pa+"&code=http://loinc.org%7C718-7", ta, nil); st != http.StatusPreconditionFailed {
		t.Fatalf("conditional delete with two matches = %d; want 412", st)
	}
	if st, body, _ := do(t, "DELETE", env.base+cond+"&_count=1", ta, nil); st != 400 || !strings.Contains(diagnostics(t, body), "_count") {
		t.Fatalf("conditional delete with _count = %d %s; want 400 naming _count", st, body)
	}
	if n := env.count(t, env.a.ID, "Observation"); n != 2 {
		t.Fatalf("%d Observations; want 2", n)
	}
	// _id with the condition picks one of the two: the first Observation goes, the copy stays.
	if st, _, _ := do(t, "DELETE", env.base+"/Observation?_id="+id+"&status=final", ta, nil); st != 204 {
		t.Fatalf("conditional delete by _id and status = %d; want 204", st)
	}
	if st, _, _ := do(t, "GET", env.base+"/Observation/"+id, ta, nil); st != 404 && st != 410 {
		t.Fatalf("read after the conditional delete = %d", st)
	}
	if n := env.count(t, env.a.ID, "Observation"); n != 1 {
		t.Fatalf("%d Observations after the delete; want 1", n)
	}
}

// TestMetadataConditionalOnSearchParameters: the CapabilityStatement lists conditional
// create, update and delete for every type the generic handlers write, Observation (which
// has no identifier parameter) included, and for none written by its own handler.
func TestMetadataConditionalOnSearchParameters(t *testing.T) {
	env := newWriteEnv(t)
	st, body, _ := do(t, "GET", env.base+"/metadata", "", nil)
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type              string `json:"type"`
				ConditionalCreate bool   `json:"conditionalCreate"`
				ConditionalUpdate bool   `json:"conditionalUpdate"`
				ConditionalDelete string `json:"conditionalDelete"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.Unmarshal(body, &cs); err != nil || st != 200 || len(cs.Rest) != 1 {
		t.Fatalf("metadata = %d, %v", st, err)
	}
	conditional := map[string]bool{}
	for _, r := range cs.Rest[0].Resource {
		conditional[r.Type] = r.ConditionalCreate && r.ConditionalUpdate && r.ConditionalDelete == "single"
	}
	for typ, want := range map[string]bool{"Observation": true, "Organization": true, "Encounter": true, "Claim": true,
		"Consent": false, "Group": false, "Endpoint": false, "Subscription": false} {
		if conditional[typ] != want {
			t.Errorf("%s lists conditional create, update and delete: %v, want %v", typ, conditional[typ], want)
		}
	}
}
