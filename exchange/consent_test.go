package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// consentEnv is the exchange with the store-backed consent path (PostgreSQL and Redis),
// the real audit log, and the consent routes, with two members A and B.
type consentEnv struct {
	pool   *pgxpool.Pool
	base   string
	a, b   directory.Member
	key    []byte
	issuer string
	rec    *records.Service
}

func newConsentEnv(t *testing.T) *consentEnv {
	t.Helper()
	pool := testkit.DB(t)
	rdb, prefix := testkit.Redis(t)
	ctx := context.Background()
	dir := directory.NewStore(pool)
	a, err := dir.AddMember(ctx, "Clinic A", "urn:oid:2.16.840.1.113883.3.1111")
	if err != nil {
		t.Fatal(err)
	}
	b, err := dir.AddMember(ctx, "Clinic B", "urn:oid:2.16.840.1.113883.3.2222")
	if err != nil {
		t.Fatal(err)
	}
	env := &consentEnv{pool: pool, a: a, b: b, key: bytes.Repeat([]byte("c"), 32), issuer: "http://concord.test"}
	registerTestClients(t, pool)
	toks := newTokens(t, dir, env.key, env.issuer, env.issuer+"/token", 0)
	mpi, matcher := newMatcher(t, pool)
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
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := New(Config{BaseURL: env.issuer, MaxBodyBytes: 1 << 20}, Deps{Pool: pool, Directory: dir, Tokens: toks, FHIR: store.New(pool),
		MPI: mpi, Matcher: matcher, Records: env.rec, Log: quiet})
	env.base = serveExchange(t, srv, NewConsentAPI(srv, ConsentDeps{Store: cs, Directives: src, Cache: cache, BreakGlass: records.NewBreakGlassStore(pool), Audit: log}).Register)
	return env
}

// tok mints an access token for member's client with scope and purpose.
func (env *consentEnv) tok(t testing.TB, member directory.Member, scope, purpose string) string {
	t.Helper()
	return mintToken(t, env.key, env.issuer, "client-"+member.ID, member.ID, scope, purpose, 5*time.Minute)
}

func (env *consentEnv) patient(t *testing.T, tok string, m directory.Member, mrn string) string {
	t.Helper()
	st, body, _ := do(t, "POST", env.base+"/Patient", tok, []byte(`{"resourceType":"Patient","identifier":[{"system":"`+m.System+`","value":"`+mrn+`"}],"name":[{"family":"Test`+mrn+`","given":["Ada"]}],"gender":"female","birthDate":"1970-01-0`+mrn[len(mrn)-1:]+`"}`))
	if st != 201 && st != 200 {
		t.Fatalf("create Patient: %d %s", st, body)
	}
	return idOf(t, body)
}

// postConsent files an active Consent for patient as tok; it must be created (201). It
// returns the Consent's id.
func (env *consentEnv) postConsent(t *testing.T, tok, patient string) string {
	t.Helper()
	st, body, _ := do(t, "POST", env.base+"/Consent", tok, consentJSON("", patient, "active"))
	if st != 201 {
		t.Fatalf("POST Consent: %d %s", st, body)
	}
	return idOf(t, body)
}

func conditionJSON(patient, system, code string, security string) []byte {
	meta := ""
	if security != "" {
		meta = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + security + `"}]},`
	}
	return []byte(`{"resourceType":"Condition",` + meta + `"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}]}],"code":{"coding":[{"system":"` + system + `","code":"` + code + `"}]},"subject":{"reference":"Patient/` + patient + `"}}`)
}

