package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/portal"
	"github.com/concord-hie/concord/records"
)

// demoPersonID is the MPI person of demo person i (by their first member's MRN).
func demoPersonID(t *testing.T, m *Main, i int) string {
	t.Helper()
	region := demoRegion(m.cfg.DemoSeed)
	p := region.persons[i]
	src, err := m.mpi.SourceByIdentifier(context.Background(), nil, region.members[p.Members[0]].OID, region.mrn(p.Members[0], i))
	if err != nil {
		t.Fatal(err)
	}
	return string(src.PersonID)
}

// TestPatientLookupByPerson: the clinician's look-up by person finds the organization's
// own record (name, MRN) through an audited read, and is NotFound at an organization that
// holds no record of the person.
func TestPatientLookupByPerson(t *testing.T) {
	m := demoEnv(t)
	ctx := context.Background()
	region := demoRegion(m.cfg.DemoSeed)
	riverside := region.members[0].ID
	srcs, err := m.mpi.SourcesOfMember(ctx, riverside, region.mrn(0, 0))
	if err != nil || len(srcs) != 1 {
		t.Fatalf("Ana's source at %s: %v, %v", riverside, srcs, err)
	}
	person := string(srcs[0].PersonID)
	l := patientLookup{portalRecords{m.records, m.directory}, m.mpi}
	v := portal.Viewer{Role: portal.RoleClinician, Org: riverside, Actor: "https://idp.example|doc-1", RequestID: "lookup-by-person-1"}
	p, err := l.ByPerson(ctx, v, person)
	if err != nil || p.MRN != region.mrn(0, 0) || p.PersonID != person || !strings.Contains(p.Name, "Ana") {
		t.Fatalf("ByPerson: %+v, %v", p, err)
	}
	var n int
	if err := m.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE request_id = $1 AND patient = $2 AND outcome = 'permit'`,
		v.RequestID, person).Scan(&n); err != nil || n != 1 {
		t.Fatalf("audit events of the look-up: %d, %v; want 1", n, err)
	}
	v.Org = "no-such-member"
	if _, err := l.ByPerson(ctx, v, person); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("at an organization without the person: %v; want NotFound", err)
	}
}

// listedItems is the entry of each listed document cluster.
func listedItems(cls []portal.DocumentCluster, err error) ([]portal.DocumentItem, error) {
	out := make([]portal.DocumentItem, len(cls))
	for i, c := range cls {
		out[i] = c.Item
	}
	return out, err
}

// TestPortalDocuments: the patient's documents page lists the demo documents from every
// member, the shared visit note once with both sources, the discharge summary once with
// its near-duplicate; opening one audits the read and
// streams the bytes; another patient cannot open it; uploads are the patient's own,
// idempotent by key, and refused when they are archives.
func TestPortalDocuments(t *testing.T) {
	m := demoEnv(t)
	ctx := context.Background()
	person := func(i int) string { return demoPersonID(t, m, i) }
	ana := portal.Viewer{PersonID: person(0), Role: portal.RolePatient, Actor: "iss|demo-ana", RequestID: "docs-1"}
	pd := portalDocuments{portalRecords{m.records, m.directory}, m.docs, m.audit, time.Now}
	items, err := listedItems(pd.List(ctx, ana))
	if err != nil {
		t.Fatal(err)
	}
	var discharge, note *portal.DocumentItem
	for i := range items {
		switch items[i].Title {
		case "Discharge summary":
			discharge = &items[i]
		case "Progress note":
			note = &items[i]
		}
	}
	// The discharge summary and the second clinic's text rendering of it are one entry,
	// led by the hospital's own C-CDA; the note both clinics sent is one entry too.
	if len(items) != 2 || discharge == nil || note == nil || note.Copies != "2 copies from 2 organizations" || len(note.Sources) != 2 ||
		discharge.Copies != "2 copies from 2 organizations" || len(discharge.Sources) != 2 || discharge.ContentType != "application/xml" {
		t.Fatalf("documents %+v", items)
	}
	ana.RequestID = "docs-2"
	f, err := pd.Open(ctx, ana, discharge.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil || !strings.Contains(buf.String(), "<ClinicalDocument") || int64(buf.Len()) != f.Size {
		t.Fatalf("discharge summary: %d bytes of %d, %v", buf.Len(), f.Size, err)
	}
	f.Close()
	var n int
	if err := m.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE request_id = 'docs-2' AND action = 'read' AND outcome = 'permit'
		AND resources = ARRAY['DocumentReference/' || $1]`, discharge.ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("audit events of the read: %d, %v", n, err)
	}
	// The document's page: one read that describes the document without fetching its bytes.
	ana.RequestID = "docs-page"
	page, err := pd.Open(ctx, ana, discharge.ID, func(portal.DocumentItem) bool { return false })
	if err != nil || page.Write != nil || page.Item.Title != "Discharge summary" || len(page.Item.Sources) != 1 || page.Item.ContentType != "application/xml" {
		t.Fatalf("page description %+v, %v", page, err)
	}
	page.Close()
	if err := m.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE request_id = 'docs-page'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("audit events of one document page: %d, %v; want 1", n, err)
	}
	ben := portal.Viewer{PersonID: person(1), Role: portal.RolePatient, Actor: "iss|demo-ben", RequestID: "docs-3"}
	if _, err := pd.Open(ctx, ben, discharge.ID, nil); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("another patient opening ana's document: %v; want NotFound", err)
	}
	for range 2 {
		if err := pd.Upload(ctx, ana, "upload-key-1", "text/plain", strings.NewReader("My vaccination card, typed out.\n")); err != nil {
			t.Fatal(err)
		}
	}
	if err := pd.Upload(ctx, ana, "upload-key-2", "application/zip", strings.NewReader("PK\x03\x04 not a document")); errs.CodeOf(err) != errs.Unsupported && errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("an archive upload: %v; want refused", err)
	}
	items, err = listedItems(pd.List(ctx, ana))
	if err != nil {
		t.Fatal(err)
	}
	var ups []portal.DocumentItem
	for _, it := range items {
		if it.Uploaded {
			ups = append(ups, it)
		}
	}
	if len(ups) != 1 {
		t.Fatalf("uploads after a repeated key: %+v", ups)
	}
	f, err = pd.Open(ctx, ana, ups[0].ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := f.Write(&buf); err != nil || buf.String() != "My vaccination card, typed out.\n" {
		t.Fatalf("upload read back: %q, %v", buf.String(), err)
	}
	f.Close()
	if _, err := pd.Open(ctx, ben, ups[0].ID, nil); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("another patient opening ana's upload: %v; want NotFound", err)
	}
}

