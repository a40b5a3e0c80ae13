package portal

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// memDocuments is one person's documents as Documents serves them: it checks only that the
// viewer is that person (the real one decides consent and audits; see cmd/concord).
type memDocuments struct {
	mu      sync.Mutex
	person  string
	items   []DocumentItem
	bytes   map[string][]byte
	uploads map[string][]byte // by key
	opened  []string
}

func (m *memDocuments) List(_ context.Context, v Viewer) ([]DocumentCluster, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v.PersonID != m.person {
		return nil, nil
	}
	out := make([]DocumentCluster, len(m.items))
	for i, it := range m.items {
		out[i] = DocumentCluster{Item: it}
	}
	return out, nil
}

func (m *memDocuments) Open(_ context.Context, v Viewer, id string, want func(DocumentItem) bool) (*DocumentFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bytes[id]
	if !ok || v.PersonID != m.person {
		return nil, errs.E("memDocuments", errs.NotFound, "no such document")
	}
	m.opened = append(m.opened, id)
	var item DocumentItem
	for _, it := range m.items {
		if it.ID == id {
			item = it
		}
	}
	f := &DocumentFile{Item: item, ContentType: item.ContentType, Filename: id + ".bin", Size: int64(len(b)), Close: func() error { return nil }}
	if want == nil || want(item) {
		f.Write = func(w io.Writer) error { _, err := w.Write(b); return err }
	}
	return f, nil
}

