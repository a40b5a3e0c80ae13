package documents_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/documents/blobstest"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

const base = "http://concord.test/fhir"

// recorder is an in-memory audit log; the chained log has its own tests.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Append(_ context.Context, ev audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	return nil
}

type env struct {
	pool     *pgxpool.Pool
	fs       *store.Store
	blobs    *documents.S3Blobs
	ft       *blobstest.FaultTransport
	svc      *documents.Service
	audit    *recorder
	patients map[string]string // member -> its Patient id
	// superseded lists, as "Type/id/_history/version", what ingest and update were told
	// (Intake.Superseded) their intake stored as superseded, committed or not.
	superseded []string
}

// intake is documents.Intake that reports superseded versions to e.superseded.
func (e *env) intake(member, patient, id string, res *fhir.Resource) documents.Intake {
	return documents.Intake{MemberID: member, PatientID: patient, ID: id, Resource: res, Superseded: func(st store.Stored) {
		e.superseded = append(e.superseded, fmt.Sprintf("%s/%s/_history/%d", st.Type, st.ID, st.Version))
	}}
}

// setup gives a migrated database with members a and b (each with one Patient) and a
// document service on its own bucket of the real S3 server, through a FaultTransport.
func setup(t *testing.T, cfg documents.Config) *env {
	t.Helper()
	pool := testkit.DB(t)
	s3 := testkit.S3(t)
	ctx := t.Context()
	ft := &blobstest.FaultTransport{Base: http.DefaultTransport.(*http.Transport).Clone()}
	b, err := documents.NewS3Blobs(ctx, documents.S3Config{Endpoint: s3.Endpoint, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey,
		Bucket: s3.Bucket, Region: s3.Region, Transport: ft, MaxRetries: 1, SSE: documents.SSEOff})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{pool: pool, fs: store.New(pool), blobs: b, ft: ft, audit: &recorder{}, patients: map[string]string{}}
	if cfg.FHIRBase == "" {
		cfg.FHIRBase = base
	}
	e.svc = documents.New(pool, e.fs, b, e.audit, nil, cfg)
	for _, m := range []string{"a", "b"} {
		if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ($1, $1, 'urn:oid:1.2.3.' || ascii($1))`, m); err != nil {
			t.Fatal(err)
		}
		p, err := e.fs.Put(ctx, pool, store.Write{Resource: fhir.MustParse([]byte(`{"resourceType":"Patient"}`)), MemberID: m, At: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		e.patients[m] = p.ID
	}
	return e
}

// ingest runs the intake of one resource the way exchange.Ingest does, in its own
// transaction, and returns the stored resource.
func (e *env) ingest(t *testing.T, member string, body string) (store.Stored, error) {
	t.Helper()
	res, err := fhir.Parse([]byte(body))
	if err != nil {
		t.Fatalf("test resource does not parse: %v", err)
	}
	var st store.Stored
	err = db.InTx(t.Context(), e.pool, func(tx db.Querier) error {
		id := store.NewID()
		patient := ""
		if res.ResourceType == "DocumentReference" {
			patient = e.patients[member]
		}
		out, err := e.svc.IngestResource(t.Context(), tx, e.intake(member, patient, id, res))
		if err != nil {
			return err
		}
		st, err = e.fs.Put(t.Context(), tx, store.Write{Resource: out, ID: id, MemberID: member, PatientID: patient, At: time.Now()})
		return err
	})
	return st, err
}

// update ingests body as member's DocumentReference id and stores it as an update (PUT
// does: an unchanged result stores no version), failing t on any error.
func (e *env) update(t *testing.T, member, id, body string) store.Stored {
	t.Helper()
	var st store.Stored
	err := db.InTx(t.Context(), e.pool, func(tx db.Querier) error {
		out, err := e.svc.IngestResource(t.Context(), tx, e.intake(member, e.patients[member], id, fhir.MustParse([]byte(body))))
		if err != nil {
			return err
		}
		st, err = e.fs.Put(t.Context(), tx, store.Write{Resource: out, ID: id, MemberID: member, PatientID: e.patients[member], At: time.Now(), SkipUnchanged: true})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func docRef(patient, contentType string, data []byte, extra string) string {
	return fmt.Sprintf(`{"resourceType":"DocumentReference","status":"current",%s"type":{"coding":[{"system":"http://loinc.org","code":"34117-2"}]},`+
		`"subject":{"reference":"Patient/%s"},"content":[{"attachment":{"contentType":%q,"data":%q}}]}`,
		extra, patient, contentType, base64.StdEncoding.EncodeToString(data))
}

type attachment struct {
	ContentType string `json:"contentType"`
	Data        string `json:"data"`
	URL         string `json:"url"`
	Size        int64  `json:"size"`
	Hash        string `json:"hash"`
}

func attachmentOf(t *testing.T, body []byte) attachment {
	t.Helper()
	var d struct {
		Content []struct {
			Attachment attachment `json:"attachment"`
		} `json:"content"`
	}
	if err := json.Unmarshal(body, &d); err != nil || len(d.Content) == 0 {
		t.Fatalf("stored DocumentReference has no content: %v", err)
	}
	return d.Content[0].Attachment
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func note(n int, seed byte) []byte {
	b := bytes.Repeat([]byte("Chief complaint: cough. Plan: rest. "), n/36+1)[:n]
	b[0] = 'A' + seed%26
	return b
}

func TestIngestInlineStoresObjectFirstAndRewritesAttachment(t *testing.T) {
	e := setup(t, documents.Config{})
	data := note(5000, 1)
	st, err := e.ingest(t, "a", docRef(e.patients["a"], "text/plain; charset=utf-8", data, ""))
	if err != nil {
		t.Fatal(err)
	}
	att := attachmentOf(t, st.Body)
	s1 := sha1.Sum(data)
	if att.Data != "" || att.Size != int64(len(data)) || att.Hash != base64.StdEncoding.EncodeToString(s1[:]) ||
		!strings.HasPrefix(att.URL, base+"/Binary/") {
		t.Fatalf("stored attachment = %+v, want url, size and SHA-1 hash and no data", att)
	}
	c, err := e.svc.Content(t.Context(), strings.TrimPrefix(att.URL, base+"/Binary/"))
	if err != nil {
		t.Fatal(err)
	}
	if c.DocumentID != st.ID || c.Key != documents.KeyOf(data) || c.MemberID != "a" || c.ContentType != "text/plain; charset=utf-8" {
		t.Errorf("content = %+v", c)
	}
	if _, err := e.blobs.Stat(t.Context(), c.Key); err != nil {
		t.Errorf("object missing: %v", err)
	}
	if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND patient_id = $2 AND type_code = '34117-2' AND status = 'current'`, st.ID, e.patients["a"]); n != 1 {
		t.Errorf("metadata rows = %d, want 1", n)
	}
	if fn := c.Filename(); strings.ContainsAny(fn, "/\\") || !strings.HasSuffix(fn, ".txt") {
		t.Errorf("filename %q", fn)
	}
}

