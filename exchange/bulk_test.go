package exchange

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
)

// bulkDo sends a request as client of member with the given extra headers and returns the
// response.
func (env *notifyEnv) bulkDo(t *testing.T, client, member, method, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Header.Set("Authorization", "Bearer "+token(t, client, member, "system/*.cruds "+ScopeBulkExport))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	env.e.ServeHTTP(rec, req)
	return rec
}

// ndjsonIDs returns the "Type/id" of every line of an NDJSON body, failing on a line that
// is not one JSON resource.
func ndjsonIDs(t *testing.T, body string) []string {
	t.Helper()
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct{ ResourceType, ID string }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.ResourceType == "" {
			t.Fatalf("NDJSON line %q: %v", sc.Text(), err)
		}
		ids = append(ids, r.ResourceType+"/"+r.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestBulkGroupExport runs a Bulk Data export the way a member's EHR does (kick-off, poll,
// download, cancel) over member b's roster of person P (pb, linked to pa at member a) and
// pc, and checks what the files hold: the consent-filtered regional record up to the
// transactionTime, no Part 2 record, nothing for another client, and after P's consent is
// withdrawn only what b sent itself, each download audited per person as an export.
func TestBulkGroupExport(t *testing.T) {
	env := newNotifyEnv(t)
	ctx := context.Background()
	fs := store.New(env.pool)
	put := func(member, patient, body string) string {
		t.Helper()
		var id string
		err := db.InTx(ctx, env.pool, func(tx db.Querier) error {
			st, err := fs.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(body)), MemberID: member, PatientID: patient, At: time.Now()})
			id = st.ID
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return "Observation/" + id
	}
	obs := func(member, patient, label string) string {
		sec := ""
		if label != "" {
			sec = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + label + `"}]},`
		}
		return put(member, patient, `{"resourceType":"Observation",`+sec+`"status":"final","code":{"text":"Hemoglobin A1c"},"subject":{"reference":"Patient/`+patient+`"}}`)
	}
	personOf := func(patient string) string {
		t.Helper()
		var person string
		if err := env.pool.QueryRow(ctx, `SELECT person_id FROM mpi_source_records WHERE patient_id = $1`, patient).Scan(&person); err != nil {
			t.Fatal(err)
		}
		return person
	}
	env.dirs[personOf(env.pc)] = consent.DefaultPolicies(consent.PolicyConfig{}) // pc's person: the regional default too
	fromA := obs("a", env.pa, "")                                                // regional: P's record at member a
	ownB := obs("b", env.pb, "")                                                 // b's own record of P
	part2 := obs("b", env.pb, "42CFRPart2")                                      // never in bulk
	unlinked := obs("b", env.pc, "")                                             // pc: b's own patient, no other member

	code, body := env.do(t, "b", "POST", "/fhir/Group", `{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+env.pb+`"}},{"entity":{"reference":"Patient/`+env.pc+`"}}]}`)
	if code != http.StatusCreated {
		t.Fatalf("roster: %d %s", code, body)
	}
	var group struct{ ID string }
	_ = json.Unmarshal([]byte(body), &group)
	kickoff := "/fhir/Group/" + group.ID + "/$export"
	async := []string{"Prefer", "respond-async", "Accept", "application/fhir+json"}

	// Refusals: no Prefer, an unsupported parameter (unless handling is lenient), a bad type
	// or format, another member's roster.
	for _, tc := range []struct {
		member, path string
		header       []string
		want         int
	}{
		{"b", kickoff, nil, http.StatusBadRequest},
		{"b", kickoff + "?_typeFilter=Observation%3Fcode%3Dx", async, http.StatusBadRequest},
		{"b", kickoff + "?_typeFilter=Observation%3Fcode%3Dx", []string{"Prefer", "respond-async, handling=lenient"}, http.StatusAccepted},
		{"b", kickoff + "?_type=NotAType", async, http.StatusBadRequest},
		{"b", kickoff + "?_outputFormat=text/csv", async, http.StatusUnsupportedMediaType},
		{"a", kickoff, async, http.StatusNotFound},
		{"b", "/fhir/Group/no-such-group/$export", async, http.StatusNotFound},
	} {
		if rec := env.bulkDo(t, "client-"+tc.member, tc.member, "GET", tc.path, tc.header...); rec.Code != tc.want {
			t.Errorf("%s as %s: %d %s, want %d", tc.path, tc.member, rec.Code, rec.Body, tc.want)
		}
	}
	// A token without the bulk export scope by name, or that may not read Groups or a type
	// it asks for, cannot kick off at all.
	for _, scope := range []string{"system/*.cruds", ScopeBulkExport + " system/Observation.rs", ScopeBulkExport + " system/Group.r"} {
		req := httptest.NewRequest("GET", kickoff+"?_type=Observation", nil)
		req.Header.Set("Authorization", "Bearer "+token(t, "client-b", "b", scope))
		req.Header.Set("Prefer", "respond-async")
		rec := httptest.NewRecorder()
		env.e.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("kick-off with scope %s: %d %s, want 403", scope, rec.Code, rec.Body)
		}
	}
	// Reading the roster Group itself is unaffected by the $export route.
	if code, body := env.do(t, "b", "GET", "/fhir/Group/"+group.ID, ""); code != http.StatusOK {
		t.Fatalf("GET Group: %d %s", code, body)
	}

	rec := env.bulkDo(t, "client-b", "b", "GET", kickoff+"?_type=Observation,Patient", async...)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("kick-off: %d %s", rec.Code, rec.Body)
	}
	status := strings.TrimPrefix(rec.Header().Get("Content-Location"), searchBase)
	if !strings.HasPrefix(status, "/fhir/$export-status/") {
		t.Fatalf("Content-Location %q", rec.Header().Get("Content-Location"))
	}
	later := obs("a", env.pa, "") // after the transactionTime: served as it stands now

	// Another client, even of the same member, and another member see no job.
	for _, who := range [][2]string{{"client-b2", "b"}, {"client-a", "a"}} {
		if rec := env.bulkDo(t, who[0], who[1], "GET", status); rec.Code != http.StatusNotFound {
			t.Errorf("status as %v: %d, want 404", who, rec.Code)
		}
	}
	rec = env.bulkDo(t, "client-b", "b", "GET", status)
	if rec.Code != http.StatusOK || rec.Header().Get("Expires") == "" {
		t.Fatalf("status: %d %s", rec.Code, rec.Body)
	}
	var m struct {
		TransactionTime     string
		Request             string
		RequiresAccessToken bool
		Output              []struct{ Type, URL string }
		Error               []any
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || !m.RequiresAccessToken || m.Error == nil ||
		!strings.HasSuffix(m.Request, kickoff+"?_type=Observation,Patient") || len(m.Output) != 2 {
		t.Fatalf("manifest %s (%v)", rec.Body, err)
	}
	if _, err := time.Parse(time.RFC3339Nano, m.TransactionTime); err != nil {
		t.Fatalf("transactionTime %q: %v", m.TransactionTime, err)
	}
	files := map[string]string{}
	for _, o := range m.Output {
		files[o.Type] = strings.TrimPrefix(o.URL, searchBase)
	}
	fetch := func(client, typ string) *httptest.ResponseRecorder {
		return env.bulkDo(t, client, "b", "GET", files[typ], "Accept", "application/fhir+ndjson")
	}
	rec = fetch("client-b", "Observation")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != mimeNDJSON {
		t.Fatalf("Observation file: %d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	want := []string{fromA, ownB, unlinked, later}
	slices.Sort(want)
	if got := ndjsonIDs(t, rec.Body.String()); !slices.Equal(got, want) {
		t.Fatalf("Observation file holds %v, want %v (Part 2 %s left out)", got, want, part2)
	}
	wantPatients := []string{"Patient/" + env.pa, "Patient/" + env.pb, "Patient/" + env.pc}
	slices.Sort(wantPatients)
	if got := ndjsonIDs(t, fetch("client-b", "Patient").Body.String()); !slices.Equal(got, wantPatients) {
		t.Fatalf("Patient file holds %v, want %v", got, wantPatients)
	}
	if rec := fetch("client-b2", "Observation"); rec.Code != http.StatusNotFound {
		t.Fatalf("file as another client: %d, want 404", rec.Code)
	}
	// The same client with a token lacking the bulk scope gets neither manifest nor file.
	for _, path := range []string{status, files["Observation"]} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+token(t, "client-b", "b", "system/*.rs"))
		rec := httptest.NewRecorder()
		env.e.ServeHTTP(rec, req)
		if rec.Code != http.StatusForbidden {
			t.Errorf("%s without the bulk scope: %d, want 403", path, rec.Code)
		}
	}
	if rec := env.bulkDo(t, "client-b", "b", "GET", strings.Replace(files["Observation"], "/Observation", "/Condition", 1)); rec.Code != http.StatusNotFound {
		t.Fatalf("a type not exported: %d, want 404", rec.Code)
	}

	// Each download is audited per person, as an export, before its lines leave.
	var exports int
	if err := env.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = 'export' AND client = 'client-b' AND patient <> ''`).Scan(&exports); err != nil {
		t.Fatal(err)
	}
	if exports < 4 { // two files, two persons each
		t.Fatalf("%d export audit events, want at least 4", exports)
	}

	// Taking pc off the roster takes pc's records out of the next file; a deleted roster
	// has no files at all.
	if code, body := env.do(t, "b", "PUT", "/fhir/Group/"+group.ID, `{"resourceType":"Group","id":"`+group.ID+`","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+env.pb+`"}}]}`); code != http.StatusOK {
		t.Fatalf("roster update: %d %s", code, body)
	}
	// Another member's roster id and an unknown one answer alike: PUT creates no id.
	roster := func(id string) string {
		return `{"resourceType":"Group","id":"` + id + `","type":"person","actual":true}`
	}
	for _, tc := range [][2]string{{"a", group.ID}, {"b", "0123456789abcdef0123456789abcdef"}} {
		if code, body := env.do(t, tc[0], "PUT", "/fhir/Group/"+tc[1], roster(tc[1])); code != http.StatusNotFound {
			t.Errorf("PUT Group/%s as %s: %d %s, want 404", tc[1], tc[0], code, body)
		}
	}
	want = []string{fromA, ownB, later}
	slices.Sort(want)
	if got := ndjsonIDs(t, fetch("client-b", "Observation").Body.String()); !slices.Equal(got, want) {
		t.Fatalf("after pc left the roster the file holds %v, want %v", got, want)
	}
	if code, body := env.do(t, "b", "PUT", "/fhir/Group/"+group.ID, `{"resourceType":"Group","id":"`+group.ID+`","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+env.pb+`"}},{"entity":{"reference":"Patient/`+env.pc+`"}}]}`); code != http.StatusOK {
		t.Fatalf("roster update: %d %s", code, body)
	}

	// P's consent is withdrawn (no directive: deny by default): the next download of the
	// same job holds nothing of P's, and the denial is audited.
	env.dirs[personOf(env.pa)] = nil
	if got := ndjsonIDs(t, fetch("client-b", "Observation").Body.String()); !slices.Equal(got, []string{unlinked}) {
		t.Fatalf("after the withdrawal the file holds %v, want only %s", got, unlinked)
	}
	var denials int
	if err := env.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE action = 'export' AND outcome = 'deny' AND patient = $1`, personOf(env.pa)).Scan(&denials); err != nil || denials == 0 {
		t.Fatalf("%d denied exports audited for P (%v), want one", denials, err)
	}

	if code, body := env.do(t, "b", "DELETE", "/fhir/Group/"+group.ID, ""); code/100 != 2 {
		t.Fatalf("delete roster: %d %s", code, body)
	}
	if rec := fetch("client-b", "Observation"); rec.Code != http.StatusNotFound {
		t.Fatalf("file of a deleted roster: %d, want 404", rec.Code)
	}
	if code, body := env.do(t, "b", "PUT", "/fhir/Group/"+group.ID, `{"resourceType":"Group","id":"`+group.ID+`","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+env.pb+`"}}]}`); code/100 != 2 {
		t.Fatalf("roster recreate: %d %s", code, body)
	}

	// _since after everything: empty files (an unencoded "+" offset too). Cancelling ends
	// the job.
	rec = env.bulkDo(t, "client-b", "b", "GET", kickoff+"?_since="+time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05+00:00"), async...)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("kick-off with _since: %d %s", rec.Code, rec.Body)
	}
	status2 := strings.TrimPrefix(rec.Header().Get("Content-Location"), searchBase)
	_ = json.Unmarshal(env.bulkDo(t, "client-b", "b", "GET", status2).Body.Bytes(), &m)
	if len(m.Output) != len(bulkDefaultTypes) {
		t.Fatalf("default types: %d files, want %d", len(m.Output), len(bulkDefaultTypes))
	}
	for _, o := range m.Output[:3] {
		rec := env.bulkDo(t, "client-b", "b", "GET", strings.TrimPrefix(o.URL, searchBase))
		if rec.Code != http.StatusOK || rec.Body.Len() != 0 {
			t.Fatalf("%s file after _since: %d %q", o.Type, rec.Code, rec.Body)
		}
	}
	if rec := env.bulkDo(t, "client-b", "b", "DELETE", status2); rec.Code != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", rec.Code, rec.Body)
	}
	if rec := env.bulkDo(t, "client-b", "b", "GET", status2); rec.Code != http.StatusNotFound {
		t.Fatalf("status after cancel: %d, want 404", rec.Code)
	}
}
