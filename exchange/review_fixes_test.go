package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
)

// sharedPerson gives members A and B each a Patient (MRN A1 and B2) of one person, linked
// by linkSamePerson, and returns their TREAT tokens and Patient ids.
func (env *consentEnv) sharedPerson(t *testing.T) (ta, tb, pa, pb string) {
	t.Helper()
	ta = env.tok(t, env.a, allScopes, "TREAT")
	tb = env.tok(t, env.b, allScopes, "TREAT")
	pa = env.patient(t, ta, env.a, "A1")
	pb = env.patient(t, tb, env.b, "B2")
	env.linkSamePerson(t, pa, pb)
	return ta, tb, pa, pb
}

// linkSamePerson links member B's Patient pb to the person behind A's Patient pa, as the
// MPI would after a confident match.
func (env *consentEnv) linkSamePerson(t *testing.T, pa, pb string) {
	t.Helper()
	if _, err := env.pool.Exec(context.Background(), `UPDATE mpi_source_records SET person_id =
		(SELECT person_id FROM mpi_source_records WHERE patient_id = $1) WHERE patient_id = $2`, pa, pb); err != nil {
		t.Fatal(err)
	}
}

// C1: a member cannot rewrite or revoke a directive another member filed for the same person.
func TestConsentOtherMemberCannotOverwrite(t *testing.T) {
	env := newConsentEnv(t)
	ta, tb, pa, pb := env.sharedPerson(t)
	_, body, _ := do(t, "POST", env.base+"/Observation", ta, obsJSON("", pa, "7.1"))
	obs := idOf(t, body)

	st, body, _ := do(t, "POST", env.base+"/Consent", ta, consentJSON("", pa, "active"))
	if st != 201 {
		t.Fatalf("A files an opt-out: %d %s", st, body)
	}
	id := idOf(t, body)
	if st, _, _ := do(t, "GET", env.base+"/Observation/"+obs, tb, nil); st != 404 {
		t.Fatalf("B reads after A's opt-out: %d; want 404", st)
	}
	if st, body, _ := do(t, "PUT", env.base+"/Consent/"+id, tb, consentJSON(id, pb, "inactive")); st != 404 {
		t.Fatalf("B revokes A's directive for the same person: %d %s; want 404", st, body)
	}
	if st, _, _ := do(t, "GET", env.base+"/Observation/"+obs, tb, nil); st != 404 {
		t.Fatalf("B reads after its revocation attempt: %d; want 404 (opt-out still in force)", st)
	}
	// A itself can still change its own directive.
	if st, body, _ := do(t, "PUT", env.base+"/Consent/"+id, ta, consentJSON(id, pa, "inactive")); st != 200 {
		t.Fatalf("A updates its own directive: %d %s; want 200", st, body)
	}
}

// L7: a Consent PUT waits for the directive id's lock before it checks the stored
// directive, so a concurrent save cannot land between its check and its save.
func TestConsentSaveLocksDirectiveBeforeCheck(t *testing.T) {
	env := newConsentEnv(t)
	ta := env.tok(t, env.a, allScopes, "TREAT")
	pa := env.patient(t, ta, env.a, "A1")
	id := env.postConsent(t, ta, pa)
	ctx := context.Background()
	tx, err := env.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := consent.NewStore().LockDirective(ctx, tx, consent.DirectiveID(id)); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		st, _, _ := do(t, "PUT", env.base+"/Consent/"+id, ta, consentJSON(id, pa, "inactive"))
		done <- st
	}()
	select {
	case st := <-done:
		t.Fatalf("PUT answered %d while another transaction held the directive's lock", st)
	case <-time.After(400 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if st := <-done; st != 200 {
		t.Fatalf("PUT after the lock was released: %d; want 200", st)
	}
}

// H6: Consent, AuditEvent, Subscription, Group and Binary are written only through their
// own handlers, never as ordinary resources through the generic paths or bundles.
func TestGenericWritesRefuseOwnHandlerTypes(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	pa := env.create(t, ta, "/Patient", patientJSON("h6"))
	consentRes := string(consentJSON("", pa, "active"))
	audit := `{"resourceType":"AuditEvent","type":{"code":"rest"},"recorded":"2026-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"x"}}}`
	if st, body, _ := do(t, "POST", env.base+"/AuditEvent", ta, []byte(audit)); st < 400 || st >= 500 {
		t.Fatalf("POST AuditEvent: %d %s; want refused", st, body)
	}
	for _, u := range []string{"/Consent/x", "/AuditEvent/x", "/Binary/x"} {
		if st, body, _ := do(t, "DELETE", env.base+u, ta, nil); st != 405 {
			t.Fatalf("DELETE %s: %d %s; want 405", u, st, body)
		}
	}
	if st, body, _ := do(t, "PUT", env.base+"/Binary/x", ta, []byte(`{"resourceType":"Binary","id":"x","contentType":"text/plain","data":"eA=="}`)); st != 405 {
		t.Fatalf("PUT Binary: %d %s; want 405", st, body)
	}
	txn := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + consentRes + `,"request":{"method":"POST","url":"Consent"}}]}`)
	if st, body, _ := do(t, "POST", env.base, ta, txn); st != 400 {
		t.Fatalf("transaction POST Consent: %d %s; want 400", st, body)
	}
	batch := []byte(`{"resourceType":"Bundle","type":"batch","entry":[{"resource":` + audit + `,"request":{"method":"POST","url":"AuditEvent"}},{"resource":{"resourceType":"Group","type":"person","actual":true},"request":{"method":"POST","url":"Group"}}]}`)
	st, body, _ := do(t, "POST", env.base, ta, batch)
	if st != 200 || strings.Count(string(body), `"status":"400`) != 2 {
		t.Fatalf("batch with AuditEvent and Group entries: %d %s; want both entries 400", st, body)
	}
	if n := env.count(t, env.a.ID, "Consent") + env.count(t, env.a.ID, "AuditEvent"); n != 0 {
		t.Fatalf("%d Consent/AuditEvent rows stored as ordinary resources", n)
	}
}