func TestIdenticalBytesFromTwoMembersAreOneObject(t *testing.T) {
	e := setup(t, documents.Config{})
	data := note(3000, 2)
	var ids []string
	for _, m := range []string{"a", "b"} {
		st, err := e.ingest(t, m, docRef(e.patients[m], "text/plain", data, ""))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, st.ID)
	}
	objects := 0
	for _, err := range e.blobs.List(t.Context(), "", time.Time{}) {
		if err != nil {
			t.Fatal(err)
		}
		objects++
	}
	if objects != 1 {
		t.Errorf("%d objects in S3, want 1", objects)
	}
	ls, err := e.svc.Group(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Summary() != "2 copies from 2 organizations" {
		t.Fatalf("listing = %+v", ls)
	}
	if ls, _ := e.svc.Group(t.Context(), ids[:1]); len(ls) != 1 || ls[0].Summary() != "1 copy from 1 organization" {
		t.Errorf("listing of one visible document = %+v (must not reveal the other member's copy)", ls)
	}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestIngestRefusesBadContent(t *testing.T) {
	e := setup(t, documents.Config{MaxBytes: 10000})
	tar, err := os.ReadFile("testdata/containers/note.tar") // a real one: its header checksum holds
	if err != nil {
		t.Fatal(err)
	}
	pdf := []byte("%PDF-1.7\n1 0 obj\n<<>>\nendobj\n")
	for _, tt := range []struct {
		name  string
		ct    string
		data  []byte
		extra string
		want  errs.Code
	}{
		{"gzip declared as text", "text/plain", gz(note(2000, 3)), "", errs.Unsupported},
		{"zip declared", "application/zip", []byte("PK\x03\x04rest"), "", errs.Unsupported},
		{"tar declared as octet text", "text/plain", tar[:1024], "", errs.Unsupported}, // header and first block
		{"7z", "application/pdf", []byte("7z\xbc\xaf\x27\x1c\x00\x04"), "", errs.Unsupported},
		{"html not allowed", "text/html", []byte("<html><script>x</script></html>"), "", errs.Unsupported},
		{"text declared as pdf", "application/pdf", note(100, 4), "", errs.Invalid},
		{"pdf declared as png", "image/png", pdf, "", errs.Invalid},
		{"too large", "text/plain", note(10001, 5), "", errs.TooLarge},
		{"wrong sender hash", "text/plain", note(100, 6), "", errs.Invalid},
		{"no content type", "", note(100, 7), "", errs.Invalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := docRef(e.patients["a"], tt.ct, tt.data, tt.extra)
			if tt.name == "wrong sender hash" {
				body = strings.Replace(body, `"data":`, `"hash":"2jmj7l5rSw0yVb/vlWAYkK/YBwk=","data":`, 1)
			}
			if tt.ct == "" {
				body = strings.Replace(body, `"contentType":"",`, ``, 1)
			}
			_, err := e.ingest(t, "a", body)
			if errs.CodeOf(err) != tt.want || err == nil {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata`); n != 0 {
		t.Errorf("%d metadata rows after refused input", n)
	}
	if _, err := e.ingest(t, "a", docRef(e.patients["a"], "application/pdf", pdf, "")); err != nil {
		t.Errorf("a real PDF is refused: %v", err)
	}
}

func TestIngestS3DownIsUnavailableAndWritesNothing(t *testing.T) {
	e := setup(t, documents.Config{})
	e.ft.Set(blobstest.Fault{Down: true})
	_, err := e.ingest(t, "a", docRef(e.patients["a"], "text/plain", note(1000, 8), ""))
	if errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("err = %v, want unavailable", err)
	}
	e.ft.Set(blobstest.Fault{CutRequest: true, CutRequestAfter: 100, Method: http.MethodPut})
	_, err = e.ingest(t, "a", docRef(e.patients["a"], "text/plain", note(1000, 9), ""))
	if err == nil {
		t.Fatal("an upload cut mid-way succeeded")
	}
	e.ft.Clear()
	for _, table := range []string{"documents_metadata", "documents_contents", "fhir_resources WHERE type = 'DocumentReference'"} {
		if n := count(t, e.pool, `SELECT count(*) FROM `+table); n != 0 {
			t.Errorf("%s: %d rows after S3 failures", table, n)
		}
	}
	if n, err := e.svc.DanglingReferences(t.Context()); err != nil || n != 0 {
		t.Errorf("dangling = %d, %v", n, err)
	}
}

func TestBinaryThenDocumentReferenceAndMissingBinary(t *testing.T) {
	e := setup(t, documents.Config{})
	data := []byte("%PDF-1.4\nscanned consent form\n%%EOF\n")
	bin, err := e.ingest(t, "a", `{"resourceType":"Binary","contentType":"application/pdf","data":"`+base64.StdEncoding.EncodeToString(data)+`"}`)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bin.Body, []byte(`"data"`)) {
		t.Errorf("stored Binary keeps its data: %s", bin.Body)
	}
	body := `{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/` + e.patients["a"] +
		`"},"content":[{"attachment":{"contentType":"application/pdf","url":"Binary/` + bin.ID + `"}}]}`
	dr, err := e.ingest(t, "a", body)
	if err != nil {
		t.Fatal(err)
	}
	if att := attachmentOf(t, dr.Body); att.URL != base+"/Binary/"+bin.ID {
		t.Errorf("url = %q", att.URL)
	}
	c, err := e.svc.Content(t.Context(), bin.ID)
	if err != nil || c.DocumentID != dr.ID {
		t.Errorf("content = %+v, %v; want it linked to %s", c, err, dr.ID)
	}
	// Member b cannot take a's Binary; a DocumentReference naming no stored Binary fails at COMMIT.
	if _, err := e.ingest(t, "b", strings.Replace(body, e.patients["a"], e.patients["b"], 1)); errs.CodeOf(err) != errs.Invalid {
		t.Errorf("b naming a's Binary: err = %v, want invalid", err)
	}
	if _, err := e.ingest(t, "a", strings.Replace(body, bin.ID, "nosuchbinary", 1)); errs.CodeOf(err) != errs.Invalid {
		t.Errorf("naming a missing Binary: err = %v, want invalid", err)
	}
}

func TestDocumentReferenceBeforeItsBinaryInOneTransaction(t *testing.T) {
	e := setup(t, documents.Config{})
	ctx := t.Context()
	binID, docID := store.NewID(), store.NewID()
	data := note(700, 10)
	err := db.InTx(ctx, e.pool, func(tx db.Querier) error {
		dr := fhir.MustParse([]byte(`{"resourceType":"DocumentReference","status":"current","subject":{"reference":"Patient/` + e.patients["a"] +
			`"},"content":[{"attachment":{"contentType":"text/plain","url":"urn-rewritten/Binary/` + binID + `"}},{"attachment":{"contentType":"text/plain","url":"Binary/` + binID + `"}}]}`))
		if _, err := e.svc.IngestResource(ctx, tx, documents.Intake{MemberID: "a", PatientID: e.patients["a"], ID: docID, Resource: dr}); err != nil {
			return err
		}
		bin := fhir.MustParse([]byte(`{"resourceType":"Binary","contentType":"text/plain","data":"` + base64.StdEncoding.EncodeToString(data) + `"}`))
		_, err := e.svc.IngestResource(ctx, tx, documents.Intake{MemberID: "a", ID: binID, Resource: bin})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.svc.Content(ctx, binID)
	if err != nil || c.DocumentID != docID || c.Key != documents.KeyOf(data) {
		t.Errorf("content = %+v, %v", c, err)
	}
}

func TestReplacesSupersedes(t *testing.T) {
	e := setup(t, documents.Config{})
	old, err := e.ingest(t, "a", docRef(e.patients["a"], "text/plain", note(400, 11), ""))
	if err != nil {
		t.Fatal(err)
	}
	nw, err := e.ingest(t, "a", docRef(e.patients["a"], "text/plain", note(400, 12), `"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/`+old.ID+`"}}],`))
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND status = 'superseded' AND superseded_by = $2`, old.ID, nw.ID); n != 1 {
		t.Errorf("old document not superseded in metadata")
	}
	st, err := e.fs.Get(t.Context(), nil, "DocumentReference", old.ID)
	if err != nil || !bytes.Contains(st.Body, []byte(`"status":"superseded"`)) || st.Version != 2 {
		t.Errorf("stored old DocumentReference v%d: %s (%v)", st.Version, st.Body, err)
	}
	// The caller is told of that version, so it can audit it with its own write.
	wantReported := []string{"DocumentReference/" + old.ID + "/_history/2"}
	if !slices.Equal(e.superseded, wantReported) {
		t.Errorf("intake reported superseded %q, want %q", e.superseded, wantReported)
	}
	// Still retrievable: its content row and object stay.
	if n := count(t, e.pool, `SELECT count(*) FROM documents_contents WHERE document_id = $1`, old.ID); n != 1 {
		t.Errorf("superseded content rows = %d", n)
	}
	// The replacement sent again (same id, same content): the old document keeps its two
	// versions and is listed once among what the new one replaces.
	putAs := func(id, body string) { e.update(t, "a", id, body) }
	again := docRef(e.patients["a"], "text/plain", note(400, 12), `"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/`+old.ID+`"}}],`)
	for range 2 {
		putAs(nw.ID, again)
	}
	if st, err := e.fs.Get(t.Context(), nil, "DocumentReference", old.ID); err != nil || st.Version != 2 {
		t.Errorf("old DocumentReference after the replacement was resent: v%d (%v), want v2", st.Version, err)
	}
	if n := count(t, e.pool, `SELECT cardinality(replaces) FROM documents_metadata WHERE id = $1`, nw.ID); n != 1 {
		t.Errorf("replaces holds %d entries, want 1", n)
	}
	// A second replacement of the same document is refused: it is no longer the current
	// one (TestReplaceNotCurrentRefused), and resending the first leaves it alone.
	_, err = e.ingest(t, "a", docRef(e.patients["a"], "text/plain", note(400, 15), `"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/`+old.ID+`"}}],`))
	if errs.CodeOf(err) != errs.Conflict {
		t.Errorf("second replacement: err = %v, want conflict", err)
	}
	for range 2 {
		putAs(nw.ID, again)
	}
	if st, err := e.fs.Get(t.Context(), nil, "DocumentReference", old.ID); err != nil || st.Version != 2 {
		t.Errorf("old DocumentReference after a refused second replacement: v%d (%v), want v2", st.Version, err)
	}
	if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND superseded_by = $2`, old.ID, nw.ID); n != 1 {
		t.Errorf("old document no longer superseded by its first replacement")
	}
	if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata WHERE $1 = ANY (replaces)`, old.ID); n != 1 {
		t.Errorf("%d documents list the old one as replaced, want 1", n)
	}
	// The replaced document resent as current by its sender stays superseded, unchanged.
	putAs(old.ID, docRef(e.patients["a"], "text/plain", note(400, 11), ""))
	if st, err := e.fs.Get(t.Context(), nil, "DocumentReference", old.ID); err != nil || st.Version != 2 || !bytes.Contains(st.Body, []byte(`"status":"superseded"`)) {
		t.Errorf("replaced document resent as current: v%d %s (%v); want v2, still superseded", st.Version, st.Body, err)
	}
	if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND status = 'superseded'`, old.ID); n != 1 {
		t.Errorf("replaced document's metadata no longer superseded after a resend")
	}
	// Entered in error after it was replaced: resending the replacement still succeeds.
	putAs(old.ID, strings.Replace(docRef(e.patients["a"], "text/plain", note(400, 11), ""), `"status":"current"`, `"status":"entered-in-error"`, 1))
	putAs(nw.ID, again)
	// None of the resends or the refused second replacement wrote the old document again,
	// and none reported a version.
	if !slices.Equal(e.superseded, wantReported) {
		t.Errorf("after resends, intake reported superseded %q, want only %q", e.superseded, wantReported)
	}
	// b cannot supersede a's document.
	_, err = e.ingest(t, "b", docRef(e.patients["b"], "text/plain", note(400, 13), `"relatesTo":[{"code":"replaces","target":{"reference":"DocumentReference/`+nw.ID+`"}}],`))
	if errs.CodeOf(err) != errs.Invalid {
		t.Errorf("cross-member replace: err = %v, want invalid", err)
	}
}

