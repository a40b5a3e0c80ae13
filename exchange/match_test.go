package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/testkit"
	"github.com/concord-hie/concord/records"
)

// identityEnv is the exchange with the store-backed consent path, the real audit log and
// three members A, B and C, for $match and PIXm.
type identityEnv struct {
	pool    *pgxpool.Pool
	base    string
	a, b, c directory.Member
	key     []byte
	issuer  string
	cs      *consent.Store
	clock   *fakeClock
}

// fakeClock drives the identity rate limiter.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

func newIdentityEnv(t testing.TB) *identityEnv {
	t.Helper()
	pool := testkit.DB(t)
	ctx := context.Background()
	dir := directory.NewStore(pool)
	env := &identityEnv{pool: pool, key: bytes.Repeat([]byte("m"), 32), issuer: "http://concord.test", cs: consent.NewStore(),
		clock: &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	var err error
	for i, m := range []*directory.Member{&env.a, &env.b, &env.c} {
		if *m, err = dir.AddMember(ctx, fmt.Sprintf("Member %c", 'A'+i), fmt.Sprintf("urn:oid:2.16.840.1.113883.3.%d", 900+i)); err != nil {
			t.Fatal(err)
		}
	}
	registerTestClients(t, pool)
	toks := newTokens(t, dir, env.key, env.issuer, env.issuer+"/token", 0)
	mpi, matcher := newMatcher(t, pool)
	if _, err := records.EnsureDefaultPolicies(ctx, pool, env.cs, consent.PolicyConfig{}); err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(ctx, pool, audit.Config{CheckpointEvery: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	rec := records.New(store.New(pool), mpi, records.NewStoreDirectives(pool, env.cs, time.Second, nil), log, nil)
	srv := New(Config{BaseURL: env.issuer, MaxBodyBytes: 1 << 20}, Deps{Pool: pool, Directory: dir, Tokens: toks, FHIR: store.New(pool),
		MPI: mpi, Matcher: matcher, Records: rec, Log: slog.New(slog.DiscardHandler),
		IdentityLimiter: NewRateLimiter(1, 1000, env.clock.now)})
	if _, ok := t.(*testing.B); ok {
		srv.IdentityLimiter = nil // the benchmark measures the operation, not the limiter
	}
	env.base = serveExchange(t, srv)
	return env
}

func (env *identityEnv) tok(t testing.TB, m directory.Member, purpose string) string {
	t.Helper()
	return mintToken(t, env.key, env.issuer, "client-"+m.ID, m.ID, "system/*.cruds", purpose, 5*time.Minute)
}

func identityCall(t testing.TB, method, u, tok string, body []byte) (int, []byte) {
	t.Helper()
	st, b, _ := do(t, method, u, tok, body)
	return st, b
}

func demoPatient(system, mrn, given, family, gender, dob, phone string) []byte {
	ssn := map[string]string{"Ana": "523-41-7789", "Eva": "523-41-7790", "Marcus": "611-20-3344"}[given]
	if ssn == "" {
		ssn = "601-11-2222"
	}
	return []byte(fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":%q,"value":%q},{"system":"http://hl7.org/fhir/sid/us-ssn","value":%q}],
		"name":[{"family":%q,"given":[%q]}],"gender":%q,"birthDate":%q,"telecom":[{"system":"phone","value":%q}],
		"address":[{"line":["418 Willow Creek Rd"],"city":"Riverside","state":"CA","postalCode":"92501"}]}`, system, mrn, ssn, family, given, gender, dob, phone))
}

// create POSTs a Patient as member m and returns its id.
func (env *identityEnv) create(t *testing.T, m directory.Member, mrn string, body []byte) string {
	t.Helper()
	st, b := identityCall(t, "POST", env.base+"/Patient", env.tok(t, m, consent.PurposeTreatment), body)
	if st != 201 {
		t.Fatalf("create Patient: %d %s", st, b)
	}
	var r struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(b, &r)
	return r.ID
}

type matchBundle struct {
	ResourceType string `json:"resourceType"`
	Type         string `json:"type"`
	Total        int    `json:"total"`
	Entry        []struct {
		FullURL  string `json:"fullUrl"`
		Resource struct {
			ID string `json:"id"`
		} `json:"resource"`
		Search struct {
			Mode      string  `json:"mode"`
			Score     float64 `json:"score"`
			Extension []struct {
				URL       string `json:"url"`
				ValueCode string `json:"valueCode"`
			} `json:"extension"`
		} `json:"search"`
	} `json:"entry"`
}

func (env *identityEnv) match(t *testing.T, m directory.Member, purpose string, body []byte) matchBundle {
	t.Helper()
	st, b := identityCall(t, "POST", env.base+"/Patient/$match", env.tok(t, m, purpose), body)
	if st != 200 {
		t.Fatalf("$match: %d %s", st, b)
	}
	var out matchBundle
	if err := json.Unmarshal(b, &out); err != nil || out.ResourceType != "Bundle" || out.Type != "searchset" {
		t.Fatalf("$match answer: %s", b)
	}
	return out
}

func params(patient []byte, extra string) []byte {
	return []byte(`{"resourceType":"Parameters","parameter":[{"name":"resource","resource":` + string(patient) + `}` + extra + `]}`)
}

func (env *identityEnv) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := env.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// anaPatient is Ana Rivera's Patient under sys with MRN mrn.
func anaPatient(sys, mrn string) []byte {
	return demoPatient(sys, mrn, "Ana", "Rivera", "female", "1984-03-12", "951-555-0142")
}

// seedAna creates Ana as A1 at member a (pa) and B1 at member b (pb), and an unrelated
// Marcus Baker as B2 at b.
func (env *identityEnv) seedAna(t *testing.T) (pa, pb string) {
	t.Helper()
	pa = env.create(t, env.a, "A1", anaPatient(env.a.System, "A1"))
	pb = env.create(t, env.b, "B1", anaPatient(env.b.System, "B1"))
	env.create(t, env.b, "B2", demoPatient(env.b.System, "B2", "Marcus", "Baker", "male", "1971-07-30", "951-555-9999"))
	return pa, pb
}

// optOutTreatment saves an active opt-out of treatment sharing for the person linked to
// Patient patient, and returns that person's id.
func (env *identityEnv) optOutTreatment(t *testing.T, patient string) string {
	t.Helper()
	var person string
	if err := env.pool.QueryRow(context.Background(), `SELECT person_id::text FROM mpi_source_records WHERE patient_id = $1`, patient).Scan(&person); err != nil {
		t.Fatal(err)
	}
	optOut := consent.Directive{ID: "optout-1", PersonID: person, Kind: consent.KindPatient, PolicyRule: consent.OptOut, Status: consent.StatusActive,
		DateTime: time.Now().Add(-time.Hour), Provision: consent.Provision{Type: consent.Deny, Purposes: []string{consent.PurposeTreatment}}}
	if _, _, err := env.cs.Save(context.Background(), env.pool, optOut, "test"); err != nil {
		t.Fatal(err)
	}
	return person
}

func TestPatientMatch(t *testing.T) {
	env := newIdentityEnv(t)
	pa, pb := env.seedAna(t)
	rows := func() int {
		return env.count(t, `SELECT (SELECT count(*) FROM fhir_resources) + (SELECT count(*) FROM mpi_source_records) + (SELECT count(*) FROM mpi_persons) + (SELECT count(*) FROM mpi_review_items)`)
	}
	before := rows()
	query := anaPatient(env.c.System, "ignored")

	// Member A gets its own Patient for the person, graded certain, score in (0, 1].
	got := env.match(t, env.a, consent.PurposeTreatment, params(query, `,{"name":"count","valueInteger":5}`))
	if len(got.Entry) != 1 || got.Entry[0].Resource.ID != pa || got.Entry[0].Search.Mode != "match" {
		t.Fatalf("member A: %+v", got)
	}
	e := got.Entry[0].Search
	if e.Score <= 0.5 || e.Score > 1 || len(e.Extension) != 1 || e.Extension[0].URL != MatchGradeURL || e.Extension[0].ValueCode != GradeCertain {
		t.Fatalf("member A entry: %+v", e)
	}
	// Member C has no record of the person: for treatment, one other member's Patient.
	got = env.match(t, env.c, consent.PurposeTreatment, query)
	if len(got.Entry) != 1 || (got.Entry[0].Resource.ID != pa && got.Entry[0].Resource.ID != pb) {
		t.Fatalf("member C, bare Patient: %+v", got)
	}
	// onlyCertainMatches: the one certain match.
	got = env.match(t, env.c, consent.PurposeTreatment, params(query, `,{"name":"onlyCertainMatches","valueBoolean":true}`))
	if len(got.Entry) != 1 || got.Entry[0].Search.Extension[0].ValueCode != GradeCertain {
		t.Fatalf("only certain: %+v", got)
	}
	// A different person (the twin sister): her sister may come back only below certain.
	twin := demoPatient(env.c.System, "x", "Eva", "Rivera", "female", "1984-03-12", "951-555-0142")
	got = env.match(t, env.c, consent.PurposeTreatment, params(twin, `,{"name":"onlyCertainMatches","valueBoolean":true}`))
	if len(got.Entry) != 0 {
		t.Fatalf("twin matched certainly: %+v", got)
	}
	for _, en := range env.match(t, env.c, consent.PurposeTreatment, twin).Entry {
		if g := en.Search.Extension[0].ValueCode; g == GradeCertain {
			t.Fatalf("twin graded %s", g)
		}
	}
	// Without treatment purpose member C sees nothing; and after the patient opts out,
	// nothing either — exactly like a person who does not exist.
	if got = env.match(t, env.c, consent.PurposePayment, query); len(got.Entry) != 0 {
		t.Fatalf("payment purpose: %+v", got)
	}
	person := env.optOutTreatment(t, pa)
	denied := env.match(t, env.c, consent.PurposeTreatment, query)
	stranger := env.match(t, env.c, consent.PurposeTreatment, demoPatient(env.c.System, "x", "Zed", "Quill", "male", "1950-10-10", "212-555-0000"))
	if len(denied.Entry) != 0 || len(stranger.Entry) != 0 {
		t.Fatalf("opted-out person visible to C: %+v", denied)
	}
	// Member A still finds its own record.
	if got = env.match(t, env.a, consent.PurposeTreatment, query); len(got.Entry) != 1 || got.Entry[0].Resource.ID != pa {
		t.Fatalf("own record after opt-out: %+v", got)
	}
	if rows() != before {
		t.Fatal("$match created rows")
	}
	// Every disclosure is audited with reason "match"; the opt-out denial too.
	if n := env.count(t, `SELECT count(*) FROM audit_events WHERE action = 'query' AND reason = 'match' AND outcome = 'permit' AND patient = $1`, person); n < 4 {
		t.Fatalf("audited match disclosures: %d", n)
	}
	if n := env.count(t, `SELECT count(*) FROM audit_events WHERE action = 'query' AND outcome = 'deny' AND patient = $1 AND org = $2`, person, env.c.ID); n != 1 {
		t.Fatalf("audited opt-out denials: %d", n)
	}

	// Malformed requests.
	for _, bad := range []string{
		`{"resourceType":"Parameters","parameter":[{"name":"count","valueInteger":3}]}`,
		`{"resourceType":"Parameters","parameter":[{"name":"resource","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}}}]}`,
		string(params(query, `,{"name":"count","valueInteger":0}`)),
		string(params(query, `,{"name":"bogus","valueBoolean":true}`)),
		`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`,
	} {
		if st, b := identityCall(t, "POST", env.base+"/Patient/$match", env.tok(t, env.a, consent.PurposeTreatment), []byte(bad)); st != 400 {
			t.Errorf("bad request answered %d %s", st, b)
		}
	}
}

func TestPatientMatchRateLimited(t *testing.T) {
	env := newIdentityEnv(t)
	tok := env.tok(t, env.a, consent.PurposeTreatment)
	body := demoPatient(env.a.System, "x", "Ana", "Rivera", "female", "1984-03-12", "951-555-0142")
	limited := 0
	for range 1005 {
		if st, _ := identityCall(t, "POST", env.base+"/Patient/$match", tok, body); st == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 5 {
		t.Fatalf("%d of 1005 requests limited; want 5 past the burst of 1000", limited)
	}
	// Another client has its own bucket; and time refills.
	if st, _ := identityCall(t, "POST", env.base+"/Patient/$match", env.tok(t, env.b, consent.PurposeTreatment), body); st != 200 {
		t.Fatalf("other client: %d", st)
	}
	env.clock.add(2 * time.Second)
	if st, _ := identityCall(t, "POST", env.base+"/Patient/$match", tok, body); st != 200 {
		t.Fatalf("after refill: %d", st)
	}
}

func TestPIXm(t *testing.T) {
	env := newIdentityEnv(t)
	pa, pb := env.seedAna(t)
	pix := func(m directory.Member, purpose, query string) (int, []byte) {
		return identityCall(t, "GET", env.base+"/Patient/$ihe-pix?"+query, env.tok(t, m, purpose), nil)
	}
	src := func(sys, val string) string { return "sourceIdentifier=" + url.QueryEscape(sys+"|"+val) }

	// A asks for B's identifier of its own patient A1.
	st, b := pix(env.a, consent.PurposeTreatment, src(env.a.System, "A1")+"&targetSystem="+url.QueryEscape(env.b.System))
	var out pixParameters
	if st != 200 || json.Unmarshal(b, &out) != nil || len(out.Parameter) != 2 {
		t.Fatalf("PIX A1 -> B: %d %s", st, b)
	}
	if id := out.Parameter[0].ValueIdentifier; out.Parameter[0].Name != "targetIdentifier" || id == nil || id.System != env.b.System || id.Value != "B1" {
		t.Fatalf("targetIdentifier: %s", b)
	}
	if ref := out.Parameter[1].ValueReference; out.Parameter[1].Name != "targetId" || ref == nil || ref.Reference != env.issuer+"/fhir/Patient/"+pb {
		t.Fatalf("targetId: %s", b)
	}
	// Without targetSystem: every other domain; the source is not echoed.
	st, b = pix(env.b, consent.PurposeTreatment, src(env.b.System, "B1"))
	if st != 200 || json.Unmarshal(b, &out) != nil || len(out.Parameter) != 2 || out.Parameter[0].ValueIdentifier.Value != "A1" || out.Parameter[1].ValueReference.Reference != env.issuer+"/fhir/Patient/"+pa {
		t.Fatalf("PIX B1 -> all: %d %s", st, b)
	}
	// No identifier in the target domain: an empty Parameters.
	st, b = pix(env.b, consent.PurposeTreatment, src(env.b.System, "B2")+"&targetSystem="+url.QueryEscape(env.a.System))
	if st != 200 || string(b) != `{"resourceType":"Parameters"}` {
		t.Fatalf("no target identifier: %d %s", st, b)
	}
	// Unknown source domain 400, unknown target system 403.
	if st, b = pix(env.a, consent.PurposeTreatment, src("urn:oid:9.9.9", "A1")); st != 400 {
		t.Fatalf("unknown source domain: %d %s", st, b)
	}
	if st, b = pix(env.a, consent.PurposeTreatment, src(env.a.System, "A1")+"&targetSystem=urn:oid:9.9.9"); st != 403 {
		t.Fatalf("unknown target system: %d %s", st, b)
	}
	if st, _ = pix(env.a, consent.PurposeTreatment, "sourceIdentifier=nobar"); st != 400 {
		t.Fatalf("malformed source identifier: %d", st)
	}
	// Unknown identifier and not-visible identifier: the same 404 body.
	stUnknown, unknown := pix(env.c, consent.PurposeTreatment, src(env.a.System, "A404"))
	stHidden, hidden := pix(env.c, consent.PurposePayment, src(env.a.System, "A1"))
	if stUnknown != 404 || stHidden != 404 || !bytes.Equal(unknown, hidden) {
		t.Fatalf("unknown %d %s vs not visible %d %s", stUnknown, unknown, stHidden, hidden)
	}
	if n := env.count(t, `SELECT count(*) FROM audit_events WHERE action = 'query' AND outcome = 'deny' AND reason = 'unknown-source-identifier' AND patient = '' AND org = $1`, env.c.ID); n != 1 {
		t.Fatalf("denial events for the unknown identifier: %d; want 1", n)
	}
	// For treatment C may see A's identifier and gets B's; after an opt-out it gets the same 404.
	if st, b = pix(env.c, consent.PurposeTreatment, src(env.a.System, "A1")); st != 200 || json.Unmarshal(b, &out) != nil || len(out.Parameter) != 2 {
		t.Fatalf("C for treatment: %d %s", st, b)
	}
	person := env.optOutTreatment(t, pa)
	if st, b = pix(env.c, consent.PurposeTreatment, src(env.a.System, "A1")); st != 404 || !bytes.Equal(b, unknown) {
		t.Fatalf("opted out: %d %s", st, b)
	}
	// A still cross-references its own patient; B's Patient is consent-gated for A too.
	if st, b = pix(env.a, consent.PurposeTreatment, src(env.a.System, "A1")); st != 200 || string(b) != `{"resourceType":"Parameters"}` {
		t.Fatalf("A after opt-out: %d %s", st, b)
	}
	if n := env.count(t, `SELECT count(*) FROM audit_events WHERE action = 'query' AND reason IN ('pix', 'pix-source') AND patient = $1`, person); n < 4 {
		t.Fatalf("audited PIX disclosures: %d", n)
	}
}

// BenchmarkPatientMatch measures one $match round trip (HTTP, scoring, consent, audit)
// against a store of 400 persons at two members. Run:
//
//	go test -run '^$' -bench PatientMatch -benchtime 200x ./exchange
func BenchmarkPatientMatch(b *testing.B) {
	env := newIdentityEnv(b)
	given := []string{"Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana"}
	family := []string{"Rivera", "Baker", "Ortiz", "Nguyen", "Smith", "Khan", "Lopez", "Ward", "Stone", "Moss"}
	tokA := env.tok(b, env.a, consent.PurposeTreatment)
	tokB := env.tok(b, env.b, consent.PurposeTreatment)
	body := func(sys string, i int) []byte {
		return []byte(fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":%q,"value":"M%d"}],"name":[{"family":%q,"given":[%q]}],"gender":"female","birthDate":"19%02d-%02d-%02d","address":[{"line":["%d Oak St"],"postalCode":"925%02d"}]}`,
			sys, i, family[i%len(family)], given[(i/len(family))%len(given)], 40+i%50, 1+i%12, 1+i%28, i, i%90))
	}
	for i := range 400 {
		if st, out := identityCall(b, "POST", env.base+"/Patient", tokA, body(env.a.System, i)); st != 201 {
			b.Fatalf("seed: %d %s", st, out)
		}
		if i%2 == 0 {
			if st, out := identityCall(b, "POST", env.base+"/Patient", tokB, body(env.b.System, i)); st != 201 {
				b.Fatalf("seed: %d %s", st, out)
			}
		}
	}
	tokC := env.tok(b, env.c, consent.PurposeTreatment)
	b.ResetTimer()
	for i := range b.N {
		if st, out := identityCall(b, "POST", env.base+"/Patient/$match", tokC, body(env.c.System, i%400)); st != 200 {
			b.Fatalf("$match: %d %s", st, out)
		}
	}
}
