package exchange

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/concord-hie/concord/audit"
)

const mimeJSONPatch = "application/json-patch+json"

// patchDo sends PATCH u with tok and body as contentType (JSON Patch when ""), with the
// header pairs, and returns the status, body and headers.
func patchDo(t testing.TB, u, tok, contentType string, body []byte, header ...string) (int, []byte, http.Header) {
	t.Helper()
	st, b, h, err := sendPatch(u, tok, contentType, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return st, b, h
}

// sendPatch is patchDo that returns a transport error instead of failing a test, for
// goroutines.
func sendPatch(u, tok, contentType string, body []byte, header ...string) (int, []byte, http.Header, error) {
	if contentType == "" {
		contentType = mimeJSONPatch
	}
	req, err := http.NewRequest(http.MethodPatch, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// version is the current version of typ/id and the number of its history rows.
func (env *writeEnv) version(t testing.TB, typ, id string) (current, versions int) {
	t.Helper()
	return env.scalar(t, `SELECT version FROM fhir_resources WHERE type = $1 AND id = $2`, typ, id),
		env.scalar(t, `SELECT count(*) FROM fhir_history WHERE type = $1 AND id = $2`, typ, id)
}

// outcomeIssue decodes the first issue of an OperationOutcome body, failing t when body is
// not one.
func outcomeIssue(t testing.TB, body []byte) (code, diagnostics string) {
	t.Helper()
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Code        string `json:"code"`
			Diagnostics string `json:"diagnostics"`
		} `json:"issue"`
	}
	if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("not an OperationOutcome: %s", body)
	}
	return oo.Issue[0].Code, oo.Issue[0].Diagnostics
}

// TestPatchResource: a member's JSON Patch of its own Observation is stored like a PUT of
// the patched body: a new version with server meta, answered 200 with ETag and Location,
// kept in _history beside the old one, and audited as an update of the patient's record.
// If-Match is honoured: a stale version is 412 and changes nothing.
func TestPatchResource(t *testing.T) {
	env, ta, _, pa, oa := foreignObservation(t)
	personA := personOf(t, env.pool, pa)
	u := env.base + "/Observation/" + oa
	patch := `[{"op":"test","path":"/valueString","value":"a"},
		{"op":"replace","path":"/valueString","value":"b"},
		{"op":"add","path":"/note","value":[{"text":"rechecked"}]},
		{"op":"replace","path":"/meta/versionId","value":"99"}]`
	st, body, h := patchDo(t, u, ta, "", []byte(patch), "X-Request-Id", "rq-patch")
	if st != 200 || h.Get("ETag") != `W/"2"` || !strings.HasSuffix(h.Get("Location"), "/Observation/"+oa+"/_history/2") {
		t.Fatalf("PATCH = %d %s, ETag %q, Location %q", st, body, h.Get("ETag"), h.Get("Location"))
	}
	var got struct {
		ID   string `json:"id"`
		Meta struct {
			VersionID string `json:"versionId"`
			Source    string `json:"source"`
		} `json:"meta"`
		ValueString string                     `json:"valueString"`
		Note        []struct{ Text string }    `json:"note"`
		Subject     struct{ Reference string } `json:"subject"`
	}
	if err := json.Unmarshal(body, &got); err != nil || got.ID != oa || got.Meta.VersionID != "2" || got.ValueString != "b" ||
		len(got.Note) != 1 || got.Subject.Reference != "Patient/"+pa || !strings.HasSuffix(got.Meta.Source, "/members/"+env.a.ID) {
		t.Fatalf("patched body %s (%v)", body, err)
	}
	if st, b, _ := do(t, "GET", u, ta, nil); st != 200 || !strings.Contains(string(b), `"valueString":"b"`) {
		t.Errorf("read after PATCH = %d %s", st, b)
	}
	if st, b, _ := do(t, "GET", u+"/_history/1", ta, nil); st != 200 || !strings.Contains(string(b), `"valueString":"a"`) {
		t.Errorf("vread 1 after PATCH = %d %s", st, b)
	}
	if cur, n := env.version(t, "Observation", oa); cur != 2 || n != 2 {
		t.Errorf("version %d with %d history rows, want 2 and 2", cur, n)
	}
	evs := eventsOf(t, env.pool, "rq-patch")
	if !sameBriefs(briefs(evs), []brief{{"update", personA, []string{"Observation/" + oa}}}) || evs[0].Outcome != string(audit.Permit) || evs[0].Org != env.a.ID {
		t.Errorf("PATCH events %+v, want one permitted update by A", evs)
	}

	// If-Match: a stale version is refused and changes nothing; the current one is applied.
	replace := []byte(`[{"op":"replace","path":"/valueString","value":"c"}]`)
	st, body, _ = patchDo(t, u, ta, "", replace, "If-Match", `W/"1"`, "X-Request-Id", "rq-patch-stale")
	if code, _ := outcomeIssue(t, body); st != http.StatusPreconditionFailed || code != "conflict" {
		t.Fatalf("PATCH If-Match W/\"1\" = %d %s; want 412", st, body)
	}
	if cur, n := env.version(t, "Observation", oa); cur != 2 || n != 2 || len(eventsOf(t, env.pool, "rq-patch-stale")) != 0 {
		t.Errorf("after a stale If-Match: version %d, %d rows, events; want 2, 2, none", cur, n)
	}
	if st, body, _ = patchDo(t, u, ta, "", replace, "If-Match", `W/"two"`); st != 400 {
		t.Errorf("PATCH with a malformed If-Match = %d %s; want 400", st, body)
	}
	if st, body, h = patchDo(t, u, ta, "", replace, "If-Match", `W/"2"`); st != 200 || h.Get("ETag") != `W/"3"` || !strings.Contains(string(body), `"valueString":"c"`) {
		t.Fatalf("PATCH If-Match W/\"2\" = %d %s, ETag %q", st, body, h.Get("ETag"))
	}
}