func (m *memDocuments) Upload(_ context.Context, v Viewer, key, ct string, body io.Reader) error {
	b, _ := io.ReadAll(body)
	if ct != "text/plain" && ct != "application/pdf" {
		return errs.E("memDocuments", errs.Unsupported, "type not allowed")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, seen := m.uploads[key]; !seen {
		m.uploads[key] = b
		m.items = append(m.items, DocumentItem{ID: "up-" + key, Title: "Your upload", ContentType: ct, Size: int64(len(b)), Uploaded: true, Status: "current"})
		m.bytes["up-"+key] = b
	}
	return nil
}

const testCCDA = `<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"><title>Discharge Summary</title>
<component><structuredBody><component><section><title>Medications</title><text><paragraph>Atorvastatin &lt;script&gt;x&lt;/script&gt;</paragraph></text></section></component></structuredBody></component></ClinicalDocument>`

// upload posts a multipart form with file content b of type ct, as a browser would (with
// fetchSite "", as an old browser that sends no Sec-Fetch-Site).
func (c *client) upload(u, csrf, key, ct string, b []byte, fetchSite string) resp {
	c.t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	_ = w.WriteField("_csrf", csrf)
	_ = w.WriteField("key", key)
	h := make(map[string][]string)
	h["Content-Disposition"] = []string{`form-data; name="file"; filename="../../etc/passwd"`}
	h["Content-Type"] = []string{ct}
	part, _ := w.CreatePart(h)
	part.Write(b)
	w.Close()
	req, _ := http.NewRequest(http.MethodPost, u, &body)
	req.Header.Set("Content-Type", w.FormDataContentType())
	if fetchSite != "" {
		req.Header.Set("Sec-Fetch-Site", fetchSite)
	}
	return c.do(req)
}

// TestPatientDocuments: the documents page lists clinical documents (a shared one once,
// with its copies) and uploads; a C-CDA is rendered as escaped HTML, text as text, other
// files download under a generated name with nosniff and a sandbox; uploads need the CSRF
// token, are idempotent by the form's key, and bad types get a readable sentence; staff and
// other persons get nothing.
func TestPatientDocuments(t *testing.T) {
	t.Parallel()
	docs := &memDocuments{person: "person-1", uploads: map[string][]byte{}, bytes: map[string][]byte{
		"ccda-1": []byte(testCCDA), "note-1": []byte("Visit note: walk daily.\n"), "pdf-1": []byte("%PDF-1.4 demo")}}
	docs.items = []DocumentItem{
		{ID: "ccda-1", Title: "Discharge summary", Date: time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC), Sources: []string{"Riverside Family Clinic"}, ContentType: "application/xml", Size: int64(len(testCCDA)), Status: "current"},
		{ID: "note-1", Title: "Progress note", Sources: []string{"Riverside Family Clinic", "Valley Labs"}, Copies: "2 copies from 2 organizations", ContentType: "text/plain", Size: 24, Status: "current"},
		{ID: "pdf-1", Title: "Referral letter", ContentType: "application/pdf", Size: 13, Status: "superseded"},
	}
	e := newEnv(t, envOpts{documents: docs})
	c := newClient(t)
	e.signIn(t, c, "alice", "alice-pw")
	list := c.get(e.base + "/documents")
	for _, want := range []string{"Discharge summary", "Progress note", "2 copies from 2 organizations", "Riverside Family Clinic, Valley Labs", "replaced", "PDF, 13 bytes", `enctype="multipart/form-data"`} {
		if !strings.Contains(list.body, want) {
			t.Errorf("documents page lacks %q", want)
		}
	}
	if list.status != http.StatusOK || list.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("documents page: %d, Cache-Control %q", list.status, list.header.Get("Cache-Control"))
	}
	if p := c.get(e.base + "/documents/ccda-1"); p.status != http.StatusOK || !strings.Contains(p.body, "<h3>Medications</h3>") ||
		strings.Contains(p.body, "<script>x") || !strings.Contains(p.body, "&lt;script&gt;") {
		t.Errorf("C-CDA page %d:\n%s", p.status, p.body)
	}
	if p := c.get(e.base + "/documents/note-1"); p.status != http.StatusOK || !strings.Contains(p.body, `<pre class="doc-text">Visit note: walk daily.`) {
		t.Errorf("text page %d", p.status)
	}
	f := c.get(e.base + "/documents/pdf-1/file")
	if f.status != http.StatusOK || f.body != "%PDF-1.4 demo" || f.header.Get("X-Content-Type-Options") != "nosniff" ||
		!strings.HasPrefix(f.header.Get("Content-Disposition"), "attachment") || !strings.Contains(f.header.Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("download: %d %q %v", f.status, f.body, f.header)
	}
	if p := c.get(e.base + "/documents/nope"); p.status != http.StatusNotFound {
		t.Errorf("unknown document: %d", p.status)
	}
	if p := c.get(e.base + "/documents/nope/file"); p.status != http.StatusNotFound {
		t.Errorf("unknown document's file: %d", p.status)
	}

	tok := csrfFrom(t, list.body)
	if r := c.upload(e.base+"/documents", "", "k0", "text/plain", []byte("hello"), ""); r.status != http.StatusBadRequest && r.status != http.StatusForbidden {
		t.Errorf("upload without CSRF token: %d", r.status)
	}
	if r := c.upload(e.base+"/documents", tok, "k0", "text/plain", []byte("hello"), "cross-site"); r.status != http.StatusForbidden {
		t.Errorf("cross-site upload: %d", r.status)
	}
	for range 2 {
		if r := c.upload(e.base+"/documents", tok, "k1", "text/plain", []byte("My vaccination card.\n"), ""); r.status != http.StatusSeeOther || r.header.Get("Location") != "/documents?uploaded=1" {
			t.Fatalf("upload: %d %q\n%s", r.status, r.header.Get("Location"), r.body)
		}
	}
	if len(docs.uploads) != 1 || string(docs.uploads["k1"]) != "My vaccination card.\n" {
		t.Errorf("uploads %v; want one, by key", docs.uploads)
	}
	if r := c.upload(e.base+"/documents", tok, "k2", "application/zip", []byte("PK\x03\x04"), "same-origin"); r.status != http.StatusUnsupportedMediaType || !strings.Contains(r.body, "cannot be uploaded") {
		t.Errorf("a zip upload: %d", r.status)
	}
	after := c.get(e.base + "/documents?uploaded=1")
	if !strings.Contains(after.body, "Your document was uploaded.") || !strings.Contains(after.body, `href="/documents/up-k1"`) {
		t.Errorf("page after an upload:\n%s", after.body)
	}

	staff := newClient(t)
	e.signIn(t, staff, "drjones", "jones-pw")
	if r := staff.get(e.base + "/documents"); r.status == http.StatusOK {
		t.Errorf("a clinician on the patient's documents page: %d", r.status)
	}
}

// clusterDocuments is memDocuments that lists near-duplicates as one entry, as the real
// one does after its consent filter: clusters holds what the person may see, and each copy
// opens from memDocuments.
type clusterDocuments struct {
	*memDocuments
	clusters []DocumentCluster
}

func (m *clusterDocuments) List(_ context.Context, v Viewer) ([]DocumentCluster, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v.PersonID != m.person {
		return nil, nil
	}
	return append([]DocumentCluster(nil), m.clusters...), nil
}

