package exchange

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/documents/blobstest"
	"github.com/concord-hie/concord/exchange/hl7v2"
	"github.com/concord-hie/concord/internal/httpx"
	"github.com/concord-hie/concord/internal/testkit"
	"github.com/concord-hie/concord/records"
)

// mdmEnv is an HL7 v2 intake with the document service on a real S3 bucket behind a
// FaultTransport, and the exchange's FHIR API (search, Binary) mounted in process for
// reading back what intake stored as the member.
type mdmEnv struct {
	*hl7Env
	ft  *blobstest.FaultTransport
	api *echo.Echo
}

func newMDMEnv(t testing.TB) *mdmEnv {
	t.Helper()
	s3 := testkit.S3(t)
	ft := &blobstest.FaultTransport{Base: http.DefaultTransport.(*http.Transport).Clone()}
	e := newHL7EnvDeps(t, func(pool *pgxpool.Pool, d *Deps) {
		blobs, err := documents.NewS3Blobs(t.Context(), documents.S3Config{Endpoint: s3.Endpoint, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey,
			Bucket: s3.Bucket, Region: s3.Region, Transport: ft, MaxRetries: 1, SSE: documents.SSEOff})
		if err != nil {
			t.Fatal(err)
		}
		d.Documents = documents.New(pool, d.FHIR, blobs, &memAudit{}, nil, documents.Config{FHIRBase: searchBase + "/fhir"})
		d.Tokens = newTokens(t, d.Directory, tokenKey, searchBase+"/fhir", searchBase+"/token", time.Hour)
	})
	h, _ := audit.NewHasher(bytes.Repeat([]byte{7}, 32))
	x, err := records.NewSearcher(e.srv.Records, records.SearchConfig{CursorKey: tokenKey, Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	api := mountExchange(e.srv, httpx.RequestID())
	NewSearchAPI(e.srv, x).Register(api)
	return &mdmEnv{hl7Env: e, ft: ft, api: api}
}

// get reads target from the exchange as the member's system (treatment purpose).
func (e *mdmEnv) get(t testing.TB, target string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest("GET", strings.TrimPrefix(target, searchBase), nil)
	req.Header.Set("Authorization", "Bearer "+token(t, "client-"+e.member.ID, e.member.ID, "system/*.rs"))
	w := httptest.NewRecorder()
	e.api.ServeHTTP(w, req)
	return w.Code, w.Body.Bytes()
}

// mdmDoc is what the tests read of a stored DocumentReference.
type mdmDoc struct {
	ID   string `json:"id"`
	Meta struct {
		Source string `json:"source"`
	} `json:"meta"`
	Status     string `json:"status"`
	DocStatus  string `json:"docStatus"`
	Identifier []struct{ System, Value string }
	Subject    struct{ Reference string }
	RelatesTo  []struct {
		Code   string
		Target struct{ Reference string }
	}
	Content []struct {
		Attachment struct {
			ContentType string `json:"contentType"`
			URL         string `json:"url"`
			Data        string `json:"data"`
		} `json:"attachment"`
	} `json:"content"`
	Context struct {
		Encounter []struct{ Reference string }
	} `json:"context"`
}

// doc returns the member's current DocumentReference with identifier value num.
func (e *mdmEnv) doc(t testing.TB, num string) (mdmDoc, string) {
	t.Helper()
	var body []byte
	var patient string
	err := e.pool.QueryRow(context.Background(), `SELECT r.body, r.patient_id FROM fhir_resources r JOIN fhir_idx_token t ON t.type = r.type AND t.id = r.id
		WHERE r.type = 'DocumentReference' AND r.member_id = $1 AND t.param = 'identifier' AND t.code = $2 AND NOT r.deleted`, e.member.ID, num).Scan(&body, &patient)
	if err != nil {
		t.Fatalf("document %s: %v", num, err)
	}
	var d mdmDoc
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatal(err)
	}
	return d, patient
}

// bytesOf retrieves the document's first content through GET Binary as the member.
func (e *mdmEnv) bytesOf(t testing.TB, d mdmDoc) []byte {
	t.Helper()
	if len(d.Content) == 0 || d.Content[0].Attachment.Data != "" || !strings.HasPrefix(d.Content[0].Attachment.URL, searchBase+"/fhir/Binary/") {
		t.Fatalf("content %+v: want a Binary URL and no inline data", d.Content)
	}
	code, body := e.get(t, d.Content[0].Attachment.URL)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", d.Content[0].Attachment.URL, code, body)
	}
	return body
}

