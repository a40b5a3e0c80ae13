package exchange

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
)

// TestPractitionerRoleAndLocationSearch: the PractitionerRole and Location a member sends
// through the API are searchable by another member by each of their parameters, a
// reference to a directory Organization (Organization/member-a) included; a value that
// does not match finds nothing; the CapabilityStatement lists the parameters.
func TestPractitionerRoleAndLocationSearch(t *testing.T) {
	env := newDirEnv(t)
	writer := token(t, "client-a", "a", "system/*.cruds")
	create := func(body string) string {
		t.Helper()
		code, resp := env.do(t, writer, http.MethodPost, "/fhir/"+jsonType(t, body), body)
		var r struct{ ID string }
		if err := json.Unmarshal(resp, &r); code != http.StatusCreated || err != nil || r.ID == "" {
			t.Fatalf("create: %d %s", code, resp)
		}
		return r.ID
	}
	pract := create(`{"resourceType":"Practitioner","name":[{"family":"Okafor","given":["Ada"]}]}`)
	loc := create(`{"resourceType":"Location","status":"active","name":"Riverside Main Campus","alias":["RFC North"],
		"identifier":[{"system":"urn:oid:1.2.3.97.9","value":"LOC-1"}],
		"address":{"line":["418 Willow Creek Rd"],"city":"Riverside","state":"CA","postalCode":"92501"},
		"managingOrganization":{"reference":"Organization/member-a"}}`)
	role := create(`{"resourceType":"PractitionerRole","active":true,
		"identifier":[{"system":"urn:oid:1.2.3.97.8","value":"ROLE-1"}],
		"practitioner":{"reference":"Practitioner/` + pract + `"},"organization":{"reference":"Organization/member-a"},
		"code":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/practitioner-role","code":"doctor"}]}],
		"specialty":[{"coding":[{"system":"http://nucc.org/provider-taxonomy","code":"207Q00000X"}]}],
		"location":[{"reference":"Location/` + loc + `"}]}`)

	reader := token(t, "client-b", "b", "system/PractitionerRole.rs system/Location.rs system/Practitioner.rs")
	for _, tt := range []struct {
		typ, query string
		want       []string
	}{
		{"PractitionerRole", "practitioner=" + pract, []string{role}},
		{"PractitionerRole", "practitioner=Practitioner/" + pract, []string{role}},
		{"PractitionerRole", "organization=member-a", []string{role}},
		{"PractitionerRole", "organization=Organization/member-b", nil},
		{"PractitionerRole", "role=http://terminology.hl7.org/CodeSystem/practitioner-role|doctor", []string{role}},
		{"PractitionerRole", "role=nurse", nil},
		{"PractitionerRole", "specialty=207Q00000X", []string{role}},
		{"PractitionerRole", "identifier=urn:oid:1.2.3.97.8|ROLE-1", []string{role}},
		{"PractitionerRole", "identifier=ROLE-2", nil},
		{"PractitionerRole", "location=" + loc, []string{role}},
		{"Location", "name=riverside", []string{loc}},
		{"Location", "name=rfc", []string{loc}}, // an alias
		{"Location", "name=lakeside", nil},
		{"Location", "address=418%20willow", []string{loc}},
		{"Location", "address=92501", []string{loc}},
		{"Location", "address:contains=creek", []string{loc}},
		{"Location", "address-city=Riverside", []string{loc}},
		{"Location", "address-state=CA", []string{loc}},
		{"Location", "address-postalcode=92501", []string{loc}},
		{"Location", "address-postalcode=92040", nil},
		{"Location", "organization=member-a", []string{loc}},
		{"Location", "identifier=urn:oid:1.2.3.97.9|LOC-1", []string{loc}},
	} {
		var want []string
		for _, id := range tt.want {
			want = append(want, tt.typ+"/"+id)
		}
		if got := searchModes(t, env, reader, "/fhir/"+tt.typ+"?"+tt.query)["match"]; !slices.Equal(got, want) {
			t.Errorf("%s?%s: %v, want %v", tt.typ, tt.query, got, want)
		}
	}
	// The references include what they point at.
	modes := searchModes(t, env, reader, "/fhir/PractitionerRole?specialty=207Q00000X&_include=PractitionerRole:practitioner&_include=PractitionerRole:location")
	if got, want := slices.Sorted(slices.Values(modes["include"])), []string{"Location/" + loc, "Practitioner/" + pract}; !slices.Equal(got, want) {
		t.Errorf("includes: %v, want %v", got, want)
	}

	code, body := env.do(t, "", http.MethodGet, "/fhir/metadata", "")
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type        string
				Interaction []struct{ Code string }
				SearchParam []struct{ Name, Definition string }
			}
		}
	}
	if err := json.Unmarshal(body, &cs); code != http.StatusOK || err != nil {
		t.Fatalf("metadata: %d %v", code, err)
	}
	want := map[string][]string{
		"PractitionerRole": {"_id", "_lastUpdated", "identifier", "location", "organization", "practitioner", "role", "specialty"},
		"Location":         {"_id", "_lastUpdated", "address", "address-city", "address-postalcode", "address-state", "identifier", "name", "organization"},
	}
	for _, r := range cs.Rest[0].Resource {
		w, ok := want[r.Type]
		if !ok {
			continue
		}
		delete(want, r.Type)
		var names []string
		for _, p := range r.SearchParam {
			names = append(names, p.Name)
			if p.Definition == "" {
				t.Errorf("%s %s: no definition", r.Type, p.Name)
			}
		}
		if !slices.Equal(names, w) || !slices.ContainsFunc(r.Interaction, func(i struct{ Code string }) bool { return i.Code == "search-type" }) {
			t.Errorf("%s: %v %v, want the parameters %v and search-type", r.Type, r.Interaction, names, w)
		}
	}
	if len(want) > 0 {
		t.Errorf("not in the CapabilityStatement: %v", want)
	}
}

// jsonType is the resourceType of a JSON resource.
func jsonType(t *testing.T, body string) string {
	t.Helper()
	var r struct{ ResourceType string }
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	return url.PathEscape(r.ResourceType)
}

// searchModes runs the search target and returns its entries' Type/id by search mode.
func searchModes(t *testing.T, env *dirEnv, tok, target string) map[string][]string {
	t.Helper()
	code, body := env.do(t, tok, http.MethodGet, target, "")
	var b struct {
		Entry []struct {
			Resource struct{ ResourceType, ID string }
			Search   struct{ Mode string }
		}
	}
	if err := json.Unmarshal(body, &b); code != http.StatusOK || err != nil {
		t.Fatalf("%s: %d %v %s", target, code, err, body)
	}
	out := map[string][]string{}
	for _, e := range b.Entry {
		out[e.Search.Mode] = append(out[e.Search.Mode], e.Resource.ResourceType+"/"+e.Resource.ID)
	}
	return out
}
