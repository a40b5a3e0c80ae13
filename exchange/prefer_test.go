package exchange

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestPreferReturn: the return preference is read from any Prefer header value, without
// case or spaces, minimal first; anything else is the default.
func TestPreferReturn(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   returnPref
	}{
		{"none", nil, returnDefault},
		{"minimal", []string{"return=minimal"}, returnMinimal},
		{"representation", []string{"return=representation"}, returnRepresentation},
		{"OperationOutcome", []string{"return=OperationOutcome"}, returnOutcome},
		{"case and spaces", []string{"respond-async, return = operationoutcome"}, returnOutcome},
		{"second header", []string{"handling=lenient", "return=minimal"}, returnMinimal},
		{"unknown value", []string{"return=everything"}, returnDefault},
		{"other preference", []string{"respond-async"}, returnDefault},
		{"first of two wins", []string{"return=OperationOutcome, return=minimal"}, returnOutcome},
		{"first across headers", []string{"return=representation", "return=minimal"}, returnRepresentation},
		{"parameters", []string{"return=minimal; charset=x"}, returnMinimal},
		{"quoted", []string{`return="minimal"`}, returnMinimal},
		{"after a preference with parameters", []string{"respond-async; wait=10, return=minimal"}, returnMinimal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := preferReturn(tt.values); got != tt.want {
				t.Errorf("preferReturn(%q) = %v, want %v", tt.values, got, tt.want)
			}
		})
	}
}

// infoOutcome decodes an OperationOutcome body that reports success: one issue of
// severity information, code informational. It returns the issue's diagnostics.
func infoOutcome(t testing.TB, body []byte) string {
	t.Helper()
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Severity, Code, Diagnostics string
		} `json:"issue"`
	}
	if err := json.Unmarshal(body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) != 1 ||
		oo.Issue[0].Severity != "information" || oo.Issue[0].Code != "informational" {
		t.Fatalf("not an informational OperationOutcome: %s", body)
	}
	return oo.Issue[0].Diagnostics
}

// preferCase is one Prefer header and what the answer's body must then be: the resource
// (kind "resource"), nothing ("empty") or an OperationOutcome ("outcome") whose
// diagnostics starts with the given verb.
type preferCase struct {
	prefer, kind, applied string
}

var preferCases = []preferCase{
	{"", "resource", ""},
	{"return=representation", "resource", ""},
	{"return=minimal", "empty", "return=minimal"},
	{"return=OperationOutcome", "outcome", "return=OperationOutcome"},
	{"return=everything", "resource", ""},
}

// checkWriteReply fails t unless a write answered status with the version headers of
// typ/id at version, and the body pc asks for; an OperationOutcome must say diagnostics.
func checkWriteReply(t testing.TB, pc preferCase, st int, body []byte, h http.Header, status int, typ, id string, version int, diagnostics string) {
	t.Helper()
	if st != status || h.Get("ETag") != `W/"`+itoa(version)+`"` || !strings.HasSuffix(h.Get("Location"), "/"+typ+"/"+id+"/_history/"+itoa(version)) ||
		h.Get("Last-Modified") == "" || h.Get("Preference-Applied") != pc.applied {
		t.Fatalf("Prefer %q: %d, ETag %q, Location %q, Last-Modified %q, Preference-Applied %q; want %d at version %d",
			pc.prefer, st, h.Get("ETag"), h.Get("Location"), h.Get("Last-Modified"), h.Get("Preference-Applied"), status, version)
	}
	switch pc.kind {
	case "resource":
		var r struct {
			ResourceType, ID string
			Meta             struct{ VersionID string }
		}
		if err := json.Unmarshal(body, &r); err != nil || r.ResourceType != typ || r.ID != id || r.Meta.VersionID != itoa(version) {
			t.Fatalf("Prefer %q: body %s; want %s/%s version %d", pc.prefer, body, typ, id, version)
		}
	case "empty":
		if len(body) != 0 {
			t.Fatalf("Prefer %q: body %s; want none", pc.prefer, body)
		}
	case "outcome":
		if got := infoOutcome(t, body); got != diagnostics {
			t.Fatalf("Prefer %q: diagnostics %q; want %q", pc.prefer, got, diagnostics)
		}
	}
}

// withPrefer is the header pairs that send Prefer: p (none when p is "").
func withPrefer(p string, header ...string) []string {
	if p == "" {
		return header
	}
	return append([]string{"Prefer", p}, header...)
}

