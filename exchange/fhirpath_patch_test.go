package exchange

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/concord-hie/concord/audit"
)

// fhirPathPatch is a FHIRPath Patch (a Parameters resource) of the operations given
// (fhirPathOp).
func fhirPathPatch(ops ...string) string {
	return `{"resourceType":"Parameters","parameter":[` + strings.Join(ops, ",") + `]}`
}

// fhirPathOp is an operation of type typ at path, with the parts more (each a JSON part:
// fhirPathPart).
func fhirPathOp(typ, path string, more ...string) string {
	parts := append([]string{fhirPathPart("type", "valueCode", strconv.Quote(typ)), fhirPathPart("path", "valueString", strconv.Quote(path))}, more...)
	return `{"name":"operation","part":[` + strings.Join(parts, ",") + `]}`
}

// fhirPathPart is a part named name whose value[x] is key, with the JSON value v.
func fhirPathPart(name, key, v string) string {
	return `{"name":"` + name + `","` + key + `":` + v + `}`
}

// fhirPathEntry is a Bundle entry that PATCHes url with the FHIRPath Patch params, carried
// as FHIR R4 carries one in a Bundle: as the entry's resource.
func fhirPathEntry(url, params string) string {
	return `{"resource":` + params + `,"request":{"method":"PATCH","url":"` + url + `"}}`
}

