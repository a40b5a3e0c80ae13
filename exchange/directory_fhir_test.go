package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/httpx"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/notify"
	"github.com/concord-hie/concord/records"
)

// dirEnv is an exchange with search mounted over members a (urn:oid:1.2.3.97, two
// rest-hook origins, a second OID) and b (urn:oid:1.2.3.98, one origin), where b sent an
// Organization naming a's OID and a once stored an Endpoint of its own.
type dirEnv struct {
	e         *echo.Echo
	pool      *pgxpool.Pool
	log       *memAudit
	storedOrg string // b's Organization
	storedEP  string // a's stored Endpoint
}

func newDirEnv(t *testing.T) *dirEnv {
	t.Helper()
	pool := testkit.DB(t)
	ctx := context.Background()
	insertMembers(t, pool, "a", "b")
	for _, sql := range []string{
		`INSERT INTO directory_authorities(system, member_id) VALUES ('urn:oid:1.2.3.97', 'a'), ('urn:oid:1.2.3.97.5', 'a'), ('urn:oid:1.2.3.98', 'b')`,
		`INSERT INTO notify_endpoints(member_id, origin) VALUES ('a', 'https://hooks.a.example:443'), ('a', 'https://ehr.a.example:8443'), ('b', 'https://ehr.b.example:443')`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	fs, ms := store.New(pool), mpistore.New(pool)
	put := func(member, body string) string {
		st, err := fs.Put(ctx, pool, store.Write{Resource: fhir.MustParse([]byte(body)), MemberID: member, At: time.Now(),
			Source: searchBase + "/members/" + member, Tags: []fhir.Coding{{System: systemSourceMember, Code: member}}})
		if err != nil {
			t.Fatal(err)
		}
		return st.ID
	}
	env := &dirEnv{log: &memAudit{}, pool: pool}
	env.storedOrg = put("b", `{"resourceType":"Organization","identifier":[{"system":"urn:ietf:rfc:3986","value":"urn:oid:1.2.3.97"}],"name":"Alpha as b knows it"}`)
	env.storedEP = put("a", `{"resourceType":"Endpoint","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"hl7-fhir-rest"},"payloadType":[{"text":"x"}],"address":"https://old.a.example/fhir"}`)
	rec := records.New(fs, ms, defaultDirectives{}, env.log, nil)
	h, _ := audit.NewHasher(bytes.Repeat([]byte{7}, 32))
	x, err := records.NewSearcher(rec, records.SearchConfig{CursorKey: tokenKey, Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	dir := directory.NewStore(pool)
	toks := newTokens(t, dir, tokenKey, searchBase+"/fhir", searchBase+"/token", time.Hour)
	srv := New(Config{BaseURL: searchBase, MaxBodyBytes: 1 << 20}, Deps{Pool: pool, Directory: dir, Tokens: toks, FHIR: fs, MPI: ms, Records: rec,
		Notify: notify.NewStore(nil), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	env.e = mountExchange(srv, httpx.RequestID())
	NewSearchAPI(srv, x).Register(env.e)
	return env
}

func (env *dirEnv) do(t *testing.T, tok, method, target, body string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, strings.TrimPrefix(target, searchBase), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", mimeFHIR)
	}
	w := httptest.NewRecorder()
	env.e.ServeHTTP(w, req)
	return w.Code, w.Body.Bytes()
}

// dirBundle is the part of a searchset these tests read.
type dirBundle struct {
	Total *int `json:"total"`
	Link  []struct{ Relation, URL string }
	Entry []struct {
		FullURL  string `json:"fullUrl"`
		Resource struct {
			ResourceType, ID, Address string
			Meta                      struct{ Source string }
			ManagingOrganization      struct{ Reference string }
			ConnectionType            struct{ System, Code string }
			Identifier                []struct{ System, Value string }
		} `json:"resource"`
		Search struct{ Mode string } `json:"search"`
	} `json:"entry"`
}

func (env *dirEnv) search(t *testing.T, tok, target string) dirBundle {
	t.Helper()
	code, body := env.do(t, tok, http.MethodGet, target, "")
	if code != http.StatusOK {
		t.Fatalf("%s: %d %s", target, code, body)
	}
	var b dirBundle
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b dirBundle) ids() []string {
	var out []string
	for _, e := range b.Entry {
		out = append(out, e.Resource.ResourceType+"/"+e.Resource.ID)
	}
	return out
}

// withMode lists the Type/id of the entries of search mode mode (match, include).
func (b dirBundle) withMode(mode string) []string {
	var out []string
	for _, e := range b.Entry {
		if e.Search.Mode == mode {
			out = append(out, e.Resource.ResourceType+"/"+e.Resource.ID)
		}
	}
	return out
}

func (b dirBundle) next() string {
	for _, l := range b.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

func TestDirectoryEndpointSearchByOrganization(t *testing.T) {
	env := newDirEnv(t)
	tok := token(t, "client-b", "b", "system/Endpoint.rs")
	b := env.search(t, tok, "/fhir/Endpoint?organization=member-a")
	if b.Total == nil || *b.Total != 2 || len(b.Entry) != 2 {
		t.Fatalf("a's endpoints: total %v, %v", b.Total, b.ids())
	}
	var addrs []string
	for _, e := range b.Entry {
		r := e.Resource
		if r.ManagingOrganization.Reference != "Organization/member-a" || r.ConnectionType.Code != "hl7-fhir-rest" ||
			r.Meta.Source != searchBase+"/directory" || e.FullURL != searchBase+"/fhir/Endpoint/"+r.ID || !strings.HasPrefix(r.ID, "hook-") {
			t.Fatalf("entry: %+v", e)
		}
		addrs = append(addrs, r.Address)
	}
	if !slices.Equal(addrs, []string{"https://ehr.a.example:8443", "https://hooks.a.example:443"}) {
		t.Fatalf("addresses: %v", addrs)
	}
	ev := env.log.last()
	if ev.Action != audit.Query || ev.Patient != "" || ev.Outcome != audit.Permit || ev.Org != "b" || len(ev.Resources) != 2 ||
		ev.Resources[0].Type != "Endpoint" || ev.Query != "organization=member-a" {
		t.Fatalf("audit: %+v", ev)
	}

	// The stored Endpoint a sent once is not a directory entry.
	for _, id := range b.ids() {
		if id == "Endpoint/"+env.storedEP {
			t.Fatal("a stored Endpoint listed in the directory")
		}
	}

	b = env.search(t, tok, "/fhir/Endpoint?organization=Organization/member-a,concord&connection-type=hl7-fhir-rest&status=active&_count=2")
	if *b.Total != 3 || len(b.Entry) != 2 || b.next() == "" {
		t.Fatalf("page 1: total %d, %v, next %q", *b.Total, b.ids(), b.next())
	}
	seen := b.ids()
	b = env.search(t, tok, b.next())
	if len(b.Entry) != 1 || b.next() != "" || slices.Contains(seen, b.ids()[0]) {
		t.Fatalf("page 2: %v after %v, next %q", b.ids(), seen, b.next())
	}

	b = env.search(t, tok, "/fhir/Endpoint?organization=concord")
	if len(b.Entry) != 1 || b.Entry[0].Resource.Address != searchBase+"/fhir" {
		t.Fatalf("the exchange's own endpoint: %+v", b.Entry)
	}
	b = env.search(t, tok, "/fhir/Endpoint?connection-type=hl7v2-mllp")
	if *b.Total != 0 {
		t.Fatalf("no MLLP listener is stored: %v", b.ids())
	}
	b = env.search(t, tok, "/fhir/Endpoint")
	if *b.Total != 4 {
		t.Fatalf("every endpoint: %v", b.ids())
	}
}

func TestDirectoryEndpointUnknownOrganization(t *testing.T) {
	env := newDirEnv(t)
	tok := token(t, "client-b", "b", "system/Endpoint.rs")
	for _, org := range []string{"member-nobody", "nobody", url.QueryEscape(searchBase + "/fhir/Organization/member-nobody")} {
		b := env.search(t, tok, "/fhir/Endpoint?organization="+org)
		if b.Total == nil || *b.Total != 0 || len(b.Entry) != 0 {
			t.Fatalf("%s: %+v", org, b)
		}
	}
	if code, body := env.do(t, tok, http.MethodGet, "/fhir/Endpoint?address=x", ""); code != http.StatusBadRequest || !bytes.Contains(body, []byte("OperationOutcome")) {
		t.Fatalf("unknown parameter: %d %s", code, body)
	}
}

func TestDirectoryScopes(t *testing.T) {
	env := newDirEnv(t)
	epID := env.search(t, token(t, "client-b", "b", "system/Endpoint.rs"), "/fhir/Endpoint?organization=member-b").Entry[0].Resource.ID
	patientOnly := token(t, "client-b", "b", "system/Patient.rs")
	n := len(env.log.events)
	for _, target := range []string{"/fhir/Endpoint?organization=member-a", "/fhir/Endpoint/" + epID,
		"/fhir/Organization/member-a", "/fhir/Organization?identifier=urn:oid:1.2.3.97"} {
		code, body := env.do(t, patientOnly, http.MethodGet, target, "")
		if code != http.StatusForbidden || !bytes.Contains(body, []byte("forbidden")) {
			t.Fatalf("%s without scope: %d %s", target, code, body)
		}
	}
	if len(env.log.events) != n {
		t.Fatal("a refused request disclosed nothing and is not audited as a read")
	}
	if code, _ := env.do(t, "not-a-token", http.MethodGet, "/fhir/Endpoint", ""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	// Endpoint read needs r, search s: system/Endpoint.r reads and does not search.
	readOnly := token(t, "client-b", "b", "system/Endpoint.r")
	if code, _ := env.do(t, readOnly, http.MethodGet, "/fhir/Endpoint/"+epID, ""); code != http.StatusOK {
		t.Fatalf("read with .r: %d", code)
	}
	if code, _ := env.do(t, readOnly, http.MethodGet, "/fhir/Endpoint", ""); code != http.StatusForbidden {
		t.Fatalf("search with .r: %d", code)
	}
}

func TestDirectoryOrganizationByIdentifier(t *testing.T) {
	env := newDirEnv(t)
	tok := token(t, "client-b", "b", "system/Organization.rs")
	for _, q := range []string{"identifier=" + url.QueryEscape("urn:ietf:rfc:3986|urn:oid:1.2.3.97"), "identifier=urn:oid:1.2.3.97"} {
		b := env.search(t, tok, "/fhir/Organization?"+q)
		if got := b.ids(); !slices.Equal(got, []string{"Organization/member-a", "Organization/" + env.storedOrg}) || *b.Total != 2 {
			t.Fatalf("%s: %v (total %v)", q, got, b.Total)
		}
		dirOrg := b.Entry[0].Resource
		if dirOrg.Meta.Source != searchBase+"/directory" || b.Entry[1].Resource.Meta.Source != searchBase+"/members/b" {
			t.Fatalf("sources: %+v", b.Entry)
		}
	}
	// The directory event names the directory Organization and no patient; the stored
	// search wrote its own.
	ev := env.log.last()
	if ev.Action != audit.Query || ev.Patient != "" || len(ev.Resources) != 1 || ev.Resources[0] != (audit.Resource{Type: "Organization", ID: "member-a"}) ||
		strings.Contains(ev.Query, "1.2.3.97") {
		t.Fatalf("audit: %+v", ev)
	}
	b := env.search(t, tok, "/fhir/Organization?identifier=urn:oid:1.2.3.97.5")
	if got := b.ids(); !slices.Equal(got, []string{"Organization/member-a"}) {
		t.Fatalf("secondary OID: %v", got)
	}
	b = env.search(t, tok, "/fhir/Organization?identifier=urn:oid:1.2.3.99")
	if len(b.Entry) != 0 || *b.Total != 0 {
		t.Fatalf("unknown OID: %v", b.ids())
	}
	b = env.search(t, tok, "/fhir/Organization?name=alpha")
	if got := b.ids(); !slices.Equal(got, []string{"Organization/" + env.storedOrg}) {
		t.Fatalf("name: %v", got) // the members are named a and b
	}

	// Paging: the directory (concord, member-a, member-b) fills whole pages first, then
	// the stored Organization follows.
	var all []string
	next := "/fhir/Organization?_count=2"
	for next != "" {
		b = env.search(t, tok, next)
		if len(b.Entry) > 2 {
			t.Fatalf("page over _count: %v", b.ids())
		}
		all, next = append(all, b.ids()...), b.next()
	}
	want := []string{"Organization/concord", "Organization/member-a", "Organization/member-b", "Organization/" + env.storedOrg}
	if !slices.Equal(all, want) {
		t.Fatalf("pages: %v, want %v", all, want)
	}

	// _summary=count counts both.
	code, body := env.do(t, tok, http.MethodGet, "/fhir/Organization?identifier=urn:oid:1.2.3.97&_summary=count", "")
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"total":2`)) || bytes.Contains(body, []byte(`"entry"`)) {
		t.Fatalf("count: %d %s", code, body)
	}
}

func TestDirectoryRead(t *testing.T) {
	env := newDirEnv(t)
	tok := token(t, "client-b", "b", "system/Organization.rs system/Endpoint.rs")
	code, body := env.do(t, tok, http.MethodGet, "/fhir/Organization/member-a", "")
	if code != http.StatusOK {
		t.Fatalf("read: %d %s", code, body)
	}
	var org struct {
		ID         string
		Active     bool
		Name       string
		Identifier []struct{ Use, System, Value string }
		Endpoint   []struct{ Reference string }
	}
	if err := json.Unmarshal(body, &org); err != nil {
		t.Fatal(err)
	}
	if org.ID != "member-a" || !org.Active || org.Name != "a" || len(org.Identifier) != 2 ||
		org.Identifier[0].System != "urn:ietf:rfc:3986" || org.Identifier[0].Value != "urn:oid:1.2.3.97" || len(org.Endpoint) != 2 {
		t.Fatalf("organization: %s", body)
	}
	ev := env.log.last()
	if ev.Action != audit.Read || ev.Patient != "" || ev.Reason != "reference-data" || ev.Resources[0] != (audit.Resource{Type: "Organization", ID: "member-a"}) {
		t.Fatalf("audit: %+v", ev)
	}
	code, body = env.do(t, tok, http.MethodGet, "/fhir/"+org.Endpoint[0].Reference, "")
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"managingOrganization":{"reference":"Organization/member-a"`)) {
		t.Fatalf("endpoint read: %d %s", code, body)
	}
	for _, target := range []string{"/fhir/Organization/member-nobody", "/fhir/Endpoint/hook-00", "/fhir/Endpoint/nothing"} {
		if code, _ := env.do(t, tok, http.MethodGet, target, ""); code != http.StatusNotFound {
			t.Fatalf("%s: %d", target, code)
		}
	}
	// Stored resources keep their generic reads.
	if code, body := env.do(t, tok, http.MethodGet, "/fhir/Organization/"+env.storedOrg, ""); code != http.StatusOK || !bytes.Contains(body, []byte("Alpha as b knows it")) {
		t.Fatalf("stored Organization: %d %s", code, body)
	}
	tokA := token(t, "client-a", "a", "system/Endpoint.rs")
	if code, _ := env.do(t, tokA, http.MethodGet, "/fhir/Endpoint/"+env.storedEP, ""); code != http.StatusOK {
		t.Fatalf("a's stored Endpoint: %d", code)
	}
	if code, _ := env.do(t, tok, http.MethodGet, "/fhir/Endpoint/"+env.storedEP, ""); code != http.StatusNotFound {
		t.Fatalf("a's stored Endpoint read by b: %d", code)
	}
	if code, _ := env.do(t, tok, http.MethodGet, "/fhir/Organization/member-a/_history", ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("directory history: %d", code)
	}
	// Without the type's scope the answer is 403, as for any read, before the id is looked at.
	if code, _ := env.do(t, tokA, http.MethodGet, "/fhir/Organization/member-a/_history", ""); code != http.StatusForbidden {
		t.Fatalf("directory history without Organization scope: %d", code)
	}
}

func TestDirectoryEndpointWritesRefused(t *testing.T) {
	env := newDirEnv(t)
	tok := token(t, "client-a", "a", "system/*.cruds")
	ep := `{"resourceType":"Endpoint","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"hl7-fhir-rest"},"payloadType":[{"text":"x"}],"address":"https://new.a.example/fhir"}`
	for _, r := range []struct{ method, target, body string }{
		{http.MethodPost, "/fhir/Endpoint", ep},
		{http.MethodPut, "/fhir/Endpoint?identifier=x", ep},
		{http.MethodPut, "/fhir/Endpoint/" + env.storedEP, strings.Replace(ep, `{"resourceType":"Endpoint",`, `{"resourceType":"Endpoint","id":"`+env.storedEP+`",`, 1)},
		{http.MethodDelete, "/fhir/Endpoint/concord-fhir", ""},
		{http.MethodDelete, "/fhir/Endpoint?status=active", ""},
	} {
		code, body := env.do(t, tok, r.method, r.target, r.body)
		if code != http.StatusMethodNotAllowed || !bytes.Contains(body, []byte("concord member endpoint")) {
			t.Fatalf("%s %s: %d %s", r.method, r.target, code, body)
		}
	}
	// What a stored before the directory view it may still delete.
	if code, body := env.do(t, tok, http.MethodDelete, "/fhir/Endpoint/"+env.storedEP, ""); code/100 != 2 {
		t.Fatalf("delete stored: %d %s", code, body)
	}
}

func TestDirectoryCapabilityStatement(t *testing.T) {
	env := newDirEnv(t)
	code, body := env.do(t, "", http.MethodGet, "/fhir/metadata", "")
	if _, err := fhir.Parse(body); code != http.StatusOK || err != nil {
		t.Fatalf("metadata: %d %v", code, err)
	}
	var cs struct {
		Rest []struct {
			Resource []struct {
				Type             string
				Interaction      []struct{ Code string }
				SearchParam      []struct{ Name string }
				SearchInclude    []string
				SearchRevInclude []string
			}
		}
	}
	if err := json.Unmarshal(body, &cs); err != nil {
		t.Fatal(err)
	}
	for _, r := range cs.Rest[0].Resource {
		if r.Type == "Organization" && (!slices.Contains(r.SearchInclude, "Organization:endpoint") || !slices.Contains(r.SearchRevInclude, "Endpoint:organization")) {
			t.Fatalf("Organization includes: %v, %v", r.SearchInclude, r.SearchRevInclude)
		}
		if r.Type != "Endpoint" {
			continue
		}
		var ops, params []string
		for _, i := range r.Interaction {
			ops = append(ops, i.Code)
		}
		for _, p := range r.SearchParam {
			params = append(params, p.Name)
		}
		if !slices.Equal(ops, []string{"read", "search-type"}) || !slices.Equal(params, []string{"_id", "connection-type", "identifier", "organization", "status"}) ||
			!slices.Equal(r.SearchInclude, []string{"Endpoint:organization"}) {
			t.Fatalf("Endpoint: %v %v %v", ops, params, r.SearchInclude)
		}
		return
	}
	t.Fatal("no Endpoint entry")
}

// TestDirectoryEndpointBundleWritesRefused: a transaction or batch entry cannot store an
// Endpoint either (ownHandlerWrite), nor delete a directory one; a DELETE entry of a
// stored one still deletes it, as the REST DELETE does.
func TestDirectoryEndpointBundleWritesRefused(t *testing.T) {
	env := newDirEnv(t)
	tok := token(t, "client-a", "a", "system/*.cruds")
	ep := `{"resourceType":"Endpoint","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"hl7-fhir-rest"},"payloadType":[{"text":"x"}],"address":"https://new.a.example/fhir"}`
	put := strings.Replace(ep, `{"resourceType":"Endpoint",`, `{"resourceType":"Endpoint","id":"`+env.storedEP+`",`, 1)
	stored := func() int {
		t.Helper()
		var n int
		if err := env.pool.QueryRow(context.Background(), `SELECT count(*) FROM fhir_resources WHERE type = 'Endpoint' AND NOT deleted`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, entry := range []string{
		`{"fullUrl":"urn:uuid:11111111-1111-1111-1111-111111111111","resource":` + ep + `,"request":{"method":"POST","url":"Endpoint"}}`,
		`{"resource":` + put + `,"request":{"method":"PUT","url":"Endpoint/` + env.storedEP + `"}}`,
		`{"request":{"method":"DELETE","url":"Endpoint/concord-fhir"}}`, // a directory id: 405 over REST
	} {
		code, body := env.do(t, tok, http.MethodPost, "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[`+entry+`]}`)
		if code != http.StatusBadRequest || !bytes.Contains(body, []byte("cannot be written in a Bundle")) {
			t.Fatalf("transaction %s: %d %s", entry, code, body)
		}
		code, body = env.do(t, tok, http.MethodPost, "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[`+entry+`]}`)
		var resp struct {
			Entry []struct{ Response struct{ Status string } }
		}
		if err := json.Unmarshal(body, &resp); code != http.StatusOK || err != nil || len(resp.Entry) != 1 || !strings.HasPrefix(resp.Entry[0].Response.Status, "400") {
			t.Fatalf("batch %s: %d %s", entry, code, body)
		}
	}
	if n := stored(); n != 1 {
		t.Fatalf("%d stored Endpoints after refused entries, want a's one", n)
	}
	code, body := env.do(t, tok, http.MethodPost, "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Endpoint/`+env.storedEP+`"}}]}`)
	if code != http.StatusOK || stored() != 0 {
		t.Fatalf("delete entry: %d %s; %d stored", code, body, stored())
	}
}

// TestDirectoryNPIAndPublishedEndpoints: a member's NPI is an identifier of its
// Organization, searchable as us-npi|value beside the stored Organizations; its published
// FHIR base, MLLP receiver and Direct address are Endpoints referenced from it, listed by
// organization and connection-type with their status and payload types.
func TestDirectoryNPIAndPublishedEndpoints(t *testing.T) {
	env := newDirEnv(t)
	ctx := context.Background()
	dir := directory.NewStore(env.pool)
	if err := dir.SetNPI(ctx, "a", "1234567893"); err != nil {
		t.Fatal(err)
	}
	v2 := "http://terminology.hl7.org/CodeSystem/v2-0076"
	for _, e := range []directory.PublishedEndpoint{
		{ConnectionType: directory.ConnectionFHIRRest, Address: "https://fhir.a.example/r4"},
		{ConnectionType: directory.ConnectionMLLP, Address: "mllp://hl7.a.example:2575", PayloadTypes: []directory.PayloadType{{System: v2, Code: "ORU"}}},
		{ConnectionType: directory.ConnectionDirect, Address: "mailto:records@direct.a.example", Status: "off"},
		{ConnectionType: directory.ConnectionMLLP, Address: "mllp://hl7.b.example:2575"},
	} {
		member := "a"
		if strings.Contains(e.Address, ".b.") {
			member = "b"
		}
		if _, err := dir.SetEndpoint(ctx, member, e); err != nil {
			t.Fatal(err)
		}
	}
	tok := token(t, "client-b", "b", "system/Organization.rs system/Endpoint.rs")

	b := env.search(t, tok, "/fhir/Organization?identifier="+url.QueryEscape(directory.SystemNPI+"|1234567893"))
	if !slices.Equal(b.ids(), []string{"Organization/member-a"}) || *b.Total != 1 {
		t.Fatalf("by NPI: %v", b.ids())
	}
	if b := env.search(t, tok, "/fhir/Organization?identifier="+url.QueryEscape(directory.SystemNPI+"|1245319599")); len(b.Entry) != 0 {
		t.Fatalf("another NPI: %v", b.ids())
	}
	if b := env.search(t, tok, "/fhir/Organization?identifier="+url.QueryEscape(directory.SystemNPI+"|")); !slices.Equal(b.ids(), []string{"Organization/member-a"}) {
		t.Fatalf("any NPI: %v", b.ids())
	}

	code, body := env.do(t, tok, http.MethodGet, "/fhir/Organization/member-a", "")
	var org struct {
		Identifier []struct{ System, Value string }
		Endpoint   []struct{ Reference string }
	}
	if err := json.Unmarshal(body, &org); code != http.StatusOK || err != nil {
		t.Fatalf("read: %d %s", code, body)
	}
	if last := org.Identifier[len(org.Identifier)-1]; last.System != directory.SystemNPI || last.Value != "1234567893" || len(org.Endpoint) != 5 {
		t.Fatalf("organization: %s", body)
	}

	b = env.search(t, tok, "/fhir/Endpoint?organization=member-a")
	var got []string
	for _, e := range b.Entry {
		got = append(got, e.Resource.ConnectionType.Code+" "+e.Resource.Address)
	}
	want := []string{"direct-project mailto:records@direct.a.example", "hl7-fhir-rest https://ehr.a.example:8443",
		"hl7-fhir-rest https://fhir.a.example/r4", "hl7-fhir-rest https://hooks.a.example:443", "hl7v2-mllp mllp://hl7.a.example:2575"}
	if !slices.Equal(got, want) || *b.Total != 5 {
		t.Fatalf("a's endpoints:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	refs := map[string]bool{}
	for _, r := range org.Endpoint {
		refs[r.Reference] = true
	}
	for _, e := range b.Entry {
		if !refs["Endpoint/"+e.Resource.ID] || e.Resource.ManagingOrganization.Reference != "Organization/member-a" {
			t.Fatalf("Endpoint/%s not referenced from Organization/member-a (%v)", e.Resource.ID, refs)
		}
	}

	b = env.search(t, tok, "/fhir/Endpoint?connection-type=hl7v2-mllp")
	if len(b.Entry) != 2 || b.Entry[0].Resource.Address != "mllp://hl7.a.example:2575" || b.Entry[1].Resource.ManagingOrganization.Reference != "Organization/member-b" {
		t.Fatalf("mllp: %+v", b.Entry)
	}
	mllpID := b.Entry[0].Resource.ID
	if !strings.HasPrefix(mllpID, "ep-") || storedID(mllpID) {
		t.Fatalf("mllp id %s", mllpID)
	}
	b = env.search(t, tok, "/fhir/Endpoint?organization=member-a&connection-type=direct-project,hl7v2-mllp&status=active")
	if !slices.Equal(b.ids(), []string{"Endpoint/" + mllpID}) {
		t.Fatalf("active mllp or direct: %v", b.ids())
	}

	code, body = env.do(t, tok, http.MethodGet, "/fhir/Endpoint/"+mllpID, "")
	if _, err := fhir.Parse(body); code != http.StatusOK || err != nil ||
		!bytes.Contains(body, []byte(`"payloadType":[{"coding":[{"system":"`+v2+`","code":"ORU"}]}]`)) ||
		!bytes.Contains(body, []byte(`"address":"mllp://hl7.a.example:2575"`)) {
		t.Fatalf("read mllp: %d %v %s", code, err, body)
	}
	// The id stays when the operator changes the endpoint's status.
	if _, err := dir.SetEndpoint(ctx, "a", directory.PublishedEndpoint{ConnectionType: directory.ConnectionMLLP, Address: "mllp://hl7.a.example:2575", Status: "suspended"}); err != nil {
		t.Fatal(err)
	}
	code, body = env.do(t, tok, http.MethodGet, "/fhir/Endpoint/"+mllpID, "")
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"status":"suspended"`)) {
		t.Fatalf("suspended: %d %s", code, body)
	}
	if code, _ := env.do(t, tok, http.MethodGet, "/fhir/Endpoint/ep-00", ""); code != http.StatusNotFound {
		t.Fatalf("unknown ep- id: %d", code)
	}
	if code, _ := env.do(t, tok, http.MethodGet, "/fhir/Endpoint/"+mllpID+"/_history", ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("history of a published endpoint: %d", code)
	}
}

// TestDirectoryEndpointRemoved: an endpoint the operator removed is gone from the
// directory: its read is a 404, searches and _include leave it out, and its Organization
// no longer references it; one set off stays listed as off.
func TestDirectoryEndpointRemoved(t *testing.T) {
	env := newDirEnv(t)
	ctx := context.Background()
	dir := directory.NewStore(env.pool)
	for _, e := range []directory.PublishedEndpoint{
		{ConnectionType: directory.ConnectionFHIRRest, Address: "https://fhir.a.example/r4"},
		{ConnectionType: directory.ConnectionMLLP, Address: "mllp://hl7.a.example:2575", Status: "off"},
	} {
		if _, err := dir.SetEndpoint(ctx, "a", e); err != nil {
			t.Fatal(err)
		}
	}
	tok := token(t, "client-b", "b", "system/Organization.rs system/Endpoint.rs")
	b := env.search(t, tok, "/fhir/Endpoint?organization=member-a&connection-type=hl7v2-mllp,hl7-fhir-rest&_count=10")
	var fhirID, mllpID string
	for _, e := range b.Entry {
		switch e.Resource.Address {
		case "https://fhir.a.example/r4":
			fhirID = e.Resource.ID
		case "mllp://hl7.a.example:2575":
			mllpID = e.Resource.ID
		}
	}
	if fhirID == "" || mllpID == "" || *b.Total != 4 {
		t.Fatalf("published: %v", b.ids())
	}
	if _, err := dir.RemoveEndpoint(ctx, "a", "fhir", "https://fhir.a.example/r4"); err != nil {
		t.Fatal(err)
	}
	if code, _ := env.do(t, tok, http.MethodGet, "/fhir/Endpoint/"+fhirID, ""); code != http.StatusNotFound {
		t.Fatalf("read of a removed endpoint: %d", code)
	}
	if code, _ := env.do(t, tok, http.MethodGet, "/fhir/Endpoint/"+mllpID, ""); code != http.StatusOK {
		t.Fatalf("read of an endpoint set off: %d", code)
	}
	for _, target := range []string{"/fhir/Endpoint?organization=member-a", "/fhir/Endpoint?_id=" + fhirID, "/fhir/Organization?_id=member-a&_include=Organization:endpoint"} {
		if b := env.search(t, tok, target); slices.Contains(b.ids(), "Endpoint/"+fhirID) || target == "/fhir/Endpoint?organization=member-a" && *b.Total != 3 {
			t.Fatalf("%s lists the removed endpoint: %v", target, b.ids())
		}
	}
	code, body := env.do(t, tok, http.MethodGet, "/fhir/Organization/member-a", "")
	if code != http.StatusOK || bytes.Contains(body, []byte(fhirID)) || !bytes.Contains(body, []byte(mllpID)) {
		t.Fatalf("Organization/member-a: %d %s", code, body)
	}
}