// TestPreferCreateUpdatePatch: POST, PUT and PATCH answer with the same status and
// version headers under every Prefer: return=representation (and no or an unknown
// preference) with the stored resource, return=minimal with no body, and
// return=OperationOutcome with an informational OperationOutcome saying what was done.
func TestPreferCreateUpdatePatch(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	pid := env.create(t, ta, "/Patient", patientJSON("mrn-prefer"))
	for _, pc := range preferCases {
		t.Run("prefer="+pc.prefer, func(t *testing.T) {
			st, body, h := do(t, "POST", env.base+"/Observation", ta, obsJSON("", pid, "v1"), withPrefer(pc.prefer)...)
			loc := h.Get("Location")
			id := strings.TrimPrefix(loc[strings.Index(loc, "/Observation/"):], "/Observation/")
			id, _, _ = strings.Cut(id, "/")
			checkWriteReply(t, pc, st, body, h, http.StatusCreated, "Observation", id, 1, "Created Observation/"+id+" version 1")

			st, body, h = do(t, "PUT", env.base+"/Observation/"+id, ta, obsJSON(id, pid, "v2"), withPrefer(pc.prefer)...)
			checkWriteReply(t, pc, st, body, h, http.StatusOK, "Observation", id, 2, "Updated Observation/"+id+" version 2")

			patch := []byte(`[{"op":"replace","path":"/valueString","value":"v3"}]`)
			st, body, h = patchDo(t, env.base+"/Observation/"+id, ta, "", patch, withPrefer(pc.prefer)...)
			checkWriteReply(t, pc, st, body, h, http.StatusOK, "Observation", id, 3, "Updated Observation/"+id+" version 3")

			// The same content again: nothing stored, the current version answered.
			st, body, h = do(t, "PUT", env.base+"/Observation/"+id, ta, obsJSON(id, pid, "v3"), withPrefer(pc.prefer)...)
			checkWriteReply(t, pc, st, body, h, http.StatusOK, "Observation", id, 3,
				"Unchanged Observation/"+id+" version 3: the content is the current version's, so no new version was stored")
		})
	}
}

// TestPreferConditional: the conditional create, update and patch answer under Prefer as
// their plain forms do; a conditional create that matched says so.
func TestPreferConditional(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	org := func(name string) []byte {
		return []byte(`{"resourceType":"Organization","identifier":[{"system":"urn:ids","value":"lab-1"}],"name":"` + name + `"}`)
	}
	const cond = "identifier=urn:ids|lab-1"
	outcome := preferCase{"return=OperationOutcome", "outcome", "return=OperationOutcome"}
	minimal := preferCase{"return=minimal", "empty", "return=minimal"}

	st, body, h := do(t, "POST", env.base+"/Organization", ta, org("Lab"), "If-None-Exist", cond, "Prefer", outcome.prefer)
	id := strings.TrimPrefix(infoOutcome(t, body), "Created Organization/")
	id, _, _ = strings.Cut(id, " ")
	checkWriteReply(t, outcome, st, body, h, http.StatusCreated, "Organization", id, 1, "Created Organization/"+id+" version 1")
	st, body, h = do(t, "POST", env.base+"/Organization", ta, org("Lab"), "If-None-Exist", cond, "Prefer", outcome.prefer)
	checkWriteReply(t, outcome, st, body, h, http.StatusOK, "Organization", id, 1,
		"Found Organization/"+id+" version 1: it matches the condition, so nothing was created")
	st, body, h = do(t, "POST", env.base+"/Organization", ta, org("Lab"), "If-None-Exist", cond, "Prefer", minimal.prefer)
	checkWriteReply(t, minimal, st, body, h, http.StatusOK, "Organization", id, 1, "")

	st, body, h = do(t, "PUT", env.base+"/Organization?"+cond, ta, org("Lab 2"), "Prefer", minimal.prefer)
	checkWriteReply(t, minimal, st, body, h, http.StatusOK, "Organization", id, 2, "")
	st, body, h = do(t, "PUT", env.base+"/Organization?"+cond, ta, org("Lab 2"), "Prefer", outcome.prefer)
	checkWriteReply(t, outcome, st, body, h, http.StatusOK, "Organization", id, 2,
		"Unchanged Organization/"+id+" version 2: the content is the current version's, so no new version was stored")

	st, body, h = patchDo(t, env.base+"/Organization?"+cond, ta, "", []byte(`[{"op":"replace","path":"/name","value":"Lab 3"}]`), "Prefer", outcome.prefer)
	checkWriteReply(t, outcome, st, body, h, http.StatusOK, "Organization", id, 3, "Updated Organization/"+id+" version 3")
}

// TestPreferIdempotentReplay: a create retried with its Idempotency-Key writes nothing and
// answers with the first request's status and version headers, under the retry's own
// Prefer.
func TestPreferIdempotentReplay(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	pid := env.create(t, ta, "/Patient", patientJSON("mrn-replay"))
	body := obsJSON("", pid, "once")
	st, first, h := do(t, "POST", env.base+"/Observation", ta, body, "Idempotency-Key", "k-1", "Prefer", "return=minimal")
	if st != http.StatusCreated || len(first) != 0 || h.Get("ETag") != `W/"1"` {
		t.Fatalf("first POST = %d %s, ETag %q; want 201, no body", st, first, h.Get("ETag"))
	}
	loc := h.Get("Location")
	id, _, _ := strings.Cut(loc[strings.Index(loc, "/Observation/")+len("/Observation/"):], "/")
	for _, pc := range preferCases {
		st, got, h := do(t, "POST", env.base+"/Observation", ta, body, withPrefer(pc.prefer, "Idempotency-Key", "k-1")...)
		checkWriteReply(t, pc, st, got, h, http.StatusCreated, "Observation", id, 1,
			"Observation/"+id+" version 1 answered an earlier request with this Idempotency-Key: nothing was written")
		if h.Get("Location") != loc {
			t.Errorf("Prefer %q: replay Location %q, want %q", pc.prefer, h.Get("Location"), loc)
		}
	}
	if n := env.count(t, env.a.ID, "Observation"); n != 1 {
		t.Fatalf("%d Observations after retries, want 1", n)
	}
}

