package exchange

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/httpx"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/notify"
	"github.com/concord-hie/concord/records"
)

// auditedIDs lists an event's resources as Type/id.
func auditedIDs(ev audit.Event) []string {
	var out []string
	for _, r := range ev.Resources {
		out = append(out, r.Type+"/"+r.ID)
	}
	return out
}

// TestDirectoryIncludes: Endpoint?_include=Endpoint:organization adds the managing
// directory Organizations, Organization?_include=Organization:endpoint the directory
// Endpoints the page's Organizations reference (a member-sent one too), and
// Organization?_revinclude=Endpoint:organization those the page's directory Organizations
// manage, on every page. What is included is in the directory's audit event and needs the
// included type's scope, without which it is left out as records leaves out a type the
// token may not read.
func TestDirectoryIncludes(t *testing.T) {
	env := newDirEnv(t)
	both := token(t, "client-b", "b", "system/Organization.rs system/Endpoint.rs")
	aHooks := env.search(t, both, "/fhir/Endpoint?organization=member-a").ids()
	bHook := env.search(t, both, "/fhir/Endpoint?organization=member-b").ids()[0]
	if len(aHooks) != 2 {
		t.Fatalf("a's endpoints: %v", aHooks)
	}

	b := env.search(t, both, "/fhir/Endpoint?organization=member-a&_include=Endpoint:organization")
	if !slices.Equal(b.withMode("match"), aHooks) || !slices.Equal(b.withMode("include"), []string{"Organization/member-a"}) || *b.Total != 2 {
		t.Fatalf("Endpoint _include: %v / %v", b.withMode("match"), b.withMode("include"))
	}
	if ev := env.log.last(); ev.Action != audit.Query || ev.Patient != "" || !slices.Equal(auditedIDs(ev), append(slices.Clone(aHooks), "Organization/member-a")) {
		t.Fatalf("audit: %+v", ev)
	}
	b = env.search(t, both, "/fhir/Endpoint?_include=Endpoint:organization:Organization&_count=2")
	if got := b.withMode("include"); !slices.Equal(got, []string{"Organization/concord", "Organization/member-a"}) {
		t.Fatalf("first page's Organizations: %v (%v)", got, b.withMode("match"))
	}
	epOnly := token(t, "client-b", "b", "system/Endpoint.rs")
	if b := env.search(t, epOnly, "/fhir/Endpoint?organization=member-a&_include=Endpoint:organization"); len(b.withMode("include")) != 0 || len(b.Entry) != 2 {
		t.Fatalf("Organization included without its scope: %v", b.ids())
	}

	for _, q := range []string{"_include=Organization:endpoint", "_include=Organization:endpoint:Endpoint", "_revinclude=Endpoint:organization"} {
		b := env.search(t, both, "/fhir/Organization?_id=member-a&"+q)
		if !slices.Equal(b.withMode("match"), []string{"Organization/member-a"}) || !slices.Equal(b.withMode("include"), aHooks) {
			t.Fatalf("%s: %v / %v", q, b.withMode("match"), b.withMode("include"))
		}
		if ev := env.log.last(); ev.Action != audit.Query || !slices.Equal(auditedIDs(ev), append([]string{"Organization/member-a"}, aHooks...)) {
			t.Fatalf("%s audit: %+v", q, ev)
		}
	}
	orgOnly := token(t, "client-b", "b", "system/Organization.rs")
	if b := env.search(t, orgOnly, "/fhir/Organization?_id=member-a&_include=Organization:endpoint"); len(b.withMode("include")) != 0 {
		t.Fatalf("Endpoints included without their scope: %v", b.ids())
	}

	// A member-sent Organization naming a directory Endpoint includes it too; it comes on
	// a later page of the stored search (_cursor), and the directory's entries after it
	// (_offset) include theirs.
	st, err := store.New(env.pool).Put(context.Background(), env.pool, store.Write{
		Resource: fhir.MustParse([]byte(`{"resourceType":"Organization","name":"Beta's lab","endpoint":[{"reference":"` + bHook + `"}]}`)),
		MemberID: "b", At: time.Now().Add(time.Minute), Source: searchBase + "/members/b", Tags: []fhir.Coding{{System: systemSourceMember, Code: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	next := "/fhir/Organization?_sort=_lastUpdated&_count=1&_include=Organization:endpoint"
	for next != "" {
		b := env.search(t, both, next)
		got = append(got, strings.Join(append(b.withMode("match"), b.withMode("include")...), " "))
		next = b.next()
	}
	want := []string{"Organization/" + env.storedOrg, "Organization/" + st.ID + " " + bHook, "Organization/concord Endpoint/concord-fhir",
		"Organization/member-a " + strings.Join(aHooks, " "), "Organization/member-b " + bHook}
	if !slices.Equal(got, want) {
		t.Fatalf("pages:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	for _, target := range []string{"/fhir/Endpoint?_include=Endpoint:identifier", "/fhir/Endpoint?_revinclude=Organization:endpoint",
		"/fhir/Organization?_include=Organization:partof", "/fhir/Endpoint?_include:iterate=Endpoint:organization"} {
		if code, body := env.do(t, both, http.MethodGet, target, ""); code != http.StatusBadRequest || !bytes.Contains(body, []byte("OperationOutcome")) {
			t.Fatalf("%s: %d %s", target, code, body)
		}
	}
}

// TestDirectoryIncludesReferenceForms: Organization:endpoint follows every form of
// reference to a directory Endpoint a member-sent Organization may hold, as
// fhir.ParseReference reads them: relative or absolute on this server, with or without a
// version (the Endpoint is included as it stands). A reference to another server's
// Endpoint of the same id, or one that does not parse, includes nothing.
func TestDirectoryIncludesReferenceForms(t *testing.T) {
	env := newDirEnv(t)
	both := token(t, "client-b", "b", "system/Organization.rs system/Endpoint.rs")
	aHooks := env.search(t, both, "/fhir/Endpoint?organization=member-a").ids()
	bHook := env.search(t, both, "/fhir/Endpoint?organization=member-b").ids()[0]
	concord := "Endpoint/concord-fhir"
	if len(aHooks) != 2 {
		t.Fatalf("a's endpoints: %v", aHooks)
	}
	refs := []string{
		aHooks[0] + "/_history/1",                     // relative, versioned
		searchBase + "/fhir/" + aHooks[1],             // absolute
		searchBase + "/fhir/" + bHook + "/_history/3", // absolute, versioned
		"https://elsewhere.example/fhir/" + concord,   // another server's
		concord + "/_history",                         // no version after _history
	}
	var endpoint []string
	for _, r := range refs {
		endpoint = append(endpoint, `{"reference":"`+r+`"}`)
	}
	st, err := store.New(env.pool).Put(context.Background(), env.pool, store.Write{
		Resource: fhir.MustParse([]byte(`{"resourceType":"Organization","name":"Beta's partners","endpoint":[` + strings.Join(endpoint, ",") + `]}`)),
		MemberID: "b", At: time.Now(), Source: searchBase + "/members/b", Tags: []fhir.Coding{{System: systemSourceMember, Code: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	b := env.search(t, both, "/fhir/Organization?_id="+st.ID+"&_include=Organization:endpoint")
	got := b.withMode("include")
	slices.Sort(got)
	want := []string{aHooks[0], aHooks[1], bHook}
	slices.Sort(want)
	if !slices.Equal(b.withMode("match"), []string{"Organization/" + st.ID}) || !slices.Equal(got, want) {
		t.Fatalf("matches %v, included %v; want %v", b.withMode("match"), got, want)
	}
}

// TestOrganizationRevIncludeDirectory: Organization?_revinclude=PractitionerRole:organization
// and Location:organization add the member-sent roles and locations that name the page's
// directory Organizations (relative or absolute references), beside those naming its
// member-sent Organizations, on every page; not those naming another server's
// Organization of the same id. They are found through records: only what
// the caller may see comes back (another member's labelled role does not), each is in
// the audit event of records' search, and a type the token may not read is left out.
// The CapabilityStatement lists both for Organization, and no _revinclude whose parameter
// cannot point at an Organization.
func TestOrganizationRevIncludeDirectory(t *testing.T) {
	env := newDirEnv(t)
	writerA := token(t, "client-a", "a", "system/*.cruds")
	writerB := token(t, "client-b", "b", "system/*.cruds")
	role := func(tok, org, extra string) string {
		t.Helper()
		return env.createAs(t, tok, "PractitionerRole", `{"resourceType":"PractitionerRole",`+extra+`"active":true,"organization":{"reference":"`+org+`"}}`)
	}
	r1 := role(writerA, "Organization/member-b", "")
	r1abs := role(writerA, searchBase+"/fhir/Organization/member-b", "")
	role(writerA, "https://other-hie.example/fhir/Organization/member-b", "") // another server's member-b
	labelled := role(writerA, "Organization/member-b", `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]},`)
	r4 := role(writerA, "Organization/member-a", "")
	rStored := role(writerA, "Organization/"+env.storedOrg, "")
	l1 := env.createAs(t, writerB, "Location", `{"resourceType":"Location","name":"B's clinic","managingOrganization":{"reference":"Organization/member-b"}}`)

	reader := token(t, "client-b", "b", "system/Organization.rs system/PractitionerRole.rs system/Location.rs")
	sorted := func(ids ...string) []string { return slices.Sorted(slices.Values(ids)) }
	for _, tt := range []struct {
		name, tok, query string
		want             []string
	}{
		{"roles", reader, "_id=member-b&_revinclude=PractitionerRole:organization", sorted(r1, r1abs)},
		{"roles, target type", reader, "_id=member-b&_revinclude=PractitionerRole:organization:Organization", sorted(r1, r1abs)},
		{"locations", reader, "_id=member-b&_revinclude=Location:organization", []string{l1}},
		{"both", reader, "_id=member-b&_revinclude=PractitionerRole:organization&_revinclude=Location:organization", append([]string{l1}, sorted(r1, r1abs)...)},
		{"the sender sees its labelled role", token(t, "client-a", "a", "system/Organization.rs system/PractitionerRole.rs"),
			"_id=member-b&_revinclude=PractitionerRole:organization", sorted(r1, r1abs, labelled)},
		{"no PractitionerRole scope", token(t, "client-b", "b", "system/Organization.rs system/Location.rs"),
			"_id=member-b&_revinclude=PractitionerRole:organization&_revinclude=Location:organization", []string{l1}},
		{"no _revinclude", reader, "_id=member-b", nil},
	} {
		before := len(env.log.events)
		b := env.search(t, tt.tok, "/fhir/Organization?"+tt.query)
		if !slices.Equal(b.withMode("match"), []string{"Organization/member-b"}) || !slices.Equal(b.withMode("include"), tt.want) {
			t.Errorf("%s: %v / %v, want %v", tt.name, b.withMode("match"), b.withMode("include"), tt.want)
		}
		audited := map[string]bool{}
		for _, ev := range env.log.events[before:] {
			for _, id := range auditedIDs(ev) {
				audited[id] = true
			}
			if ev.Action != audit.Query || ev.Patient != "" {
				t.Errorf("%s: event %+v", tt.name, ev)
			}
		}
		for _, id := range tt.want {
			if !audited[id] {
				t.Errorf("%s: %s not audited", tt.name, id)
			}
		}
		if audited[labelled] && !slices.Contains(tt.want, labelled) {
			t.Errorf("%s: the labelled role is in an event of a search that did not show it", tt.name)
		}
	}

	// Every Organization, one a page: each directory Organization brings its own roles,
	// the member-sent one those records finds for it.
	got := map[string][]string{}
	next := "/fhir/Organization?_revinclude=PractitionerRole:organization&_count=1"
	for pages := 0; next != "" && pages < 10; pages++ {
		b := env.search(t, reader, next)
		if m := b.withMode("match"); len(m) == 1 {
			got[m[0]] = b.withMode("include")
		} else {
			t.Fatalf("page %v", b.ids())
		}
		next = b.next()
	}
	want := map[string][]string{"Organization/concord": nil, "Organization/member-a": {r4}, "Organization/member-b": sorted(r1, r1abs),
		"Organization/" + env.storedOrg: {rStored}}
	if len(got) != len(want) {
		t.Fatalf("pages %v, want %v", got, want)
	}
	for org, w := range want {
		if !slices.Equal(got[org], w) {
			t.Errorf("%s: %v, want %v", org, got[org], w)
		}
	}

	_, rev := env.metadataIncludes(t)
	for _, inc := range []string{"PractitionerRole:organization", "Location:organization", "Endpoint:organization"} {
		if !slices.Contains(rev["Organization"], inc) {
			t.Errorf("Organization searchRevInclude %v lacks %s", rev["Organization"], inc)
		}
	}
	for _, inc := range rev["Organization"] {
		src, param, _ := strings.Cut(inc, ":")
		if !reachesOrganization(src, param) {
			t.Errorf("Organization searchRevInclude lists %s", inc)
		}
	}
}

// withScanTime mounts env's search routes anew over a Searcher whose ScanTime is d, with
// the same stores, tokens and audit log.
func (env *dirEnv) withScanTime(t *testing.T, d time.Duration) {
	t.Helper()
	fs, ms := store.New(env.pool), mpistore.New(env.pool)
	rec := records.New(fs, ms, defaultDirectives{}, env.log, nil)
	h, _ := audit.NewHasher(bytes.Repeat([]byte{7}, 32))
	x, err := records.NewSearcher(rec, records.SearchConfig{CursorKey: tokenKey, Hasher: h, ScanTime: d})
	if err != nil {
		t.Fatal(err)
	}
	dir := directory.NewStore(env.pool)
	toks := newTokens(t, dir, tokenKey, searchBase+"/fhir", searchBase+"/token", time.Hour)
	srv := New(Config{BaseURL: searchBase, MaxBodyBytes: 1 << 20}, Deps{Pool: env.pool, Directory: dir, Tokens: toks, FHIR: fs, MPI: ms, Records: rec,
		Notify: notify.NewStore(nil), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	env.e = mountExchange(srv, httpx.RequestID())
	NewSearchAPI(srv, x).Register(env.e)
}

// createRoles stores n PractitionerRoles of member naming org, with extra (JSON members
// ending in a comma) in each, in one statement, and returns their Type/ids.
func (env *dirEnv) createRoles(t *testing.T, member, org, extra string, n int) []string {
	t.Helper()
	ws := make([]store.Write, n)
	for i := range ws {
		ws[i] = store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"PractitionerRole",` + extra + `"active":true,"organization":{"reference":"` + org + `"}}`)),
			MemberID: member, At: time.Now(), Source: searchBase + "/members/" + member, Tags: []fhir.Coding{{System: systemSourceMember, Code: member}}}
	}
	sts, err := store.New(env.pool).CreateMany(context.Background(), env.pool, ws)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(sts))
	for i, st := range sts {
		out[i] = "PractitionerRole/" + st.ID
	}
	return out
}

// restricted is the meta of a resource labelled restricted, which no other member sees.
const restricted = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]},`

// TestOrganizationRevIncludeDirectoryScanTime: the directory Organizations' _revinclude
// runs under the request's one ScanTime deadline, the one the stored search began, not a
// new one for each of records' pages it reads: once the time is up it is refused (400,
// the _revinclude took too long), as the stored Organizations' own _revinclude is, not
// answered after following records' short pages one deadline at a time, each with its
// audit event. The roles here are all hidden from the caller, so only time bounds the
// scan: ScanTime is a third of what the whole scan takes on this machine.
func TestOrganizationRevIncludeDirectoryScanTime(t *testing.T) {
	env := newDirEnv(t)
	env.createRoles(t, "a", "Organization/member-b", restricted, 5000)
	reader := token(t, "client-b", "b", "system/Organization.rs system/PractitionerRole.rs")
	const query = "/fhir/Organization?_id=member-b&_revinclude=PractitionerRole:organization"
	whole := time.Duration(1<<63 - 1)
	for range 2 {
		start := time.Now()
		if b := env.search(t, reader, query); len(b.withMode("include")) != 0 {
			t.Fatalf("hidden roles included: %v", b.withMode("include"))
		}
		whole = min(whole, time.Since(start))
	}

	env.withScanTime(t, whole/3)
	before := len(env.log.events)
	code, body := env.do(t, reader, http.MethodGet, query, "")
	if code != http.StatusBadRequest || !bytes.Contains(body, []byte("_revinclude took too long")) {
		t.Fatalf("ScanTime %v of %v: %d %.300s", whole/3, whole, code, body)
	}
	// records' event for the stored search and for the directory's one page that ran
	// out of time; then nothing more was read.
	if n := len(env.log.events) - before; n > 2 {
		t.Fatalf("%d audit events, one per page of records' search", n)
	}
}

// TestOrganizationRevIncludeOneLimit: one page's _revinclude adds at most
// records.MaxRevIncluded resources in all: what records' own _revinclude puts on it for
// the member-sent Organizations and what the exchange adds for the directory's count
// together, so a page with 600 roles naming each is refused (400 naming _revinclude),
// while either alone is answered.
func TestOrganizationRevIncludeOneLimit(t *testing.T) {
	env := newDirEnv(t)
	n := records.MaxRevIncluded * 3 / 5
	env.createRoles(t, "b", "Organization/"+env.storedOrg, "", n)
	env.createRoles(t, "b", "Organization/member-b", "", n)
	reader := token(t, "client-b", "b", "system/Organization.rs system/PractitionerRole.rs")
	const rev = "&_revinclude=PractitionerRole:organization"
	for _, id := range []string{env.storedOrg, "member-b"} {
		if b := env.search(t, reader, "/fhir/Organization?_id="+id+rev); len(b.withMode("include")) != n {
			t.Fatalf("%s alone: %d included, want %d", id, len(b.withMode("include")), n)
		}
	}
	code, body := env.do(t, reader, http.MethodGet, "/fhir/Organization?_id=member-b,"+env.storedOrg+rev, "")
	if code != http.StatusBadRequest || !bytes.Contains(body, []byte("_revinclude would add more than")) {
		t.Fatalf("both on one page: %d %.300s", code, body)
	}
}
