package exchange

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/documents/blobstest"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// docEnv: members a (sender) and c (another member, no relationship), a's Patient linked
// to a person, the document service on a real S3 bucket behind a FaultTransport, and an
// HTTP server whose requests carry a principal chosen by the X-Test-Member and
// X-Test-Purpose headers (token verification has its own tests).
type docEnv struct {
	srv     *Server
	http    *httptest.Server
	ft      *blobstest.FaultTransport
	audit   *memAudit
	a, c    directory.Member
	patient string
}

func newDocEnv(t testing.TB) *docEnv { return newDocEnvAudit(t, nil) }

// newDocEnvAudit is newDocEnv with mkLog making the records audit log when not nil
// (the benchmark uses the real chained log).
func newDocEnvAudit(t testing.TB, mkLog func(*pgxpool.Pool) records.AuditLog) *docEnv {
	t.Helper()
	pool := testkit.DB(t)
	s3 := testkit.S3(t)
	ctx := t.Context()
	ft := &blobstest.FaultTransport{Base: http.DefaultTransport.(*http.Transport).Clone()}
	blobs, err := documents.NewS3Blobs(ctx, documents.S3Config{Endpoint: s3.Endpoint, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey,
		Bucket: s3.Bucket, Region: s3.Region, Transport: ft, MaxRetries: 1, SSE: documents.SSEOff})
	if err != nil {
		t.Fatal(err)
	}
	dir, fs, ms := directory.NewStore(pool), store.New(pool), mpistore.New(pool)
	e := &docEnv{ft: ft, audit: &memAudit{}}
	if e.a, err = dir.AddMember(ctx, "Member A", "urn:oid:1.2.3.97"); err != nil {
		t.Fatal(err)
	}
	if e.c, err = dir.AddMember(ctx, "Member C", "urn:oid:1.2.3.99"); err != nil {
		t.Fatal(err)
	}
	registerTestClients(t, pool)
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		p, err := fs.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Patient"}`)), MemberID: e.a.ID, At: time.Now()})
		if err != nil {
			return err
		}
		e.patient = p.ID
		_, _, err = ms.Upsert(ctx, tx, e.a.ID, "urn:oid:1.2.3.97", "mrn1", p.ID, map[string]string{}, "")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var recLog records.AuditLog = e.audit
	if mkLog != nil {
		recLog = mkLog(pool)
	}
	rec := records.New(fs, ms, defaultDirectives{}, recLog, nil)
	docs := documents.New(pool, fs, blobs, e.audit, nil, documents.Config{FHIRBase: "http://concord.test/fhir"})
	e.srv = New(Config{BaseURL: "http://concord.test"}, Deps{Pool: pool, Directory: dir, FHIR: fs, MPI: ms, Records: rec, Documents: docs, Log: slog.New(slog.DiscardHandler)})
	ec := echo.New()
	ec.HTTPErrorHandler = e.srv.HandleError
	scopes := directory.Scopes{{Context: "system", Resource: "*", Ops: "rs"}}
	ec.GET("/fhir/Binary/:id", e.srv.readBinary, func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			granted := scopes
			if s := c.Request().Header.Get("X-Test-Scope"); s != "" {
				sc, err := directory.ParseScope(s)
				if err != nil {
					return err
				}
				granted = directory.Scopes{sc}
			}
			c.Set(principalKey, directory.Principal{ClientID: "client-" + c.Request().Header.Get("X-Test-Member"),
				MemberID: c.Request().Header.Get("X-Test-Member"), Scopes: granted, Purpose: c.Request().Header.Get("X-Test-Purpose")})
			return next(c)
		}
	})
	e.http = httptest.NewServer(ec)
	t.Cleanup(e.http.Close)
	return e
}

