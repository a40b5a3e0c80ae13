package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/httpx"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

const searchBase = "http://concord.test"

var tokenKey = bytes.Repeat([]byte{5}, 32)

// personDirs gives each person their own directives; persons without any are denied.
type personDirs map[string][]consent.Directive

func (d personDirs) InForce(_ context.Context, person string, _ time.Time) ([]consent.Directive, error) {
	return d[person], nil
}

// searchEnv is an exchange with search mounted over two members: person P has Patient pa
// at a and pb at b, with lab results at both and a PSY-labelled one at b; person Q has qb
// at b and no consent.
type searchEnv struct {
	e          *echo.Echo
	pool       *pgxpool.Pool
	pa, pb, qb string
	visible    map[string]bool
	forbidden  map[string]bool
}

// newSearchEnv loads perPatient lab results for pa (member a), pb (member b) and qb, and
// others more results spread over 20 unrelated patients at b (background load).
func newSearchEnv(t testing.TB, perPatient int, others ...int) *searchEnv {
	t.Helper()
	pool := testkit.DB(t)
	ctx := context.Background()
	insertMembers(t, pool, "a", "b")
	fs, ms := store.New(pool), mpistore.New(pool)
	env := &searchEnv{pool: pool, visible: map[string]bool{}, forbidden: map[string]bool{}}
	var p, q mpistore.PersonID
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		put := func(member, patient, body string) (string, error) {
			at = at.Add(time.Millisecond)
			st, err := fs.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(body)), MemberID: member, PatientID: patient, At: at,
				Source: searchBase + "/members/" + member, Tags: []fhir.Coding{{System: "https://concord.example/member", Code: member}}})
			return st.ID, err
		}
		patient := func(member, mrn string, person mpistore.PersonID) (string, mpistore.PersonID, error) {
			sys := "urn:oid:1.2.3." + fmt.Sprint(int(member[0]))
			id, err := put(member, "", `{"resourceType":"Patient","identifier":[{"system":"`+sys+`","value":"`+mrn+`"}],"name":[{"family":"Smith","given":["Ann"]}],"birthDate":"1970-01-01"}`)
			if err != nil {
				return "", "", err
			}
			src, _, err := ms.Upsert(ctx, tx, member, sys, mrn, id, map[string]string{}, person)
			return id, src.PersonID, err
		}
		obs := func(member, patient string, i int, label string) (string, error) {
			sec := ""
			if label != "" {
				sec = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + label + `"}]},`
			}
			day := at.AddDate(-1, 0, -i%700).Format("2006-01-02")
			return put(member, patient, `{"resourceType":"Observation",`+sec+`"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}]},"subject":{"reference":"Patient/`+patient+`"},"effectiveDateTime":"`+day+`","valueQuantity":{"value":5.4,"unit":"%","system":"http://unitsofmeasure.org","code":"%"}}`)
		}
		var err error
		if env.pa, p, err = patient("a", "mrnP", ""); err != nil {
			return err
		}
		if env.pb, _, err = patient("b", "mrnPb", p); err != nil {
			return err
		}
		if env.qb, q, err = patient("b", "mrnQ", ""); err != nil {
			return err
		}
		env.forbidden[env.qb] = true
		for i := range perPatient {
			for _, pt := range []struct{ m, id string }{{"a", env.pa}, {"b", env.pb}} {
				id, err := obs(pt.m, pt.id, i, "")
				if err != nil {
					return err
				}
				env.visible[id] = true
			}
			id, err := obs("b", env.qb, i, "")
			if err != nil {
				return err
			}
			env.forbidden[id] = true
		}
		psy, err := obs("b", env.pb, 0, "PSY")
		env.forbidden[psy] = true
		if err != nil || len(others) == 0 {
			return err
		}
		var bg []string
		for i := range 20 {
			id, _, err := patient("b", fmt.Sprintf("bg%d", i), "")
			if err != nil {
				return err
			}
			bg = append(bg, id)
		}
		for i := range others[0] {
			id, err := obs("b", bg[i%len(bg)], i, "")
			if err != nil {
				return err
			}
			env.forbidden[id] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE)`); err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(ctx, pool, audit.Config{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	rec := records.New(fs, ms, personDirs{string(p): consent.DefaultPolicies(consent.PolicyConfig{})}, log, nil)
	h, _ := audit.NewHasher(bytes.Repeat([]byte{7}, 32))
	x, err := records.NewSearcher(rec, records.SearchConfig{CursorKey: tokenKey, Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	dir := directory.NewStore(pool)
	toks := newTokens(t, dir, tokenKey, searchBase+"/fhir", searchBase+"/token", time.Hour)
	srv := New(Config{BaseURL: searchBase}, Deps{Pool: pool, Directory: dir, Tokens: toks, FHIR: fs, MPI: ms, Records: rec, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	e := mountExchange(srv, httpx.RequestID())
	NewSearchAPI(srv, x).Register(e)
	env.e = e
	_ = q
	return env
}

// token mints an access token as directory.Tokens would issue it.
func token(t testing.TB, client, member, scope string) string {
	t.Helper()
	return mintToken(t, tokenKey, searchBase+"/fhir", client, member, scope, consent.PurposeTreatment, time.Hour)
}

type bundle struct {
	Type  string `json:"type"`
	Total *int   `json:"total"`
	Link  []struct {
		Relation, URL string
	} `json:"link"`
	Entry []struct {
		FullURL  string `json:"fullUrl"`
		Resource struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Meta         struct {
				Source string `json:"source"`
			} `json:"meta"`
		} `json:"resource"`
		Search struct {
			Mode string `json:"mode"`
		} `json:"search"`
	} `json:"entry"`
}

func (b bundle) link(rel string) string {
	for _, l := range b.Link {
		if l.Relation == rel {
			return l.URL
		}
	}
	return ""
}

func (env *searchEnv) do(tb testing.TB, tok, method, target string, form url.Values) (int, []byte) {
	tb.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req := httptest.NewRequest(method, strings.TrimPrefix(target, searchBase), body)
	req.Header.Set("Authorization", "Bearer "+tok)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	w := httptest.NewRecorder()
	env.e.ServeHTTP(w, req)
	return w.Code, w.Body.Bytes()
}

func decode(tb testing.TB, body []byte) bundle {
	tb.Helper()
	var b bundle
	if err := json.Unmarshal(body, &b); err != nil {
		tb.Fatalf("bundle: %v: %s", err, body)
	}
	return b
}

func TestSearchHTTPPagingAndCursorBinding(t *testing.T) {
	env := newSearchEnv(t, 6)
	tokA := token(t, "client-a", "a", "system/*.rs")
	code, body := env.do(t, tokA, "GET", "/fhir/Observation?patient="+env.pa+"&category=laboratory&_count=5&_sort=-date", nil)
	if code != 200 {
		t.Fatalf("search: %d %s", code, body)
	}
	b := decode(t, body)
	if b.Type != "searchset" || len(b.Entry) != 5 || b.link("next") == "" || b.Total != nil {
		t.Fatalf("first page: type %s, %d entries, next %q", b.Type, len(b.Entry), b.link("next"))
	}
	first := b.link("next")
	seen := map[string]bool{}
	for {
		for _, e := range b.Entry {
			if e.Search.Mode != "match" || e.Resource.Meta.Source == "" || e.FullURL != searchBase+"/fhir/Observation/"+e.Resource.ID {
				t.Fatalf("entry %+v: want mode match, meta.source and a fullUrl", e)
			}
			if env.forbidden[e.Resource.ID] || seen[e.Resource.ID] {
				t.Fatalf("forbidden or repeated entry %s", e.Resource.ID)
			}
			seen[e.Resource.ID] = true
		}
		next := b.link("next")
		if next == "" {
			break
		}
		if strings.Contains(next, env.pa) {
			t.Fatalf("next link carries the query in clear: %s", next)
		}
		code, body = env.do(t, tokA, "GET", next, nil)
		if code != 200 {
			t.Fatalf("next page: %d %s", code, body)
		}
		b = decode(t, body)
	}
	if len(seen) != len(env.visible) {
		t.Fatalf("paged %d; want %d", len(seen), len(env.visible))
	}
	// Tampered cursor: 400. Another client of the same member, or another member: 400.
	u, _ := url.Parse(first)
	cur := []byte(u.Query().Get("_cursor"))
	cur[10] ^= 2
	if code, _ := env.do(t, tokA, "GET", "/fhir/Observation?_cursor="+url.QueryEscape(string(cur)), nil); code != 400 {
		t.Fatalf("tampered cursor: %d", code)
	}
	for _, tok := range []string{token(t, "client-a2", "a", "system/*.rs"), token(t, "client-b", "b", "system/*.rs")} {
		if code, _ := env.do(t, tok, "GET", first, nil); code != 400 {
			t.Fatalf("replayed cursor: %d; want 400", code)
		}
	}
	// No patient: 400; no scope for the type: 403.
	if code, _ := env.do(t, tokA, "GET", "/fhir/Observation?code=4548-4", nil); code != 400 {
		t.Fatalf("search without patient: %d", code)
	}
	if code, _ := env.do(t, token(t, "client-a", "a", "system/Patient.rs"), "GET", "/fhir/Observation?patient="+env.pa, nil); code != 403 {
		t.Fatalf("search without scope: %d", code)
	}
}

func TestSearchHTTPCountCap(t *testing.T) {
	env := newSearchEnv(t, 110) // 220 visible results
	tokA := token(t, "client-a", "a", "system/*.rs")
	code, body := env.do(t, tokA, "GET", "/fhir/Observation?patient="+env.pa+"&_count=1000&_total=accurate", nil)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	b := decode(t, body)
	if len(b.Entry) != 200 || b.link("next") == "" || b.Total == nil || *b.Total != 220 {
		t.Fatalf("_count=1000: %d entries, total %v, next %q; want 200 entries, total 220 and a next page", len(b.Entry), b.Total, b.link("next"))
	}
}

func TestSearchHTTPPatientPostAndEverything(t *testing.T) {
	env := newSearchEnv(t, 3)
	tokA := token(t, "client-a", "a", "system/*.rs")
	code, body := env.do(t, tokA, "POST", "/fhir/Patient/_search", url.Values{"family": {"smith"}, "birthdate": {"1970-01-01"}})
	if code != 200 {
		t.Fatalf("POST _search: %d %s", code, body)
	}
	b := decode(t, body)
	var got []string
	for _, e := range b.Entry {
		got = append(got, e.Resource.ID)
	}
	sort.Strings(got)
	want := []string{env.pa, env.pb}
	sort.Strings(want)
	if !slices.Equal(got, want) || strings.Contains(b.link("self"), "smith") {
		t.Fatalf("Patient search = %v (self %s); want pa and pb and no PHI in the self link", got, b.link("self"))
	}
	code, body = env.do(t, tokA, "GET", "/fhir/Patient/"+env.pa+"/$everything?_count=4", nil)
	if code != 200 {
		t.Fatalf("$everything: %d %s", code, body)
	}
	n := 0
	for b = decode(t, body); ; b = decode(t, body) {
		for _, e := range b.Entry {
			if env.forbidden[e.Resource.ID] {
				t.Fatalf("$everything disclosed %s", e.Resource.ID)
			}
			n++
		}
		if b.link("next") == "" {
			break
		}
		if code, body = env.do(t, tokA, "GET", b.link("next"), nil); code != 200 {
			t.Fatalf("$everything next: %d %s", code, body)
		}
	}
	if n != len(env.visible)+2 {
		t.Fatalf("$everything gave %d resources; want %d results and 2 Patients", n, len(env.visible))
	}
	// Another member's Patient and a missing one answer byte-identical 404s.
	c1, b1 := env.do(t, tokA, "GET", "/fhir/Patient/"+env.qb+"/$everything", nil)
	c2, b2 := env.do(t, tokA, "GET", "/fhir/Patient/nope/$everything", nil)
	if c1 != 404 || c2 != 404 || !bytes.Equal(b1, b2) {
		t.Fatalf("foreign %d %s, missing %d %s; want identical 404s", c1, b1, c2, b2)
	}
}

// BenchmarkLabSearch measures S3 (lab Observation search, _count=50, _sort=-date) through
// the HTTP handler over the regional view of a person with results at two members.
func BenchmarkLabSearch(b *testing.B) {
	env := newSearchEnv(b, 500, 8000)
	tokA := token(b, "client-a", "a", "system/*.rs")
	q, _ := url.ParseQuery("category=laboratory&_count=50&_sort=-date")
	s, _ := fhir.ParseSearch("Observation", q)
	plan, err := store.New(env.pool).Explain(context.Background(), store.Query{Type: "Observation", Clauses: s.Clauses, Sort: s.Sort, Patients: []string{env.pa, env.pb}, Limit: 63})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("plan of the lab page query:\n%s", strings.Join(plan, "\n"))
	target := "/fhir/Observation?patient=" + env.pa + "&category=laboratory&_count=50&_sort=-date"
	if code, body := env.do(b, tokA, "GET", target, nil); code != http.StatusOK || len(decode(b, body).Entry) != 50 {
		b.Fatalf("lab search: %d", code)
	}
	b.Run("serial", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			if code, _ := env.do(b, tokA, "GET", target, nil); code != http.StatusOK {
				b.Fatalf("lab search: %d", code)
			}
		}
		b.ReportMetric(float64(50*b.N)/time.Since(start).Seconds(), "resources/s")
	})
	b.Run("16conns", func(b *testing.B) {
		b.SetParallelism(8) // 8 × GOMAXPROCS(2) goroutines
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if code, _ := env.do(b, tokA, "GET", target, nil); code != http.StatusOK {
					b.Errorf("lab search: %d", code)
					return
				}
			}
		})
		b.ReportMetric(float64(50*b.N)/time.Since(start).Seconds(), "resources/s")
	})
}

func TestMetadataListsSearchTypes(t *testing.T) {
	got := withSearch(map[string][]string{"Patient": {"create", "read"}, "Medication": {"read"}})
	if !slices.Contains(got["Patient"], "search-type") || !slices.Contains(got["Observation"], "search-type") || !slices.Contains(got["DocumentReference"], "search-type") {
		t.Fatalf("search-type missing: %v", got)
	}
	// Reference data with indexed parameters is searched without a patient
	// (records.searchReference).
	for _, typ := range []string{"Medication", "Organization", "Practitioner"} {
		if !slices.Contains(got[typ], "search-type") {
			t.Fatalf("%s is searchable as reference data: %v", typ, got[typ])
		}
	}
	if !slices.Equal(got["Medication"], []string{"read", "search-type"}) {
		t.Fatalf("Medication interactions %v; want read, search-type", got["Medication"])
	}
	var orgParams []string
	for _, p := range searchCapability("Organization", got["Organization"]).Params {
		orgParams = append(orgParams, p.Name)
	}
	if !slices.Contains(orgParams, "identifier") || !slices.Contains(orgParams, "name") {
		t.Fatalf("Organization search params %v; want identifier and name", orgParams)
	}
	sc := searchCapability("Observation", got["Observation"])
	params, includes, ops := sc.Params, sc.Include, sc.Ops
	var names []string
	for _, p := range params {
		names = append(names, p.Name)
	}
	if !slices.Contains(names, "category") || !slices.Contains(names, "date") || slices.Contains(names, "value-quantity") || len(includes) == 0 || ops != nil {
		t.Fatalf("Observation: params %v, includes %v, ops %v; want category and date, no value-quantity (not indexed)", names, includes, ops)
	}
	if !slices.Contains(sc.RevInclude, "DiagnosticReport:result") {
		t.Fatalf("Observation revincludes %v; want DiagnosticReport:result", sc.RevInclude)
	}
	if ops := searchCapability("Patient", got["Patient"]).Ops; len(ops) != 1 || ops[0].Name != "everything" {
		t.Fatalf("Patient operations = %v", ops)
	}
}

// TestSearchHTTPLeakProperty runs seeded random searches, includes, $everything and
// paging through the HTTP handler as member a: no page holds Q's resources or the PSY
// result, and a total never counts them.
func TestSearchRevIncludeHTTP(t *testing.T) {
	env := newSearchEnv(t, 8)
	tokA := token(t, "client-a", "a", "system/*.rs")
	code, body := env.do(t, tokA, "GET", "/fhir/Patient?family=smith&_count=50&_revinclude=Observation:patient", nil)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	matches, included := 0, 0
	for _, e := range decode(t, body).Entry {
		switch {
		case e.Search.Mode == "match" && e.Resource.ResourceType == "Patient":
			matches++
		case e.Search.Mode == "include" && e.Resource.ResourceType == "Observation":
			included++
		default:
			t.Fatalf("unexpected entry %s %s", e.Search.Mode, e.Resource.ResourceType)
		}
		if env.forbidden[e.Resource.ID] {
			t.Fatalf("forbidden %s/%s", e.Resource.ResourceType, e.Resource.ID)
		}
	}
	if matches == 0 || included == 0 {
		t.Fatalf("%d matches, %d revincluded Observations; want both", matches, included)
	}
	// A _revinclude whose parameter cannot point at the searched type: 400 naming it.
	code, body = env.do(t, tokA, "GET", "/fhir/Patient?family=smith&_revinclude=Observation:performer:Organization", nil)
	if code != 400 || !strings.Contains(string(body), "_revinclude") {
		t.Fatalf("bad _revinclude: %d %s", code, body)
	}
}

func TestSearchHTTPLeakProperty(t *testing.T) {
	env := newSearchEnv(t, 8)
	tokA := token(t, "client-a", "a", "system/*.rs")
	rng := rand.New(rand.NewPCG(6, 20261128))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	sysA, sysB := "urn:oid:1.2.3.97", "urn:oid:1.2.3.98"
	pages := 0
	for search := 0; search < 150; search++ {
		var target string
		switch rng.IntN(5) {
		case 0:
			target = "/fhir/Patient?" + pick("family=smith", "given=ann", "identifier="+sysB+"|mrnQ", "birthdate=1970", "name=sm") +
				pick("", "&_revinclude=Observation:patient")
		case 1:
			target = "/fhir/Patient/" + pick(env.pa, env.pb, env.qb) + "/$everything?"
		default:
			target = "/fhir/Observation?" + pick("patient="+env.pa, "patient="+env.qb, "subject=Patient/"+env.pb,
				"patient.identifier="+sysA+"|mrnP", "patient.identifier="+sysB+"|mrnQ") +
				pick("", "&category=laboratory", "&code=http://loinc.org|4548-4", "&date=ge2024-06-01", "&date=lt2025-01-01") +
				pick("", "&_sort=-date", "&_sort=date", "&_include=Observation:patient", "&_revinclude=DiagnosticReport:result") + pick("", "&_total=accurate")
		}
		target += fmt.Sprintf("&_count=%d", 1+rng.IntN(7))
		seen := map[string]bool{}
		var total *int
		for pageNo := 0; target != "" && pageNo < 40; pageNo++ {
			code, body := env.do(t, tokA, "GET", target, nil)
			if code == 404 && strings.Contains(target, "$everything") {
				break
			}
			if code != 200 {
				t.Fatalf("%s: %d %s", target, code, body)
			}
			pages++
			b := decode(t, body)
			if pageNo == 0 {
				total = b.Total
			}
			for _, e := range b.Entry {
				if env.forbidden[e.Resource.ID] {
					t.Fatalf("%s: page holds forbidden %s/%s", target, e.Resource.ResourceType, e.Resource.ID)
				}
				if e.Search.Mode == "match" {
					seen[e.Resource.ID] = true
				}
			}
			target = b.link("next")
		}
		if total != nil && *total != len(seen) {
			t.Fatalf("total %d, but %d matches across pages", *total, len(seen))
		}
	}
	t.Logf("150 searches, %d pages", pages)
}
