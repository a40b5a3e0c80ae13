package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/testkit"
	"github.com/concord-hie/concord/notify"
	"github.com/concord-hie/concord/records"
)

// syntheaMRN is the MRN assigning authority of the Synthea sample bundles
// (Patient.identifier with type MR).
const syntheaMRN = "http://hospital.smarthealthit.org"

// writeEnv is a migrated database, the exchange on an httptest server, and two members:
// A (the Synthea MRN authority) and B.
type writeEnv struct {
	pool   *pgxpool.Pool
	srv    *Server
	base   string
	a, b   directory.Member
	key    []byte
	issuer string
}

func newWriteEnv(t testing.TB) *writeEnv {
	t.Helper()
	return newWriteEnvOver(t, func(*pgxpool.Pool) records.AuditLog { return &memAudit{} })
}

// newWriteEnvOver is newWriteEnv with the audit log mkLog makes over the test database
// and the exchange mounted behind mw.
func newWriteEnvOver(t testing.TB, mkLog func(*pgxpool.Pool) records.AuditLog, mw ...echo.MiddlewareFunc) *writeEnv {
	t.Helper()
	pool := testkit.DB(t)
	ctx := context.Background()
	dir := directory.NewStore(pool)
	a, err := dir.AddMember(ctx, "Synthea Hospital", syntheaMRN)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dir.AddMember(ctx, "Other Clinic", "urn:oid:2.16.840.1.113883.3.7777")
	if err != nil {
		t.Fatal(err)
	}
	env := &writeEnv{pool: pool, a: a, b: b, key: bytes.Repeat([]byte("k"), 32), issuer: "http://concord.test"}
	registerTestClients(t, pool)
	toks := newTokens(t, dir, env.key, env.issuer, env.issuer+"/token", 0)
	mpi, matcher := newMatcher(t, pool)
	fs := store.New(pool)
	srv := New(Config{BaseURL: env.issuer, MaxBodyBytes: 8 << 20}, Deps{Pool: pool, Directory: dir, Tokens: toks, FHIR: fs, MPI: mpi, Matcher: matcher,
		Records: records.New(fs, mpi, defaultDirectives{}, mkLog(pool), nil), Notify: notify.NewStore(nil), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	hs := httptest.NewServer(mountExchange(srv, mw...))
	t.Cleanup(hs.Close)
	env.srv, env.base = srv, hs.URL+"/fhir"
	return env
}

// create POSTs body to path (relative to the FHIR base) with tok and returns the new id,
// failing the test unless the answer is 201.
func (env *writeEnv) create(t testing.TB, tok, path string, body []byte) string {
	t.Helper()
	st, b, _ := do(t, "POST", env.base+path, tok, body)
	if st != http.StatusCreated {
		t.Fatalf("POST %s = %d %s", path, st, b)
	}
	return idOf(t, b)
}

// token mints an access token as directory.Tokens would issue it.
func (env *writeEnv) token(t testing.TB, member, scope string) string {
	t.Helper()
	return mintToken(t, env.key, env.issuer, "client-"+member, member, scope, "TREAT", 5*time.Minute)
}

func do(t testing.TB, method, u, tok string, body []byte, header ...string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, u, bytes.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	req.Header.Set("Authorization", "Bearer "+tok)
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

func (env *writeEnv) count(t testing.TB, member, typ string) int {
	t.Helper()
	var n int
	if err := env.pool.QueryRow(context.Background(), `SELECT count(*) FROM fhir_resources WHERE member_id = $1 AND type = $2 AND NOT deleted`, member, typ).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

const allScopes = "system/*.cruds"

func idOf(t testing.TB, body []byte) string {
	t.Helper()
	var r struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.ID == "" {
		t.Fatalf("no id in %s", body)
	}
	return r.ID
}

func patientJSON(mrn string) []byte {
	return []byte(`{"resourceType":"Patient","identifier":[{"system":"` + syntheaMRN + `","value":"` + mrn + `"}],"name":[{"family":"Test","given":["Ada"]}],"gender":"female","birthDate":"1970-01-01"}`)
}

func obsJSON(id, patient, value string) []byte {
	idPart := ""
	if id != "" {
		idPart = `"id":"` + id + `",`
	}
	return []byte(`{"resourceType":"Observation",` + idPart + `"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"Patient/` + patient + `"},"valueString":"` + value + `"}`)
}

func TestUpdateDeleteVreadHistory(t *testing.T) {
	env := newWriteEnv(t)
	ta, tb := env.token(t, env.a.ID, allScopes), env.token(t, env.b.ID, allScopes)
	pid := env.create(t, ta, "/Patient", patientJSON("mrn-1"))
	oid := env.create(t, ta, "/Observation", obsJSON("", pid, "one"))

	st, body, h := do(t, "PUT", env.base+"/Observation/"+oid, ta, obsJSON(oid, pid, "two"), "If-Match", `W/"1"`)
	if st != 200 || h.Get("ETag") != `W/"2"` || !strings.Contains(string(body), `"two"`) {
		t.Fatalf("PUT If-Match 1 = %d %s %q", st, body, h.Get("ETag"))
	}
	if st, body, _ = do(t, "PUT", env.base+"/Observation/"+oid, ta, obsJSON(oid, pid, "three"), "If-Match", `W/"1"`); st != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match = %d %s; want 412", st, body)
	}
	// B can neither update nor delete A's resource, and it answers like an unknown id.
	stB, bodyB, _ := do(t, "PUT", env.base+"/Observation/"+oid, tb, obsJSON(oid, pid, "evil"))
	stU, bodyU, _ := do(t, "PUT", env.base+"/Observation/nosuchid", tb, obsJSON("nosuchid", pid, "evil"))
	if stB != 404 || stU != 404 || string(bodyB) != string(bodyU) {
		t.Fatalf("cross-member PUT = %d %s; unknown = %d %s; want identical 404s", stB, bodyB, stU, bodyU)
	}
	if st, _, _ = do(t, "DELETE", env.base+"/Observation/"+oid, tb, nil); st != 204 || env.count(t, env.a.ID, "Observation") != 1 {
		t.Fatalf("cross-member DELETE = %d, count %d; want 204 and nothing deleted", st, env.count(t, env.a.ID, "Observation"))
	}
	// A cannot move its Observation into a Patient that is not its own.
	if st, body, _ = do(t, "PUT", env.base+"/Observation/"+oid, ta, obsJSON(oid, "nosuchpatient", "x")); st != 400 {
		t.Fatalf("PUT into a foreign compartment = %d %s; want 400", st, body)
	}
	// Scopes are checked per interaction.
	if st, _, _ = do(t, "PUT", env.base+"/Observation/"+oid, env.token(t, env.a.ID, "system/Observation.crs"), obsJSON(oid, pid, "x")); st != 403 {
		t.Fatalf("PUT without u scope = %d; want 403", st)
	}

	if st, _, _ = do(t, "DELETE", env.base+"/Observation/"+oid, ta, nil); st != 204 {
		t.Fatalf("DELETE = %d", st)
	}
	var idx int
	env.pool.QueryRow(context.Background(), `SELECT count(*) FROM fhir_idx_token WHERE type = 'Observation' AND id = $1`, oid).Scan(&idx)
	if env.count(t, env.a.ID, "Observation") != 0 || idx != 0 {
		t.Fatalf("after DELETE: %d current, %d index rows; want 0, 0", env.count(t, env.a.ID, "Observation"), idx)
	}
	if st, body, _ = do(t, "GET", env.base+"/Observation/"+oid+"/_history/1", ta, nil); st != 200 || !strings.Contains(string(body), `"one"`) {
		t.Fatalf("vread 1 = %d %s", st, body)
	}
	if st, _, _ = do(t, "GET", env.base+"/Observation/"+oid+"/_history/3", ta, nil); st != 410 {
		t.Fatalf("vread of the deletion = %d; want 410", st)
	}
	if st, _, _ = do(t, "GET", env.base+"/Observation/"+oid+"/_history/1", tb, nil); st != 404 {
		t.Fatalf("vread by another member = %d; want 404", st)
	}
	st, body, _ = do(t, "GET", env.base+"/Observation/"+oid+"/_history", ta, nil)
	var hist struct {
		Type  string `json:"type"`
		Entry []struct {
			Request struct{ Method string } `json:"request"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &hist); st != 200 || err != nil || hist.Type != "history" || len(hist.Entry) != 3 ||
		hist.Entry[0].Request.Method != "DELETE" || hist.Entry[2].Request.Method != "POST" {
		t.Fatalf("history = %d %s", st, body)
	}
	if st, _, _ = do(t, "GET", env.base+"/Observation/"+oid+"/_history", tb, nil); st != 404 {
		t.Fatalf("history by another member = %d; want 404", st)
	}
	// A deleted resource cannot be updated back into existence by PUT.
	if st, _, _ = do(t, "PUT", env.base+"/Observation/"+oid, ta, obsJSON(oid, pid, "again")); st != 404 {
		t.Fatalf("PUT of a deleted resource = %d; want 404", st)
	}
}

func TestConditionalCreateConcurrent(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	org := []byte(`{"resourceType":"Organization","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"1234567893"}],"name":"Lab"}`)
	const n = 8
	var wg sync.WaitGroup
	statuses := make([]int, n)
	ids := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			st, body, _ := do(t, "POST", env.base+"/Organization", ta, org, "If-None-Exist", "identifier=http://hl7.org/fhir/sid/us-npi|1234567893")
			statuses[i] = st
			if st < 300 {
				ids[i] = idOf(t, body)
			}
		}(i)
	}
	wg.Wait()
	created := 0
	for i := range statuses {
		if statuses[i] == 201 {
			created++
		} else if statuses[i] != 200 {
			t.Fatalf("conditional create %d = %d", i, statuses[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("ids differ: %v", ids)
		}
	}
	if created != 1 || env.count(t, env.a.ID, "Organization") != 1 {
		t.Fatalf("%d created, %d stored; want exactly 1", created, env.count(t, env.a.ID, "Organization"))
	}
	// Idempotency-Key on a plain create: a retry gets the first reply, nothing new.
	obs := obsJSON("", "", "x")
	obs = []byte(strings.Replace(string(obs), `,"subject":{"reference":"Patient/"}`, "", 1))
	st1, b1, h1 := do(t, "POST", env.base+"/Observation", ta, obs, "Idempotency-Key", "retry-1")
	st2, b2, h2 := do(t, "POST", env.base+"/Observation", ta, obs, "Idempotency-Key", "retry-1")
	if st1 != 201 || st2 != 201 || string(b1) != string(b2) || h1.Get("Location") != h2.Get("Location") || env.count(t, env.a.ID, "Observation") != 1 {
		t.Fatalf("idempotent create: %d %d, same body %v, %d stored", st1, st2, string(b1) == string(b2), env.count(t, env.a.ID, "Observation"))
	}
	// Another member's matching resource is not a match: B gets its own.
	if st, _, _ := do(t, "POST", env.base+"/Organization", env.token(t, env.b.ID, allScopes), org, "If-None-Exist", "identifier=http://hl7.org/fhir/sid/us-npi|1234567893"); st != 201 {
		t.Fatalf("B's conditional create = %d; want 201", st)
	}
	// Two matches: 412.
	if _, err := env.pool.Exec(context.Background(), `INSERT INTO fhir_resources SELECT type, 'dup', version, member_id, patient_id, last_updated, deleted, body FROM fhir_resources WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := env.pool.Exec(context.Background(), `INSERT INTO fhir_idx_token SELECT type, 'dup', param, system, code, patient_id, last_updated FROM fhir_idx_token WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	if st, body, _ := do(t, "POST", env.base+"/Organization", ta, org, "If-None-Exist", "identifier=http://hl7.org/fhir/sid/us-npi|1234567893"); st != 412 {
		t.Fatalf("two matches = %d %s; want 412", st, body)
	}
}

// TestPatientCreateConcurrent: creates of one MRN racing each other store one Patient,
// which every answer names and the MPI links; without the MRN lock each saw no source
// record, stored its own Patient and all but one were left outside the MPI.
func TestPatientCreateConcurrent(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	const n = 8
	var wg sync.WaitGroup
	statuses, ids := make([]int, n), make([]string, n)
	for i := range n {
		wg.Go(func() {
			st, body, _ := do(t, "POST", env.base+"/Patient", ta, patientJSON("race-1"))
			statuses[i] = st
			if st < 300 {
				ids[i] = idOf(t, body)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if statuses[i] != 201 && statuses[i] != 200 || ids[i] != ids[0] {
			t.Fatalf("statuses %v, ids %v; want one Patient named by every answer", statuses, ids)
		}
	}
	if got := env.count(t, env.a.ID, "Patient"); got != 1 {
		t.Fatalf("%d Patients stored; want 1", got)
	}
	if st, body, _ := do(t, "POST", env.base+"/Observation", ta, obsJSON("", ids[0], "x")); st != 201 {
		t.Fatalf("POST Observation for the Patient = %d %s", st, body)
	}
}

// TestPatientUpdateLocksMRNFirst: intake takes a Patient's MRN lock and then writes its
// row, so an update must take them in that order too. Here a create holds the MRN lock
// while an update of the same Patient runs, then reaches for the row: with the update
// holding the row and waiting for the MRN, that was a deadlock.
func TestPatientUpdateLocksMRNFirst(t *testing.T) {
	env := newWriteEnv(t)
	ctx := context.Background()
	pid := env.create(t, env.token(t, env.a.ID, allScopes), "/Patient", patientJSON("lock-1"))
	creating, err := env.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer creating.Rollback(ctx)
	if err := env.srv.FHIR.LockConditions(ctx, creating, env.a.ID, []string{mrnLockKey(identifier{System: syntheaMRN, Value: "lock-1"})}); err != nil {
		t.Fatal(err)
	}
	updated := make(chan error, 1)
	go func() {
		tx, err := env.pool.Begin(ctx)
		if err != nil {
			updated <- err
			return
		}
		defer tx.Rollback(ctx)
		body := strings.Replace(string(patientJSON("lock-1")), `{"resourceType":"Patient",`, `{"resourceType":"Patient","id":"`+pid+`",`, 1)
		if _, err = env.srv.update(ctx, tx, env.a, "Patient", pid, fhir.MustParse([]byte(body)), ""); err == nil {
			err = tx.Commit(ctx)
		}
		updated <- err
	}()
	time.Sleep(300 * time.Millisecond) // the update is waiting for the MRN now
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := env.srv.FHIR.Lock(lctx, creating, "Patient", pid); err != nil {
		t.Fatalf("the create reaching for the Patient's row: %v", err)
	}
	if err := creating.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-updated; err != nil {
		t.Fatalf("the update: %v", err)
	}
}

type txResponse struct {
	Type  string `json:"type"`
	Entry []struct {
		Response struct {
			Status   string          `json:"status"`
			Location string          `json:"location"`
			Outcome  json.RawMessage `json:"outcome"`
		} `json:"response"`
	} `json:"entry"`
}

func TestTransactionAndBatch(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	ctx := context.Background()
	// An existing Practitioner for the conditional reference.
	if st, body, _ := do(t, "POST", env.base+"/Practitioner", ta, []byte(`{"resourceType":"Practitioner","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"123"}]}`)); st != 201 {
		t.Fatalf("POST Practitioner = %d %s", st, body)
	}
	tx := func(extra string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:11111111-1111-1111-1111-111111111111","resource":{"resourceType":"Patient","identifier":[{"system":"` + syntheaMRN + `","value":"tx-1"}],"name":[{"family":"Tx"}]},"request":{"method":"POST","url":"Patient"}},
		{"fullUrl":"urn:uuid:22222222-2222-2222-2222-222222222222","resource":{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"urn:uuid:11111111-1111-1111-1111-111111111111"},"participant":[{"individual":{"reference":"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123"}}]},"request":{"method":"POST","url":"Encounter"}},
		{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:11111111-1111-1111-1111-111111111111"},"encounter":{"reference":"urn:uuid:22222222-2222-2222-2222-222222222222"}},"request":{"method":"POST","url":"Observation"}}` + extra + `]}`)
	}
	// A failing entry (a reference to no entry) fails the whole transaction.
	bad := tx(`,{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:33333333-3333-3333-3333-333333333333"}},"request":{"method":"POST","url":"Observation"}}`)
	st, body, _ := do(t, "POST", env.base, ta, bad)
	if st != 400 || !strings.Contains(string(body), "Bundle.entry[3]") || env.count(t, env.a.ID, "Patient")+env.count(t, env.a.ID, "Encounter") != 0 {
		t.Fatalf("bad transaction = %d %s; patients %d", st, body, env.count(t, env.a.ID, "Patient"))
	}
	// One denied entry (no Encounter scope) fails the whole transaction, nothing written.
	st, body, _ = do(t, "POST", env.base, env.token(t, env.a.ID, "system/Patient.c system/Observation.c"), tx(""))
	if st != 403 || env.count(t, env.a.ID, "Patient") != 0 {
		t.Fatalf("denied entry = %d %s; patients %d", st, body, env.count(t, env.a.ID, "Patient"))
	}
	good := tx("")
	st, body, _ = do(t, "POST", env.base, ta, good, "Idempotency-Key", "k1")
	var resp txResponse
	if err := json.Unmarshal(body, &resp); st != 200 || err != nil || resp.Type != "transaction-response" || len(resp.Entry) != 3 || resp.Entry[0].Response.Status != "201 Created" {
		t.Fatalf("transaction = %d %s", st, body)
	}
	pid := strings.Split(resp.Entry[0].Response.Location, "/")[1]
	eid := strings.Split(resp.Entry[1].Response.Location, "/")[1]
	var subj, enc, pract int
	env.pool.QueryRow(ctx, `SELECT count(*) FROM fhir_idx_ref WHERE type = 'Observation' AND ref_type = 'Patient' AND ref_id = $1`, pid).Scan(&subj)
	env.pool.QueryRow(ctx, `SELECT count(*) FROM fhir_idx_ref WHERE type = 'Observation' AND ref_type = 'Encounter' AND ref_id = $1`, eid).Scan(&enc)
	env.pool.QueryRow(ctx, `SELECT count(*) FROM fhir_resources r WHERE type = 'Encounter' AND id = $1 AND convert_from(body, 'UTF8') LIKE '%"Practitioner/%' AND convert_from(body, 'UTF8') NOT LIKE '%?identifier%'`, eid).Scan(&pract)
	if subj == 0 || enc != 1 || pract != 1 {
		t.Fatalf("references not rewritten: subject %d, encounter %d, practitioner %d", subj, enc, pract)
	}
	// The Encounter created by the bulk path queued its event like Ingest does.
	var events int
	env.pool.QueryRow(ctx, `SELECT count(*) FROM outbox_events WHERE payload::text LIKE '%' || $1 || '%'`, eid).Scan(&events)
	if events != 1 {
		t.Fatalf("outbox events for the Encounter = %d; want 1", events)
	}
	// The same Idempotency-Key returns the first response and writes nothing.
	st, body2, _ := do(t, "POST", env.base, ta, good, "Idempotency-Key", "k1")
	if st != 200 || string(body2) != string(body) || env.count(t, env.a.ID, "Observation") != 1 {
		t.Fatalf("repeat = %d, same body %v, observations %d", st, string(body2) == string(body), env.count(t, env.a.ID, "Observation"))
	}
	// The same Organization twice in one transaction is stored once; a duplicate fullUrl
	// is refused.
	org := `{"resourceType":"Organization","identifier":[{"system":"urn:x","value":"o1"}]}`
	twice := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"fullUrl":"urn:uuid:44444444-4444-4444-4444-444444444444","resource":` + org + `,"request":{"method":"POST","url":"Organization"}},
		{"fullUrl":"urn:uuid:55555555-5555-5555-5555-555555555555","resource":` + org + `,"request":{"method":"POST","url":"Organization"}}]}`)
	st, body, _ = do(t, "POST", env.base, ta, twice)
	resp = txResponse{}
	if err := json.Unmarshal(body, &resp); st != 200 || err != nil || len(resp.Entry) != 2 || resp.Entry[0].Response.Location != resp.Entry[1].Response.Location || env.count(t, env.a.ID, "Organization") != 1 {
		t.Fatalf("same Organization twice = %d %s; %d stored", st, body, env.count(t, env.a.ID, "Organization"))
	}
	if st, _, _ := do(t, "POST", env.base, ta, bytes.ReplaceAll(twice, []byte("55555555-5555-5555-5555-555555555555"), []byte("44444444-4444-4444-4444-444444444444"))); st != 400 {
		t.Fatalf("duplicate fullUrl = %d; want 400", st)
	}
	// GET entries are for batches only.
	if st, _, _ := do(t, "POST", env.base, ta, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"Patient/`+pid+`"}}]}`)); st != 400 {
		t.Fatalf("GET in a transaction = %d; want 400", st)
	}
	// A conditional reference that matches nothing: 412, nothing written.
	st, _, _ = do(t, "POST", env.base, ta, bytes.Replace(good, []byte("us-npi|123"), []byte("us-npi|999"), 1), "Idempotency-Key", "k2")
	if st != 412 || env.count(t, env.a.ID, "Observation") != 1 {
		t.Fatalf("unmatched conditional reference = %d; observations %d", st, env.count(t, env.a.ID, "Observation"))
	}

	// Batch: each entry alone; the bad one answers with an outcome, the good ones commit.
	batch := []byte(`{"resourceType":"Bundle","type":"batch","entry":[
		{"resource":` + string(obsJSON("", pid, "b1")) + `,"request":{"method":"POST","url":"Observation"}},
		{"resource":` + string(obsJSON("", "nosuch", "b2")) + `,"request":{"method":"POST","url":"Observation"}},
		{"request":{"method":"DELETE","url":"Encounter/` + eid + `"}},
		{"request":{"method":"GET","url":"Patient/` + pid + `"}},
		{"request":{"method":"GET","url":"Patient/nosuch"}}]}`)
	st, body, _ = do(t, "POST", env.base, ta, batch)
	resp = txResponse{}
	if err := json.Unmarshal(body, &resp); st != 200 || err != nil || resp.Type != "batch-response" || len(resp.Entry) != 5 ||
		resp.Entry[0].Response.Status != "201 Created" || !strings.HasPrefix(resp.Entry[1].Response.Status, "400") || resp.Entry[1].Response.Outcome == nil ||
		resp.Entry[2].Response.Status != "204 No Content" || resp.Entry[3].Response.Status != "200 OK" || !strings.Contains(string(body), `"id":"`+pid+`"`) ||
		!strings.HasPrefix(resp.Entry[4].Response.Status, "404") {
		t.Fatalf("batch = %d %s", st, body)
	}
	if env.count(t, env.a.ID, "Observation") != 2 || env.count(t, env.a.ID, "Encounter") != 0 {
		t.Fatalf("after batch: observations %d encounters %d; want 2, 0", env.count(t, env.a.ID, "Observation"), env.count(t, env.a.ID, "Encounter"))
	}
	// The bulk path labels like Ingest: an HIV test result gets the HIV and R labels.
	hiv := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"7918-6"}]},"subject":{"reference":"Patient/` + pid + `"}},"request":{"method":"POST","url":"Observation"}}]}`)
	st, body, _ = do(t, "POST", env.base, ta, hiv)
	resp = txResponse{}
	if err := json.Unmarshal(body, &resp); st != 200 || err != nil || len(resp.Entry) != 1 {
		t.Fatalf("HIV transaction = %d %s", st, body)
	}
	var stored []byte
	env.pool.QueryRow(ctx, `SELECT body FROM fhir_resources WHERE type = 'Observation' AND id = $1`, strings.Split(resp.Entry[0].Response.Location, "/")[1]).Scan(&stored)
	if !strings.Contains(string(stored), `"code":"HIV"`) || !strings.Contains(string(stored), `"code":"R"`) {
		t.Fatalf("bulk-created HIV result is not labelled: %s", stored)
	}
}

// syntheaFiles returns the raw Synthea bundles, or skips.
func syntheaFiles(t testing.TB) []string {
	t.Helper()
	dir := filepath.Join(testkit.RepoRoot(t), "..", "shared", "data", "synthea", "bundles")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Skipf("no Synthea bundles in %s", dir)
	}
	sort.Strings(files)
	return files
}

// inputCounts counts the entries per resource type of bundles, and the distinct
// Organization and Practitioner identifiers.
func inputCounts(t testing.TB, files []string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	distinct := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var bundle struct {
			Entry []struct {
				Resource struct {
					ResourceType string       `json:"resourceType"`
					Identifier   []identifier `json:"identifier"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			t.Fatal(err)
		}
		for _, e := range bundle.Entry {
			r := e.Resource
			if directoryTypes[r.ResourceType] && len(r.Identifier) > 0 {
				k := r.ResourceType + "|" + r.Identifier[0].System + "|" + r.Identifier[0].Value
				if !distinct[k] {
					distinct[k] = true
					counts[r.ResourceType]++
				}
				continue
			}
			counts[r.ResourceType]++
		}
	}
	return counts
}

