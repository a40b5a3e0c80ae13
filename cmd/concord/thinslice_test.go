package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/concord-hie/concord/exchange/hl7v2"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/config"
	"github.com/concord-hie/concord/internal/testkit"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// demoEnv runs the whole demo (real PostgreSQL, Redis, S3, embedded OIDC) in-process and
// returns the running Main.
func demoEnv(t *testing.T) *Main {
	t.Helper()
	cfg := config.Defaults()
	cfg.DatabaseURL = testkit.DatabaseURL(t)
	redisClient, prefix := testkit.Redis(t)
	cfg.RedisURL = os.Getenv("CONCORD_TEST_REDIS_URL")
	cfg.RedisPrefix = prefix
	_ = redisClient
	s3 := testkit.S3(t)
	cfg.S3Endpoint, cfg.S3AccessKey, cfg.S3SecretKey, cfg.S3Bucket, cfg.S3Region = s3.Endpoint, s3.AccessKey, s3.SecretKey, s3.Bucket, s3.Region
	cfg.HTTPAddr = freeAddr(t)
	_, port, _ := net.SplitHostPort(cfg.HTTPAddr)
	cfg.BaseURL = "http://localhost:" + port
	cfg.AdminAddr = ""
	cfg.MLLPAddr = freeAddr(t)
	cfg.DevOIDCAddr = freeAddr(t)
	cfg.DataDir = t.TempDir()
	cfg.LogLevel = "warn"

	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	m := NewMain(cfg, io.Discard, &syncWriter{w: &logs})
	region := demoRegion(cfg.DemoSeed)
	m.demoUsers = region.users()
	if err := m.Open(ctx); err != nil {
		t.Fatalf("open: %v", err)
	}
	if err := m.Listen(); err != nil {
		t.Fatal(err)
	}
	if _, err := region.seed(ctx, m); err != nil {
		t.Fatalf("seed: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		m.Close()
		// No PHI in the logs: the demo patient's name and birth date must never appear.
		for _, canary := range []string{"Rivera", "1984-03-12", demoPassword} {
			if strings.Contains(logs.String(), canary) {
				t.Errorf("logs contain PHI or a secret (%q)", canary)
			}
		}
	})
	return m
}

type syncWriter struct {
	w  *bytes.Buffer
	mu chanMutex
}

type chanMutex struct{ ch chan struct{} }

func (m *chanMutex) lock() {
	if m.ch == nil {
		m.ch = make(chan struct{}, 1)
	}
	m.ch <- struct{}{}
}
func (m *chanMutex) unlock() { <-m.ch }

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.lock()
	defer s.mu.unlock()
	return s.w.Write(p)
}

// demoClient holds a demo member's client credentials as the demo writes them.
type demoClient struct {
	ClientID string          `json:"client_id"`
	TokenURL string          `json:"token_url"`
	Key      json.RawMessage `json:"private_jwk"`
}

// token gets a backend-services access token for a demo member, as an EHR would.
func token(t *testing.T, m *Main, memberID string) string {
	t.Helper()
	return tokenFor(t, m, memberID, "system/Patient.cruds system/Observation.cruds system/AuditEvent.rs")
}