// L2: Consent and Binary history paths and DELETE of a Consent answer explicitly, never
// through the consent read or the generic delete.
func TestConsentHistoryAndDeleteRoutes(t *testing.T) {
	env := newConsentEnv(t)
	ta := env.tok(t, env.a, allScopes, "TREAT")
	pa := env.patient(t, ta, env.a, "A1")
	id := env.postConsent(t, ta, pa)
	reads := env.auditCount(t, audit.Read, `consent = '`+id+`'`)
	for _, u := range []string{"/Consent/" + id + "/_history", "/Consent/" + id + "/_history/1"} {
		st, body, _ := do(t, "GET", env.base+u, ta, nil)
		if st != 405 || !strings.Contains(string(body), "OperationOutcome") {
			t.Fatalf("GET %s: %d %s; want 405 (no Consent history here)", u, st, body)
		}
	}
	if n := env.auditCount(t, audit.Read, `consent = '`+id+`'`); n != reads {
		t.Fatalf("history paths were answered by the consent read (%d new reads)", n-reads)
	}
	if st, body, _ := do(t, "DELETE", env.base+"/Consent/"+id, ta, nil); st != 405 {
		t.Fatalf("DELETE Consent: %d %s; want 405", st, body)
	}
	if st, body, _ := do(t, "GET", env.base+"/Consent/"+id, ta, nil); st != 200 || !strings.Contains(string(body), `"versionId":"1"`) {
		t.Fatalf("directive after DELETE: %d %s; want version 1 unchanged", st, body)
	}
}

// L2: with the document service, GET /fhir/Binary/{id}/_history is answered as history
// (not served: 405), never by readBinary with the id "x/_history".
func TestBinaryHistoryRoute(t *testing.T) {
	de := newDocEnv(t)
	id := de.store(t, "text/plain", []byte("hello"))
	key, issuer := bytes.Repeat([]byte("h"), 32), "http://concord.test"
	d := de.srv.Deps
	d.Tokens = newTokens(t, directory.NewStore(de.srv.Pool), key, issuer, issuer+"/token", 0)
	base := serveExchange(t, New(Config{BaseURL: issuer, MaxBodyBytes: 1 << 20}, d))
	tok := mintToken(t, key, issuer, "client-"+de.a.ID, de.a.ID, allScopes, "TREAT", 5*time.Minute)
	for _, u := range []string{"/Binary/" + id + "/_history", "/Binary/" + id + "/_history/1"} {
		if st, body, _ := do(t, "GET", base+u, tok, nil); st != 405 {
			t.Fatalf("GET %s: %d %s; want 405", u, st, body)
		}
	}
}

// L1: a database failure while looking the Binary up is 503, not "absent" (404). The
// lookup is made to wait on a table lock and then cancelled by the server (57014).
func TestBinaryContentUnavailableIs503(t *testing.T) {
	de := newDocEnv(t)
	id := de.store(t, "text/plain", []byte("hello"))
	ctx := context.Background()
	pool := de.srv.Pool
	hold, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, `LOCK TABLE documents_contents IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	go func() { // cancel the lookup once it waits on the lock
		for range 200 {
			time.Sleep(20 * time.Millisecond)
			var n int
			_ = pool.QueryRow(ctx, `SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%documents_contents%'`).Scan(&n)
			if n > 0 {
				return
			}
		}
	}()
	resp, body, err := de.get(t, id, de.a.ID, "TREAT")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 503 {
		t.Fatalf("Binary read while its row cannot be read: %d %s; want 503", resp.StatusCode, body)
	}
}