// ingest ingests res as member a through Ingest, in its own transaction.
func (e *docEnv) ingest(t testing.TB, res *fhir.Resource) store.Stored {
	t.Helper()
	var st store.Stored
	err := db.InTx(t.Context(), e.srv.Pool, func(tx db.Querier) error {
		var err error
		st, _, err = e.srv.Ingest(t.Context(), tx, e.a, res)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// store ingests a DocumentReference with inline data through Ingest, as every intake
// path does, and returns its Binary id.
func (e *docEnv) store(t testing.TB, ct string, data []byte) string {
	t.Helper()
	res := fhir.MustParse([]byte(fmt.Sprintf(`{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/%s"},`+
		`"content":[{"attachment":{"contentType":%q,"data":%q}}]}`, e.patient, ct, base64.StdEncoding.EncodeToString(data))))
	st := e.ingest(t, res)
	var d struct {
		Content []struct {
			Attachment struct {
				URL string `json:"url"`
			} `json:"attachment"`
		} `json:"content"`
	}
	if err := json.Unmarshal(st.Body, &d); err != nil || len(d.Content) != 1 {
		t.Fatalf("stored DocumentReference: %s", st.Body)
	}
	id, ok := strings.CutPrefix(d.Content[0].Attachment.URL, "http://concord.test/fhir/Binary/")
	if !ok {
		t.Fatalf("attachment url %q", d.Content[0].Attachment.URL)
	}
	return id
}

func (e *docEnv) get(t *testing.T, id, member, purpose string, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.http.URL+"/fhir/Binary/"+id, nil)
	req.Header.Set("X-Test-Member", member)
	req.Header.Set("X-Test-Purpose", purpose)
	req.Header.Set("Accept", "application/pdf, */*")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestBinaryRetrieve(t *testing.T) {
	e := newDocEnv(t)
	data := bytes.Repeat([]byte("%PDF-1.4 discharge summary line\n"), 8<<10)[:200<<10]
	id := e.store(t, "application/pdf", data)

	resp, body, err := e.get(t, id, e.a.ID, consent.PurposeTreatment)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("own read: %v, %v, %d bytes", err, resp, len(body))
	}
	h := resp.Header
	if h.Get("ETag") != `"`+documents.KeyOf(data)+`"` || h.Get("Content-Type") != "application/pdf" ||
		h.Get("Content-Disposition") != `attachment; filename=document-`+id+`.pdf` || h.Get("Accept-Ranges") != "bytes" {
		t.Errorf("headers: %v", h)
	}
	if ev := e.audit.last(); ev.Outcome != audit.Permit || ev.Resources[0].Type != "DocumentReference" {
		t.Errorf("audit before disclosure: %+v", ev)
	}

	resp, body, err = e.get(t, id, e.a.ID, consent.PurposeTreatment, "Range", "bytes=100-199")
	if err != nil || resp.StatusCode != 206 || !bytes.Equal(body, data[100:200]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", len(data)) {
		t.Errorf("range: %v %v %d bytes %q", err, resp.Status, len(body), resp.Header.Get("Content-Range"))
	}
	resp, body, _ = e.get(t, id, e.a.ID, consent.PurposeTreatment, "Range", "bytes=-10")
	if resp.StatusCode != 206 || !bytes.Equal(body, data[len(data)-10:]) {
		t.Errorf("suffix range: %v %d bytes", resp.Status, len(body))
	}
	resp, _, _ = e.get(t, id, e.a.ID, consent.PurposeTreatment, "Range", fmt.Sprintf("bytes=%d-", len(data)))
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("range past the end: %v", resp.Status)
	}
	resp, _, _ = e.get(t, id, e.a.ID, consent.PurposeTreatment, "If-None-Match", `"`+documents.KeyOf(data)+`"`)
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %v", resp.Status)
	}
	// A patient's own upload is the portal's to serve: a member asking for it by its
	// Binary id gets the same 404 as for an unknown id, and the refusal is audited.
	up, err := e.srv.Documents.UploadPatientDocument(t.Context(), "0b5d2c1e-7f3a-4e8b-9c6d-2a1f0e9b8c7d",
		documents.PatientUpload{ContentType: "text/plain", Body: strings.NewReader("my blood pressure diary\n")})
	if err != nil {
		t.Fatal(err)
	}
	if resp, _, _ = e.get(t, up.Content.BinaryID, e.a.ID, consent.PurposeTreatment); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a patient's upload through the member API: %v; want 404", resp.Status)
	}
	if ev := e.audit.last(); ev.Outcome != audit.Deny || ev.Reason != "patient-upload" || ev.Patient != up.PersonID {
		t.Errorf("refusal of a patient's upload audited as %+v", ev)
	}
	// A document's bytes are its content: Binary read alone does not reach them, and the
	// refusal is the same for an unknown id (no lookup before the scopes).
	for _, bid := range []string{id, "0123456789abcdef0123456789abcdef"} {
		if resp, _, _ = e.get(t, bid, e.a.ID, consent.PurposeTreatment, "X-Test-Scope", "system/Binary.r"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("Binary/%s read without DocumentReference read: %v; want 403", bid, resp.Status)
		}
	}
}