// sink collects a transfer.
type sink struct{ bytes.Buffer }

func TestTransferVerifiesAndCutsOnCorruption(t *testing.T) {
	e := setup(t, documents.Config{})
	data := note(200<<10, 14)
	st, err := e.ingest(t, "a", docRef(e.patients["a"], "text/plain", data, ""))
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.svc.Content(t.Context(), strings.TrimPrefix(attachmentOf(t, st.Body).URL, base+"/Binary/"))
	if err != nil {
		t.Fatal(err)
	}
	get := func(rng documents.ByteRange) ([]byte, error) {
		tr, err := e.svc.Open(t.Context(), c, audit.Event{RequestID: "r1"})
		if err != nil {
			return nil, err
		}
		defer tr.Close()
		var w sink
		err = tr.WriteRange(&w, rng)
		return w.Bytes(), err
	}
	got, err := get(documents.ByteRange{Start: 0, End: -1})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("full read: %d bytes, %v", len(got), err)
	}
	got, err = get(documents.ByteRange{Start: 100, End: 199})
	if err != nil || !bytes.Equal(got, data[100:200]) {
		t.Fatalf("range read: %d bytes, %v", len(got), err)
	}
	for _, at := range []int64{10, int64(len(data)) - 1} {
		e.ft.Set(blobstest.Fault{Corrupt: true, CorruptAt: at, Method: http.MethodGet})
		got, err = get(documents.ByteRange{Start: 0, End: -1})
		if err == nil || len(got) >= len(data) || !errors.Is(err, documents.ErrDigestMismatch) {
			t.Errorf("corrupt byte at %d: %d of %d bytes written, err = %v; want a cut transfer", at, len(got), len(data), err)
		}
	}
	e.ft.Set(blobstest.Fault{Corrupt: true, CorruptAt: int64(len(data)) - 5, Method: http.MethodGet})
	if got, err = get(documents.ByteRange{Start: 0, End: 9}); err == nil || len(got) >= 10 {
		t.Errorf("range before a corrupt byte: %d bytes, err = %v; want cut", len(got), err)
	}
	e.ft.Clear()
	n := 0
	for _, ev := range e.audit.events {
		if ev.Outcome == audit.Failure && ev.Reason == "integrity-sha256-mismatch" && ev.RequestID == "r1" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d integrity audit events, want 3", n)
	}
}

