package exchange

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	mpistore "github.com/concord-hie/concord/mpi/store"
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

// createAs posts body to /fhir/typ with tok and returns the new resource's Type/id.
func (env *dirEnv) createAs(t *testing.T, tok, typ, body string) string {
	t.Helper()
	code, resp := env.do(t, tok, http.MethodPost, "/fhir/"+typ, body)
	var r struct{ ID string }
	if err := json.Unmarshal(resp, &r); code != http.StatusCreated || err != nil || r.ID == "" {
		t.Fatalf("create %s: %d %s", typ, code, resp)
	}
	return typ + "/" + r.ID
}

// putPatient stores a Patient of member with the MRN mrn in the member's namespace
// (urn:oid:1.2.3.<ascii(member)>) and links it in the MPI, as an admission would, and
// returns its id.
func (env *dirEnv) putPatient(t *testing.T, member, mrn string) string {
	t.Helper()
	ctx := context.Background()
	sys := "urn:oid:1.2.3." + strconv.Itoa(int(member[0]))
	var id string
	err := db.InTx(ctx, env.pool, func(tx db.Querier) error {
		st, err := store.New(env.pool).Put(ctx, tx, store.Write{
			Resource: fhir.MustParse([]byte(`{"resourceType":"Patient","identifier":[{"system":"` + sys + `","value":"` + mrn + `"}],"name":[{"family":"Include"}]}`)),
			MemberID: member, At: time.Now(), Source: searchBase + "/members/" + member, Tags: []fhir.Coding{{System: systemSourceMember, Code: member}}})
		if err != nil {
			return err
		}
		id = st.ID
		_, _, err = mpistore.New(env.pool).Upsert(ctx, tx, member, sys, mrn, st.ID, map[string]string{}, "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// metadataIncludes returns the searchInclude and searchRevInclude lists of the
// CapabilityStatement, by type.
func (env *dirEnv) metadataIncludes(t *testing.T) (include, revinclude map[string][]string) {
	t.Helper()
	code, meta := env.do(t, "", http.MethodGet, "/fhir/metadata", "")
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type                            string
				SearchInclude, SearchRevInclude []string
			}
		}
	}
	if err := json.Unmarshal(meta, &cs); code != http.StatusOK || err != nil || len(cs.Rest) == 0 {
		t.Fatalf("metadata: %d %v", code, err)
	}
	include, revinclude = map[string][]string{}, map[string][]string{}
	for _, r := range cs.Rest[0].Resource {
		include[r.Type], revinclude[r.Type] = r.SearchInclude, r.SearchRevInclude
	}
	return include, revinclude
}

// TestReachesOrganization: the _include parameters served for directory Organizations are
// those of the search table that can point at an Organization, and no other.
func TestReachesOrganization(t *testing.T) {
	for _, tt := range []struct {
		source, param string
		want          bool
	}{
		{"PractitionerRole", "organization", true},
		{"Location", "organization", true},
		{"Endpoint", "organization", true},
		{"List", "item", true}, // R4 target Any
		{"PractitionerRole", "location", false},
		{"PractitionerRole", "specialty", false}, // a token
		{"Observation", "subject", false},        // Group, Device, Patient, Location
		{"DocumentReference", "subject", false},
		{"Group", "member", false},
		{"Observation", "performer", false}, // not indexed
		{"NoSuchType", "organization", false},
	} {
		if got := reachesOrganization(tt.source, tt.param); got != tt.want {
			t.Errorf("%s:%s: %v, want %v", tt.source, tt.param, got, tt.want)
		}
	}
}

// TestIncludeDirectoryOrganizationEveryParam: every advertised _include that can reach an
// Organization (Location:organization, List:item; PractitionerRole:organization above)
// adds the directory Organization the page's matches reference, with or without the
// target type Organization, and audits it; another target type adds none. A List is a
// clinical record: its search is consent-decided as ever, the directory Organization it
// names is reference data.
func TestIncludeDirectoryOrganizationEveryParam(t *testing.T) {
	env := newDirEnv(t)
	writer := token(t, "client-b", "b", "system/*.cruds")
	patient := "Patient/" + env.putPatient(t, "b", "inc-1")
	loc := env.createAs(t, writer, "Location", `{"resourceType":"Location","name":"Include Clinic","managingOrganization":{"reference":"Organization/member-a"}}`)
	list := env.createAs(t, writer, "List", `{"resourceType":"List","status":"current","mode":"working","subject":{"reference":"`+patient+`"},
		"entry":[{"item":{"reference":"`+searchBase+`/fhir/Organization/member-b"}},{"item":{"reference":"`+patient+`"}}]}`)
	include, _ := env.metadataIncludes(t)
	reader := token(t, "client-b", "b", "system/*.rs")
	for _, tt := range []struct {
		query, include string
		match, want    []string
	}{
		{"/fhir/Location?name=Include", "Location:organization", []string{loc}, []string{"Organization/member-a"}},
		{"/fhir/Location?name=Include", "Location:organization:Organization", []string{loc}, []string{"Organization/member-a"}},
		{"/fhir/List?patient=" + strings.TrimPrefix(patient, "Patient/"), "List:item", []string{list}, []string{"Organization/member-b", patient}},
		{"/fhir/List?patient=" + strings.TrimPrefix(patient, "Patient/"), "List:item:Organization", []string{list}, []string{"Organization/member-b"}},
		{"/fhir/List?patient=" + strings.TrimPrefix(patient, "Patient/"), "List:item:Patient", []string{list}, []string{patient}},
	} {
		typ, _, _ := strings.Cut(tt.include, ":")
		base := strings.Join(strings.Split(tt.include, ":")[:2], ":")
		if !slices.Contains(include[typ], base) {
			t.Errorf("%s: not advertised in %v", tt.include, include[typ])
		}
		b := env.search(t, reader, tt.query+"&_include="+tt.include)
		got := b.withMode("include")
		slices.Sort(got)
		if !slices.Equal(b.withMode("match"), tt.match) || !slices.Equal(got, tt.want) {
			t.Errorf("%s: matches %v included %v, want %v", tt.include, b.withMode("match"), got, tt.want)
		}
		for _, e := range b.Entry {
			if strings.HasPrefix(e.Resource.ID, "member-") && e.Resource.Meta.Source != searchBase+"/directory" {
				t.Errorf("%s: directory entry %+v", tt.include, e)
			}
		}
		dirIDs := slices.DeleteFunc(slices.Clone(tt.want), func(s string) bool { return !strings.HasPrefix(s, "Organization/member-") })
		if ev := env.log.last(); len(dirIDs) > 0 && (ev.Action != audit.Query || ev.Patient != "" || !slices.Equal(auditedIDs(ev), dirIDs)) {
			t.Errorf("%s: audit %+v", tt.include, ev)
		}
	}
}

// TestIncludeDirectoryOrganizationCursorQuery: on every page, a cursor page too, the
// event for the directory Organizations an _include adds records the query records'
// event for the same page records: the search's own, which a cursor page takes from its
// cursor, not the _cursor parameter alone.
func TestIncludeDirectoryOrganizationCursorQuery(t *testing.T) {
	env := newDirEnv(t)
	env.createRoles(t, "a", "Organization/member-a", "", 2)
	reader := token(t, "client-b", "b", "system/PractitionerRole.rs system/Organization.rs")
	next := "/fhir/PractitionerRole?organization=Organization/member-a&_include=PractitionerRole:organization&_count=1"
	pages := 0
	for ; next != ""; pages++ {
		before := len(env.log.events)
		b := env.search(t, reader, next)
		evs := env.log.events[before:]
		if len(evs) != 2 || !slices.Equal(auditedIDs(evs[1]), []string{"Organization/member-a"}) {
			t.Fatalf("page %d (%v): events %+v", pages, b.ids(), evs)
		}
		if got, want := evs[1].Query, evs[0].Query; got != want || !strings.Contains(got, "_include=PractitionerRole") {
			t.Errorf("page %d: the directory's event has query %q, records' %q", pages, got, want)
		}
		next = b.next()
	}
	if pages != 2 {
		t.Fatalf("%d pages", pages)
	}
}