// M6: every response of the authenticated FHIR routes carries Cache-Control: no-store,
// including 201 create bodies and idempotent replays.
func TestFHIRResponsesAreNoStore(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	st, body, h := do(t, "POST", env.base+"/Patient", ta, patientJSON("m6"))
	if st != 201 || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("POST Patient: %d, Cache-Control %q; want 201 no-store", st, h.Get("Cache-Control"))
	}
	pa := idOf(t, body)
	for range 2 { // the first reply and its replay
		st, _, h := do(t, "POST", env.base+"/Observation", ta, obsJSON("", pa, "1"), "Idempotency-Key", "m6-key")
		if st != 201 || h.Get("Cache-Control") != "no-store" {
			t.Fatalf("POST Observation: %d, Cache-Control %q; want 201 no-store", st, h.Get("Cache-Control"))
		}
	}
}

// L4: a client cannot add its own source-member tag next to the server's (faked provenance).
func TestClientSourceMemberTagIsDropped(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	_, body, _ := do(t, "POST", env.base+"/Patient", ta, patientJSON("l4"))
	pa := idOf(t, body)
	obs := strings.Replace(string(obsJSON("", pa, "1")), `{"resourceType":"Observation",`,
		`{"resourceType":"Observation","meta":{"tag":[{"system":"https://concord.example/fhir/source-member","code":"`+env.b.ID+`"},{"system":"urn:x","code":"keep"}]},`, 1)
	for _, post := range []func() (int, []byte){
		func() (int, []byte) {
			st, b, _ := do(t, "POST", env.base+"/Observation", ta, []byte(obs))
			return st, b
		},
		func() (int, []byte) {
			st, b, _ := do(t, "POST", env.base, ta, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":`+obs+`,"request":{"method":"POST","url":"Observation"}}]}`))
			if st != 201 && st != 200 {
				return st, b
			}
			var r struct {
				Entry []struct{ Response struct{ Location string } }
			}
			if json.Unmarshal(b, &r) != nil || len(r.Entry) != 1 {
				t.Fatalf("transaction response %s", b)
			}
			st, b, _ = do(t, "GET", env.base+"/"+strings.Split(r.Entry[0].Response.Location, "/_history")[0], ta, nil)
			return 201, b
		},
	} {
		st, body := post()
		if st != 201 {
			t.Fatalf("POST: %d %s", st, body)
		}
		var r struct {
			Meta struct {
				Tag []struct{ System, Code string }
			} `json:"meta"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		var src []string
		kept := false
		for _, tg := range r.Meta.Tag {
			if tg.System == "https://concord.example/fhir/source-member" {
				src = append(src, tg.Code)
			}
			kept = kept || tg.Code == "keep"
		}
		if len(src) != 1 || src[0] != env.a.ID || !kept {
			t.Fatalf("source-member tags %v (other tag kept: %v); want only %s", src, kept, env.a.ID)
		}
	}
}

// M1: an Idempotency-Key reused with a different request is refused (422), never answered
// with the first reply while the new data is dropped; the same request still replays.
func TestIdempotencyKeyReusedWithOtherBody(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	_, body, _ := do(t, "POST", env.base+"/Patient", ta, patientJSON("m1"))
	pa := idOf(t, body)
	st, body, _ := do(t, "POST", env.base+"/Observation", ta, obsJSON("", pa, "1"), "Idempotency-Key", "k1")
	if st != 201 {
		t.Fatalf("first POST: %d %s", st, body)
	}
	first := idOf(t, body)
	if st, body, _ := do(t, "POST", env.base+"/Observation", ta, obsJSON("", pa, "2"), "Idempotency-Key", "k1"); st != 422 {
		t.Fatalf("same key, other body: %d %s; want 422", st, body)
	}
	if st, body, _ := do(t, "POST", env.base+"/Observation", ta, obsJSON("", pa, "1"), "Idempotency-Key", "k1"); st != 201 || idOf(t, body) != first {
		t.Fatalf("same key, same body: %d %s; want the first reply", st, body)
	}
	bundle := func(v string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + string(obsJSON("", pa, v)) + `,"request":{"method":"POST","url":"Observation"}}]}`)
	}
	if st, body, _ := do(t, "POST", env.base, ta, bundle("3"), "Idempotency-Key", "k2"); st != 200 {
		t.Fatalf("first transaction: %d %s", st, body)
	}
	if st, body, _ := do(t, "POST", env.base, ta, bundle("4"), "Idempotency-Key", "k2"); st != 422 {
		t.Fatalf("same key, other transaction: %d %s; want 422", st, body)
	}
	if st, body, _ := do(t, "POST", env.base, ta, bundle("3"), "Idempotency-Key", "k2"); st != 200 {
		t.Fatalf("same key, same transaction: %d %s; want 200 replay", st, body)
	}
	if n := env.count(t, env.a.ID, "Observation"); n != 2 {
		t.Fatalf("%d Observations stored; want 2", n)
	}
}

// M2: once an entry of a batch has committed, a later entry that fails for the database
// is reported in its own response; the batch does not answer 503 as if nothing happened.
func TestBatchReportsUnavailableEntryAfterCommit(t *testing.T) {
	env := newWriteEnv(t)
	ta := env.token(t, env.a.ID, allScopes)
	_, body, _ := do(t, "POST", env.base+"/Patient", ta, patientJSON("m2"))
	pa := idOf(t, body)
	_, body, _ = do(t, "POST", env.base+"/Observation", ta, obsJSON("", pa, "1"))
	locked := idOf(t, body)
	ctx := context.Background()
	hold, err := env.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, `SELECT 1 FROM fhir_resources WHERE id = $1 FOR UPDATE`, locked); err != nil {
		t.Fatal(err)
	}
	go func() { // cancel the PUT's lock wait: the database fails that entry
		for range 200 {
			time.Sleep(20 * time.Millisecond)
			var n int
			_ = env.pool.QueryRow(ctx, `SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%fhir_resources%'`).Scan(&n)
			if n > 0 {
				return
			}
		}
	}()
	batch := []byte(`{"resourceType":"Bundle","type":"batch","entry":[` +
		`{"resource":` + string(obsJSON("", pa, "2")) + `,"request":{"method":"POST","url":"Observation"}},` +
		`{"resource":` + string(obsJSON(locked, pa, "3")) + `,"request":{"method":"PUT","url":"Observation/` + locked + `"}}]}`)
	st, body, _ := do(t, "POST", env.base, ta, batch)
	if st != 200 {
		t.Fatalf("batch with a committed entry and a failed one: %d %s; want 200", st, body)
	}
	var r struct {
		Entry []struct{ Response struct{ Status string } }
	}
	if err := json.Unmarshal(body, &r); err != nil || len(r.Entry) != 2 {
		t.Fatalf("batch-response %s", body)
	}
	if !strings.HasPrefix(r.Entry[0].Response.Status, "201") || !strings.HasPrefix(r.Entry[1].Response.Status, "503") {
		t.Fatalf("entry statuses %q, %q; want 201 and 503", r.Entry[0].Response.Status, r.Entry[1].Response.Status)
	}
}

