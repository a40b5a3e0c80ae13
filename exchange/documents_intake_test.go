package exchange

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/documents/blobstest"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/errs"
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