func TestCrashBetweenPutAndCommitLeavesOnlyACollectableOrphan(t *testing.T) {
	e := setup(t, documents.Config{Grace: time.Nanosecond})
	ctx := t.Context()
	kept := note(900, 15)
	if _, err := e.ingest(t, "a", docRef(e.patients["a"], "text/plain", kept, "")); err != nil {
		t.Fatal(err)
	}
	// The "crash": the object is written, then the transaction never commits.
	orphan := note(900, 16)
	crash := errors.New("process killed before COMMIT")
	err := db.InTx(ctx, e.pool, func(tx db.Querier) error {
		res := fhir.MustParse([]byte(docRef(e.patients["a"], "text/plain", orphan, "")))
		if _, err := e.svc.IngestResource(ctx, tx, documents.Intake{MemberID: "a", PatientID: e.patients["a"], ID: store.NewID(), Resource: res}); err != nil {
			return err
		}
		if n, err := e.svc.DanglingReferences(ctx); err != nil || n != 0 {
			t.Errorf("mid-transaction: dangling = %d, %v", n, err)
		}
		return crash
	})
	if !errors.Is(err, crash) {
		t.Fatal(err)
	}
	if _, err := e.blobs.Stat(ctx, documents.KeyOf(orphan)); err != nil {
		t.Fatalf("the orphan object should exist before GC: %v", err)
	}
	if n, err := e.svc.DanglingReferences(ctx); err != nil || n != 0 {
		t.Errorf("after crash: dangling = %d, %v", n, err)
	}
	time.Sleep(1100 * time.Millisecond) // LastModified has one-second resolution
	stats, err := e.svc.CollectGarbage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Removed != 1 {
		t.Errorf("GC = %+v, want 1 removed", stats)
	}
	if _, err := e.blobs.Stat(ctx, documents.KeyOf(orphan)); !errs.Is(err, errs.NotFound) {
		t.Errorf("orphan still there: %v", err)
	}
	if _, err := e.blobs.Stat(ctx, documents.KeyOf(kept)); err != nil {
		t.Errorf("GC removed a referenced object: %v", err)
	}
	if n, err := e.svc.DanglingReferences(ctx); err != nil || n != 0 {
		t.Errorf("after GC: dangling = %d, %v", n, err)
	}
}

