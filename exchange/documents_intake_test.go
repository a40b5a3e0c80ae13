package exchange

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/documents/blobstest"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/httpx"
	"github.com/concord-hie/concord/records"
)

// mhdBundle is an IHE MHD ITI-65 Provide Document Bundle: a SubmissionSet List and a
// DocumentReference with its bytes inline, as a transaction.
func mhdBundle(patient string, note []byte, extra ...string) *fhir.Bundle {
	raw := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:7c0e3a80-0000-4000-8000-000000000001","resource":{"resourceType":"List","status":"current","mode":"working",
  "code":{"coding":[{"system":"https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes","code":"submissionset"}]},
  "subject":{"reference":"Patient/%[1]s"},"date":"2024-01-31T10:00:00Z",
  "entry":[{"item":{"reference":"urn:uuid:7c0e3a80-0000-4000-8000-000000000002"}}]},
  "request":{"method":"POST","url":"List"}},
 {"fullUrl":"urn:uuid:7c0e3a80-0000-4000-8000-000000000002","resource":{"resourceType":"DocumentReference","status":"current",
  "type":{"coding":[{"system":"http://loinc.org","code":"18842-5"}]},"subject":{"reference":"Patient/%[1]s"},
  "content":[{"attachment":{"contentType":"text/plain","data":%[2]q}}]},
  "request":{"method":"POST","url":"DocumentReference"}}%[3]s]}`, patient, base64.StdEncoding.EncodeToString(note), strings.Join(extra, ""))
	b, err := fhir.ParseBundle(fhir.MustParse([]byte(raw)))
	if err != nil {
		panic(err)
	}
	return b
}

func TestMHDProvideDocumentBundle(t *testing.T) {
	e := newDocEnv(t)
	ctx := t.Context()
	p := directory.Principal{ClientID: "client-a", MemberID: e.a.ID, Scopes: directory.Scopes{{Context: "system", Resource: "*", Ops: "cruds"}}}
	note := []byte("Discharge summary: stable, home with follow-up.\n")
	countRows := func(sql string) int {
		var n int
		if err := e.srv.Pool.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// S3 down: 503-class error, nothing written.
	e.ft.Set(blobstest.Fault{Down: true})
	if _, err := e.srv.Transaction(ctx, records.Viewer{Client: p.ClientID, Org: p.MemberID, Role: "system"}, p, e.a, mhdBundle(e.patient, note), "header:k1"); errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("S3 down: err = %v, want unavailable", err)
	}
	if n := countRows(`SELECT count(*) FROM fhir_resources WHERE type IN ('List', 'DocumentReference')`) + countRows(`SELECT count(*) FROM documents_metadata`); n != 0 {
		t.Fatalf("%d rows after a failed upload", n)
	}
	e.ft.Clear()

	// The retry with the same key, and a repeat of it, give one document.
	first, err := e.srv.Transaction(ctx, records.Viewer{Client: p.ClientID, Org: p.MemberID, Role: "system"}, p, e.a, mhdBundle(e.patient, note), "header:k1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.srv.Transaction(ctx, records.Viewer{Client: p.ClientID, Org: p.MemberID, Role: "system"}, p, e.a, mhdBundle(e.patient, note), "header:k1")
	if err != nil || string(again) != string(first) {
		t.Fatalf("repeat: %v; same response = %v", err, string(again) == string(first))
	}
	if n := countRows(`SELECT count(*) FROM documents_metadata`); n != 1 {
		t.Errorf("%d documents after a retried submission, want 1", n)
	}
	if n := countRows(`SELECT count(*) FROM fhir_resources WHERE type = 'DocumentReference' AND position('"data"' in convert_from(body, 'UTF8')) = 0`); n != 1 {
		t.Errorf("stored DocumentReference without data: %d, want 1", n)
	}
	if n, err := e.srv.Documents.DanglingReferences(ctx); err != nil || n != 0 {
		t.Errorf("dangling = %d, %v", n, err)
	}

	// A bundle whose last entry fails after the document's object was written: the
	// transaction rolls back (as a crash before COMMIT would), leaving only an orphan
	// object and no row, which GC collects once the grace period has passed.
	orphan := []byte("Another note that never commits.\n")
	bad := mhdBundle(e.patient, orphan, `,{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},
  "subject":{"reference":"Patient/no-such-patient"}},"request":{"method":"POST","url":"Observation"}}`)
	if _, err := e.srv.Transaction(ctx, records.Viewer{Client: p.ClientID, Org: p.MemberID, Role: "system"}, p, e.a, bad, "header:k2"); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("a bundle naming an unknown Patient: err = %v, want invalid", err)
	}
	if _, err := e.srv.Documents.Blobs().Stat(ctx, documents.KeyOf(orphan)); err != nil {
		t.Fatalf("the rolled-back bundle's object should be an orphan in S3: %v", err)
	}
	if n := countRows(`SELECT count(*) FROM documents_metadata`); n != 1 {
		t.Errorf("%d documents after the failed bundle, want 1", n)
	}
	if n, err := e.srv.Documents.DanglingReferences(ctx); err != nil || n != 0 {
		t.Errorf("after the failed bundle: dangling = %d, %v", n, err)
	}
	gc := documents.New(e.srv.Pool, e.srv.FHIR, e.srv.Documents.Blobs(), nil, nil, documents.Config{Grace: time.Nanosecond})
	time.Sleep(1100 * time.Millisecond) // S3 LastModified has one-second resolution
	st, err := gc.CollectGarbage(ctx)
	if err != nil || st.Removed != 1 {
		t.Errorf("GC = %+v, %v; want the one orphan removed", st, err)
	}
	if n, err := e.srv.Documents.DanglingReferences(ctx); err != nil || n != 0 {
		t.Errorf("after GC: dangling = %d, %v", n, err)
	}
}

// TestMHDProvideWithSeparateBinary: an ITI-65 bundle may carry the document as a Binary
// entry that the DocumentReference's attachment.url names by its urn:uuid fullUrl. The url
// is rewritten with the references, so the stored DocumentReference points at the stored
// Binary, the bytes are in S3 once, and a urn naming no entry is refused whole.
func TestMHDProvideWithSeparateBinary(t *testing.T) {
	e := newDocEnv(t)
	ctx := t.Context()
	p := directory.Principal{ClientID: "client-a", MemberID: e.a.ID, Scopes: directory.Scopes{{Context: "system", Resource: "*", Ops: "cruds"}}}
	note := []byte("Referral letter, sent as a separate Binary.\n")
	bundle := func(binURN string) *fhir.Bundle {
		raw := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:7c0e3a80-0000-4000-8000-0000000000d1","resource":{"resourceType":"DocumentReference","status":"current",
  "type":{"coding":[{"system":"http://loinc.org","code":"57133-1"}]},"subject":{"reference":"Patient/%s"},
  "content":[{"attachment":{"contentType":"text/plain","url":"urn:uuid:7c0e3a80-0000-4000-8000-0000000000b1"}}]},
  "request":{"method":"POST","url":"DocumentReference"}},
 {"fullUrl":"%s","resource":{"resourceType":"Binary","contentType":"text/plain","data":%q},
  "request":{"method":"POST","url":"Binary"}}]}`, e.patient, binURN, base64.StdEncoding.EncodeToString(note))
		b, err := fhir.ParseBundle(fhir.MustParse([]byte(raw)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := e.srv.Transaction(ctx, records.Viewer{Client: p.ClientID, Org: p.MemberID, Role: "system"}, p, e.a, bundle("urn:uuid:7c0e3a80-0000-4000-8000-0000000000b9"), "header:sep-bad"); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("attachment naming no entry: %v, want invalid", err)
	}
	if _, err := e.srv.Transaction(ctx, records.Viewer{Client: p.ClientID, Org: p.MemberID, Role: "system"}, p, e.a, bundle("urn:uuid:7c0e3a80-0000-4000-8000-0000000000b1"), "header:sep-1"); err != nil {
		t.Fatal(err)
	}
	var body, binID string
	if err := e.srv.Pool.QueryRow(ctx, `SELECT convert_from(body, 'UTF8') FROM fhir_resources WHERE type = 'DocumentReference' AND member_id = $1`, e.a.ID).Scan(&body); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Pool.QueryRow(ctx, `SELECT id FROM fhir_resources WHERE type = 'Binary' AND member_id = $1`, e.a.ID).Scan(&binID); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(body, "urn:uuid") || !strings.Contains(body, "/Binary/"+binID+`"`) {
		t.Fatalf("stored DocumentReference does not point at the stored Binary %s:\n%s", binID, body)
	}
	if _, err := e.srv.Documents.Blobs().Stat(ctx, documents.KeyOf(note)); err != nil {
		t.Fatalf("the Binary's bytes are not in S3: %v", err)
	}
	if n, err := e.srv.Documents.DanglingReferences(ctx); err != nil || n != 0 {
		t.Errorf("dangling = %d, %v", n, err)
	}
}