// TestFHIRPathPatchResource: a member's FHIRPath Patch of its own Patient (application/
// fhir+json) replaces birthDate and adds a telecom, and is stored like a PUT of the patched
// body: a new version answered 200 with ETag and Location, kept in _history, audited as an
// update. application/json and application/json+fhir carry one too; If-Match is honoured;
// a patch whose result is the current content stores no version; conditional PATCH takes
// one.
func TestFHIRPathPatchResource(t *testing.T) {
	env, ta, _, pa, _ := foreignObservation(t)
	personA := personOf(t, env.pool, pa)
	u := env.base + "/Patient/" + pa
	patch := fhirPathPatch(
		fhirPathOp("replace", "Patient.birthDate", fhirPathPart("value", "valueDate", `"1980-02-03"`)),
		fhirPathOp("add", "Patient", fhirPathPart("name", "valueString", `"telecom"`),
			fhirPathPart("value", "valueContactPoint", `{"system":"phone","value":"555-0100","use":"home"}`)))
	st, body, h := patchDo(t, u, ta, "application/fhir+json", []byte(patch), "X-Request-Id", "rq-fp-patch")
	if st != 200 || h.Get("ETag") != `W/"2"` || !strings.HasSuffix(h.Get("Location"), "/Patient/"+pa+"/_history/2") {
		t.Fatalf("PATCH = %d %s, ETag %q, Location %q", st, body, h.Get("ETag"), h.Get("Location"))
	}
	var got struct {
		ID        string `json:"id"`
		BirthDate string `json:"birthDate"`
		Gender    string `json:"gender"`
		Telecom   []struct {
			System, Value, Use string
		} `json:"telecom"`
		Identifier []struct{ System, Value string } `json:"identifier"`
		Meta       struct {
			VersionID string `json:"versionId"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(body, &got); err != nil || got.ID != pa || got.Meta.VersionID != "2" || got.BirthDate != "1980-02-03" || got.Gender != "female" ||
		len(got.Telecom) != 1 || got.Telecom[0].Value != "555-0100" || got.Telecom[0].System != "phone" || len(got.Identifier) != 1 || got.Identifier[0].Value != "mrn-a" {
		t.Fatalf("patched body %s (%v)", body, err)
	}
	if st, b, _ := do(t, "GET", u, ta, nil); st != 200 || !strings.Contains(string(b), `"birthDate":"1980-02-03"`) || !strings.Contains(string(b), `"555-0100"`) {
		t.Errorf("read after PATCH = %d %s", st, b)
	}
	if st, b, _ := do(t, "GET", u+"/_history/1", ta, nil); st != 200 || !strings.Contains(string(b), `"birthDate":"1970-01-01"`) {
		t.Errorf("vread 1 after PATCH = %d %s", st, b)
	}
	if cur, n := env.version(t, "Patient", pa); cur != 2 || n != 2 {
		t.Errorf("version %d with %d history rows, want 2 and 2", cur, n)
	}
	evs := eventsOf(t, env.pool, "rq-fp-patch")
	if !sameBriefs(briefs(evs), []brief{{"update", personA, []string{"Patient/" + pa}}}) || evs[0].Outcome != string(audit.Permit) || evs[0].Org != env.a.ID {
		t.Errorf("PATCH events %+v, want one permitted update by A", evs)
	}

	// The other FHIR JSON media types, with where() and an indexer.
	second := fhirPathPatch(fhirPathOp("replace", "Patient.telecom.where(system = 'phone').use", fhirPathPart("value", "valueCode", `"work"`)))
	if st, body, h = patchDo(t, u, ta, "application/json", []byte(second)); st != 200 || h.Get("ETag") != `W/"3"` || !strings.Contains(string(body), `"use":"work"`) {
		t.Fatalf("PATCH as application/json = %d %s", st, body)
	}
	third := fhirPathPatch(fhirPathOp("replace", "Patient.name[0].given.first()", fhirPathPart("value", "valueString", `"Ada Marie"`)))
	if st, body, h = patchDo(t, u, ta, "application/json+fhir; charset=utf-8", []byte(third)); st != 200 || h.Get("ETag") != `W/"4"` || !strings.Contains(string(body), `"given":["Ada Marie"]`) {
		t.Fatalf("PATCH as application/json+fhir = %d %s", st, body)
	}

	// If-Match: a stale version is refused and changes nothing.
	if st, body, _ = patchDo(t, u, ta, "application/fhir+json", []byte(second), "If-Match", `W/"1"`); st != http.StatusPreconditionFailed {
		t.Fatalf("PATCH If-Match W/\"1\" = %d %s; want 412", st, body)
	}
	// A result with the current content (use is work already) stores no version.
	if st, body, h = patchDo(t, u, ta, "application/fhir+json", []byte(second), "If-Match", `W/"4"`); st != 200 || h.Get("ETag") != `W/"4"` {
		t.Fatalf("no-op PATCH = %d %s, ETag %q; want 200 with version 4", st, body, h.Get("ETag"))
	}
	if cur, n := env.version(t, "Patient", pa); cur != 4 || n != 4 {
		t.Errorf("version %d with %d history rows, want 4 and 4", cur, n)
	}

	// Conditional PATCH.
	enc := env.create(t, ta, "/Encounter", encounterJSON("", pa, "fp1"))
	cancel := fhirPathPatch(fhirPathOp("replace", "Encounter.status", fhirPathPart("value", "valueCode", `"cancelled"`)))
	if st, body, _ = patchDo(t, env.base+"/Encounter?identifier=urn:visit|fp1", ta, "application/fhir+json", []byte(cancel)); st != 200 ||
		idOf(t, body) != enc || !strings.Contains(string(body), `"status":"cancelled"`) {
		t.Fatalf("conditional FHIRPath PATCH = %d %s", st, body)
	}
}

// TestFHIRPathPatchUnprocessable: a well-formed FHIRPath Patch that cannot be applied (a
// path that selects nothing or several elements, an index beyond its list, an add of a
// present element) is 422 with an OperationOutcome naming the operation; nothing is stored
// and no event written, the operations before the failing one included. A delete of
// nothing is no error.
func TestFHIRPathPatchUnprocessable(t *testing.T) {
	env, ta, _, pa, _ := foreignObservation(t)
	u := env.base + "/Patient/" + pa
	gender := fhirPathOp("replace", "Patient.gender", fhirPathPart("value", "valueCode", `"other"`))
	for i, tt := range []struct{ name, patch, diag string }{
		{"no match", fhirPathPatch(gender, fhirPathOp("replace", "Patient.name.where(family = 'Nobody').given", fhirPathPart("value", "valueString", `"x"`))),
			`operation 2 (replace "Patient.name.where(family = '…').given"): no element matches the path`},
		{"several matches", fhirPathPatch(fhirPathOp("add", "Patient", fhirPathPart("name", "valueString", `"name"`), fhirPathPart("value", "valueHumanName", `{"family":"Two"}`)),
			fhirPathOp("delete", "Patient.name")), "operation 2 (delete \"Patient.name\"): the path matches 2 elements"},
		{"index beyond the list", fhirPathPatch(fhirPathOp("insert", "Patient.identifier", fhirPathPart("value", "valueIdentifier", `{"value":"x"}`), fhirPathPart("index", "valueInteger", "5"))),
			"index 5 is beyond the 1 items of identifier"},
		{"add of a present element", fhirPathPatch(fhirPathOp("add", "Patient", fhirPathPart("name", "valueString", `"birthDate"`), fhirPathPart("value", "valueDate", `"1999"`))),
			"present already"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rid := "rq-fp-422-" + strconv.Itoa(i)
			st, body, h := patchDo(t, u, ta, "application/fhir+json", []byte(tt.patch), "X-Request-Id", rid)
			code, diag := outcomeIssue(t, body)
			if st != http.StatusUnprocessableEntity || code != "processing" || !strings.Contains(diag, tt.diag) || h.Get("Cache-Control") != "no-store" {
				t.Fatalf("PATCH = %d %s; want 422 processing naming %q", st, body, tt.diag)
			}
			if strings.Contains(diag, "Nobody") {
				t.Errorf("diagnostics %q show a literal of the path", diag)
			}
			if cur, n := env.version(t, "Patient", pa); cur != 1 || n != 1 {
				t.Errorf("version %d with %d history rows; want 1 and 1", cur, n)
			}
			if evs := eventsOf(t, env.pool, rid); len(evs) != 0 {
				t.Errorf("events %+v; want none", evs)
			}
		})
	}
	// delete of what is not there: applied, and the result has the current content.
	st, body, h := patchDo(t, u, ta, "application/fhir+json", []byte(fhirPathPatch(fhirPathOp("delete", "Patient.address"))))
	if st != 200 || h.Get("ETag") != `W/"1"` {
		t.Errorf("delete of nothing = %d %s, ETag %q; want 200 with version 1", st, body, h.Get("ETag"))
	}
}

// TestFHIRPathPatchRefusedRequests: a FHIRPath Patch outside the supported subset or not
// fitting the resource, and Parameters that break the specification's form, are 400 naming
// the problem; JSON Merge Patch, a JSON Patch sent as FHIR JSON and other media types are
// 415; each with an OperationOutcome, and nothing stored.
func TestFHIRPathPatchRefusedRequests(t *testing.T) {
	env, ta, _, pa, oa := foreignObservation(t)
	u := env.base + "/Patient/" + pa
	birthDate := fhirPathPart("value", "valueDate", `"1980-01-01"`)
	tests := []struct {
		name, url, contentType, body string
		status                       int
		diag                         string
	}{
		{"an unsupported function", u, "application/fhir+json", fhirPathPatch(fhirPathOp("delete", "Patient.name.exists()")), 400, "unsupported FHIRPath function exists()"},
		{"an unsupported operator", u, "application/fhir+json", fhirPathPatch(fhirPathOp("delete", "Patient.name.where(use = 'a' or use = 'b')")), 400, `unsupported FHIRPath operator "or"`},
		{"a path without the resource type", u, "application/fhir+json", fhirPathPatch(fhirPathOp("delete", "name")), 400, "must start with the resource type"},
		{"an unknown element", u, "application/fhir+json", fhirPathPatch(fhirPathOp("delete", "Patient.nmae")), 400, "Patient has no element of the name given"},
		{"another resource type", u, "application/fhir+json", fhirPathPatch(fhirPathOp("delete", "Observation.status")), 400, "the resource is a Patient"},
		{"a value of the wrong type", u, "application/fhir+json", fhirPathPatch(fhirPathOp("replace", "Patient.birthDate", fhirPathPart("value", "valueString", `"1980"`))), 400, "Patient.birthDate is a date, not a string"},
		{"an insert into a single element", u, "application/fhir+json", fhirPathPatch(fhirPathOp("insert", "Patient.gender", fhirPathPart("value", "valueCode", `"male"`), fhirPathPart("index", "valueInteger", "0"))), 400, "does not repeat"},
		{"an unknown part", u, "application/fhir+json", fhirPathPatch(fhirPathOp("replace", "Patient.birthDate", birthDate, fhirPathPart("colour", "valueString", `"red"`))), 400, `operation 1: unknown part (want type,`},
		{"a duplicate part", u, "application/fhir+json", fhirPathPatch(fhirPathOp("replace", "Patient.birthDate", birthDate, birthDate)), 400, "operation 1: part value given twice"},
		{"a part of the wrong type", u, "application/fhir+json", fhirPathPatch(fhirPathOp("insert", "Patient.name", fhirPathPart("value", "valueHumanName", `{"text":"x"}`), fhirPathPart("index", "valueDecimal", "0"))), 400, "part index must be a valueInteger"},
		{"a part not allowed", u, "application/fhir+json", fhirPathPatch(fhirPathOp("delete", "Patient.birthDate", birthDate)), 400, "operation 1 (delete): part value is not allowed for delete"},
		{"the second operation", u, "application/fhir+json", fhirPathPatch(fhirPathOp("delete", "Patient.address"), fhirPathOp("replace", "Patient.birthDate")), 400, "operation 2 (replace) has no part value"},
		{"not a Parameters", u, "application/fhir+json", string(patientJSON("mrn-a")), 400, "must be a Parameters resource"},
		{"strict JSON", u, "application/fhir+json", `{"resourceType":"Parameters","parameter":[],"Parameter":[]}`, 400, "FHIRPath Patch"},
		{"the id changed", u, "application/fhir+json", fhirPathPatch(fhirPathOp("replace", "Patient.id", fhirPathPart("value", "valueId", `"other"`))), 400, "id"},
		{"the MRN changed", u, "application/fhir+json", fhirPathPatch(fhirPathOp("replace", "Patient.identifier.value", fhirPathPart("value", "valueString", `"mrn-z"`))), 409, "MRN"},
		{"a required element removed", env.base + "/Observation/" + oa, "application/fhir+json", fhirPathPatch(fhirPathOp("delete", "Observation.status")), 400, "required"},
		{"JSON Merge Patch", u, "application/merge-patch+json", `{"birthDate":null}`, 415, "JSON Merge Patch is not supported"},
		{"a JSON Patch as FHIR JSON", u, "application/fhir+json", `[{"op":"remove","path":"/birthDate"}]`, 415, "a JSON Patch must be sent as application/json-patch+json"},
		{"text", u, "text/plain", `Patient.birthDate`, 415, "FHIRPath Patch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, body, _ := patchDo(t, tt.url, ta, tt.contentType, []byte(tt.body))
			_, diag := outcomeIssue(t, body)
			if st != tt.status || !strings.Contains(diag, tt.diag) {
				t.Fatalf("PATCH = %d %s; want %d naming %q", st, body, tt.status, tt.diag)
			}
		})
	}
	untouched(t, env, "Patient", pa)
}

// TestFHIRPathPatchBundle: a Parameters resource as a PATCH entry's resource is a FHIRPath
// Patch, applied as PATCH [type]/[id] applies it: in a transaction after the creates, with
// a reference its value brings in to another entry resolved; one that cannot be applied
// fails the whole transaction with 422, storing nothing. In a batch each entry answers
// alone: 200, 422, 404 and 400 (a malformed patch); JSON Patch entries (Binary) mix with
// FHIRPath Patch ones.
func TestFHIRPathPatchBundle(t *testing.T) {
	env, ta, _, pa, oa := foreignObservation(t)
	const urn = "urn:uuid:44444444-4444-4444-8444-444444444444"
	post := `{"fullUrl":"` + urn + `","resource":` + string(obsJSON("", pa, "member")) + `,"request":{"method":"POST","url":"Observation"}}`
	link := fhirPathEntry("Observation/"+oa, fhirPathPatch(
		fhirPathOp("replace", "Observation.where(value = 'a').status", fhirPathPart("value", "valueCode", `"amended"`)),
		fhirPathOp("add", "Observation", fhirPathPart("name", "valueString", `"hasMember"`), fhirPathPart("value", "valueReference", `{"reference":"`+urn+`"}`))))
	bundle := func(typ string, entries ...string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`)
	}
	before := env.count(t, env.a.ID, "Observation")

	// A failing entry rolls the whole transaction back, the POST included.
	failing := fhirPathEntry("Observation/"+oa, fhirPathPatch(fhirPathOp("replace", "Observation.where(value = 'zzz').status", fhirPathPart("value", "valueCode", `"amended"`))))
	st, body, _ := do(t, "POST", env.base, ta, bundle("transaction", post, failing))
	if code, diag := outcomeIssue(t, body); st != http.StatusUnprocessableEntity || code != "processing" || !strings.Contains(diag, "no element matches the path") {
		t.Fatalf("transaction with a patch that selects nothing = %d %s; want 422", st, body)
	}
	if n := env.count(t, env.a.ID, "Observation"); n != before {
		t.Fatalf("after the failed transaction A has %d Observations, want %d", n, before)
	}
	if cur, _ := env.version(t, "Observation", oa); cur != 1 {
		t.Fatalf("Observation version %d after the failed transaction, want 1", cur)
	}

	// The transaction that commits: the created Observation's reference lands in the patch.
	st, body, _ = do(t, "POST", env.base, ta, bundle("transaction", link, post))
	statuses, locations := bundleResponse(t, body)
	if st != 200 || len(statuses) != 2 || statuses[0] != "200 OK" || statuses[1] != "201 Created" || locations[0] != "Observation/"+oa+"/_history/2" {
		t.Fatalf("transaction = %d %s", st, body)
	}
	created := strings.TrimPrefix(strings.Split(locations[1], "/_history")[0], "Observation/")
	st, b, _ := do(t, "GET", env.base+"/Observation/"+oa, ta, nil)
	if st != 200 || !strings.Contains(string(b), `"hasMember":[{"reference":"Observation/`+created+`"}]`) || !strings.Contains(string(b), `"status":"amended"`) {
		t.Fatalf("patched Observation = %d %s; want status amended and hasMember Observation/%s", st, b, created)
	}

	// A batch: each entry alone.
	st, body, _ = do(t, "POST", env.base, ta, bundle("batch",
		fhirPathEntry("Observation/"+oa, fhirPathPatch(fhirPathOp("replace", "Observation.value", fhirPathPart("value", "valueString", `"batched"`)))),
		fhirPathEntry("Observation/"+oa, fhirPathPatch(fhirPathOp("move", "Observation.hasMember", fhirPathPart("source", "valueInteger", "0"), fhirPathPart("destination", "valueInteger", "1")))),
		fhirPathEntry("Observation/"+unknownID, fhirPathPatch(fhirPathOp("delete", "Observation.value"))),
		fhirPathEntry("Observation/"+oa, fhirPathPatch(fhirPathOp("delete", "Observation.value.exists()"))),
		patchEntry("Observation/"+oa, `[{"op":"test","path":"/valueString","value":"batched"}]`),
	))
	statuses, _ = bundleResponse(t, body)
	if want := []string{"200 OK", "422 Unprocessable Entity", "404 Not Found", "400 Bad Request", "200 OK"}; st != 200 || !slices.Equal(statuses, want) {
		t.Fatalf("batch = %d %s; want statuses %v", st, body, want)
	}
	if cur, _ := env.version(t, "Observation", oa); cur != 3 {
		t.Errorf("Observation version %d after the batch, want 3", cur)
	}
}