func TestGCSparesObjectsYoungerThanGrace(t *testing.T) {
	e := setup(t, documents.Config{}) // 24 h
	ctx := t.Context()
	data := note(300, 17)
	if err := e.blobs.Put(ctx, documents.KeyOf(data), bytes.NewReader(data), int64(len(data)), "text/plain"); err != nil {
		t.Fatal(err)
	}
	st, err := e.svc.CollectGarbage(ctx)
	if err != nil || st.Removed != 0 {
		t.Errorf("GC = %+v, %v; want nothing removed", st, err)
	}
}

func TestPatientUploadIsTaggedApartAndIdempotent(t *testing.T) {
	e := setup(t, documents.Config{})
	ctx := t.Context()
	data := []byte("%PDF-1.4\nmy own blood pressure diary\n%%EOF\n")
	up := documents.PatientUpload{IdempotencyKey: "k1", ContentType: "application/pdf"}
	var first documents.PatientDocument
	for i := range 2 {
		up.Body = bytes.NewReader(data)
		d, err := e.svc.UploadPatientDocument(ctx, "person-1", up)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = d
		} else if d.ID != first.ID || d.Content.BinaryID != first.Content.BinaryID {
			t.Errorf("retry gave document %s, first %s", d.ID, first.ID)
		}
		if d.Tag != documents.PatientSourced {
			t.Errorf("tag = %+v", d.Tag)
		}
	}
	if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata WHERE origin = 'patient' AND person_id = 'person-1' AND member_id IS NULL AND patient_id IS NULL`); n != 1 {
		t.Errorf("%d patient documents, want 1", n)
	}
	if ds, _ := e.svc.PatientDocuments(ctx, "person-2"); len(ds) != 0 {
		t.Errorf("another person sees %d uploads", len(ds))
	}
	up.IdempotencyKey, up.ContentType, up.Body = "", "application/zip", bytes.NewReader([]byte("PK\x03\x04...."))
	if _, err := e.svc.UploadPatientDocument(ctx, "person-1", up); errs.CodeOf(err) != errs.Unsupported {
		t.Errorf("zip upload: err = %v", err)
	}
}

func TestUpdateKeepsLinkAndRefusesForeignID(t *testing.T) {
	e := setup(t, documents.Config{})
	ctx := t.Context()
	st, err := e.ingest(t, "a", docRef(e.patients["a"], "text/plain", note(500, 18), ""))
	if err != nil {
		t.Fatal(err)
	}
	// The sender reads its DocumentReference back and PUTs it with a new status: the url
	// names the Binary already linked to this same document.
	upd := strings.Replace(string(st.Body), `"status":"current"`, `"status":"entered-in-error"`, 1)
	err = db.InTx(ctx, e.pool, func(tx db.Querier) error {
		res := fhir.MustParse([]byte(upd))
		out, err := e.svc.IngestResource(ctx, tx, documents.Intake{MemberID: "a", PatientID: e.patients["a"], ID: st.ID, Resource: res})
		if err != nil {
			return err
		}
		_, err = e.fs.Put(ctx, tx, store.Write{Resource: out, ID: st.ID, MemberID: "a", PatientID: e.patients["a"], At: time.Now()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, e.pool, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND status = 'entered-in-error'`, st.ID); n != 1 {
		t.Errorf("status not updated")
	}
	if n := count(t, e.pool, `SELECT count(*) FROM documents_contents WHERE document_id = $1`, st.ID); n != 1 {
		t.Errorf("%d content rows after update, want 1", n)
	}
	// Member b writing under a's document id gets not-found.
	err = db.InTx(ctx, e.pool, func(tx db.Querier) error {
		res := fhir.MustParse([]byte(docRef(e.patients["b"], "text/plain", note(500, 19), "")))
		_, err := e.svc.IngestResource(ctx, tx, documents.Intake{MemberID: "b", PatientID: e.patients["b"], ID: st.ID, Resource: res})
		return err
	})
	if errs.CodeOf(err) != errs.NotFound {
		t.Errorf("foreign id: err = %v, want not_found", err)
	}
}