// txaSeg builds a TXA segment from its fields (1-based; others empty).
func txaSeg(fields map[int]string) string {
	f := make([]string, 23)
	for i, v := range fields {
		f[i] = v
	}
	return "TXA|" + strings.Join(f[1:], "|") + "\r"
}

// mdmMsg is an MDM message of event ev from GENFAC about pid, with TXA-12 num (TXA-13
// parent when not ""), visit number V<visit> when not "", and one TX OBX per line of text.
func mdmMsg(ev, ctl, pid, num, parent, visit, text string) string {
	s := mshGen + "MDM^" + ev + "^MDM_T02|" + ctl + "|P|2.5.1\rEVN|" + ev + "|20250301100000\r" + pid
	if visit != "" {
		s += "PV1|1|O|||||||||||||||||V" + visit + "^^^GENFAC&2.16.840.1.113883.3.9999&ISO^VN\r"
	}
	s += txaSeg(map[int]string{1: "1", 2: "PR", 4: "20250301093000", 5: "C001^Forster^Richard^^^Dr", 12: num, 13: parent, 17: "AU"})
	if text != "" {
		for i, line := range strings.Split(text, "\n") {
			s += "OBX|" + itoa(i+1) + "|TX|||" + line + "\r"
		}
	}
	return s
}

// TestHL7MDMCorpus: the two MDM^T02 of the Simulated Hospital corpus each become one
// DocumentReference of the member, whose bytes (retrieved as the member through GET
// Binary) are the message's OBX text; a resend, under the same MSH-10 or a new one, gets
// the same answer and stores nothing; the member's search by patient finds it, with the
// member as meta.source; the write is audited as the member's system.
func TestHL7MDMCorpus(t *testing.T) {
	e := newMDMEnv(t)
	ctx := context.Background()
	if err := e.dir.AddHL7Sender(ctx, e.member.ID, "SIMHOSP", "SFAC"); err != nil {
		t.Fatal(err)
	}
	if err := e.dir.AddHL7Namespace(ctx, e.member.ID, "SIMULATOR MRN", ""); err != nil {
		t.Fatal(err)
	}
	var msgs [][]byte
	for _, b := range simhospitalMessages(t) {
		if bytes.Contains(b, []byte("|MDM^T02|")) {
			msgs = append(msgs, b)
		}
	}
	if len(msgs) != 2 {
		t.Fatalf("%d MDM^T02 in the corpus, want 2", len(msgs))
	}
	c := mllpClient(t, e.addr)
	for _, b := range msgs {
		if code, err := send(t, c, string(b)); code != "AA" {
			t.Fatalf("MDM^T02: %s %s", code, err)
		}
	}
	check := func(when string) {
		t.Helper()
		if n := e.count(t, "DocumentReference"); n != 2 {
			t.Errorf("%s: %d DocumentReferences, want 2", when, n)
		}
		if n := e.scalar(t, `SELECT count(*) FROM documents_metadata`); n != 2 {
			t.Errorf("%s: %d document metadata rows, want 2", when, n)
		}
	}
	check("first send")
	versions := e.scalar(t, `SELECT count(*) FROM fhir_history`)
	for i, b := range msgs {
		m, err := hl7v2.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for j := 1; m.Get("OBX["+itoa(j)+"]-1") != ""; j++ {
			lines = append(lines, m.Get("OBX["+itoa(j)+"]-5"))
		}
		want := strings.Join(lines, "\n") + "\n"
		d, patient := e.doc(t, m.Get("TXA-12"))
		if got := e.bytesOf(t, d); string(got) != want {
			t.Errorf("message %d: stored bytes differ from the OBX text (%d bytes, want %d)", i, len(got), len(want))
		}
		if d.Status != "current" || d.DocStatus != "final" || len(d.Identifier) != 1 || d.Identifier[0].System != "SFAC" ||
			d.Subject.Reference != "Patient/"+patient || d.Content[0].Attachment.ContentType != "text/plain; charset=utf-8" {
			t.Errorf("message %d: %+v", i, d)
		}
		ctl := m.Get("MSH-10")
		if n := e.scalar(t, `SELECT count(*) FROM audit_events WHERE request_id = $1 AND action = 'create' AND org = $2 AND $3 = ANY(resources)`,
			ctl, e.member.ID, "DocumentReference/"+d.ID); n != 1 {
			t.Errorf("message %d: %d create events for the document, want 1", i, n)
		}

		// The member's search by patient finds it, labelled with its source.
		code, body := e.get(t, "/fhir/DocumentReference?patient="+patient)
		if code != http.StatusOK {
			t.Fatalf("search: %d %s", code, body)
		}
		bd := decode(t, body)
		if len(bd.Entry) != 1 || bd.Entry[0].Resource.ID != d.ID || bd.Entry[0].Resource.Meta.Source != "http://concord.test/members/"+e.member.ID {
			t.Errorf("search by patient: %s", body)
		}

		// A resend under the same MSH-10 and one under a new MSH-10 store nothing.
		if code, _ := send(t, c, string(b)); code != "AA" {
			t.Errorf("resend: %s", code)
		}
		again := bytes.Replace(b, []byte("|MDM^T02|"+ctl+"|"), []byte("|MDM^T02|"+ctl+"-again|"), 1)
		if code, _ := send(t, mllpClient(t, e.addr), string(again)); code != "AA" {
			t.Errorf("resend under a new MSH-10: %s", code)
		}
	}
	check("resend")
	if n := e.scalar(t, `SELECT count(*) FROM fhir_history`); n != versions {
		t.Errorf("resends wrote %d versions", n-versions)
	}
	if n, err := e.srv.Documents.DanglingReferences(ctx); err != nil || n != 0 {
		t.Errorf("dangling = %d, %v", n, err)
	}
}