// TestProxyKeep: a caregiver's candidates leave out anything with a sensitive label; the
// patient's keep is untouched, and a caregiver's keep still applies.
func TestProxyKeep(t *testing.T) {
	plain := store.Stored{Body: []byte(`{"resourceType":"Observation","status":"final"}`)}
	hiv := store.Stored{Body: []byte(`{"resourceType":"Observation","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]}}`)}
	restricted := store.Stored{Body: []byte(`{"resourceType":"Observation","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]}}`)}
	proxy := proxyKeep(portal.Viewer{Role: portal.RoleProxy}, nil)
	if !proxy(plain) || proxy(hiv) || proxy(restricted) {
		t.Errorf("proxy keep: plain %v, HIV %v, R %v; want true, false, false", proxy(plain), proxy(hiv), proxy(restricted))
	}
	if opted := proxyKeep(portal.Viewer{Role: portal.RoleProxy, ProxySensitive: true}, nil); opted != nil {
		t.Errorf("a caregiver the patient let see sensitive information still has a filter")
	}
	if proxyKeep(portal.Viewer{Role: portal.RolePatient}, nil) != nil {
		t.Error("the patient's keep was changed")
	}
	none := proxyKeep(portal.Viewer{Role: portal.RoleProxy}, func(store.Stored) bool { return false })
	if none(plain) {
		t.Error("the caregiver's own keep was ignored")
	}
}