// bundleEntries decodes a response Bundle's entries: the resource each carries (its type
// and id, "" when none) and its response's status and outcome diagnostics ("" when none).
func bundleEntries(t testing.TB, body []byte) (resources, statuses, outcomes []string) {
	t.Helper()
	var b struct {
		Entry []struct {
			Resource *struct{ ResourceType, ID string } `json:"resource"`
			Response struct {
				Status  string
				Outcome json.RawMessage
			} `json:"response"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("not a Bundle: %s", body)
	}
	for _, e := range b.Entry {
		r, o := "", ""
		if e.Resource != nil {
			r = e.Resource.ResourceType + "/" + e.Resource.ID
		}
		if e.Response.Outcome != nil {
			o = infoOutcome(t, e.Response.Outcome)
		}
		resources, statuses, outcomes = append(resources, r), append(statuses, e.Response.Status), append(outcomes, o)
	}
	return resources, statuses, outcomes
}

// TestPreferBundle: a transaction's and a batch's response entries carry status, location
// and etag; return=representation adds each entry's resource as stored, and
// return=OperationOutcome an informational outcome saying what was done. No preference,
// an unknown one and return=minimal carry neither. A PUT entry of unchanged content
// answers 200 with the current version.
func TestPreferBundle(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	pid := env.create(t, ta, "/Patient", patientJSON("mrn-bundle"))
	oid := env.create(t, ta, "/Observation", obsJSON("", pid, "a"))
	version := 1
	for i, pc := range preferCases {
		for _, typ := range []string{"transaction", "batch"} {
			t.Run(typ+" prefer="+pc.prefer, func(t *testing.T) {
				version++
				v := itoa(version)
				bundle := []byte(`{"resourceType":"Bundle","type":"` + typ + `","entry":[` +
					`{"resource":` + string(obsJSON("", pid, "new-"+itoa(i))) + `,"request":{"method":"POST","url":"Observation"}},` +
					`{"resource":` + string(obsJSON(oid, pid, typ+"-"+itoa(i))) + `,"request":{"method":"PUT","url":"Observation/` + oid + `"}},` +
					`{"resource":` + string(obsJSON(oid, pid, typ+"-"+itoa(i))) + `,"request":{"method":"PUT","url":"Observation/` + oid + `"}},` +
					patchEntry("Observation/"+oid, `[{"op":"test","path":"/valueString","value":"`+typ+"-"+itoa(i)+`"}]`) + `]}`)
				st, body, _ := do(t, "POST", env.base, ta, bundle, withPrefer(pc.prefer, "Idempotency-Key", typ+"-"+itoa(i))...)
				resources, statuses, outcomes := bundleEntries(t, body)
				if st != 200 || len(statuses) != 4 || statuses[0] != "201 Created" || statuses[1] != "200 OK" || statuses[2] != "200 OK" || statuses[3] != "200 OK" {
					t.Fatalf("%s = %d %s", typ, st, body)
				}
				_, locations := bundleResponse(t, body)
				created := strings.TrimPrefix(strings.Split(locations[0], "/_history")[0], "Observation/")
				// In a transaction both PUTs see the same version; in a batch as well: the
				// second PUT and the PATCH change nothing.
				for j := 1; j < 4; j++ {
					if locations[j] != "Observation/"+oid+"/_history/"+v {
						t.Fatalf("%s entry %d: location %q, want version %s (%s)", typ, j, locations[j], v, body)
					}
				}
				wantRes := []string{"", "", "", ""}
				wantOut := []string{"", "", "", ""}
				switch pc.kind {
				case "resource":
					if pc.prefer == "return=representation" {
						wantRes = []string{"Observation/" + created, "Observation/" + oid, "Observation/" + oid, "Observation/" + oid}
					}
				case "outcome":
					unchanged := "Unchanged Observation/" + oid + " version " + v + ": the content is the current version's, so no new version was stored"
					wantOut = []string{"Created Observation/" + created + " version 1", "Updated Observation/" + oid + " version " + v, unchanged, unchanged}
				}
				for j := range wantRes {
					if resources[j] != wantRes[j] || outcomes[j] != wantOut[j] {
						t.Errorf("%s entry %d: resource %q, outcome %q; want %q, %q", typ, j, resources[j], outcomes[j], wantRes[j], wantOut[j])
					}
				}
			})
		}
	}
	if cur, n := env.version(t, "Observation", oid); cur != version || n != version {
		t.Fatalf("Observation at version %d with %d history rows, want %d", cur, n, version)
	}
}