// TestPatchRefusal: a PATCH (JSON Patch or FHIRPath Patch) of another member's resource, of
// an unknown id or of the member's own deleted resource answers the same 404 a PUT of it
// does (identical bodies but for the request ID), after the same deny event; the patch is
// never applied, so a probe that would fail against the hidden resource (a JSON Patch test
// operation, a FHIRPath where() that selects nothing: 422 were it applied) still answers
// 404. In a Bundle too: B's transaction patching A's Observation is 404 and stores nothing.
func TestPatchRefusal(t *testing.T) {
	for _, f := range []struct {
		name, contentType string
		probe             string
		entry             func(url, patch string) string
	}{
		{"JSON Patch", "", `[{"op":"test","path":"/valueString","value":"guess"},{"op":"replace","path":"/valueString","value":"evil"}]`, patchEntry},
		{"FHIRPath Patch", "application/fhir+json", fhirPathPatch(fhirPathOp("replace", "Observation.where(value = 'guess').status", fhirPathPart("value", "valueCode", `"amended"`))), fhirPathEntry},
	} {
		t.Run(f.name, func(t *testing.T) { patchRefused(t, f.contentType, []byte(f.probe), f.entry) })
	}
}

// patchRefused checks TestPatchRefusal for one patch format: probe sent as contentType, and
// entry, which makes a Bundle PATCH entry of it.
func patchRefused(t *testing.T, contentType string, probe []byte, entry func(url, patch string) string) {
	env, ta, tb, pa, oa := foreignObservation(t)
	personA := personOf(t, env.pool, pa)
	gone := env.create(t, ta, "/Observation", obsJSON("", pa, "gone"))
	if st, b, _ := do(t, "DELETE", env.base+"/Observation/"+gone, ta, nil); st != 204 {
		t.Fatalf("setup: DELETE = %d %s", st, b)
	}
	before := env.scalar(t, `SELECT count(*) FROM fhir_history`)
	// The 404 a PUT gets, for comparison.
	_, putBody, _ := do(t, "PUT", env.base+"/Observation/"+unknownID, tb, obsJSON(unknownID, pa, "x"), "X-Request-Id", "rq-put-404")
	want404 := strings.ReplaceAll(string(putBody), "rq-put-404", "RID")

	for i, tt := range []struct {
		name, tok, id, reason, patient string
	}{
		{"another member's Observation", tb, oa, "not-owner", personA},
		{"another member's deleted Observation", tb, gone, "not-owner", personA},
		{"an unknown id", tb, unknownID, "not-found", ""},
		{"the member's own deleted Observation", ta, gone, "deleted", personA},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rid := "rq-patch-refused-" + strconv.Itoa(i)
			st, body, _ := patchDo(t, env.base+"/Observation/"+tt.id, tt.tok, contentType, probe, "X-Request-Id", rid)
			if st != 404 || strings.ReplaceAll(string(body), rid, "RID") != want404 {
				t.Fatalf("PATCH = %d %s; want the PUT's 404 %s", st, body, want404)
			}
			evs := eventsOf(t, env.pool, rid)
			if !sameBriefs(briefs(evs), []brief{{"update", tt.patient, []string{"Observation/" + tt.id}}}) ||
				evs[0].Outcome != "deny" || evs[0].Reason != tt.reason {
				t.Fatalf("events %+v; want one deny of the update, reason %s", evs, tt.reason)
			}
		})
	}
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[` + entry("Observation/"+oa, string(probe)) + `]}`
	if st, body, _ := do(t, "POST", env.base, tb, []byte(tx)); st != 404 {
		t.Errorf("transaction patching another member's Observation = %d %s; want 404", st, body)
	}
	if n := env.scalar(t, `SELECT count(*) FROM fhir_history`); n != before {
		t.Errorf("%d versions written by refused patches", n-before)
	}
	if st, b, _ := do(t, "GET", env.base+"/Observation/"+oa, ta, nil); st != 200 || !strings.Contains(string(b), `"valueString":"a"`) || !strings.Contains(string(b), `"status":"final"`) {
		t.Errorf("A's Observation after refused patches = %d %s", st, b)
	}
}

// TestPatchUnprocessable: a well-formed patch that cannot be applied (a failed test, a
// path that does not exist, an index out of range) is 422 with an OperationOutcome naming
// the operation; nothing is stored and no event written, the operations before the
// failing one included.
func TestPatchUnprocessable(t *testing.T) {
	env, ta, _, _, oa := foreignObservation(t)
	for i, tt := range []struct{ name, patch, diag string }{
		{"failed test", `[{"op":"replace","path":"/status","value":"amended"},{"op":"test","path":"/valueString","value":"not a"}]`, "operation 2 (test"},
		{"remove of a missing element", `[{"op":"remove","path":"/interpretation"}]`, "does not exist"},
		{"index out of range", `[{"op":"add","path":"/code/coding/5","value":{"code":"x"}}]`, "out of range"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rid := "rq-patch-422-" + strconv.Itoa(i)
			st, body, h := patchDo(t, env.base+"/Observation/"+oa, ta, "", []byte(tt.patch), "X-Request-Id", rid)
			code, diag := outcomeIssue(t, body)
			if st != http.StatusUnprocessableEntity || code != "processing" || !strings.Contains(diag, tt.diag) || h.Get("Cache-Control") != "no-store" {
				t.Fatalf("PATCH = %d %s; want 422 processing naming %q", st, body, tt.diag)
			}
			if cur, n := env.version(t, "Observation", oa); cur != 1 || n != 1 {
				t.Errorf("version %d with %d history rows; want 1 and 1", cur, n)
			}
			if evs := eventsOf(t, env.pool, rid); len(evs) != 0 {
				t.Errorf("events %+v; want none", evs)
			}
		})
	}
}

// TestPatchRefusedRequests: malformed patches and patched bodies that are not a valid
// resource are 400, other media types 415, a token without the update scope 403, a type
// with its own write handler 405, a result beyond the body limit 413; each with an
// OperationOutcome, and nothing stored.
func TestPatchRefusedRequests(t *testing.T) {
	env, ta, tb, _, oa := foreignObservation(t)
	pb := env.create(t, tb, "/Patient", patientBJSON("mrn-b"))
	// Into another member's Patient: refused as the PUT of the same body is.
	putStatus, _, _ := do(t, "PUT", env.base+"/Observation/"+oa, ta, obsJSON(oa, pb, "a"))
	if putStatus < 400 {
		t.Fatalf("setup: PUT into B's Patient = %d", putStatus)
	}
	doubling := make([]string, 24)
	for i := range doubling {
		doubling[i] = `{"op":"copy","from":"","path":"/contained` + strconv.Itoa(i) + `"}`
	}
	u := env.base + "/Observation/" + oa
	tests := []struct {
		name, url, tok, contentType, body string
		status                            int
		diag                              string
	}{
		{"not an array", u, ta, "", `{"op":"remove","path":"/valueString"}`, 400, "JSON array"},
		{"not JSON", u, ta, "", `[{"op":"remove",`, 400, "JSON Patch"},
		{"empty body", u, ta, "", ``, 400, "JSON Patch"},
		{"unknown op", u, ta, "", `[{"op":"delete","path":"/valueString"}]`, 400, "unknown op"},
		{"missing path", u, ta, "", `[{"op":"remove"}]`, 400, `no "path"`},
		{"missing value", u, ta, "", `[{"op":"replace","path":"/valueString"}]`, 400, `no "value"`},
		{"missing from", u, ta, "", `[{"op":"copy","path":"/valueString"}]`, 400, `no "from"`},
		{"duplicate keys", u, ta, "", `[{"op":"replace","path":"/valueString","value":"x","value":"y"}]`, 400, "duplicate"},
		{"case-variant keys", u, ta, "", `[{"op":"replace","path":"/valueString","value":"x","Value":"y"}]`, 400, "case"},
		{"malformed pointer", u, ta, "", `[{"op":"remove","path":"valueString"}]`, 400, "JSON Pointer"},
		{"unknown element in the result", u, ta, "", `[{"op":"add","path":"/colour","value":"red"}]`, 400, "unknown element"},
		{"required element removed", u, ta, "", `[{"op":"remove","path":"/status"}]`, 400, "required"},
		{"id changed", u, ta, "", `[{"op":"replace","path":"/id","value":"another"}]`, 400, "id"},
		{"id removed", u, ta, "", `[{"op":"remove","path":"/id"}]`, 400, "id"},
		{"resourceType changed", u, ta, "", `[{"op":"replace","path":"/resourceType","value":"Basic"}]`, 400, ""},
		{"moved into an unknown Patient", u, ta, "", `[{"op":"replace","path":"/subject/reference","value":"Patient/nosuchpatient"}]`, 400, ""},
		{"moved into another member's Patient", u, ta, "", `[{"op":"replace","path":"/subject/reference","value":"Patient/` + pb + `"}]`, putStatus, ""},
		{"FHIRPath Patch outside the subset", u, ta, "application/fhir+json", `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Observation.value.exists()"}]}]}`, 400, "exists()"},
		{"JSON Merge Patch", u, ta, "application/merge-patch+json", `{"valueString":null}`, 415, "JSON Patch"},
		{"plain JSON", u, ta, "application/json", `[{"op":"remove","path":"/valueString"}]`, 415, "JSON Patch"},
		{"no update scope", u, env.token(t, env.a.ID, "system/Observation.crs"), "", `[{"op":"replace","path":"/valueString","value":"x"}]`, 403, ""},
		{"Consent", env.base + "/Consent/" + oa, ta, "", `[{"op":"remove","path":"/status"}]`, 405, ""},
		{"Endpoint", env.base + "/Endpoint/" + oa, ta, "", `[{"op":"remove","path":"/status"}]`, 405, ""},
		{"Binary", env.base + "/Binary/" + oa, ta, "", `[{"op":"remove","path":"/data"}]`, 405, ""},
		{"unknown type", env.base + "/Bogus/" + oa, ta, "", `[{"op":"remove","path":"/status"}]`, 404, ""},
		{"result too large", u, ta, "", "[" + strings.Join(doubling, ",") + "]", 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body, _ := patchDo(t, tt.url, tt.tok, tt.contentType, []byte(tt.body))
			_, diag := outcomeIssue(t, body)
			if st != tt.status || !strings.Contains(diag, tt.diag) {
				t.Fatalf("PATCH = %d %s; want %d naming %q", st, body, tt.status, tt.diag)
			}
		})
	}
	untouched(t, env, "Observation", oa)
}