// TestPortalSummary: the demo patient's health summary holds her problems, medications,
// allergy and immunizations from two members with their names; her caregiver's view of it
// leaves out the problem labelled mental health.
func TestPortalSummary(t *testing.T) {
	m := demoEnv(t)
	ctx := context.Background()
	region := demoRegion(m.cfg.DemoSeed)
	pr := portalRecords{m.records, m.directory}
	ana := portal.Viewer{PersonID: demoPersonID(t, m, 0), Role: portal.RolePatient, Actor: "iss|demo-ana", RequestID: "sum-1"}
	sum, err := pr.Summary(ctx, ana, ana.PersonID)
	if err != nil {
		t.Fatal(err)
	}
	names := func(items []portal.SummaryItem) string {
		var out []string
		for _, it := range items {
			out = append(out, it.Display+"@"+it.SourceMemberName)
		}
		return strings.Join(out, "; ")
	}
	if len(sum.Conditions) != 3 || len(sum.Medications) != 2 || len(sum.Allergies) != 1 || len(sum.Immunizations) != 2 ||
		!strings.Contains(names(sum.Conditions), "Generalized anxiety disorder@"+region.members[1].Name) ||
		sum.Allergies[0].Detail != "Hives; high criticality" || sum.Medications[0].Detail == "" {
		t.Fatalf("summary: conditions %s; meds %s; allergies %+v; immunizations %s", names(sum.Conditions), names(sum.Medications), sum.Allergies, names(sum.Immunizations))
	}
	carer := ana
	carer.Role, carer.Actor = portal.RoleProxy, "iss|demo-ben"
	sum, err = pr.Summary(ctx, carer, ana.PersonID)
	if err != nil || len(sum.Conditions) != 2 || strings.Contains(names(sum.Conditions), "anxiety") {
		t.Fatalf("caregiver's summary: %s, %v", names(sum.Conditions), err)
	}
}