// TestReplacementAuditsSupersededTarget: a DocumentReference that replaces another of the
// member's stores a new version of that target (status superseded); the write's audit
// events name the target in an update event, committed with it, on every path that can
// store a replacement (POST, PUT, a transaction's POST and PUT entries). A resent
// replacement writes no version of its target and audits none; a transaction that fails
// after the supersede leaves neither the new version nor an event.
func TestReplacementAuditsSupersededTarget(t *testing.T) {
	e, base, tok := newAuditedDocServer(t)
	pool := e.srv.Pool

	n := 0
	docRef := func(id, replaces string) string { // a new note each time, so no write is a no-op
		n++
		s := `{"resourceType":"DocumentReference",`
		if id != "" {
			s += `"id":"` + id + `",`
		}
		s += `"status":"current","type":{"coding":[{"system":"http://loinc.org","code":"18842-5"}]},"subject":{"reference":"Patient/` + e.patient + `"},`
		if replaces != "" {
			s += `"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/` + replaces + `"}}],`
		}
		return s + `"content":[{"attachment":{"contentType":"text/plain","data":"` + base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "Note %d.\n", n)) + `"}}]}`
	}
	post := func(t *testing.T, body string) string {
		t.Helper()
		st, b, _ := do(t, "POST", base+"/DocumentReference", tok, []byte(body))
		if st != http.StatusCreated {
			t.Fatalf("POST DocumentReference = %d %s", st, b)
		}
		return idOf(t, b)
	}
	transaction := func(t *testing.T, method, url, body string) string {
		t.Helper()
		entry := `{"resource":` + body + `,"request":{"method":"` + method + `","url":"` + url + `"}}`
		st, b, h := do(t, "POST", base, tok, []byte(`{"resourceType":"Bundle","type":"transaction","entry":[`+entry+`]}`))
		if st != http.StatusOK {
			t.Fatalf("transaction %s %s = %d %s", method, url, st, b)
		}
		return h.Get(echo.HeaderXRequestID)
	}
	version := func(t *testing.T, id string) int {
		t.Helper()
		st, err := e.srv.FHIR.Get(t.Context(), nil, "DocumentReference", id)
		if err != nil {
			t.Fatal(err)
		}
		return st.Version
	}
	// targetUpdated reports whether request rid left a permitted update event naming
	// DocumentReference/target, filed under the same person as the write's other events.
	targetUpdated := func(t *testing.T, rid, target string) bool {
		t.Helper()
		evs := eventsOf(t, pool, rid)
		if len(evs) == 0 {
			t.Fatalf("request %s left no audit event", rid)
		}
		for _, ev := range evs {
			if ev.Action == string(audit.Update) && ev.Outcome == string(audit.Permit) && slices.Contains(ev.Resources, "DocumentReference/"+target) {
				if ev.Patient == "" || ev.Patient != evs[0].Patient {
					t.Errorf("request %s: the target's update is filed under %q, the write under %q", rid, ev.Patient, evs[0].Patient)
				}
				return true
			}
		}
		return false
	}

	cases := []struct {
		name  string
		write func(t *testing.T, target string) string // replaces target; returns the request ID
	}{
		{"POST", func(t *testing.T, target string) string {
			_, _, h := do(t, "POST", base+"/DocumentReference", tok, []byte(docRef("", target)))
			return h.Get(echo.HeaderXRequestID)
		}},
		{"PUT", func(t *testing.T, target string) string {
			id := post(t, docRef("", ""))
			st, b, h := do(t, "PUT", base+"/DocumentReference/"+id, tok, []byte(docRef(id, target)))
			if st != http.StatusOK {
				t.Fatalf("PUT = %d %s", st, b)
			}
			return h.Get(echo.HeaderXRequestID)
		}},
		{"transaction POST", func(t *testing.T, target string) string {
			return transaction(t, "POST", "DocumentReference", docRef("", target))
		}},
		{"transaction PUT", func(t *testing.T, target string) string {
			id := post(t, docRef("", ""))
			return transaction(t, "PUT", "DocumentReference/"+id, docRef(id, target))
		}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			target := post(t, docRef("", ""))
			rid := tt.write(t, target)
			if got := version(t, target); got != 2 {
				t.Fatalf("target at version %d after its replacement, want 2 (superseded)", got)
			}
			if !targetUpdated(t, rid, target) {
				t.Errorf("no update event names the superseded DocumentReference/%s: %+v", target, eventsOf(t, pool, rid))
			}
		})
	}

	// A second replacement of a superseded document is refused (409,
	// TestReplaceNotCurrentOutcome): it writes no version of it and no event claims an
	// update.
	target := post(t, docRef("", ""))
	post(t, docRef("", target))
	st, b, h := do(t, "POST", base+"/DocumentReference", tok, []byte(docRef("", target)))
	if st != http.StatusConflict {
		t.Errorf("second replacement = %d %s, want 409", st, b)
	}
	if got := version(t, target); got != 2 {
		t.Fatalf("target at version %d after a second replacement, want 2: %s", got, b)
	}
	for _, ev := range eventsOf(t, pool, h.Get(echo.HeaderXRequestID)) {
		if ev.Action == string(audit.Update) && slices.Contains(ev.Resources, "DocumentReference/"+target) {
			t.Errorf("a replacement that wrote nothing of its target audited an update of it: %+v", ev)
		}
	}

	// A transaction that fails after the supersede: no version, no event, nothing kept.
	target = post(t, docRef("", ""))
	bad := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":` + docRef("", target) + `,"request":{"method":"POST","url":"DocumentReference"}},
		{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/no-such-patient"}},"request":{"method":"POST","url":"Observation"}}]}`
	st, b, h = do(t, "POST", base, tok, []byte(bad))
	if st != http.StatusBadRequest {
		t.Fatalf("failing transaction = %d %s", st, b)
	}
	if got := version(t, target); got != 1 {
		t.Errorf("target at version %d after a failed transaction, want 1", got)
	}
	if evs := eventsOf(t, pool, h.Get(echo.HeaderXRequestID)); len(evs) != 0 {
		t.Errorf("failed transaction left events %+v", evs)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.srv.superseded.mu.Lock()
		left := len(e.srv.superseded.byTx)
		e.srv.superseded.mu.Unlock()
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d transactions' superseded writes kept after their requests ended", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReplaceNotCurrentOutcome: MHD replaces the current version only. A replacement of
// a DocumentReference that another already replaced, or that is entered in error, sent
// by POST or in an ITI-65 transaction Bundle, is answered 409 with an OperationOutcome
// (issue conflict) naming the relatesTo and, by id only, the document to replace
// instead; nothing of it is stored (no resource, no metadata row, no version of the
// target) and no write is audited as done.
func TestReplaceNotCurrentOutcome(t *testing.T) {
	e, base, tok := newAuditedDocServer(t)
	pool := e.srv.Pool
	ctx := t.Context()

	n := 0
	docRef := func(id, status, replaces string) string { // a new note each time
		n++
		s := `{"resourceType":"DocumentReference",`
		if id != "" {
			s += `"id":"` + id + `",`
		}
		s += `"status":"` + status + `","type":{"coding":[{"system":"http://loinc.org","code":"18842-5"}]},"subject":{"reference":"Patient/` + e.patient + `"},`
		if replaces != "" {
			s += `"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/` + replaces + `"}}],`
		}
		return s + `"content":[{"attachment":{"contentType":"text/plain","data":"` + base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "Replacement note %d.\n", n)) + `"}}]}`
	}
	post := func(body string) string {
		t.Helper()
		st, b, _ := do(t, "POST", base+"/DocumentReference", tok, []byte(body))
		if st != http.StatusCreated {
			t.Fatalf("POST DocumentReference = %d %s", st, b)
		}
		return idOf(t, b)
	}
	itiBundle := func(replaces string) string {
		return `{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:7c0e3a80-0000-4000-8000-0000000000e1","resource":{"resourceType":"List","status":"current","mode":"working",
  "code":{"coding":[{"system":"https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes","code":"submissionset"}]},
  "subject":{"reference":"Patient/` + e.patient + `"},"date":"2024-01-31T10:00:00Z",
  "entry":[{"item":{"reference":"urn:uuid:7c0e3a80-0000-4000-8000-0000000000e2"}}]},
  "request":{"method":"POST","url":"List"}},
 {"fullUrl":"urn:uuid:7c0e3a80-0000-4000-8000-0000000000e2","resource":` + docRef("", "current", replaces) + `,
  "request":{"method":"POST","url":"DocumentReference"}}]}`
	}
	counts := func() [3]int {
		var c [3]int
		if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM fhir_resources WHERE type IN ('DocumentReference', 'List')),
			(SELECT count(*) FROM fhir_history), (SELECT count(*) FROM documents_metadata)`).Scan(&c[0], &c[1], &c[2]); err != nil {
			t.Fatal(err)
		}
		return c
	}
	type outcome struct {
		Issue []struct {
			Severity, Code, Diagnostics string
			Expression                  []string
		}
	}

	replaced := post(docRef("", "current", ""))
	current := post(docRef("", "current", replaced))
	cancelled := post(docRef("", "current", ""))
	if st, b, _ := do(t, "PUT", base+"/DocumentReference/"+cancelled, tok, []byte(docRef(cancelled, "entered-in-error", ""))); st != http.StatusOK {
		t.Fatalf("PUT entered-in-error = %d %s", st, b)
	}

	for _, tt := range []struct {
		name, method, url, body, expr, diag string
	}{
		{"POST, superseded", "POST", "/DocumentReference", docRef("", "current", replaced), "DocumentReference.relatesTo[0].target",
			"DocumentReference/" + replaced + " is superseded by DocumentReference/" + current + "; replace the current document"},
		{"POST, entered in error", "POST", "/DocumentReference", docRef("", "current", cancelled), "DocumentReference.relatesTo[0].target",
			"DocumentReference/" + cancelled + " is entered-in-error and cannot be replaced"},
		{"ITI-65, superseded", "POST", "", itiBundle(replaced), "Bundle.entry[1].resource.relatesTo[0].target",
			"DocumentReference/" + replaced + " is superseded by DocumentReference/" + current + "; replace the current document"},
		{"ITI-65, entered in error", "POST", "", itiBundle(cancelled), "Bundle.entry[1].resource.relatesTo[0].target",
			"DocumentReference/" + cancelled + " is entered-in-error and cannot be replaced"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := counts()
			st, b, h := do(t, tt.method, base+tt.url, tok, []byte(tt.body))
			if st != http.StatusConflict {
				t.Fatalf("= %d %s, want 409", st, b)
			}
			var oo outcome
			if err := json.Unmarshal(b, &oo); err != nil || len(oo.Issue) != 1 {
				t.Fatalf("not an OperationOutcome with one issue: %s (%v)", b, err)
			}
			is := oo.Issue[0]
			if is.Severity != "error" || is.Code != "conflict" || is.Diagnostics != tt.diag || !slices.Equal(is.Expression, []string{tt.expr}) {
				t.Errorf("issue %+v, want error conflict %q at %q", is, tt.diag, tt.expr)
			}
			if after := counts(); after != before {
				t.Errorf("rows (resources, history, metadata) %v after the refusal, were %v", after, before)
			}
			for _, ev := range eventsOf(t, pool, h.Get(echo.HeaderXRequestID)) {
				if ev.Outcome == string(audit.Permit) && (ev.Action == string(audit.Create) || ev.Action == string(audit.Update)) {
					t.Errorf("the refused replacement audited a write: %+v", ev)
				}
			}
		})
	}

	// The current one is replaced as before, by POST and by ITI-65.
	third := post(docRef("", "current", current))
	if st, b, _ := do(t, "POST", base, tok, []byte(itiBundle(third))); st != http.StatusOK {
		t.Fatalf("ITI-65 replacing the current document = %d %s", st, b)
	}
	var now int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM documents_metadata WHERE status = 'current'`).Scan(&now); err != nil || now != 1 {
		t.Errorf("%d current documents (%v), want 1: the last replacement", now, err)
	}
}

// newAuditedDocServer is a document env with a real audit log, served over HTTP with
// token checks: it returns the env, the FHIR base URL and a token of member a's client
// for system/*.cruds and TREAT.
func newAuditedDocServer(t *testing.T) (*docEnv, string, string) {
	t.Helper()
	e := newDocEnvAudit(t, func(pool *pgxpool.Pool) records.AuditLog {
		log, err := audit.New(context.Background(), pool, audit.Config{CheckpointEvery: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { log.Close() })
		return log
	})
	e.srv.cfg.MaxBodyBytes = 8 << 20
	key := bytes.Repeat([]byte("k"), 32)
	e.srv.Tokens = newTokens(t, e.srv.Directory, key, "http://concord.test", "http://concord.test/token", 0)
	hs := httptest.NewServer(mountExchange(e.srv, httpx.RequestID()))
	t.Cleanup(hs.Close)
	base := hs.URL + "/fhir"
	tok := mintToken(t, key, "http://concord.test", "client-"+e.a.ID, e.a.ID, "system/*.cruds", "TREAT", 5*time.Minute)
	return e, base, tok
}