// untouched fails t unless typ/id is still at its first version and no update was audited:
// what every refused patch must leave.
func untouched(t *testing.T, env *writeEnv, typ, id string) {
	t.Helper()
	if cur, n := env.version(t, typ, id); cur != 1 || n != 1 {
		t.Errorf("%s version %d with %d history rows after refused patches; want 1 and 1", typ, cur, n)
	}
	if n := env.scalar(t, `SELECT count(*) FROM audit_events WHERE action = 'update'`); n != 0 {
		t.Errorf("%d update events after refused patches; want none", n)
	}
}

// TestPatchConcurrent: patches of one resource sent at once, without If-Match, are each
// applied to the version the one before stored: none is lost, every one answers 200. A
// Patient's patches take its MRN lock and row lock in the order its PUT and a create of
// the same MRN take them, so patches and creates of one Patient at once all succeed.
func TestPatchConcurrent(t *testing.T) {
	env, ta, _, pa, oa := foreignObservation(t)
	u := env.base + "/Observation/" + oa
	if st, body, _ := patchDo(t, u, ta, "", []byte(`[{"op":"add","path":"/note","value":[{"text":"n0"}]}]`)); st != 200 {
		t.Fatalf("first PATCH = %d %s", st, body)
	}
	const n = 6
	var wg sync.WaitGroup
	statuses, errors := make([]int, 3*n), make([]error, 3*n)
	for i := range n {
		wg.Add(3)
		go func() {
			defer wg.Done()
			statuses[i], _, _, errors[i] = sendPatch(u, ta, "", []byte(`[{"op":"add","path":"/note/-","value":{"text":"n`+strconv.Itoa(i+1)+`"}}]`))
		}()
		go func() {
			defer wg.Done()
			statuses[n+i], _, _, errors[n+i] = sendPatch(env.base+"/Patient/"+pa, ta, "", []byte(`[{"op":"add","path":"/name/0/given/-","value":"G`+strconv.Itoa(i)+`"}]`))
		}()
		go func() { // the same MRN sent again: intake takes the MRN lock, then the row
			defer wg.Done()
			req, _ := http.NewRequest("POST", env.base+"/Patient", bytes.NewReader(patientJSON("mrn-a")))
			req.Header.Set("Authorization", "Bearer "+ta)
			req.Header.Set("Content-Type", "application/fhir+json")
			resp, err := http.DefaultClient.Do(req)
			if errors[2*n+i] = err; err == nil {
				statuses[2*n+i] = resp.StatusCode
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	for i, st := range statuses {
		if st != 200 || errors[i] != nil {
			t.Errorf("concurrent request %d = %d, %v; want 200", i, st, errors[i])
		}
	}
	st, body, _ := do(t, "GET", u, ta, nil)
	var got struct {
		Note []struct{ Text string } `json:"note"`
	}
	if err := json.Unmarshal(body, &got); st != 200 || err != nil || len(got.Note) != n+1 {
		t.Fatalf("after the concurrent patches: %d %s", st, body)
	}
	if cur, versions := env.version(t, "Observation", oa); cur != n+2 || versions != n+2 {
		t.Errorf("Observation version %d with %d history rows, want %d", cur, versions, n+2)
	}
	if cur, versions := env.version(t, "Patient", pa); cur != 2*n+1 || versions != 2*n+1 {
		t.Errorf("Patient version %d with %d history rows, want %d", cur, versions, 2*n+1)
	}
}

// TestPatchPatient: a Patient is patched through the same intake as its PUT: its MPI
// link stays (same person, one source record), a patch that takes away the MRN in the
// member's namespace is refused like such a PUT, and one that changes it is 409.
func TestPatchPatient(t *testing.T) {
	env, ta, _, pa, _ := foreignObservation(t)
	person := personOf(t, env.pool, pa)
	u := env.base + "/Patient/" + pa
	st, body, h := patchDo(t, u, ta, "", []byte(`[{"op":"add","path":"/name/0/given/-","value":"Byron"},{"op":"add","path":"/telecom","value":[{"system":"phone","value":"555-0100"}]}]`))
	if st != 200 || h.Get("ETag") != `W/"2"` || !strings.Contains(string(body), `"given":["Ada","Byron"]`) {
		t.Fatalf("PATCH Patient = %d %s %q", st, body, h.Get("ETag"))
	}
	if got := personOf(t, env.pool, pa); got != person {
		t.Errorf("person after PATCH %s, want %s", got, person)
	}
	if n := env.scalar(t, `SELECT count(*) FROM mpi_source_records WHERE patient_id = $1`, pa); n != 1 {
		t.Errorf("%d source records of the Patient, want 1", n)
	}
	st, body, _ = patchDo(t, u, ta, "", []byte(`[{"op":"remove","path":"/identifier"}]`))
	if st < 400 || st >= 500 {
		t.Fatalf("PATCH removing the MRN = %d %s; want a 4xx", st, body)
	}
	outcomeIssue(t, body)
	// A patch may not change the MRN, to a new one or to another Patient's: 409 before it
	// would lock the new MRN (TestLockOrderPatchMRNAndPut).
	env.create(t, ta, "/Patient", patientJSON("mrn-other"))
	for _, mrn := range []string{"mrn-new", "mrn-other"} {
		st, body, _ = patchDo(t, u, ta, "", []byte(`[{"op":"replace","path":"/identifier/0/value","value":"`+mrn+`"}]`))
		if code, _ := outcomeIssue(t, body); st != http.StatusConflict || code != "conflict" {
			t.Errorf("PATCH changing the MRN to %s = %d %s; want 409", mrn, st, body)
		}
	}
	if cur, _ := env.version(t, "Patient", pa); cur != 2 {
		t.Errorf("Patient version %d after the refused patches, want 2", cur)
	}
}

// TestConditionalPatch: PATCH [type]?identifier=system|value patches the member's one
// match; none (another member's resource never matches) is 404, two are 412, and a
// condition that cannot be evaluated is 400.
func TestConditionalPatch(t *testing.T) {
	env, ta, tb, pa, _ := foreignObservation(t)
	enc := env.create(t, ta, "/Encounter", encounterJSON("", pa, "v1"))
	patch := []byte(`[{"op":"test","path":"/status","value":"finished"},{"op":"replace","path":"/status","value":"cancelled"}]`)
	st, body, h := patchDo(t, env.base+"/Encounter?identifier=urn:visit|v1", ta, "", patch)
	if st != 200 || idOf(t, body) != enc || h.Get("ETag") != `W/"2"` || !strings.Contains(string(body), `"status":"cancelled"`) {
		t.Fatalf("conditional PATCH = %d %s", st, body)
	}
	if st, body, _ = patchDo(t, env.base+"/Encounter?identifier=urn:visit|v1", tb, "", patch); st != 404 {
		t.Errorf("conditional PATCH by another member = %d %s; want 404", st, body)
	}
	if st, body, _ = patchDo(t, env.base+"/Encounter?identifier=urn:visit|none", ta, "", patch); st != 404 {
		t.Errorf("conditional PATCH without a match = %d %s; want 404", st, body)
	}
	env.create(t, ta, "/Encounter", encounterJSON("", pa, "v2"))
	env.create(t, ta, "/Encounter", encounterJSON("", pa, "v2"))
	if st, body, _ = patchDo(t, env.base+"/Encounter?identifier=urn:visit|v2", ta, "", patch); st != http.StatusPreconditionFailed {
		t.Errorf("conditional PATCH with two matches = %d %s; want 412", st, body)
	}
	if st, body, _ = patchDo(t, env.base+"/Encounter?status=finished&_sort=date", ta, "", patch); st != 400 {
		t.Errorf("conditional PATCH with _sort = %d %s; want 400", st, body)
	}
	if cur, _ := env.version(t, "Encounter", enc); cur != 2 {
		t.Errorf("Encounter version %d, want 2", cur)
	}
}

// TestMetadataListsPatch: the CapabilityStatement lists patch wherever the generic update
// stores the type, never for a type written by its own handler, and names JSON Patch and
// FHIRPath Patch as the patch formats.
func TestMetadataListsPatch(t *testing.T) {
	env := newWriteEnv(t)
	req, _ := http.NewRequest("GET", env.base+"/metadata", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cs struct {
		PatchFormat []string `json:"patchFormat"`
		Rest        []struct {
			Resource []struct {
				Type        string `json:"type"`
				Interaction []struct {
					Code string `json:"code"`
				} `json:"interaction"`
			} `json:"resource"`
		} `json:"rest"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cs); err != nil || resp.StatusCode != 200 || len(cs.Rest) != 1 {
		t.Fatalf("metadata = %d, %v", resp.StatusCode, err)
	}
	if !slices.Equal(cs.PatchFormat, []string{mimeJSONPatch, "application/fhir+json"}) {
		t.Errorf("patchFormat %v", cs.PatchFormat)
	}
	patchable := map[string]bool{}
	for _, r := range cs.Rest[0].Resource {
		for _, i := range r.Interaction {
			if i.Code == "patch" {
				patchable[r.Type] = true
			}
		}
	}
	for typ, want := range map[string]bool{"Observation": true, "Patient": true, "Encounter": true, "Consent": false, "Group": false,
		"Binary": false, "Endpoint": false, "Subscription": false, "AuditEvent": false} {
		if patchable[typ] != want {
			t.Errorf("%s lists patch: %v, want %v", typ, patchable[typ], want)
		}
	}
}

// patchEntry is a Bundle entry that PATCHes url with patch, carried as FHIR R4 carries a
// JSON Patch in a Bundle: a Binary of contentType application/json-patch+json.
func patchEntry(url, patch string) string {
	return `{"resource":{"resourceType":"Binary","contentType":"` + mimeJSONPatch + `","data":"` + base64.StdEncoding.EncodeToString([]byte(patch)) + `"},` +
		`"request":{"method":"PATCH","url":"` + url + `"}}`
}

// bundleResponse decodes the entries' response status and location of a Bundle body.
func bundleResponse(t testing.TB, body []byte) (statuses, locations []string) {
	t.Helper()
	var b struct {
		Entry []struct {
			Response struct{ Status, Location string } `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("not a Bundle: %s", body)
	}
	for _, e := range b.Entry {
		statuses, locations = append(statuses, e.Response.Status), append(locations, e.Response.Location)
	}
	return statuses, locations
}

// TestBundlePatch: PATCH entries of transaction and batch Bundles are applied as PATCH
// [type]/[id] applies them: after the creates, with references to other entries resolved
// in the patched resource; in a transaction one that cannot be applied is 422 and one of
// another member's resource 404 (with its deny event), and nothing of the Bundle is
// stored; in a batch each answers alone. A malformed FHIRPath Patch is 400, a Consent 400.
func TestBundlePatch(t *testing.T) {
	env, ta, tb, pa, oa := foreignObservation(t)
	const urn = "urn:uuid:33333333-3333-4333-8333-333333333333"
	post := `{"fullUrl":"` + urn + `","resource":` + string(obsJSON("", pa, "member")) + `,"request":{"method":"POST","url":"Observation"}}`
	link := patchEntry("Observation/"+oa, `[{"op":"test","path":"/valueString","value":"a"},{"op":"add","path":"/hasMember","value":[{"reference":"`+urn+`"}]}]`)
	tx := func(entries ...string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	before := env.count(t, env.a.ID, "Observation")

	// 422 and 404 roll the whole transaction back, the POST included.
	failing := patchEntry("Observation/"+oa, `[{"op":"test","path":"/valueString","value":"zzz"}]`)
	st, body, _ := do(t, "POST", env.base, ta, tx(post, failing))
	if code, diag := outcomeIssue(t, body); st != http.StatusUnprocessableEntity || code != "processing" || !strings.Contains(diag, "test failed") {
		t.Fatalf("transaction with a failing test = %d %s; want 422", st, body)
	}
	pb := env.create(t, tb, "/Patient", patientBJSON("mrn-b"))
	postB := `{"fullUrl":"` + urn + `","resource":` + string(obsJSON("", pb, "b")) + `,"request":{"method":"POST","url":"Observation"}}`
	st, body, _ = do(t, "POST", env.base, tb, tx(postB, patchEntry("Observation/"+oa, `[{"op":"remove","path":"/valueString"}]`)), "X-Request-Id", "rq-bundle-patch-foreign")
	if st != 404 {
		t.Fatalf("transaction patching another member's Observation = %d %s; want 404", st, body)
	}
	if evs := eventsOf(t, env.pool, "rq-bundle-patch-foreign"); len(evs) != 1 || evs[0].Outcome != "deny" || evs[0].Reason != "not-owner" {
		t.Errorf("events %+v; want one deny, not-owner", evs)
	}
	if n := env.count(t, env.a.ID, "Observation"); n != before || env.count(t, env.b.ID, "Observation") != 0 {
		t.Fatalf("after failed transactions: A has %d Observations (want %d), B %d", n, before, env.count(t, env.b.ID, "Observation"))
	}
	if cur, _ := env.version(t, "Observation", oa); cur != 1 {
		t.Fatalf("Observation version %d after failed transactions, want 1", cur)
	}

	// The transaction that commits: the created Observation's reference lands in the patch.
	st, body, _ = do(t, "POST", env.base, ta, tx(link, post))
	statuses, locations := bundleResponse(t, body)
	if st != 200 || len(statuses) != 2 || statuses[0] != "200 OK" || statuses[1] != "201 Created" ||
		locations[0] != "Observation/"+oa+"/_history/2" {
		t.Fatalf("transaction = %d %s", st, body)
	}
	created := strings.TrimPrefix(strings.Split(locations[1], "/_history")[0], "Observation/")
	if st, b, _ := do(t, "GET", env.base+"/Observation/"+oa, ta, nil); st != 200 || !strings.Contains(string(b), `"hasMember":[{"reference":"Observation/`+created+`"}]`) {
		t.Fatalf("patched Observation = %d %s; want hasMember Observation/%s", st, b, created)
	}

	// A batch: each entry alone.
	batch := []byte(`{"resourceType":"Bundle","type":"batch","entry":[` + strings.Join([]string{
		patchEntry("Observation/"+oa, `[{"op":"replace","path":"/valueString","value":"batched"}]`),
		patchEntry("Observation/"+oa, `[{"op":"test","path":"/valueString","value":"zzz"}]`),
		patchEntry("Observation/"+unknownID, `[{"op":"remove","path":"/valueString"}]`),
		patchEntry("Observation/"+oa, `{"op":"remove"}`),
	}, ",") + `]}`)
	st, body, _ = do(t, "POST", env.base, ta, batch)
	statuses, _ = bundleResponse(t, body)
	if want := []string{"200 OK", "422 Unprocessable Entity", "404 Not Found", "400 Bad Request"}; st != 200 || !slices.Equal(statuses, want) {
		t.Fatalf("batch = %d %s; want statuses %v", st, body, want)
	}
	if cur, _ := env.version(t, "Observation", oa); cur != 3 {
		t.Errorf("Observation version %d after the batch, want 3", cur)
	}

	// Refused in planning: a malformed FHIRPath Patch (a delete without a path), a type with its own handler.
	params := `{"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"}]}]},"request":{"method":"PATCH","url":"Observation/` + oa + `"}}`
	if st, body, _ = do(t, "POST", env.base, ta, tx(params)); st != 400 {
		t.Errorf("malformed FHIRPath Patch entry = %d %s; want 400", st, body)
	}
	if st, body, _ = do(t, "POST", env.base, ta, tx(patchEntry("Consent/"+oa, `[{"op":"remove","path":"/status"}]`))); st != 400 {
		t.Errorf("Consent PATCH entry = %d %s; want 400", st, body)
	}
	if st, body, _ = do(t, "POST", env.base, ta, tx(`{"request":{"method":"PATCH","url":"Observation/`+oa+`"}}`)); st != 400 {
		t.Errorf("PATCH entry without a resource = %d %s; want 400", st, body)
	}
}

// TestPatchNeedsReadScope: a PATCH answers with the patched resource and a test operation
// reveals whether a value is there, so a patch needs the type's read scope as well as its
// update scope, in every form: a token with system/Observation.u but not .r (alone or
// with s, c, d) is refused with the 403 a missing update scope gets, whether the test
// holds or not, for PATCH [type]/[id], the conditional PATCH and a Bundle's PATCH entry
// (transaction and batch); nothing is stored. With .ru the patch is applied.
func TestPatchNeedsReadScope(t *testing.T) {
	env, _, _, _, oa := foreignObservation(t)
	u := env.base + "/Observation/" + oa
	holds := []byte(`[{"op":"test","path":"/valueString","value":"a"}]`)
	fails := []byte(`[{"op":"test","path":"/valueString","value":"b"}]`)
	want403 := func(t *testing.T, what string, st int, body []byte) {
		t.Helper()
		if code, _ := outcomeIssue(t, body); st != http.StatusForbidden || code != "forbidden" {
			t.Errorf("%s = %d %s; want 403 forbidden", what, st, body)
		}
	}
	for _, scope := range []string{"system/Observation.u", "system/Observation.us", "system/Observation.cuds"} {
		t.Run(scope, func(t *testing.T) {
			tok := env.token(t, env.a.ID, scope)
			if st, body, _ := do(t, "GET", u, tok, nil); st != http.StatusForbidden {
				t.Fatalf("setup: GET = %d %s; want 403", st, body)
			}
			_, noUpdate, _ := patchDo(t, u, env.token(t, env.a.ID, "system/Observation.crs"), "", holds)
			for name, patch := range map[string][]byte{"holding test": holds, "failing test": fails} {
				st, body, _ := patchDo(t, u, tok, "", patch)
				want403(t, "PATCH with a "+name, st, body)
				if string(body) != string(noUpdate) {
					t.Errorf("PATCH with a %s: %s; want the body a missing update scope gets, %s", name, body, noUpdate)
				}
				st, body, _ = patchDo(t, env.base+"/Observation?identifier=urn:lab|1", tok, "", patch)
				want403(t, "conditional PATCH with a "+name, st, body)
				st, body, _ = do(t, "POST", env.base, tok, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[`+
					patchEntry("Observation/"+oa, string(patch))+`]}`))
				want403(t, "transaction PATCH entry with a "+name, st, body)
				st, body, _ = do(t, "POST", env.base, tok, []byte(`{"resourceType":"Bundle","type":"batch","entry":[`+
					patchEntry("Observation/"+oa, string(patch))+`]}`))
				if statuses, _ := bundleResponse(t, body); st != 200 || !slices.Equal(statuses, []string{"403 Forbidden"}) {
					t.Errorf("batch PATCH entry with a %s = %d %s; want the entry 403", name, st, body)
				}
			}
		})
	}
	if cur, n := env.version(t, "Observation", oa); cur != 1 || n != 1 {
		t.Errorf("version %d with %d history rows; want 1 and 1", cur, n)
	}
	// Both scopes: the patch is applied.
	if st, body, _ := patchDo(t, u, env.token(t, env.a.ID, "system/Observation.ru"), "", holds); st != 200 {
		t.Errorf("PATCH with system/Observation.ru = %d %s; want 200", st, body)
	}
}

// TestBundlePatchBound: a Bundle's PATCH entries may together store no more than the body
// limit (8 MiB here), as if their resources had been sent whole: a few bytes of empty patch
// ([]) per entry cannot store a large resource over and over. A transaction beyond it
// fails whole with 413 and stores nothing; within it, it commits. A batch carries the total
// across its entries: the PATCH entries beyond it answer 413 and store nothing, the
// others 200, a small one after the bound included while it fits.
func TestBundlePatchBound(t *testing.T) {
	env, ta, _, pa, oa := foreignObservation(t)
	notes := make([]string, 15)
	for i := range notes {
		notes[i] = `{"text":"` + strings.Repeat("x", 100_000) + `"}`
	}
	large := strings.Replace(string(obsJSON("", pa, "large")), `"valueString"`, `"note":[`+strings.Join(notes, ",")+`],"valueString"`, 1)
	big := env.create(t, ta, "/Observation", []byte(large)) // about 1.5 MB: five fit in 8 MiB, six do not
	bundle := func(typ string, entries ...string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	// Tiny patches that each change a value: one that changes nothing stores no version.
	patches := 0
	empty := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			patches++
			out[i] = patchEntry("Observation/"+big, `[{"op":"replace","path":"/valueString","value":"`+strconv.Itoa(patches)+`"}]`)
		}
		return out
	}

	st, body, _ := do(t, "POST", env.base, ta, bundle("transaction", empty(6)...))
	if code, _ := outcomeIssue(t, body); st != http.StatusRequestEntityTooLarge || code != "too-long" {
		t.Fatalf("transaction of six empty patches = %d %.300s; want 413", st, body)
	}
	if cur, n := env.version(t, "Observation", big); cur != 1 || n != 1 {
		t.Fatalf("after the refused transaction: version %d with %d history rows; want 1 and 1", cur, n)
	}
	st, body, _ = do(t, "POST", env.base, ta, bundle("transaction", empty(5)...))
	if statuses, _ := bundleResponse(t, body); st != 200 || len(statuses) != 5 {
		t.Fatalf("transaction of five empty patches = %d %.300s; want 200", st, body)
	}
	if cur, _ := env.version(t, "Observation", big); cur != 6 {
		t.Fatalf("version %d after the transaction; want 6", cur)
	}

	small := patchEntry("Observation/"+oa, `[{"op":"replace","path":"/valueString","value":"b"}]`)
	st, body, _ = do(t, "POST", env.base, ta, bundle("batch", append(empty(7), small)...))
	statuses, _ := bundleResponse(t, body)
	want := []string{"200 OK", "200 OK", "200 OK", "200 OK", "200 OK", "413 Request Entity Too Large", "413 Request Entity Too Large", "200 OK"}
	if st != 200 || !slices.Equal(statuses, want) {
		t.Fatalf("batch = %d %v; want %v", st, statuses, want)
	}
	if cur, _ := env.version(t, "Observation", big); cur != 11 {
		t.Errorf("version %d after the batch; want 11", cur)
	}
	if cur, _ := env.version(t, "Observation", oa); cur != 2 {
		t.Errorf("small Observation version %d after the batch; want 2", cur)
	}
}

// TestBundlePatchWork: a Bundle's PATCH entries share the work one PATCH may take (8 units
// per byte of the body limit, 64 KiB here), JSON Patch and FHIRPath Patch alike: a patch
// that applies alone, sent in a few entries whose results the size bound would let through,
// makes the later ones 413 in a batch (the last refused before it is applied, the budget
// spent) and fails a transaction whole.
func TestBundlePatchWork(t *testing.T) {
	env, ta, _, pa, _ := foreignObservation(t)
	notes := strings.TrimSuffix(strings.Repeat(`{"text":"n"},`, 1000), ",")
	obs := strings.Replace(string(obsJSON("", pa, "many notes")), `"valueString"`, `"note":[`+notes+`],"valueString"`, 1)
	id := env.create(t, ta, "/Observation", []byte(obs))
	env.srv.cfg.MaxBodyBytes = 64 << 10
	bundle := func(typ string, entries ...string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	// Each op tries 31 names on each of 1000 notes: ten of them, about 340,000 units.
	crit := "author" + strings.Repeat(".identifier.assigner", 15)
	scans := make([]string, 10)
	for i := range scans {
		scans[i] = fhirPathOp("delete", "Observation.note.where("+crit+" = 'none')")
	}
	scan := fhirPathEntry("Observation/"+id, fhirPathPatch(scans...))
	// Each move shifts the 1000 notes: 300 of them, about 300,000 units.
	moves := strings.TrimSuffix(strings.Repeat(`{"op":"move","from":"/note/0","path":"/note/-"},`, 300), ",")
	move := patchEntry("Observation/"+id, "["+moves+"]")

	// Alone, each applies.
	st, body, _ := do(t, "POST", env.base, ta, bundle("batch", scan))
	if statuses, _ := bundleResponse(t, body); st != 200 || !slices.Equal(statuses, []string{"200 OK"}) {
		t.Fatalf("batch of one scan = %d %.300s; want 200", st, body)
	}
	st, body, _ = do(t, "POST", env.base, ta, bundle("transaction", move))
	if statuses, _ := bundleResponse(t, body); st != 200 || !slices.Equal(statuses, []string{"200 OK"}) {
		t.Fatalf("transaction of one move = %d %.300s; want 200", st, body)
	}
	before, _ := env.version(t, "Observation", id)

	st, body, _ = do(t, "POST", env.base, ta, bundle("batch", scan, scan, scan))
	statuses, _ := bundleResponse(t, body)
	if want := []string{"200 OK", "413 Request Entity Too Large", "413 Request Entity Too Large"}; st != 200 || !slices.Equal(statuses, want) {
		t.Fatalf("batch of three scans = %d %v; want %v", st, statuses, want)
	}
	st, body, _ = do(t, "POST", env.base, ta, bundle("transaction", move, move, move))
	if code, _ := outcomeIssue(t, body); st != http.StatusRequestEntityTooLarge || code != "too-long" {
		t.Fatalf("transaction of three moves = %d %.300s; want 413", st, body)
	}
	if cur, _ := env.version(t, "Observation", id); cur != before {
		t.Errorf("version %d after the refused transaction; want %d", cur, before)
	}
}