// tokenFor is token asking for the given scopes.
func tokenFor(t *testing.T, m *Main, memberID, scopes string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.cfg.DataDir, "demo-clients", memberID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var dc demoClient
	if err := json.Unmarshal(b, &dc); err != nil {
		t.Fatal(err)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(dc.Key); err != nil {
		t.Fatal(err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: jwk}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	assertion, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: dc.ClientID, Subject: dc.ClientID, Audience: jwt.Audience{dc.TokenURL},
		ID: testkit.RandomID(8), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(dc.TokenURL, url.Values{"grant_type": {"client_credentials"}, "scope": {scopes},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken  string `json:"access_token"`
		ExpiresIn    int    `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != 200 || tr.AccessToken == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	if tr.ExpiresIn > 300 || tr.RefreshToken != "" {
		t.Fatalf("token lives %d s, refresh token %q: want ≤ 300 s and none", tr.ExpiresIn, tr.RefreshToken)
	}
	return tr.AccessToken
}

func fhirDo(t *testing.T, method, u, tok string, body []byte, header ...string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, u, bytes.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// TestThinSlice walks the foundation's path end to end: a member system gets a token and
// sends a Patient and a laboratory Observation to /fhir; the matching demo patient signs in
// to the portal through the OIDC provider's real login form in Chromium and sees that result
// with its source member.
func TestThinSlice(t *testing.T) {
	ctx := testkit.Browser(t, 1200, 1000)
	m := demoEnv(t)
	// The lab's HL7 v2 feed sends Ana an HDL result over MLLP: AA only after commit.
	lab := demoRegion(m.cfg.DemoSeed).members[2]
	var conn net.Conn
	var err error
	for i := 0; i < 100; i++ { // Run starts the MLLP listener in the background
		if conn, err = net.Dial("tcp", m.cfg.MLLPAddr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	oru := "MSH|^~\\&|LIS|" + lab.ID + "|CONCORD|HIE|20261127093000||ORU^R01^ORU_R01|thin-slice-oru-1|P|2.5.1\r" +
		"PID|1||" + demoRegion(m.cfg.DemoSeed).mrn(2, 0) + "^^^" + lab.ID + "&" + strings.TrimPrefix(lab.OID, "urn:oid:") + "&ISO^MR||RIVERA^ANA||19840312|F\r" +
		"OBR|1||LAB-77|2085-9^HDL Cholesterol^LN|||20261127083000|||||||||||||||20261127090000|||F\r" +
		"OBX|1|NM|2085-9^Cholesterol in HDL [Mass/volume] in Serum or Plasma^LN||63|mg/dL^mg/dL^UCUM|>=40||||F|||20261127083000\r"
	ack, err := hl7v2.NewClient(conn).Send(context.Background(), []byte(oru))
	conn.Close()
	if err != nil || ack.Get("MSA-1") != "AA" || ack.Get("MSA-2") != "thin-slice-oru-1" {
		t.Fatalf("ORU over MLLP: %v, ACK %q", err, ack.Bytes())
	}
	base := m.cfg.BaseURL + "/fhir"
	region := demoRegion(m.cfg.DemoSeed)
	member := region.members[0] // Riverside Family Clinic knows Ana
	tok := token(t, m, member.ID)

	// The EHR re-sends Ana's Patient with its MRN: same source record, updated in place.
	ana := region.persons[0]
	status, body, _ := fhirDo(t, "POST", base+"/Patient", tok, patientJSON(ana, member, region.mrn(0, 0)))
	if status != http.StatusOK {
		t.Fatalf("POST Patient = %d %s; want 200 (update of the known MRN)", status, body)
	}
	var pat struct {
		ID   string `json:"id"`
		Meta struct {
			VersionID string `json:"versionId"`
			Source    string `json:"source"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(body, &pat); err != nil || pat.ID == "" || pat.Meta.VersionID != "2" || pat.Meta.Source == "" {
		t.Fatalf("stored Patient %s (%v)", body, err)
	}
	// A lab result no seeded record has: total cholesterol 187 mg/dL.
	obs := observationJSON(labTest{"2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 0, 199, 0, 0, 0}, 187, time.Now().UTC().Add(-time.Hour), pat.ID)
	status, body, hdr := fhirDo(t, "POST", base+"/Observation", tok, obs)
	if status != http.StatusCreated || !strings.Contains(hdr.Get("Location"), "/Observation/") {
		t.Fatalf("POST Observation = %d %s", status, body)
	}
	var created struct{ ID string }
	_ = json.Unmarshal(body, &created)
	status, body, hdr = fhirDo(t, "GET", base+"/Observation/"+created.ID, tok, nil, "X-Request-Id", "thin-slice-read-1")
	if status != http.StatusOK || !strings.Contains(string(body), `"2093-3"`) || hdr.Get("X-Request-Id") != "thin-slice-read-1" {
		t.Fatalf("GET Observation = %d %s", status, body)
	}
	// The read was audited before it answered: RESTful ATNA finds it by request ID.
	status, body, _ = fhirDo(t, "GET", base+"/AuditEvent?patient="+pat.ID+"&date=ge2020-01-01", tok, nil, "X-Request-Id", "thin-slice-atna-1")
	if status != http.StatusOK || !strings.Contains(string(body), "thin-slice-read-1") || strings.Contains(string(body), "Rivera") {
		t.Fatalf("AuditEvent search = %d, want the read's event by request ID and no PHI:\n%.1500s", status, body)
	}
	// Reading the log was logged too, before it answered: the next search finds it.
	status, body, _ = fhirDo(t, "GET", base+"/AuditEvent?patient="+pat.ID+"&date=ge2020-01-01", tok, nil)
	if status != http.StatusOK || !strings.Contains(string(body), "thin-slice-atna-1") || !strings.Contains(string(body), `"audit-query"`) {
		t.Fatalf("AuditEvent search = %d, want the first search's audit-query event:\n%.1500s", status, body)
	}
	// The regional view: the member searches its own Patient's labs and gets every member's
	// results for the person, each with its source.
	status, body, _ = fhirDo(t, "GET", base+"/Observation?patient="+pat.ID+"&category=laboratory&_count=200", tok, nil)
	if status != http.StatusOK {
		t.Fatalf("lab search = %d %.500s", status, body)
	}
	for _, m := range region.members {
		if !strings.Contains(string(body), "/members/"+m.ID) {
			t.Errorf("regional lab search has no result from %s", m.ID)
		}
	}
	status, body, _ = fhirDo(t, "GET", base+"/Observation?patient="+pat.ID+"&code=http://loinc.org|2093-3", tok, nil)
	if status != http.StatusOK || !strings.Contains(string(body), `"total":1`) {
		t.Fatalf("search by code = %d %.500s; want exactly the new result", status, body)
	}
	// The CapabilityStatement is valid R4 and names what the tests above used.
	status, body, _ = fhirDo(t, "GET", base+"/metadata", "", nil)
	if _, err := fhir.Parse(body); status != http.StatusOK || err != nil {
		t.Fatalf("metadata = %d, %v", status, err)
	}
	for _, want := range []string{`"name":"match"`, `"name":"everything"`, `"code":"transaction"`, `"code":"search-type"`,
		`"valueCanonical":"https://concord.example/fhir/SubscriptionTopic/patient-link-changed"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("CapabilityStatement lacks %s", want)
		}
	}
	// Strict input: a case-variant key is refused with an OperationOutcome naming nothing private.
	status, body, _ = fhirDo(t, "POST", base+"/Observation", tok, []byte(`{"resourceType":"Observation","Status":"final"}`))
	if status != http.StatusBadRequest || !strings.Contains(string(body), "OperationOutcome") {
		t.Fatalf("case-variant key = %d %s; want 400 OperationOutcome", status, body)
	}
	// No token, no data.
	status, _, _ = fhirDo(t, "GET", base+"/Observation/"+created.ID, "", nil)
	if status != http.StatusUnauthorized {
		t.Fatalf("GET without token = %d; want 401", status)
	}

	err = chromedp.Do(ctx,
		chromedp.Navigate(m.cfg.BaseURL+"/"),
		chromedp.Click(chromedp.CSS("form.signin button")),
		chromedp.WaitVisible(chromedp.ID("username")),
		chromedp.SendKeys(chromedp.ID("username"), ana.Login),
		chromedp.SendKeys(chromedp.ID("password"), demoPassword),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.results")),
	)
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("sign-in: %v (at %s)", err, loc)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "Cholesterol in HDL") || !strings.Contains(text, "63") {
		t.Fatalf("labs page lacks the result sent over HL7 v2:\n%.2000s", text)
	}
	if !strings.Contains(text, "Cholesterol [Mass/volume]") || !strings.Contains(text, "187") {
		t.Fatalf("labs page lacks the new result:\n%.2000s", text)
	}
	row, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll("tr")].map(r => r.innerText).find(t => t.includes("187")) || ""`))
	if err != nil || !strings.Contains(row, member.Name) {
		t.Fatalf("the new result's row %q does not name its source member %q (%v)", row, member.Name, err)
	}
	for _, other := range []string{region.members[1].Name, region.members[2].Name} {
		if !strings.Contains(text, other) {
			t.Errorf("labs page shows no result from %s, though Ana is known there", other)
		}
	}
	testkit.Screenshot(t, ctx, "thin-slice-labs")
}

var _ = fmt.Sprint

// TestDemoReseedWithFreshDataDir runs the demo's seeding again against the same database
// from an empty data dir (a fresh clone beside a running PostgreSQL): nothing is seeded
// twice, and every member again has client credentials that get a token.
func TestDemoReseedWithFreshDataDir(t *testing.T) {
	m := demoEnv(t)
	region := demoRegion(m.cfg.DemoSeed)
	m.cfg.DataDir = t.TempDir()
	created, err := region.seed(context.Background(), m)
	if err != nil || created {
		t.Fatalf("second seed: created=%v, %v; want false, nil", created, err)
	}
	for _, dm := range region.members {
		token(t, m, dm.ID)
	}
}