// TestPortalBreakGlass: a clinician at ana's clinic does not see her PSY-labelled problem
// for treatment; after declaring an emergency from the portal they do, until it expires;
// the declaration opens an officer review and is audited.
func TestPortalBreakGlass(t *testing.T) {
	m := demoEnv(t)
	ctx := context.Background()
	region := demoRegion(m.cfg.DemoSeed)
	person := demoPersonID(t, m, 0)
	pr := portalRecords{m.records, m.directory}
	bg := portalBreakGlass{m.pool, records.NewBreakGlassStore(m.pool), consent.BreakGlassPolicy{}, m.audit, time.Now}
	doc := portal.Viewer{Role: portal.RoleClinician, Org: region.members[0].ID, Actor: "iss|demo-dr.riverside", RequestID: "btg-portal-1"}
	count := func(v portal.Viewer) int {
		t.Helper()
		sum, err := pr.Summary(ctx, v, person)
		if err != nil {
			t.Fatal(err)
		}
		return len(sum.Conditions)
	}
	if n := count(doc); n != 2 {
		t.Fatalf("conditions for treatment: %d, want 2 (the PSY one withheld)", n)
	}
	if until, err := bg.Active(ctx, doc, person); err != nil || !until.IsZero() {
		t.Fatalf("active before declaring: %v, %v", until, err)
	}
	withGlass := doc
	withGlass.BreakGlass = true
	if n := count(withGlass); n != 0 {
		t.Fatalf("purpose BTG without a declaration: %d conditions, want none", n)
	}
	if _, err := bg.Declare(ctx, doc, person, "no-such-reason", "x"); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("unknown reason: %v", err)
	}
	until, err := bg.Declare(ctx, doc, person, consent.BTGUnresponsive, "Unconscious in the ED")
	if err != nil || until.Before(time.Now()) {
		t.Fatalf("declare: %v, %v", until, err)
	}
	if active, err := bg.Active(ctx, doc, person); err != nil || active.Sub(until).Abs() > time.Millisecond {
		t.Fatalf("active: %v, %v; want %v", active, err, until)
	}
	if n := count(withGlass); n != 3 {
		t.Fatalf("conditions under the declaration: %d, want 3", n)
	}
	var tasks, events int
	if err := m.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM consent_review_tasks WHERE person_id::text = $1 AND status = 'open'),
		(SELECT count(*) FROM audit_events WHERE patient = $1 AND action = 'break-glass' AND request_id = 'btg-portal-1')`, person).Scan(&tasks, &events); err != nil || tasks != 1 || events != 1 {
		t.Fatalf("review tasks %d, break-glass events %d, %v; want 1 and 1", tasks, events, err)
	}
	// Another clinician's declaration does not apply to this one.
	other := withGlass
	other.Actor = "iss|demo-someone-else"
	if n := count(other); n != 0 {
		t.Fatalf("another clinician under this declaration: %d conditions, want none", n)
	}
}

// TestPortalExport: the patient's download is a FHIR Bundle the strict R4 parser accepts,
// holding her Patient records, labs, problems and documents from every member with their
// meta.source, after one export audit event; her caregiver's leaves out the mental-health problem; another patient
// gets nothing of hers.
func TestPortalExport(t *testing.T) {
	m := demoEnv(t)
	ctx := context.Background()
	pr := portalRecords{m.records, m.directory}
	ana := portal.Viewer{PersonID: demoPersonID(t, m, 0), Role: portal.RolePatient, Actor: "iss|demo-ana", RequestID: "export-1"}
	export := func(v portal.Viewer) (map[string]int, string) {
		t.Helper()
		var buf bytes.Buffer
		if err := pr.Export(ctx, v, ana.PersonID, &buf); err != nil {
			return nil, err.Error()
		}
		if _, err := fhir.Parse(buf.Bytes()); err != nil {
			t.Fatalf("the download is not a valid R4 resource: %v", err)
		}
		var b struct {
			Type  string `json:"type"`
			Entry []struct {
				Resource struct {
					ResourceType string `json:"resourceType"`
					Meta         struct {
						Source string `json:"source"`
					} `json:"meta"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(buf.Bytes(), &b); err != nil || b.Type != "collection" {
			t.Fatalf("bundle: type %q, %v", b.Type, err)
		}
		n := map[string]int{}
		for _, e := range b.Entry {
			if e.Resource.Meta.Source == "" {
				t.Errorf("a %s without meta.source", e.Resource.ResourceType)
			}
			n[e.Resource.ResourceType]++
		}
		return n, buf.String()
	}
	own, _ := export(ana)
	if own["Patient"] != 3 || own["Observation"] == 0 || own["Condition"] != 3 || own["DocumentReference"] == 0 || own["MedicationRequest"] != 2 {
		t.Fatalf("the patient's download holds %v; want her Patient record at each of 3 members too", own)
	}
	var events int
	if err := m.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE request_id = 'export-1' AND action = 'export'`).Scan(&events); err != nil || events != 1 {
		t.Fatalf("export audit events of the download: %d, %v; want 1", events, err)
	}
	carer := ana
	carer.Role, carer.Actor, carer.RequestID = portal.RoleProxy, "iss|demo-ben", "export-2"
	if theirs, _ := export(carer); theirs["Condition"] != 2 || theirs["Observation"] != own["Observation"] {
		t.Errorf("the caregiver's download holds %v; want the anxiety problem left out", theirs)
	}
	ben := portal.Viewer{PersonID: demoPersonID(t, m, 1), Role: portal.RolePatient, Actor: "iss|demo-ben", RequestID: "export-3"}
	if other, _ := export(ben); len(other) != 0 {
		t.Errorf("another patient downloaded ana's record: %v", other)
	}
}

// TestDemoClientsAfterReseed: a demo database dropped and seeded again beside the old data
// dir (the README's "start over") gets clients for the old key files' members again, and
// each file then names a client the database knows, so the printed credentials work.
func TestDemoClientsAfterReseed(t *testing.T) {
	m := demoEnv(t)
	ctx := context.Background()
	region := demoRegion(m.cfg.DemoSeed)
	dm := region.members[0]
	path := filepath.Join(m.cfg.DataDir, "demo-clients", dm.ID+".json")
	// The file of a former database: a client ID this one never registered.
	if err := os.WriteFile(path, []byte(`{"client_id":"0123456789abcdef01234567","token_url":"x","private_jwk":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := region.ensureClients(ctx, m); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		ClientID string `json:"client_id"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	c, err := m.directory.Client(ctx, f.ClientID)
	if err != nil || c.MemberID != dm.ID {
		t.Fatalf("client %s of the rewritten file: %+v, %v; want a client of %s", f.ClientID, c, err, dm.ID)
	}
	// The token the file's key gets is accepted.
	ts, err := newTokenSource(m.cfg.DataDir, dm.ID, m.cfg.BaseURL+"/token", "system/*.rs")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.refresh(); err != nil {
		t.Fatalf("token with the rewritten key: %v", err)
	}
	// concord member token prints one for trying the API by hand; an unknown member is a
	// one-line error.
	var out, errb bytes.Buffer
	args := []string{"token", "--member", dm.ID, "--data-dir", m.cfg.DataDir, "--base-url", m.cfg.BaseURL}
	if err := runMember(ctx, args, &out, &errb); err != nil || strings.Count(out.String(), ".") != 2 {
		t.Fatalf("member token: %q, %v %s; want one JWT", out.String(), err, errb.String())
	}
	out.Reset()
	if err := runMember(ctx, []string{"token", "--member", "nobody", "--data-dir", m.cfg.DataDir, "--base-url", m.cfg.BaseURL}, &out, &errb); err == nil || out.Len() != 0 {
		t.Fatalf("member token of an unknown member: %q, %v", out.String(), err)
	}
}