func securityOf(t testing.TB, body []byte) []string {
	t.Helper()
	var r struct {
		Meta struct {
			Security []struct{ Code string } `json:"security"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range r.Meta.Security {
		out = append(out, s.Code)
	}
	return out
}

func TestIngestLabelsSensitiveData(t *testing.T) {
	env := newConsentEnv(t)
	ctx := context.Background()
	ta := env.tok(t, env.a, allScopes, "TREAT")
	tb := env.tok(t, env.b, allScopes, "TREAT")
	pa := env.patient(t, ta, env.a, "A1")

	st, body, _ := do(t, "POST", env.base+"/Condition", ta, conditionJSON(pa, consent.SystemICD10CM, "F10.20", ""))
	if st != 201 {
		t.Fatalf("create Condition: %d %s", st, body)
	}
	eth := idOf(t, body)
	if got := strings.Join(securityOf(t, body), ","); got != "ETH,R" {
		t.Fatalf("alcohol use disorder stored with labels %q; want ETH,R", got)
	}
	_, body, _ = do(t, "POST", env.base+"/Condition", ta, conditionJSON(pa, consent.SystemICD10CM, "J45.909", "PSY"))
	own := idOf(t, body)
	if got := strings.Join(securityOf(t, body), ","); got != "PSY" {
		t.Fatalf("member's own label: stored %q; want PSY kept, nothing added for asthma", got)
	}
	_, body, _ = do(t, "POST", env.base+"/Condition", ta, conditionJSON(pa, consent.SystemICD10CM, "J45.909", ""))
	plain := idOf(t, body)
	if got := securityOf(t, body); len(got) != 0 {
		t.Fatalf("asthma labelled %v", got)
	}
	// An update without labels cannot drop the derived ones.
	upd := conditionJSON(pa, consent.SystemICD10CM, "F10.20", "")
	upd = bytes.Replace(upd, []byte(`{"resourceType":"Condition",`), []byte(`{"resourceType":"Condition","id":"`+eth+`",`), 1)
	if st, body, _ := do(t, "PUT", env.base+"/Condition/"+eth, ta, upd); st != 200 || strings.Join(securityOf(t, body), ",") != "ETH,R" {
		t.Fatalf("update without labels: %d, labels %v; want ETH,R kept", st, securityOf(t, body))
	}

	// Another member reading for treatment sees the plain one, not the labelled ones.
	if st, _, _ := do(t, "GET", env.base+"/Condition/"+plain, tb, nil); st != 200 {
		t.Fatalf("member B reads the unlabelled Condition: %d; want 200", st)
	}
	for _, id := range []string{eth, own} {
		if st, _, _ := do(t, "GET", env.base+"/Condition/"+id, tb, nil); st != 404 {
			t.Fatalf("member B reads labelled Condition: %d; want 404", st)
		}
	}
	// The patient still sees all three (right of access).
	src, err := mpistore.New(env.pool).SourceByPatient(ctx, nil, pa)
	if err != nil {
		t.Fatal(err)
	}
	pv := records.Viewer{Actor: "iss|sub", Role: consent.RolePatient, Purpose: consent.PurposePatientRequest, PersonID: string(src.PersonID)}
	got, err := env.rec.Compartment(ctx, pv, string(src.PersonID), "Condition", nil, 10)
	if err != nil || len(got) != 3 {
		t.Fatalf("patient's own view: %d, %v; want 3", len(got), err)
	}
	treat := records.Viewer{Client: "client-" + env.b.ID, Org: env.b.ID, Role: consent.RoleSystem, Purpose: consent.PurposeTreatment}
	if got, err := env.rec.Compartment(ctx, treat, string(src.PersonID), "Condition", nil, 10); err != nil || len(got) != 1 || got[0].ID != plain {
		t.Fatalf("member B's treatment search: %d, %v; want only the unlabelled one", len(got), err)
	}
}

func consentJSON(id, patient, status string) []byte {
	idPart := ""
	if id != "" {
		idPart = `"id":"` + id + `",`
	}
	return []byte(`{"resourceType":"Consent",` + idPart + `"status":"` + status + `",` +
		`"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},` +
		`"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],` +
		`"patient":{"reference":"Patient/` + patient + `"},"dateTime":"2026-03-01",` +
		`"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTOUT"}]},` +
		`"provision":{"type":"deny","purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]}}`)
}

func (env *consentEnv) auditCount(t testing.TB, action audit.Action, cond string) int {
	t.Helper()
	var n int
	if err := env.pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE action = $1 AND `+cond, string(action)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestConsentResourceAndPreview(t *testing.T) {
	env := newConsentEnv(t)
	ta := env.tok(t, env.a, allScopes, "TREAT")
	tb := env.tok(t, env.b, allScopes, "TREAT")
	pa := env.patient(t, ta, env.a, "A1")
	pb := env.patient(t, tb, env.b, "B2") // another person
	_, body, _ := do(t, "POST", env.base+"/Observation", ta, obsJSON("", pa, "7.1"))
	obs := idOf(t, body)
	if st, _, _ := do(t, "GET", env.base+"/Observation/"+obs, tb, nil); st != 200 {
		t.Fatalf("B reads A's result under the regional opt-out default: %d", st)
	}
	beforeOptOut := time.Now().UTC()
	time.Sleep(10 * time.Millisecond)

	// Scopes and patients are checked.
	if st, _, _ := do(t, "POST", env.base+"/Consent", env.tok(t, env.a, "system/Observation.rs", "TREAT"), consentJSON("", pa, "active")); st != 403 {
		t.Fatalf("POST Consent without Consent scope: %d; want 403", st)
	}
	if st, _, _ := do(t, "POST", env.base+"/Consent", ta, consentJSON("", pb, "active")); st != 400 {
		t.Fatalf("POST Consent for another member's patient: %d; want 400", st)
	}
	if st, _, _ := do(t, "POST", env.base+"/Consent", ta, append(consentJSON("", pa, "active")[:20:20], []byte(`"unknown":1}`)...)); st != 400 {
		t.Fatalf("malformed Consent: %d; want 400", st)
	}

	// The patient opts out of treatment sharing at A: in force on the next request.
	id := env.postConsent(t, ta, pa)
	if !bytes.Contains(body, []byte(`"Patient/`+pa+`"`)) || !bytes.Contains(body, []byte(`"versionId":"1"`)) {
		t.Fatalf("Consent read back: %s; want the member's Patient and version 1", body)
	}
	if st, _, _ := do(t, "GET", env.base+"/Observation/"+obs, tb, nil); st != 404 {
		t.Fatalf("B reads after the opt-out: %d; want 404", st)
	}
	if n := env.auditCount(t, audit.ConsentChange, `consent = '`+id+`' AND consent_version = 1`); n != 1 {
		t.Fatalf("%d ConsentChange events; want 1", n)
	}

	// Read, search; B has no Patient for this person, so it cannot see the directive.
	if st, body, _ := do(t, "GET", env.base+"/Consent/"+id, ta, nil); st != 200 || !bytes.Contains(body, []byte(`"deny"`)) {
		t.Fatalf("GET Consent: %d %s", st, body)
	}
	if st, _, _ := do(t, "GET", env.base+"/Consent/"+id, tb, nil); st != 404 {
		t.Fatalf("B GET Consent: %d; want 404", st)
	}
	if n := env.auditCount(t, audit.Read, `outcome = 'deny' AND reason = 'not-member-patient' AND consent = '`+id+`' AND org = '`+env.b.ID+`'`); n != 1 {
		t.Fatalf("%d denial events for B's read of the directive; want 1", n)
	}
	if st, body, _ := do(t, "GET", env.base+"/Consent?patient="+pa, tb, nil); st != 200 || !bytes.Contains(body, []byte(`"total":0`)) {
		t.Fatalf("B searches A's patient's directives: %d %s; want an empty Bundle", st, body)
	}
	if n := env.auditCount(t, audit.Query, `outcome = 'deny' AND reason = 'unknown-or-foreign-patient' AND org = '`+env.b.ID+`'`); n != 1 {
		t.Fatalf("%d denial events for B's search; want 1", n)
	}
	var bundle struct {
		Total int `json:"total"`
	}
	st, body, _ := do(t, "GET", env.base+"/Consent?patient="+pa, ta, nil)
	if json.Unmarshal(body, &bundle); st != 200 || bundle.Total != 1 {
		t.Fatalf("Consent?patient: %d, total %d; want 1", st, bundle.Total)
	}

	// The preview explains it, now and as of before.
	preview := func(at string) map[string]string {
		t.Helper()
		u := env.base + "/Patient/" + pa + "/$consent-preview?actor-org=" + env.b.ID + "&purpose=TREAT&actor-role=system"
		if at != "" {
			u += "&at=" + url.QueryEscape(at)
		}
		st, body, _ := do(t, "GET", u, ta, nil)
		if st != 200 {
			t.Fatalf("preview: %d %s", st, body)
		}
		var p previewResult
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, c := range p.Parameter {
			var name, decision, expl string
			for _, part := range c.Part {
				switch part.Name {
				case "name":
					name = *part.ValueCode
				case "decision":
					decision = *part.ValueCode
				case "explanation":
					expl = *part.ValueString
				}
			}
			if expl == "" {
				t.Fatalf("class %s has no explanation", name)
			}
			out[name] = decision
		}
		return out
	}
	if got := preview(""); got["labs"] != "deny" || got["mental-health"] != "deny" || len(got) != len(consent.StandardClasses()) {
		t.Fatalf("preview now: %v; want labs denied (opted out)", got)
	}
	// As of an instant before the opt-out was saved: the versions stored then.
	if got := previewAsOf(t, env, pa, beforeOptOut); got["labs"] != "permit" || got["mental-health"] != "deny" {
		t.Fatalf("preview before the opt-out: %v; want labs permitted, labelled classes denied", got)
	}

	// A new version lifts the opt-out; a stale If-Match conflicts.
	if st, _, _ := do(t, "PUT", env.base+"/Consent/"+id, ta, consentJSON(id, pa, "inactive"), "If-Match", `W/"7"`); st != 409 {
		t.Fatalf("PUT with a stale If-Match: %d; want 409", st)
	}
	if st, body, _ := do(t, "PUT", env.base+"/Consent/"+id, ta, consentJSON(id, pa, "inactive"), "If-Match", `W/"1"`); st != 200 || !bytes.Contains(body, []byte(`"versionId":"2"`)) {
		t.Fatalf("PUT Consent: %d %s", st, body)
	}
	if st, _, _ := do(t, "GET", env.base+"/Observation/"+obs, tb, nil); st != 200 {
		t.Fatalf("B reads after the opt-out was lifted: %d; want 200", st)
	}
	if st, _, _ := do(t, "PUT", env.base+"/Consent/"+id, tb, consentJSON(id, pb, "active")); st != 404 {
		t.Fatalf("B overwrites A's patient's directive id: %d; want 404", st)
	}
	// An unknown id answers the same: PUT creates no directive.
	unknown := "0f8e7a52-6d4b-4c3a-9e21-5b7d8c9a0e1f"
	if st, _, _ := do(t, "PUT", env.base+"/Consent/"+unknown, tb, consentJSON(unknown, pb, "active")); st != 404 {
		t.Fatalf("PUT Consent with an unknown id: %d; want 404", st)
	}
}

// previewAsOf returns the preview's decision per class as of at.
func previewAsOf(t *testing.T, env *consentEnv, pa string, at time.Time) map[string]string {
	t.Helper()
	ta := env.tok(t, env.a, allScopes, "TREAT")
	u := env.base + "/Patient/" + pa + "/$consent-preview?actor-org=" + env.b.ID + "&purpose=TREAT&actor-role=system&at=" + url.QueryEscape(at.Format(time.RFC3339Nano))
	st, body, _ := do(t, "GET", u, ta, nil)
	if st != 200 {
		t.Fatalf("preview as of: %d %s", st, body)
	}
	var p previewResult
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range p.Parameter {
		var name, decision string
		for _, part := range c.Part {
			if part.Name == "name" {
				name = *part.ValueCode
			}
			if part.Name == "decision" {
				decision = *part.ValueCode
			}
		}
		out[name] = decision
	}
	return out
}

func TestBreakGlassDeclaration(t *testing.T) {
	env := newConsentEnv(t)
	ta := env.tok(t, env.a, allScopes, "TREAT")
	pa := env.patient(t, ta, env.a, "A1")
	params := func(patient, code, text string) []byte {
		return []byte(`{"resourceType":"Parameters","parameter":[{"name":"patient","valueReference":{"reference":"Patient/` + patient + `"}},` +
			`{"name":"reasonCode","valueCode":"` + code + `"},{"name":"reason","valueString":"` + text + `"}]}`)
	}
	// A wildcard scope is not the permission.
	if st, _, _ := do(t, "POST", env.base+"/$break-glass", ta, params(pa, consent.BTGUnresponsive, "unconscious")); st != 403 {
		t.Fatalf("declare without %s: %d; want 403", ScopeBreakGlass, st)
	}
	tbg := env.tok(t, env.a, allScopes+" "+ScopeBreakGlass, "TREAT")
	if st, _, _ := do(t, "POST", env.base+"/$break-glass", tbg, params(pa, "curious", "unconscious")); st != 400 {
		t.Fatalf("unknown reason code: %d; want 400", st)
	}
	if st, _, _ := do(t, "POST", env.base+"/$break-glass", tbg, params(pa, consent.BTGUnresponsive, " ")); st != 400 {
		t.Fatalf("empty reason text: %d; want 400", st)
	}
	// Strict input: a duplicate key, or a case variant of one, is a 400, not the last value.
	dup := strings.Replace(string(params(pa, consent.BTGUnresponsive, "unconscious")), `"valueString":"unconscious"`, `"valueString":"x","valueString":"unconscious"`, 1)
	variant := strings.Replace(string(params(pa, consent.BTGUnresponsive, "unconscious")), `"name":"reason",`, `"name":"reason","Name":"x",`, 1)
	for _, b := range []string{dup, variant} {
		if st, body, _ := do(t, "POST", env.base+"/$break-glass", tbg, []byte(b)); st != 400 {
			t.Fatalf("declaration %s: %d %s; want 400", b, st, body)
		}
	}
	if st, _, _ := do(t, "POST", env.base+"/$break-glass", tbg, params("nobody", consent.BTGUnresponsive, "unconscious")); st != 404 {
		t.Fatalf("unknown patient: %d; want 404", st)
	}
	st, body, _ := do(t, "POST", env.base+"/$break-glass", tbg, params(pa, consent.BTGUnresponsive, "unconscious in the ED"))
	if st != 201 {
		t.Fatalf("declare: %d %s", st, body)
	}
	var res bgResult
	if err := json.Unmarshal(body, &res); err != nil || len(res.Parameter) != 3 || res.Parameter[2].ValueInstant == nil {
		t.Fatalf("declaration answer %s", body)
	}
	exp, err := time.Parse(time.RFC3339, *res.Parameter[2].ValueInstant)
	if err != nil || exp.After(time.Now().Add(60*time.Minute)) || exp.Before(time.Now().Add(58*time.Minute)) {
		t.Fatalf("expires %v; want the 60-minute default", exp)
	}
	var tasks, notes, events int
	if err := env.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM consent_review_tasks WHERE status = 'open'),
		(SELECT count(*) FROM consent_patient_notifications), (SELECT count(*) FROM audit_events WHERE action = 'break-glass' AND break_glass AND purpose = 'BTG')`).Scan(&tasks, &notes, &events); err != nil {
		t.Fatal(err)
	}
	if tasks != 1 || notes != 1 || events != 1 {
		t.Fatalf("review tasks %d, notifications %d, audit events %d; want 1 each", tasks, notes, events)
	}
	if bytes.Contains(body, []byte("unconscious")) {
		t.Fatal("the free text came back in the answer")
	}
}

func TestConsentStoreDownAnswers503WithoutPHI(t *testing.T) {
	env := newConsentEnv(t)
	ctx := context.Background()
	ta := env.tok(t, env.a, allScopes, "TREAT")
	tb := env.tok(t, env.b, allScopes, "TREAT")
	pa := env.patient(t, ta, env.a, "A1")
	_, body, _ := do(t, "POST", env.base+"/Observation", ta, obsJSON("", pa, "canary-7.1"))
	obs := idOf(t, body)
	if st, _, _ := do(t, "GET", env.base+"/Observation/"+obs, tb, nil); st != 200 {
		t.Fatalf("B reads before the outage: %d", st)
	}
	tx, err := env.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE consent_versions, consent_policy_version, consent_directives IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	st, body, h := do(t, "GET", env.base+"/Observation/"+obs, tb, nil)
	if st != 503 || bytes.Contains(body, []byte("canary")) || h.Get("Retry-After") == "" {
		t.Fatalf("consent query timing out: %d, Retry-After %q, %s; want 503 without PHI", st, h.Get("Retry-After"), body)
	}
	if st, body, _ := do(t, "GET", env.base+"/Patient/"+pa+"/$consent-preview?actor-org="+env.b.ID+"&purpose=TREAT", ta, nil); st != 503 {
		t.Fatalf("preview with the consent store down: %d %s; want 503", st, body)
	}
}