// dischargeCopies is a discharge summary that two members sent three times, in different
// bytes, as a clustering Documents would list it: one entry with every copy.
func dischargeCopies(t testing.TB) *clusterDocuments {
	t.Helper()
	day := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	docs := &memDocuments{person: "person-1", uploads: map[string][]byte{}, bytes: map[string][]byte{
		"ds-river": []byte(testCCDA), "ds-valley": []byte(strings.Replace(testCCDA, "</ClinicalDocument>", "<!-- Valley EHR --></ClinicalDocument>", 1)),
		"ds-valley-2": []byte("Discharge summary (Valley EHR text rendering)\nMedications: atorvastatin.\n"),
		"note-1":      []byte("Visit note: walk daily.\n")}}
	copies := []DocumentCopy{
		{ID: "ds-river", Source: "Riverside Family Clinic", Received: day.Add(2 * time.Hour), ContentType: "application/xml", Size: int64(len(docs.bytes["ds-river"])), Status: "current"},
		{ID: "ds-valley-2", Source: "Valley Labs", Received: day.Add(50 * time.Hour), ContentType: "text/plain", Size: int64(len(docs.bytes["ds-valley-2"])), Status: "current"},
		{ID: "ds-valley", Source: "Valley Labs", Received: day.Add(26 * time.Hour), ContentType: "application/xml", Size: int64(len(docs.bytes["ds-valley"])), Status: "current"},
	}
	for _, c := range copies {
		docs.items = append(docs.items, DocumentItem{ID: c.ID, Title: "Discharge summary", Date: day, Sources: []string{c.Source}, ContentType: c.ContentType, Size: c.Size, Status: c.Status})
	}
	note := DocumentItem{ID: "note-1", Title: "Progress note", Date: day.AddDate(0, 0, -20), Sources: []string{"Riverside Family Clinic"}, ContentType: "text/plain", Size: 24, Status: "current"}
	docs.items = append(docs.items, note)
	primary := docs.items[0]
	primary.Sources, primary.Copies = []string{"Riverside Family Clinic", "Valley Labs"}, "3 copies from 2 organizations"
	return &clusterDocuments{memDocuments: docs, clusters: []DocumentCluster{
		{Item: primary, Copies: copies},
		{Item: note, Copies: []DocumentCopy{{ID: "note-1", Source: "Riverside Family Clinic", ContentType: "text/plain", Size: 24, Status: "current"}}},
	}}
}

// TestPatientDocumentsClustered: near-duplicates are one row with the cluster's count and
// sources, and every copy is listed under it with its source, date received, kind and size,
// and opens and downloads on its own; an entry of one copy has no list of copies.
func TestPatientDocumentsClustered(t *testing.T) {
	t.Parallel()
	docs := dischargeCopies(t)
	e := newEnv(t, envOpts{documents: docs})
	c := newClient(t)
	e.signIn(t, c, "alice", "alice-pw")
	list := c.get(e.base + "/documents")
	if list.status != http.StatusOK {
		t.Fatalf("documents page: %d", list.status)
	}
	if n := strings.Count(list.body, `<tr class="clustered">`); n != 1 {
		t.Errorf("%d clustered rows, want 1", n)
	}
	if n := strings.Count(list.body, `<details class="copies">`); n != 1 {
		t.Errorf("%d lists of copies, want 1 (none for a single copy)", n)
	}
	for _, want := range []string{"3 copies from 2 organizations", "Riverside Family Clinic, Valley Labs", "Show all 3 copies",
		"Copy from Valley Labs", "Received <time datetime=\"2026-09-03\">3 Sep 2026</time>", "Text, 73 bytes"} {
		if !strings.Contains(list.body, want) {
			t.Errorf("documents page lacks %q", want)
		}
	}
	for _, id := range []string{"ds-river", "ds-valley", "ds-valley-2"} {
		for _, u := range []string{"/documents/" + id, "/documents/" + id + "/file"} {
			if !strings.Contains(list.body, `href="`+u+`"`) {
				t.Errorf("no link to %s", u)
			}
			if r := c.get(e.base + u); r.status != http.StatusOK {
				t.Errorf("%s: %d", u, r.status)
			}
		}
	}
	if r := c.get(e.base + "/documents/ds-valley/file"); r.body != string(docs.bytes["ds-valley"]) {
		t.Errorf("the Valley copy's bytes: %q", r.body)
	}
}