func TestSyntheaBundles(t *testing.T) {
	files := syntheaFiles(t)
	if testing.Short() {
		files = files[:4]
	}
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if st, body, _ := do(t, "POST", env.base, ta, b); st != 200 {
			t.Fatalf("%s: %d %.500s", filepath.Base(f), st, body)
		}
	}
	want := inputCounts(t, files)
	for typ, n := range want {
		if got := env.count(t, env.a.ID, typ); got != n {
			t.Errorf("%s: %d stored, want %d", typ, got, n)
		}
	}
	// Sending a bundle again, byte for byte or with a new Idempotency-Key, creates no
	// new Patient, Organization or Practitioner; the byte-identical resend writes nothing.
	var before int
	env.pool.QueryRow(context.Background(), `SELECT count(*) FROM fhir_history`).Scan(&before)
	b, _ := os.ReadFile(files[0])
	if st, body, _ := do(t, "POST", env.base, ta, b); st != 200 {
		t.Fatalf("resend: %d %.300s", st, body)
	}
	var after int
	env.pool.QueryRow(context.Background(), `SELECT count(*) FROM fhir_history`).Scan(&after)
	if after != before {
		t.Fatalf("byte-identical resend wrote %d versions", after-before)
	}
	if st, body, _ := do(t, "POST", env.base, ta, b, "Idempotency-Key", "again"); st != 200 {
		t.Fatalf("resend with a new key: %d %.300s", st, body)
	}
	for _, typ := range []string{"Patient", "Organization", "Practitioner"} {
		if got := env.count(t, env.a.ID, typ); got != want[typ] {
			t.Errorf("after resend %s: %d, want %d", typ, got, want[typ])
		}
	}
}