func TestBinaryDeniedNeverReachesS3(t *testing.T) {
	e := newDocEnv(t)
	id := e.store(t, "text/plain", []byte("Chief complaint: cough.\n"))
	e.ft.ResetRequests()
	// Member c asking for payment: default policy denies. Unknown ids look the same.
	resp, denied, err := e.get(t, id, e.c.ID, consent.PurposePayment)
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("denied read: %v, %v", err, resp.Status)
	}
	if ev := e.audit.last(); ev.Outcome != audit.Deny || ev.Resources[0].Type != "DocumentReference" {
		t.Errorf("denial audit: %+v", ev)
	}
	resp, missing, _ := e.get(t, "0123456789abcdef0123456789abcdef", e.c.ID, consent.PurposePayment)
	if resp.StatusCode != 404 || !sameOutcome(denied, missing) {
		t.Errorf("unknown id: %v\n%s\nvs denied\n%s", resp.Status, missing, denied)
	}
	if n := e.ft.Requests(); n != 0 {
		t.Errorf("%d requests reached S3 for denied and unknown reads", n)
	}
	// Treatment by member c is permitted by the regional opt-out default.
	if resp, body, _ := e.get(t, id, e.c.ID, consent.PurposeTreatment); resp.StatusCode != 200 || string(body) != "Chief complaint: cough.\n" {
		t.Errorf("treatment read: %v %q", resp.Status, body)
	}
}

// sameOutcome reports whether two 404 bodies are the same not-found OperationOutcome.
func sameOutcome(a, b []byte) bool {
	return bytes.Contains(a, []byte(`"not-found"`)) && bytes.Equal(a, b)
}

func TestBinaryCorruptionCutsTheTransfer(t *testing.T) {
	e := newDocEnv(t)
	data := bytes.Repeat([]byte("Assessment and plan. "), 10<<10)
	id := e.store(t, "text/plain", data)
	before := len(e.audit.events)
	for _, at := range []int64{5, int64(len(data)) - 1} {
		e.ft.Set(blobstest.Fault{Corrupt: true, CorruptAt: at, Method: http.MethodGet})
		resp, body, err := e.get(t, id, e.a.ID, consent.PurposeTreatment)
		if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) || len(body) >= len(data) {
			status := ""
			if resp != nil {
				status = resp.Status
			}
			t.Errorf("corrupt byte %d: %s, %d of %d bytes, err = %v; want a cut transfer", at, status, len(body), len(data), err)
		}
	}
	e.ft.Clear()
	n := 0
	for _, ev := range e.audit.events[before:] {
		if ev.Outcome == audit.Failure && ev.Reason == "integrity-sha256-mismatch" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d integrity audit events, want 2", n)
	}
	// S3 down after the decision: 503 with Retry-After, no bytes.
	e.ft.Set(blobstest.Fault{Down: true})
	resp, _, err := e.get(t, id, e.a.ID, consent.PurposeTreatment)
	if err != nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("S3 down: %v %v", err, resp)
	}
}

