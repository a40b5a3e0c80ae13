package exchange

import (
	"testing"
)

// TestSearchHTTPIncludeHonoursScopes: a token that may read only Observations must not get
// the Patient through _include, just as GET /Patient/{id} is 403 for it.
func TestSearchHTTPIncludeHonoursScopes(t *testing.T) {
	env := newSearchEnv(t, 2)
	tok := token(t, "client-a", "a", "system/Observation.rs")
	if code, _ := env.do(t, tok, "GET", "/fhir/Patient/"+env.pa, nil); code != 403 {
		t.Fatalf("GET Patient with only Observation scopes: %d; want 403", code)
	}
	code, body := env.do(t, tok, "GET", "/fhir/Observation?patient="+env.pa+"&_include=Observation:patient", nil)
	if code != 200 {
		t.Fatalf("search: %d %s", code, body)
	}
	b := decode(t, body)
	matches := 0
	for _, e := range b.Entry {
		if e.Resource.ResourceType != "Observation" {
			t.Fatalf("included %s/%s (mode %s) for a token without its scope", e.Resource.ResourceType, e.Resource.ID, e.Search.Mode)
		}
		matches++
	}
	if matches == 0 {
		t.Fatal("no Observations returned; the test shows nothing")
	}
	// The same search with Patient scope does include the Patient, so the check above can fail.
	full := token(t, "client-a", "a", "system/Observation.rs system/Patient.rs")
	_, body = env.do(t, full, "GET", "/fhir/Observation?patient="+env.pa+"&_include=Observation:patient", nil)
	found := false
	for _, e := range decode(t, body).Entry {
		found = found || e.Resource.ResourceType == "Patient"
	}
	if !found {
		t.Fatal("with Patient scope the _include returned no Patient")
	}
}