// BenchmarkSyntheaLoad posts raw Synthea bundles (S7) through the HTTP API, 1 and 4 at a
// time; one op is one bundle. Each post carries a fresh Idempotency-Key, so repeats are
// written again (Patients updated by MRN, directory resources matched by identifier).
//
//	go test -run '^$' -bench SyntheaLoad -benchtime 40x ./exchange/
func BenchmarkSyntheaLoad(b *testing.B) {
	files := syntheaFiles(b)
	bodies := make([][]byte, len(files))
	entries := make([]int, len(files))
	for i, f := range files {
		var err error
		if bodies[i], err = os.ReadFile(f); err != nil {
			b.Fatal(err)
		}
		entries[i] = bytes.Count(bodies[i], []byte(`"request"`))
	}
	for _, conc := range []int{1, 4} {
		b.Run("concurrent="+itoa(conc), func(b *testing.B) {
			env := newWriteEnv(b)
			tok := env.token(b, env.a.ID, allScopes)
			var mu sync.Mutex
			next, total, failed := 0, 0, 0
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						mu.Lock()
						if next >= b.N {
							mu.Unlock()
							return
						}
						i := next % len(bodies)
						next++
						mu.Unlock()
						st, _, _ := do(b, "POST", env.base, tok, bodies[i], "Idempotency-Key", testkit.RandomID(8))
						mu.Lock()
						if st != 200 {
							failed++
						} else {
							total += entries[i]
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.ReportMetric(float64(total)/el.Seconds(), "resources/s")
			b.ReportMetric(float64(failed), "errors")
		})
	}
}

// TestSyntheaBundlesConcurrent loads every bundle four at a time: the Organizations and
// Practitioners shared between bundles must still be stored once each (the conditions
// are serialized), and no bundle may fail.
func TestSyntheaBundlesConcurrent(t *testing.T) {
	files := syntheaFiles(t)
	if testing.Short() {
		files = files[:8]
	}
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				b, err := os.ReadFile(f)
				if err != nil {
					panic(err)
				}
				if st, body, _ := do(t, "POST", env.base, ta, b); st != 200 {
					mu.Lock()
					failures = append(failures, filepath.Base(f)+": "+itoa(st)+" "+string(body[:min(len(body), 300)]))
					mu.Unlock()
				}
			}
		}()
	}
	for _, f := range files {
		work <- f
	}
	close(work)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d bundles failed: %v", len(failures), failures)
	}
	want := inputCounts(t, files)
	for typ, n := range want {
		if got := env.count(t, env.a.ID, typ); got != n {
			t.Errorf("%s: %d stored, want %d", typ, got, n)
		}
	}
}