// TestResendInlineDocumentUnchanged: a DocumentReference sent again with the same inline
// bytes keeps its Binary, so the update is a no-op (one version, one content row); new
// bytes make a new Binary and a new version.
func TestResendInlineDocumentUnchanged(t *testing.T) {
	e := setup(t, documents.Config{})
	id := store.NewID()
	put := func(body string) store.Stored { return e.update(t, "a", id, body) }
	doc := docRef(e.patients["a"], "text/plain", note(300, 21), "")
	first := put(doc)
	if again := put(doc); again.Version != 1 || !again.Unchanged || !bytes.Equal(again.Body, first.Body) {
		t.Errorf("resend: v%d unchanged=%v; want v1, unchanged", again.Version, again.Unchanged)
	}
	if n := count(t, e.pool, `SELECT count(*) FROM documents_contents WHERE document_id = $1`, id); n != 1 {
		t.Errorf("%d content rows after a resend, want 1", n)
	}
	if changed := put(docRef(e.patients["a"], "text/plain", note(300, 22), "")); changed.Version != 2 {
		t.Errorf("new bytes: v%d, want v2", changed.Version)
	}
	if n := count(t, e.pool, `SELECT count(*) FROM documents_contents WHERE document_id = $1`, id); n != 2 {
		t.Errorf("%d content rows after new bytes, want 2", n)
	}
}