func TestIngestRefusesArchivesAndS3DownIs503(t *testing.T) {
	e := newDocEnv(t)
	ingest := func(ct string, data []byte) error {
		res := fhir.MustParse([]byte(fmt.Sprintf(`{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/%s"},`+
			`"content":[{"attachment":{"contentType":%q,"data":%q}}]}`, e.patient, ct, base64.StdEncoding.EncodeToString(data))))
		return db.InTx(t.Context(), e.srv.Pool, func(tx db.Querier) error {
			_, _, err := e.srv.Ingest(t.Context(), tx, e.a, res)
			return err
		})
	}
	if err := ingest("text/plain", []byte("PK\x03\x04zipped")); errs.CodeOf(err) != errs.Unsupported {
		t.Errorf("zip: %v", err)
	}
	e.ft.Set(blobstest.Fault{Down: true})
	if err := ingest("text/plain", []byte("note")); errs.CodeOf(err) != errs.Unavailable {
		t.Errorf("S3 down: %v", err)
	}
	var n int
	if err := e.srv.Pool.QueryRow(t.Context(), `SELECT count(*) FROM fhir_resources WHERE type = 'DocumentReference'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d DocumentReferences stored after refused intake (%v)", n, err)
	}
}

func TestStandaloneBinaryOnlyItsSenderReads(t *testing.T) {
	e := newDocEnv(t)
	data := []byte("%PDF-1.4\nsigned consent form\n%%EOF\n")
	res := fhir.MustParse([]byte(`{"resourceType":"Binary","contentType":"application/pdf","data":"` + base64.StdEncoding.EncodeToString(data) + `"}`))
	st := e.ingest(t, res)
	if bytes.Contains(st.Body, []byte(`"data"`)) {
		t.Errorf("stored Binary keeps its data")
	}
	if resp, body, err := e.get(t, st.ID, e.a.ID, consent.PurposeTreatment); err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Errorf("sender: %v %v %d bytes", err, resp.Status, len(body))
	}
	e.ft.ResetRequests()
	if resp, _, _ := e.get(t, st.ID, e.c.ID, consent.PurposeTreatment); resp.StatusCode != 404 {
		t.Errorf("another member: %v, want 404", resp.Status)
	}
	if n := e.ft.Requests(); n != 0 {
		t.Errorf("%d S3 requests for a refused read", n)
	}
}

// TestBinaryPresignedMode: with PresignTTL set, a caller that sends Prefer: presigned-url
// gets, after the same decision and audit, a 303 to a short-lived S3 URL serving exactly
// the stored bytes; without the preference the bytes stream as before; a denied caller
// gets the same 404 and no link, and nothing reaches S3 for it.
func TestBinaryPresignedMode(t *testing.T) {
	e := newDocEnv(t)
	e.srv.cfg.PresignTTL = time.Minute
	data := []byte("Operative note: uneventful.\n")
	id := e.store(t, "text/plain", data)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(member, purpose string, prefer bool) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.http.URL+"/fhir/Binary/"+id, nil)
		req.Header.Set("X-Test-Member", member)
		req.Header.Set("X-Test-Purpose", purpose)
		if prefer {
			req.Header.Set("Prefer", "presigned-url")
		}
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	before := len(e.audit.events)
	resp := get(e.c.ID, consent.PurposeTreatment, true)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "X-Amz-Signature=") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("presigned: %v Location %q", resp.Status, loc)
	}
	if ev := e.audit.last(); len(e.audit.events) != before+1 || ev.Outcome != audit.Permit {
		t.Errorf("the link was handed out without a permit audited first: %+v", ev)
	}
	got, err := http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if got.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("presigned GET: %v %q", got.Status, body)
	}
	if resp := get(e.c.ID, consent.PurposeTreatment, false); resp.StatusCode != 200 {
		t.Errorf("without the preference: %v, want the streamed 200", resp.Status)
	}
	e.ft.ResetRequests()
	if resp := get(e.c.ID, consent.PurposePayment, true); resp.StatusCode != 404 || resp.Header.Get("Location") != "" {
		t.Errorf("denied: %v Location %q", resp.Status, resp.Header.Get("Location"))
	}
	if n := e.ft.Requests(); n != 0 {
		t.Errorf("%d S3 requests for a denied presign", n)
	}
}

// slowFailingAudit fails every append once fail is set, after a delay long enough for the
// object to have been opened meanwhile.
type slowFailingAudit struct {
	memAudit
	fail atomic.Bool
}

func (a *slowFailingAudit) Append(ctx context.Context, ev audit.Event) error {
	if a.fail.Load() {
		time.Sleep(50 * time.Millisecond)
		return errors.New("audit store down")
	}
	return a.memAudit.Append(ctx, ev)
}

// TestBinaryAuditFailureDisclosesNothing: the object is opened while a permitted read's
// audit event commits; when the event cannot be written the caller gets 503 and not a byte
// of the document, and neither the ETag nor the content headers.
func TestBinaryAuditFailureDisclosesNothing(t *testing.T) {
	a := &slowFailingAudit{}
	e := newDocEnvAudit(t, func(*pgxpool.Pool) records.AuditLog { return a })
	data := []byte("Discharge diagnosis: community-acquired pneumonia.\n")
	id := e.store(t, "text/plain", data)
	if resp, body, err := e.get(t, id, e.a.ID, consent.PurposeTreatment); err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("read with the audit log up: %v %v %q", err, resp, body)
	}
	a.fail.Store(true)
	e.ft.ResetRequests()
	resp, body, err := e.get(t, id, e.a.ID, consent.PurposeTreatment)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("audit down: %v %v", err, resp)
	}
	if bytes.Contains(body, []byte("pneumonia")) || resp.Header.Get("ETag") != "" || resp.Header.Get("Content-Disposition") != "" {
		t.Errorf("audit down disclosed: headers %v body %q", resp.Header, body)
	}
	if e.ft.Requests() == 0 {
		t.Errorf("the object was not opened while the audit event committed")
	}
}
