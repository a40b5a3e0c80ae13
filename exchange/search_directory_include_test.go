package exchange

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/concord-hie/concord/audit"
)

// TestPractitionerRoleIncludesDirectoryOrganization: PractitionerRole?_include=
// PractitionerRole:organization adds the directory Organizations the page's roles
// reference (relative or absolute on this server's base, each once, search mode include,
// as GET Organization/{id} serves it) beside the member-sent Organizations records
// includes, on every page, and audits them; a reference to an unknown member includes
// nothing; without a scope that reads Organization, or without the _include, none is
// added. The CapabilityStatement lists the include.
func TestPractitionerRoleIncludesDirectoryOrganization(t *testing.T) {
	env := newDirEnv(t)
	writer := token(t, "client-a", "a", "system/*.cruds")
	create := func(org string) string {
		t.Helper()
		body := `{"resourceType":"PractitionerRole","active":true,"organization":{"reference":"` + org + `"},
			"specialty":[{"coding":[{"system":"http://nucc.org/provider-taxonomy","code":"207Q00000X"}]}]}`
		code, resp := env.do(t, writer, http.MethodPost, "/fhir/PractitionerRole", body)
		var r struct{ ID string }
		if err := json.Unmarshal(resp, &r); code != http.StatusCreated || err != nil || r.ID == "" {
			t.Fatalf("create: %d %s", code, resp)
		}
		return "PractitionerRole/" + r.ID
	}
	roles := []string{
		create("Organization/member-a"),
		create(searchBase + "/fhir/Organization/member-a"),
		create("Organization/" + env.storedOrg), // member-sent: records includes it
		create("Organization/member-zzz"),       // no such member
	}
	slices.Sort(roles)
	const query = "/fhir/PractitionerRole?specialty=207Q00000X"
	reader := token(t, "client-b", "b", "system/PractitionerRole.rs system/Organization.rs")

	wantIncluded := []string{"Organization/" + env.storedOrg, "Organization/member-a"}
	for _, inc := range []string{"PractitionerRole:organization", "PractitionerRole:organization:Organization"} {
		b := env.search(t, reader, query+"&_include="+inc)
		if got := slices.Sorted(slices.Values(b.withMode("match"))); !slices.Equal(got, roles) {
			t.Fatalf("%s: matches %v, want %v", inc, got, roles)
		}
		if got := slices.Sorted(slices.Values(b.withMode("include"))); !slices.Equal(got, wantIncluded) {
			t.Fatalf("%s: included %v, want %v", inc, got, wantIncluded)
		}
		for _, e := range b.Entry {
			if e.Resource.ID == "member-a" && (e.Resource.Meta.Source != searchBase+"/directory" || e.FullURL != searchBase+"/fhir/Organization/member-a") {
				t.Fatalf("%s: directory entry %+v", inc, e)
			}
		}
		if ev := env.log.last(); ev.Action != audit.Query || ev.Patient != "" || ev.Org != "b" || !slices.Equal(auditedIDs(ev), []string{"Organization/member-a"}) {
			t.Fatalf("%s: audit %+v", inc, ev)
		}
	}
	// The included Organization is the one a read serves.
	_, read := env.do(t, reader, http.MethodGet, "/fhir/Organization/member-a", "")
	var bundle struct {
		Entry []struct {
			Resource json.RawMessage
			Search   struct{ Mode string }
		}
	}
	_, body := env.do(t, reader, http.MethodGet, query+"&_include=PractitionerRole:organization", "")
	if err := json.Unmarshal(body, &bundle); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range bundle.Entry {
		var r struct{ ID string }
		_ = json.Unmarshal(e.Resource, &r)
		if r.ID == "member-a" {
			found = true
			if e.Search.Mode != "include" || !jsonEqual(t, e.Resource, read) {
				t.Fatalf("included %s %s\nread %s", e.Search.Mode, e.Resource, read)
			}
		}
	}
	if !found {
		t.Fatal("member-a not included")
	}

	// Paged one role at a time: each page includes its own role's Organization, the
	// cursor pages too.
	var pages [][]string
	next := query + "&_include=PractitionerRole:organization&_count=1"
	for next != "" && len(pages) < 10 {
		b := env.search(t, reader, next)
		pages = append(pages, b.ids())
		next = b.next()
	}
	counts := map[string]int{}
	for _, p := range pages {
		if len(p) == 0 || len(p) > 2 {
			t.Fatalf("page %v", p)
		}
		for _, id := range p[1:] {
			counts[id]++
		}
	}
	if len(pages) != 4 || counts["Organization/member-a"] != 2 || counts["Organization/"+env.storedOrg] != 1 || len(counts) != 2 {
		t.Fatalf("pages %v", pages)
	}

	for _, tt := range []struct{ name, tok, query string }{
		{"no Organization scope", token(t, "client-b", "b", "system/PractitionerRole.rs"), query + "&_include=PractitionerRole:organization"},
		{"no _include", reader, query},
		{"another include", reader, query + "&_include=PractitionerRole:location"},
	} {
		before := len(env.log.events)
		b := env.search(t, tt.tok, tt.query)
		if got := b.withMode("include"); len(got) != 0 || len(b.withMode("match")) != len(roles) {
			t.Errorf("%s: %v", tt.name, b.ids())
		}
		for _, ev := range env.log.events[before:] {
			if slices.Contains(auditedIDs(ev), "Organization/member-a") {
				t.Errorf("%s: audited %+v", tt.name, ev)
			}
		}
	}

	code, meta := env.do(t, "", http.MethodGet, "/fhir/metadata", "")
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type          string
				SearchInclude []string
			}
		}
	}
	if err := json.Unmarshal(meta, &cs); code != http.StatusOK || err != nil {
		t.Fatalf("metadata: %d %v", code, err)
	}
	for _, r := range cs.Rest[0].Resource {
		if r.Type == "PractitionerRole" && !slices.Contains(r.SearchInclude, "PractitionerRole:organization") {
			t.Fatalf("PractitionerRole searchInclude %v", r.SearchInclude)
		}
	}
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}
