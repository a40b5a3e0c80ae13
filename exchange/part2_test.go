package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// part2Env is the exchange with consent, audit, search and the consent routes, and three
// members: P, a 42 CFR Part 2 program; B, which the patient's consent names; C, which it
// does not.
type part2Env struct {
	consentEnv
	p, c directory.Member
	mpi  *mpistore.Store
}

func newPart2Env(t testing.TB) *part2Env {
	t.Helper()
	pool := testkit.DB(t)
	rdb, prefix := testkit.Redis(t)
	ctx := context.Background()
	dir := directory.NewStore(pool)
	env := &part2Env{consentEnv: consentEnv{pool: pool, key: bytes.Repeat([]byte("p"), 32), issuer: "http://concord.test"}}
	var err error
	for _, m := range []struct {
		to        *directory.Member
		name, oid string
		part2     bool
	}{{&env.p, "Harbor Recovery", "urn:oid:2.16.840.1.113883.3.4201", true}, {&env.b, "Clinic B", "urn:oid:2.16.840.1.113883.3.4202", false},
		{&env.c, "Clinic C", "urn:oid:2.16.840.1.113883.3.4203", false}} {
		if *m.to, err = dir.AddMember(ctx, m.name, m.oid); err != nil {
			t.Fatal(err)
		}
		if m.part2 {
			if err := dir.SetPart2(ctx, m.to.ID, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	registerTestClients(t, pool)
	toks := newTokens(t, dir, env.key, env.issuer, env.issuer+"/token", 0)
	mpi, matcher := newMatcher(t, pool)
	env.mpi = mpi
	cs := consent.NewStore()
	if _, err := records.EnsureDefaultPolicies(ctx, pool, cs, consent.PolicyConfig{}); err != nil {
		t.Fatal(err)
	}
	log, err := audit.New(ctx, pool, audit.Config{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	src := records.NewStoreDirectives(pool, cs, time.Second, nil)
	cache := consent.NewCache(src, rdb, consent.CacheOptions{Prefix: prefix})
	env.rec = records.New(store.New(pool), mpi, cache, log, nil)
	h, _ := audit.NewHasher(bytes.Repeat([]byte{9}, 32))
	x, err := records.NewSearcher(env.rec, records.SearchConfig{CursorKey: bytes.Repeat([]byte{3}, 32), Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := New(Config{BaseURL: env.issuer, MaxBodyBytes: 1 << 20}, Deps{Pool: pool, Directory: dir, Tokens: toks, FHIR: store.New(pool),
		MPI: mpi, Matcher: matcher, Records: env.rec, Log: quiet})
	env.base = serveExchange(t, srv,
		NewConsentAPI(srv, ConsentDeps{Store: cs, Directives: src, Cache: cache, BreakGlass: records.NewBreakGlassStore(pool), Audit: log}).Register,
		NewSearchAPI(srv, x).Register)
	return env
}

// samePatient creates member m's Patient for the one person every member of the test
// knows (same name, birth date and sex), returning its id.
// consentForB files, with the program's token tp, the patient pp's consent that names
// member B for treatment and the Part 2 labels, with the signed form it was captured
// from (checkFiling), and returns the stored Consent's id.
func (env *part2Env) consentForB(t testing.TB, tp, pp string) string {
	t.Helper()
	d := consent.Directive{ID: "part2-b", Version: 1, Kind: consent.KindPatient, PersonID: pp, PolicyRule: consent.OptIn,
		Status: consent.StatusActive, DateTime: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), SourceReference: "DocumentReference/signed-part2-form",
		Provision: consent.Provision{Type: consent.Permit, Actors: []consent.Actor{{Role: consent.ParticipationRecipient, Reference: "Organization/" + env.b.ID}},
			Purposes: []string{consent.PurposeTreatment}, SecurityLabels: []string{consent.LabelSubstanceUse, consent.LabelRestricted, consent.LabelPart2}}}
	cj, err := consent.FormatConsent(d)
	if err != nil {
		t.Fatal(err)
	}
	st, body, _ := do(t, "POST", env.base+"/Consent", tp, cj)
	if st != 201 {
		t.Fatalf("POST Consent: %d %s", st, body)
	}
	return idOf(t, body)
}

func (env *part2Env) samePatient(t testing.TB, tok string, m directory.Member) string {
	t.Helper()
	st, body, _ := do(t, "POST", env.base+"/Patient", tok, []byte(`{"resourceType":"Patient","identifier":[{"system":"`+m.System+`","value":"MRN-7"}],"name":[{"family":"Okafor","given":["Nneka"]}],"gender":"female","birthDate":"1984-06-02"}`))
	if st != 201 && st != 200 {
		t.Fatalf("create Patient at %s: %d %s", m.ID, st, body)
	}
	return idOf(t, body)
}

type part2Meta struct {
	Security  []struct{ Code string } `json:"security"`
	Extension []struct {
		URL       string `json:"url"`
		Extension []struct {
			URL            string `json:"url"`
			ValueString    string `json:"valueString"`
			ValueCode      string `json:"valueCode"`
			ValueReference *struct {
				Reference string `json:"reference"`
				Display   string `json:"display"`
			} `json:"valueReference"`
		} `json:"extension"`
	} `json:"extension"`
}

// disclosure returns the notice, basis and consent reference of a resource's
// part2-disclosure extension ("" when absent) and how many such extensions it has.
func disclosure(t *testing.T, resource []byte) (notice, basis, consentRef string, n int) {
	t.Helper()
	var r struct {
		Meta part2Meta `json:"meta"`
	}
	if err := json.Unmarshal(resource, &r); err != nil {
		t.Fatal(err)
	}
	for _, e := range r.Meta.Extension {
		if e.URL != extPart2Disclosure {
			continue
		}
		n++
		for _, s := range e.Extension {
			switch s.URL {
			case "notice":
				notice = s.ValueString
			case "basis":
				basis = s.ValueCode
			case "consent":
				consentRef = s.ValueReference.Reference
			}
		}
	}
	return
}

type part2Bundle struct {
	Total *int `json:"total"`
	Entry []struct {
		Resource json.RawMessage       `json:"resource"`
		Search   struct{ Mode string } `json:"search"`
	} `json:"entry"`
}

func (env *part2Env) bundle(t *testing.T, u, tok string) part2Bundle {
	t.Helper()
	st, body, _ := do(t, "GET", u, tok, nil)
	if st != 200 {
		t.Fatalf("GET %s: %d %s", u, st, body)
	}
	var b part2Bundle
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// entries returns the ids of the bundle's resources by search mode, and the notice of its
// outcome entry ("" when there is none).
func (b part2Bundle) entries(t *testing.T) (ids map[string]string, outcome string, outcomes int) {
	t.Helper()
	ids = map[string]string{}
	for _, e := range b.Entry {
		var r struct {
			ResourceType string `json:"resourceType"`
			ID           string `json:"id"`
			Issue        []struct {
				Details struct{ Text string } `json:"details"`
			} `json:"issue"`
		}
		if err := json.Unmarshal(e.Resource, &r); err != nil {
			t.Fatal(err)
		}
		if e.Search.Mode == "outcome" {
			outcomes++
			if r.ResourceType == "OperationOutcome" && len(r.Issue) > 0 {
				outcome = r.Issue[0].Details.Text
			}
			continue
		}
		ids[r.ResourceType+"/"+r.ID] = e.Search.Mode
	}
	return
}

func TestPart2LabelsNoticeAndConsent(t *testing.T) {
	env := newPart2Env(t)
	ctx := context.Background()
	tp := env.tok(t, env.p, allScopes, "TREAT")
	tb := env.tok(t, env.b, allScopes, "TREAT")
	tc := env.tok(t, env.c, allScopes, "TREAT")
	pp, pb, pc := env.samePatient(t, tp, env.p), env.samePatient(t, tb, env.b), env.samePatient(t, tc, env.c)
	persons := map[string]bool{}
	for _, id := range []string{pp, pb, pc} {
		src, err := env.mpi.SourceByPatient(ctx, nil, id)
		if err != nil {
			t.Fatal(err)
		}
		persons[string(src.PersonID)] = true
	}
	if len(persons) != 1 {
		t.Fatalf("the three members' Patients are %d persons; the test needs one", len(persons))
	}

	// Ingest: the Part 2 program's Observation (an ordinary glucose code, nothing the value
	// sets label) gets the program labels; B's gets none.
	st, body, _ := do(t, "POST", env.base+"/Observation", tp, obsJSON("", pp, "98"))
	if st != 201 {
		t.Fatalf("P creates Observation: %d %s", st, body)
	}
	obsP := idOf(t, body)
	if got := securityOf(t, body); !sameSet(got, consent.Part2ProgramLabels()) {
		t.Fatalf("Part 2 program's Observation stored with labels %v; want %v", got, consent.Part2ProgramLabels())
	}
	_, body, _ = do(t, "POST", env.base+"/Observation", tb, obsJSON("", pb, "101"))
	obsB := idOf(t, body)
	if got := securityOf(t, body); len(got) != 0 {
		t.Fatalf("B's Observation labelled %v; want none", got)
	}
	// A sender cannot forge the notice: a disclosure extension it wrote is not served.
	forged := bytes.Replace(obsJSON("", pb, "102"), []byte(`"status"`), []byte(`"meta":{"extension":[{"url":"`+extPart2Disclosure+`","extension":[{"url":"notice","valueString":"forged"}]}]},"status"`), 1)
	st, body, _ = do(t, "POST", env.base+"/Observation", tb, forged)
	if st != 201 {
		t.Fatalf("B creates Observation with an extension: %d %s", st, body)
	}
	obsForged := idOf(t, body)

	// Without a consent naming B, the Part 2 record is absent for B everywhere.
	if st, _, _ := do(t, "GET", env.base+"/Observation/"+obsP, tb, nil); st != 404 {
		t.Fatalf("B reads the Part 2 record without consent: %d; want 404", st)
	}
	b := env.bundle(t, env.base+"/Observation?patient="+pb+"&_total=accurate", tb)
	ids, outcome, _ := b.entries(t)
	if b.Total == nil || *b.Total != 2 || len(ids) != 2 || ids["Observation/"+obsP] != "" || outcome != "" {
		t.Fatalf("B's search without consent: total %v, entries %v, notice %q; want its own 2, no Part 2 record, no notice", b.Total, ids, outcome)
	}

	// The patient's consent, filed by the program, names B for treatment and the Part 2 labels.
	consentID := env.consentForB(t, tp, pp)

	// B reads it: the notice, the basis and the consent travel in meta, NORDSCLCD with them.
	st, body, _ = do(t, "GET", env.base+"/Observation/"+obsP, tb, nil)
	if st != 200 {
		t.Fatalf("B reads the Part 2 record with consent: %d %s", st, body)
	}
	notice, basis, ref, n := disclosure(t, body)
	if n != 1 || notice != consent.Part2Notice || basis != "consent" || ref != "Consent/"+consentID {
		t.Fatalf("B's read: %d extensions, basis %q, consent %q, notice %.40q; want the notice and Consent/%s", n, basis, ref, notice, consentID)
	}
	if got := securityOf(t, body); !slices.Contains(got, consent.RefrainRedisclose) || !slices.Contains(got, consent.LabelPart2) {
		t.Fatalf("B's read labels %v; want 42CFRPart2 and NORDSCLCD", got)
	}
	// The consent it references is one B can read.
	if st, _, _ := do(t, "GET", env.base+"/"+ref, tb, nil); st != 200 {
		t.Fatalf("B reads the referenced %s: %d; want 200", ref, st)
	}

	// B's search and $everything: the Part 2 record with its extension, the others without,
	// and one OperationOutcome entry with the notice; totals count the matches only.
	for _, u := range []string{env.base + "/Observation?patient=" + pb + "&_total=accurate", env.base + "/Patient/" + pb + "/$everything?_type=Observation"} {
		b := env.bundle(t, u, tb)
		ids, outcome, outcomes := b.entries(t)
		if ids["Observation/"+obsP] != "match" || ids["Observation/"+obsB] != "match" || outcomes != 1 || outcome != consent.Part2Notice {
			t.Fatalf("%s: entries %v, %d outcome entries, notice %.40q; want both records and one notice", u, ids, outcomes, outcome)
		}
		if strings.Contains(u, "_total") && (b.Total == nil || *b.Total != 3) {
			t.Fatalf("%s: total %v; want 3", u, b.Total)
		}
		for _, e := range b.Entry {
			var r struct{ ID string }
			_ = json.Unmarshal(e.Resource, &r)
			_, _, ref, n := disclosure(t, e.Resource)
			switch r.ID {
			case obsP:
				if n != 1 || ref != "Consent/"+consentID {
					t.Fatalf("%s: Part 2 entry has %d extensions, consent %q", u, n, ref)
				}
			default:
				if n != 0 {
					t.Fatalf("%s: entry %s carries the Part 2 extension", u, r.ID)
				}
			}
		}
	}

	// _include: the program's report and the result it includes both carry the extension.
	st, body, _ = do(t, "POST", env.base+"/DiagnosticReport", tp, []byte(`{"resourceType":"DiagnosticReport","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"Patient/`+pp+`"},"result":[{"reference":"Observation/`+obsP+`"}]}`))
	if st != 201 {
		t.Fatalf("P creates DiagnosticReport: %d %s", st, body)
	}
	rep := idOf(t, body)
	b = env.bundle(t, env.base+"/DiagnosticReport?patient="+pb+"&_include=DiagnosticReport:result", tb)
	ids, outcome, outcomes := b.entries(t)
	if ids["DiagnosticReport/"+rep] != "match" || ids["Observation/"+obsP] != "include" || outcomes != 1 || outcome != consent.Part2Notice {
		t.Fatalf("_include: entries %v, %d outcome entries; want the report, its included result and one notice", ids, outcomes)
	}
	for _, e := range b.Entry {
		if _, _, ref, n := disclosure(t, e.Resource); e.Search.Mode != "outcome" && (n != 1 || ref != "Consent/"+consentID) {
			t.Fatalf("_include: %s entry has %d extensions, consent %q", e.Search.Mode, n, ref)
		}
	}
	// A batch GET is a read like any other.
	st, body, _ = do(t, "POST", env.base, tb, []byte(`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation/`+obsP+`"}}]}`))
	var batch struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &batch); st != 200 || err != nil || len(batch.Entry) != 1 {
		t.Fatalf("batch GET: %d %s", st, body)
	}
	if _, _, ref, n := disclosure(t, batch.Entry[0].Resource); n != 1 || ref != "Consent/"+consentID {
		t.Fatalf("batch GET: %d extensions, consent %q: %s", n, ref, batch.Entry[0].Resource)
	}

	// C, which the consent does not name, still sees no trace of it; B's forged extension
	// is not served to C, and an ordinary record carries no notice.
	if st, _, _ := do(t, "GET", env.base+"/Observation/"+obsP, tc, nil); st != 404 {
		t.Fatalf("C reads the Part 2 record: %d; want 404", st)
	}
	b = env.bundle(t, env.base+"/Observation?patient="+pc+"&_total=accurate", tc)
	ids, outcome, _ = b.entries(t)
	if b.Total == nil || *b.Total != 2 || ids["Observation/"+obsP] != "" || outcome != "" {
		t.Fatalf("C's search: total %v, entries %v, notice %q; want B's 2 records only, no notice", b.Total, ids, outcome)
	}
	for _, id := range []string{obsB, obsForged} {
		st, body, _ := do(t, "GET", env.base+"/Observation/"+id, tc, nil)
		if _, _, _, n := disclosure(t, body); st != 200 || n != 0 || bytes.Contains(body, []byte("forged")) {
			t.Fatalf("C reads B's record %s: %d, %d disclosure extensions: %s", id, st, n, body)
		}
	}
	// The program reading its own record is no disclosure: no extension.
	st, body, _ = do(t, "GET", env.base+"/Observation/"+obsP, tp, nil)
	if _, _, _, n := disclosure(t, body); st != 200 || n != 0 {
		t.Fatalf("P reads its own record: %d with %d extensions; want 200 and none", st, n)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// part2Directives are the regional defaults plus, when to is set, the patient's consent
// naming member to as recipient of Part 2 records for treatment.
type part2Directives struct{ to string }

func (d part2Directives) InForce(_ context.Context, person string, _ time.Time) ([]consent.Directive, error) {
	dirs := consent.DefaultPolicies(consent.PolicyConfig{})
	if d.to != "" {
		dirs = append(dirs, consent.Directive{ID: "part2-" + consent.DirectiveID(d.to), Version: 3, Kind: consent.KindPatient, PersonID: person,
			PolicyRule: consent.OptIn, Status: consent.StatusActive,
			Provision: consent.Provision{Type: consent.Permit, Actors: []consent.Actor{{Role: consent.ParticipationRecipient, Reference: "Organization/" + d.to}},
				Purposes: []string{consent.PurposeTreatment}, SecurityLabels: []string{consent.LabelSubstanceUse, consent.LabelRestricted, consent.LabelPart2}}})
	}
	return dirs, nil
}

func TestPart2BinaryNotice(t *testing.T) {
	e := newDocEnv(t)
	data := []byte("counselling session summary")
	plain := e.store(t, "text/plain", data)
	e.a.Part2 = true // from here on, a is a Part 2 program
	prog := e.store(t, "text/plain", data)
	var docLabels []string
	if err := e.srv.Pool.QueryRow(t.Context(), `SELECT m.security FROM documents_metadata m JOIN documents_contents c ON c.document_id = m.id WHERE c.binary_id = $1`, prog).Scan(&docLabels); err != nil {
		t.Fatal(err)
	}
	if !sameSet(docLabels, consent.Part2ProgramLabels()) {
		t.Fatalf("the Part 2 document's metadata row has labels %v; want %v", docLabels, consent.Part2ProgramLabels())
	}
	withConsent := func(to string) {
		e.srv.Records = records.New(e.srv.FHIR, e.srv.MPI, part2Directives{to: to}, e.audit, nil)
	}

	withConsent("")
	if resp, _, err := e.get(t, prog, e.c.ID, consent.PurposeTreatment); err != nil || resp.StatusCode != 404 {
		t.Fatalf("C gets the Part 2 document without consent: %v %v; want 404", resp, err)
	}
	withConsent(e.c.ID)
	resp, body, err := e.get(t, prog, e.c.ID, consent.PurposeTreatment)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("C gets the Part 2 document with consent: %v %v", resp, err)
	}
	links := strings.Join(resp.Header.Values("Link"), ", ")
	if resp.Header.Get(headerPart2Notice) != consent.Part2Notice ||
		!strings.Contains(links, "<"+consent.Part2NoticeURL+`>; rel="`+relPart2Notice+`"`) ||
		!strings.Contains(links, `<http://concord.test/fhir/Consent/part2-`+e.c.ID+`>; rel="`+relPart2Consent+`"`) {
		t.Fatalf("Part 2 document headers: notice %.40q, Link %q", resp.Header.Get(headerPart2Notice), links)
	}
	resp, _, err = e.get(t, plain, e.c.ID, consent.PurposeTreatment)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get(headerPart2Notice) != "" || len(resp.Header.Values("Link")) != 0 {
		t.Fatalf("an ordinary document: %v %v, notice %q; want 200 without notice", resp, err, resp.Header.Get(headerPart2Notice))
	}
	// The program downloading its own document: no disclosure, no notice.
	resp, _, err = e.get(t, prog, e.a.ID, consent.PurposeTreatment)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get(headerPart2Notice) != "" {
		t.Fatalf("the program's own document: %v %v; want 200 without notice", resp, err)
	}
}

// TestPart2HL7Intake: a Part 2 program's HL7 v2 results get the program labels on every
// resource they become, whatever their codes.
func TestPart2HL7Intake(t *testing.T) {
	e := newHL7Env(t)
	if err := e.dir.SetPart2(context.Background(), e.member.ID, true); err != nil {
		t.Fatal(err)
	}
	c := mllpClient(t, e.addr)
	if code, _ := send(t, c, oruR01("P2-1", pidA)); code != "AA" {
		t.Fatalf("ORU: %s", code)
	}
	rows, err := e.pool.Query(context.Background(), `SELECT type, body FROM fhir_resources WHERE member_id = $1 AND type <> 'Patient'`, e.member.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var typ string
		var body []byte
		if err := rows.Scan(&typ, &body); err != nil {
			t.Fatal(err)
		}
		n++
		if got := securityOf(t, body); !sameSet(got, consent.Part2ProgramLabels()) {
			t.Errorf("%s from the Part 2 program's ORU labelled %v; want %v", typ, got, consent.Part2ProgramLabels())
		}
	}
	if n == 0 {
		t.Fatal("the ORU stored nothing")
	}
}

// BenchmarkDiscloseBody: what output decoration costs per entry. An ordinary record is a
// byte scan (no decode); a Part 2 record is decoded and re-encoded once.
func BenchmarkDiscloseBody(b *testing.B) {
	body := []byte(`{"resourceType":"Observation","id":"o1","meta":{"versionId":"1","lastUpdated":"2026-11-28T04:00:00.000Z","source":"http://concord.test/members/p","security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"ETH"},{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"},{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"42CFRPart2"},{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"NORDSCLCD"}],"tag":[{"system":"https://concord.example/fhir/source-member","code":"p"}]},"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":98,"unit":"mg/dL"}}`)
	rel := &records.Part2Release{Consent: "c1", Version: 2, Reason: consent.Permitted, Summary: "Allowed: your consent lets Clinic B see substance-use treatment records for treatment."}
	for _, bc := range []struct {
		name string
		rel  *records.Part2Release
	}{{"plain", nil}, {"part2", rel}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := discloseBody(body, bc.rel); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestPart2ExtensionBasis(t *testing.T) {
	for _, tt := range []struct {
		name      string
		rel       records.Part2Release
		basis     string
		reference string
	}{
		{"consent", records.Part2Release{Consent: "c1", Version: 2, Reason: consent.Permitted, Summary: "Allowed."}, "consent", "Consent/c1"},
		{"break-the-glass names no consent", records.Part2Release{Consent: "deny-1", Version: 1, Reason: consent.BreakGlassOverride, Summary: "Allowed in an emergency."}, "emergency", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body, err := discloseBody([]byte(`{"resourceType":"Observation","id":"o1","status":"final"}`), &tt.rel)
			if err != nil {
				t.Fatal(err)
			}
			notice, basis, ref, n := disclosure(t, body)
			if n != 1 || notice != consent.Part2Notice || basis != tt.basis || ref != tt.reference {
				t.Fatalf("%s: %d extensions, basis %q, consent %q", body, n, basis, ref)
			}
			if got := securityOf(t, body); !slices.Equal(got, []string{consent.RefrainRedisclose}) {
				t.Fatalf("labels %v; want NORDSCLCD added", got)
			}
			if !json.Valid(body) || !bytes.HasPrefix(body, []byte(`{"resourceType":"Observation","id":"o1","status":"final","meta":{`)) {
				t.Fatalf("body %s", body)
			}
		})
	}
}

// BenchmarkPart2Read compares a read of another member's Part 2 record (consent naming the
// reader; decided again for the consent reference, decorated) with a read of another
// member's ordinary record, both through consent and the audit log on PostgreSQL.
// Compare the two sub-benchmarks as a ratio; absolute times depend on the machine.
func BenchmarkPart2Read(b *testing.B) {
	env := newPart2Env(b)
	tp := env.tok(b, env.p, allScopes, "TREAT")
	tB := env.tok(b, env.b, allScopes, "TREAT")
	pp := env.samePatient(b, tp, env.p)
	env.samePatient(b, tB, env.b)
	_, body, _ := do(b, "POST", env.base+"/Observation", tp, obsJSON("", pp, "98"))
	part2 := idOf(b, body)
	_, body, _ = do(b, "POST", env.base+"/Observation", env.tok(b, env.c, allScopes, "TREAT"), obsJSON("", env.samePatient(b, env.tok(b, env.c, allScopes, "TREAT"), env.c), "99"))
	plain := idOf(b, body)
	d := consent.Directive{ID: "part2-b", Version: 1, Kind: consent.KindPatient, PersonID: pp, PolicyRule: consent.OptIn,
		Status: consent.StatusActive, DateTime: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), SourceReference: "DocumentReference/signed-part2-form",
		Provision: consent.Provision{Type: consent.Permit, Actors: []consent.Actor{{Role: consent.ParticipationRecipient, Reference: "Organization/" + env.b.ID}},
			Purposes: []string{consent.PurposeTreatment}, SecurityLabels: []string{consent.LabelSubstanceUse, consent.LabelRestricted, consent.LabelPart2}}}
	cj, _ := consent.FormatConsent(d)
	if st, body, _ := do(b, "POST", env.base+"/Consent", tp, cj); st != 201 {
		b.Fatalf("POST Consent: %d %s", st, body)
	}
	for _, bc := range []struct{ name, id string }{{"plain", plain}, {"part2", part2}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if st, body, _ := do(b, "GET", env.base+"/Observation/"+bc.id, tB, nil); st != 200 {
					b.Fatalf("GET: %d %s", st, body)
				}
			}
		})
	}
}