// TestHL7MDMReplaceAndCancel: T10 stores the new document and supersedes the one TXA-13
// names; T11 marks the document TXA-12 names entered-in-error. A parent or document the
// member does not have for this patient, a cancelled parent, and a number reused for
// other content are AE and store nothing; the visit's Encounter becomes the document's.
func TestHL7MDMReplaceAndCancel(t *testing.T) {
	e := newMDMEnv(t)
	c := mllpClient(t, e.addr)
	sendAE := func(what, msg, wantErr string) {
		t.Helper()
		versions := e.scalar(t, `SELECT count(*) FROM fhir_history`)
		docs := e.scalar(t, `SELECT count(*) FROM documents_metadata`)
		if code, err := send(t, c, msg); code != "AE" || err != wantErr {
			t.Errorf("%s: %s %s, want AE %s", what, code, err, wantErr)
		}
		if e.scalar(t, `SELECT count(*) FROM fhir_history`) != versions || e.scalar(t, `SELECT count(*) FROM documents_metadata`) != docs {
			t.Errorf("%s stored something", what)
		}
	}
	sendAA(t, c, "A01", adtA01("C1", pidA))
	sendAA(t, c, "T02", mdmMsg("T02", "D1", pidA, "DOC-1", "", "C1", "First note.\nSecond line."))
	d1, patient := e.doc(t, "DOC-1")
	var encID string
	if err := e.pool.QueryRow(context.Background(), `SELECT id FROM fhir_resources WHERE type = 'Encounter'`).Scan(&encID); err != nil {
		t.Fatal(err)
	}
	if len(d1.Context.Encounter) != 1 || d1.Context.Encounter[0].Reference != "Encounter/"+encID || d1.Identifier[0].System != "urn:oid:"+hl7TestOID {
		t.Errorf("T02: encounter %+v, identifier %+v", d1.Context.Encounter, d1.Identifier)
	}
	if got := e.bytesOf(t, d1); string(got) != "First note.\nSecond line.\n" {
		t.Errorf("T02 bytes %q", got)
	}

	sendAE("number reused for other text", mdmMsg("T02", "D2", pidA, "DOC-1", "", "", "Other text."), "205")
	sendAE("number of another patient's document", mdmMsg("T02", "D3", pidB, "DOC-1", "", "", "First note.\nSecond line."), "205")
	sendAE("unknown parent", mdmMsg("T10", "D4", pidA, "DOC-2", "NO-SUCH", "", "Corrected."), "204")
	sendAE("parent of another patient", mdmMsg("T10", "D5", pidB, "DOC-2", "DOC-1", "", "Corrected."), "204")
	sendAE("cancel of an unknown document", mdmMsg("T11", "D6", pidA, "NO-SUCH", "", "", ""), "204")

	sendAA(t, c, "T10", mdmMsg("T10", "D7", pidA, "DOC-2", "DOC-1", "", "Corrected note."))
	d1, _ = e.doc(t, "DOC-1")
	d2, p2 := e.doc(t, "DOC-2")
	if d1.Status != "superseded" || d2.Status != "current" || p2 != patient || len(d2.RelatesTo) != 1 ||
		d2.RelatesTo[0].Code != "replaces" || d2.RelatesTo[0].Target.Reference != "DocumentReference/"+d1.ID {
		t.Errorf("T10: old %s, new %s relatesTo %+v", d1.Status, d2.Status, d2.RelatesTo)
	}
	if n := e.scalar(t, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND status = 'superseded' AND superseded_by = $2`, d1.ID, d2.ID); n != 1 {
		t.Errorf("T10: the old document's metadata is not superseded by the new one")
	}
	if n := e.scalar(t, `SELECT count(*) FROM audit_events WHERE request_id = 'D7' AND action = 'update' AND $1 = ANY(resources)`, "DocumentReference/"+d1.ID); n != 1 {
		t.Errorf("T10: %d update events for the superseded document, want 1", n)
	}
	versions := e.scalar(t, `SELECT count(*) FROM fhir_history`)
	sendAA(t, c, "T10 resent under a new MSH-10", mdmMsg("T10", "D8", pidA, "DOC-2", "DOC-1", "", "Corrected note."))
	if n := e.scalar(t, `SELECT count(*) FROM fhir_history`); n != versions {
		t.Errorf("the resent T10 wrote %d versions", n-versions)
	}

	sendAA(t, c, "T11", mdmMsg("T11", "D9", pidA, "DOC-2", "", "", ""))
	d2, _ = e.doc(t, "DOC-2")
	if d2.Status != "entered-in-error" || e.scalar(t, `SELECT count(*) FROM documents_metadata WHERE id = $1 AND status = 'entered-in-error'`, d2.ID) != 1 {
		t.Errorf("T11: status %s", d2.Status)
	}
	if n := e.scalar(t, `SELECT count(*) FROM audit_events WHERE request_id = 'D9' AND action = 'update' AND $1 = ANY(resources)`, "DocumentReference/"+d2.ID); n != 1 {
		t.Errorf("T11: %d update events, want 1", n)
	}
	versions = e.scalar(t, `SELECT count(*) FROM fhir_history`)
	sendAA(t, c, "T11 resent under a new MSH-10", mdmMsg("T11", "D10", pidA, "DOC-2", "", "", ""))
	if n := e.scalar(t, `SELECT count(*) FROM fhir_history`); n != versions {
		t.Errorf("the resent T11 wrote %d versions", n-versions)
	}
	sendAE("replacing a cancelled document", mdmMsg("T10", "D11", pidA, "DOC-3", "DOC-2", "", "Again."), "204")
	if n := e.count(t, "DocumentReference"); n != 2 {
		t.Errorf("%d DocumentReferences, want 2", n)
	}
	if n, err := e.srv.Documents.DanglingReferences(context.Background()); err != nil || n != 0 {
		t.Errorf("dangling = %d, %v", n, err)
	}
}

// TestHL7MDMRejections: malformed or unsupported MDM is answered AE or AR with its reason
// in MSA/ERR, and nothing is stored; a resent AE gets the same AE.
func TestHL7MDMRejections(t *testing.T) {
	e := newMDMEnv(t)
	c := mllpClient(t, e.addr)
	noTXA := strings.Replace(mdmMsg("T02", "R1", pidA, "DOC-1", "", "", "x"), "TXA|", "NTE|", 1)
	zip := mdmMsg("T02", "R6", pidA, "DOC-6", "", "", "") + "OBX|1|ED|||^application^zip^Base64^UEsDBAoAAAAAAA==\r"
	for _, tt := range []struct {
		name, msg, code, err, text string
	}{
		{"no TXA", noTXA, "AE", "100", "TXA segment missing"},
		{"no text", mdmMsg("T02", "R2", pidA, "DOC-2", "", "", ""), "AE", "101", "No document content"},
		{"no document number", mdmMsg("T02", "R3", pidA, "", "", "", "x"), "AE", "101", "Unique document number missing"},
		{"unsupported event", strings.ReplaceAll(mdmMsg("T02", "R4", pidA, "DOC-4", "", "", "x"), "T02", "T01"), "AR", "201", "Only MDM^T02, MDM^T04, MDM^T06, MDM^T10 and MDM^T11 are supported"},
		{"edit in place", mdmMsg("T08", "R8", pidA, "DOC-8", "", "", "x"), "AR", "201", "Only MDM^T02, MDM^T04, MDM^T06, MDM^T10 and MDM^T11 are supported"},
		{"T06 without parent", mdmMsg("T06", "R9", pidA, "DOC-9", "", "", "x"), "AE", "101", "Parent document number missing"},
		{"T04 without status", mdmWith("T04", "R10", pidA, "DOC-10", "", "x", map[int]string{17: ""}), "AE", "101", "Document completion status missing"},
		{"T10 without parent", mdmMsg("T10", "R5", pidA, "DOC-5", "", "", "x"), "AE", "101", "Parent document number missing"},
		{"archive content", zip, "AE", "103", "This kind of document content is not accepted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // the resend gets the same answer
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				ack, err := c.Send(ctx, []byte(tt.msg))
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				if ack.Get("MSA-1") != tt.code || ack.Get("ERR-3.1") != tt.err || ack.Get("MSA-3") != tt.text {
					t.Errorf("ACK %s %s %q, want %s %s %q", ack.Get("MSA-1"), ack.Get("ERR-3.1"), ack.Get("MSA-3"), tt.code, tt.err, tt.text)
				}
			}
		})
	}
	if n := e.scalar(t, `SELECT count(*) FROM fhir_resources`) + e.scalar(t, `SELECT count(*) FROM documents_metadata`); n != 0 {
		t.Errorf("%d rows stored for rejected messages", n)
	}

	// Without a document service, MDM is not accepted (AR), and nothing is stored.
	plain := newHL7Env(t)
	if code, err := send(t, mllpClient(t, plain.addr), mdmMsg("T02", "R7", pidA, "DOC-7", "", "", "x")); code != "AR" || err != "200" {
		t.Errorf("no document service: %s %s, want AR 200", code, err)
	}
	if n := plain.scalar(t, `SELECT count(*) FROM fhir_resources`); n != 0 {
		t.Errorf("%d rows stored without a document service", n)
	}
}

// TestHL7MDMObjectStoreDown: with S3 unreachable a T02 is answered AR (resend later) and
// leaves no row (no document metadata, no DocumentReference, no Patient, no dedupe row);
// the resend of the same message once S3 is back stores one document.
func TestHL7MDMObjectStoreDown(t *testing.T) {
	e := newMDMEnv(t)
	c := mllpClient(t, e.addr)
	msg := mdmMsg("T02", "S1", pidA, "DOC-1", "", "", "A note while S3 is down.")
	e.ft.Set(blobstest.Fault{Down: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ack, err := c.Send(ctx, []byte(msg))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if ack.Get("MSA-1") != "AR" || !strings.Contains(ack.Get("MSA-3"), "resend later") {
		t.Errorf("S3 down: ACK %s %q, want AR, resend later", ack.Get("MSA-1"), ack.Get("MSA-3"))
	}
	for _, table := range []string{"documents_metadata", "documents_contents", "fhir_resources", "exchange_hl7_messages"} {
		if n := e.scalar(t, `SELECT count(*) FROM `+table); n != 0 {
			t.Errorf("S3 down: %d rows in %s", n, table)
		}
	}
	e.ft.Clear()
	if code, err := send(t, c, msg); code != "AA" {
		t.Fatalf("resend once S3 is back: %s %s", code, err)
	}
	d, _ := e.doc(t, "DOC-1")
	if got := e.bytesOf(t, d); string(got) != "A note while S3 is down.\n" {
		t.Errorf("bytes %q", got)
	}
	if n := e.scalar(t, `SELECT count(*) FROM documents_metadata`); n != 1 {
		t.Errorf("%d documents, want 1", n)
	}
}