// H3: a version read and a history read return PHI only after a Read (own-record) audit
// event naming the resource and its person.
func TestVreadAndHistoryAreAudited(t *testing.T) {
	env := newConsentEnv(t)
	ta := env.tok(t, env.a, allScopes, "TREAT")
	tb := env.tok(t, env.b, allScopes, "TREAT")
	pa := env.patient(t, ta, env.a, "A1")
	_, body, _ := do(t, "POST", env.base+"/Observation", ta, obsJSON("", pa, "1"))
	obs := idOf(t, body)
	if st, body, _ := do(t, "PUT", env.base+"/Observation/"+obs, ta, obsJSON(obs, pa, "2")); st != 200 {
		t.Fatalf("PUT: %d %s", st, body)
	}
	cond := `'Observation/` + obs + `' = ANY(resources) AND reason = 'own-record' AND patient <> ''`
	before := env.auditCount(t, audit.Read, cond)
	if st, body, _ := do(t, "GET", env.base+"/Observation/"+obs+"/_history/1", ta, nil); st != 200 || !strings.Contains(string(body), `"1"`) {
		t.Fatalf("vread: %d %s", st, body)
	}
	if n := env.auditCount(t, audit.Read, cond); n != before+1 {
		t.Fatalf("vread wrote %d Read events; want 1", n-before)
	}
	if st, body, _ := do(t, "GET", env.base+"/Observation/"+obs+"/_history", ta, nil); st != 200 || !strings.Contains(string(body), `"history"`) {
		t.Fatalf("history: %d %s", st, body)
	}
	if n := env.auditCount(t, audit.Read, cond); n != before+2 {
		t.Fatalf("history wrote %d Read events; want 1", n-before-1)
	}
	// Another member: 404 for both, nothing disclosed.
	for _, u := range []string{"/_history/1", "/_history"} {
		if st, _, _ := do(t, "GET", env.base+"/Observation/"+obs+u, tb, nil); st != 404 {
			t.Fatalf("B GET %s: %d; want 404", u, st)
		}
	}
}