// TestConditionalUpdateAndDelete: PUT Organization?identifier= creates once (201), then
// updates the same resource (200, If-Match honoured), concurrent upserts leave one
// resource; another member's resource never matches; DELETE Organization?identifier= deletes
// it (204), and a condition matching nothing is 204 too; bad conditions are 400.
func TestConditionalUpdateAndDelete(t *testing.T) {
	env := newWriteEnv(t)
	ta, tb := env.token(t, env.a.ID, allScopes), env.token(t, env.b.ID, allScopes)
	const cond = "?identifier=http://hl7.org/fhir/sid/us-npi|1234567893"
	org := func(name string) []byte {
		return []byte(`{"resourceType":"Organization","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"1234567893"}],"name":"` + name + `"}`)
	}
	const n = 6
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			statuses[i], _, _ = do(t, "PUT", env.base+"/Organization"+cond, ta, org("Lab"))
		}(i)
	}
	wg.Wait()
	created := 0
	for _, st := range statuses {
		switch st {
		case 201:
			created++
		case 200:
		default:
			t.Fatalf("concurrent conditional updates: %v", statuses)
		}
	}
	if created != 1 || env.count(t, env.a.ID, "Organization") != 1 {
		t.Fatalf("%d created, %d stored; want exactly 1", created, env.count(t, env.a.ID, "Organization"))
	}
	// The upserts after the first sent the content it stored: no new version (a no-op).
	st, body, h := do(t, "PUT", env.base+"/Organization"+cond, ta, org("Lab renamed"))
	if st != 200 || !strings.Contains(string(body), "Lab renamed") || h.Get("ETag") != `W/"2"` {
		t.Fatalf("update by condition = %d %s %q", st, body, h.Get("ETag"))
	}
	id := idOf(t, body)
	if st, _, _ := do(t, "PUT", env.base+"/Organization"+cond, ta, org("stale"), "If-Match", `W/"1"`); st != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match = %d; want 412", st)
	}
	wrongID := []byte(strings.Replace(string(org("x")), `"resourceType":"Organization",`, `"resourceType":"Organization","id":"other",`, 1))
	if st, _, _ := do(t, "PUT", env.base+"/Organization"+cond, ta, wrongID); st != 400 {
		t.Fatalf("a body id that is not the match = %d; want 400", st)
	}
	// B's condition does not see A's resource: it creates its own.
	if st, _, _ := do(t, "PUT", env.base+"/Organization"+cond, tb, org("B's lab")); st != 201 {
		t.Fatalf("B's conditional update = %d; want 201", st)
	}
	// Creating by condition needs the create scope.
	if st, _, _ := do(t, "PUT", env.base+"/Organization?identifier=urn:x|new", env.token(t, env.a.ID, "system/Organization.rus"), org("n")); st != 403 {
		t.Fatalf("conditional create without c scope = %d; want 403", st)
	}
	for _, bad := range []string{"", "?name=", "?identifier=a|b&_count=1", "?color=red", "?identifier:missing=true"} {
		if st, _, _ := do(t, "PUT", env.base+"/Organization"+bad, ta, org("x")); st != 400 {
			t.Errorf("condition %q = %d; want 400", bad, st)
		}
	}
	if st, _, _ := do(t, "DELETE", env.base+"/Organization"+cond, ta, nil); st != 204 || env.count(t, env.a.ID, "Organization") != 0 {
		t.Fatalf("conditional delete = %d, %d left", st, env.count(t, env.a.ID, "Organization"))
	}
	if st, _, _ := do(t, "GET", env.base+"/Organization/"+id, ta, nil); st != 410 && st != 404 {
		t.Fatalf("read after the conditional delete = %d", st)
	}
	if st, _, _ := do(t, "DELETE", env.base+"/Organization"+cond, ta, nil); st != 204 || env.count(t, env.b.ID, "Organization") != 1 {
		t.Fatalf("conditional delete matching nothing = %d; B's kept: %d", st, env.count(t, env.b.ID, "Organization"))
	}
}
