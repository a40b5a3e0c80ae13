package records_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
	mpistore "github.com/concord-hie/concord/mpi/store"
	"github.com/concord-hie/concord/records"
)

// personDirectives gives each person their own directives; persons without an entry have
// none, so every decision about them denies.
type personDirectives struct {
	by map[string][]consent.Directive
}

func (d *personDirectives) InForce(_ context.Context, person string, _ time.Time) ([]consent.Directive, error) {
	return d.by[person], nil
}

// regional is the two-member fixture of the leak tests: person P has Patient pa at member
// a and pb at member b (linked by the MPI), with lab results at both and one PSY-labelled
// result at b; person Q has Patient qb at b only and no consent at all.
type regional struct {
	x          *records.Searcher
	svc        *records.Service
	pool       *pgxpool.Pool
	log        *recorder
	dirs       *personDirectives
	p, q       string          // person ids
	pa, pb, qb string          // member Patient ids
	visible    map[string]bool // what member a may see of P's record (matches of Observation)
	forbidden  map[string]bool // Q's resources and the PSY result
	psy        string
	obsA, obsB []string
	report     string // DiagnosticReport at b for pb, results obsB[0] and psy
}

const (
	sysA = "urn:oid:1.2.3.97"
	sysB = "urn:oid:1.2.3.98"
)

func setupRegional(t testing.TB) *regional {
	t.Helper()
	pool := testkit.DB(t)
	ctx := context.Background()
	for _, m := range []string{"a", "b"} {
		if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ($1, $1, 'urn:oid:1.2.3.' || ascii($1))`, m); err != nil {
			t.Fatal(err)
		}
	}
	fs, ms := store.New(pool), mpistore.New(pool)
	f := &regional{log: &recorder{}, visible: map[string]bool{}, forbidden: map[string]bool{}}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		put := func(member, patient, body string) (string, error) {
			at = at.Add(time.Second)
			st, err := fs.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(body)), MemberID: member, PatientID: patient, At: at,
				Source: "https://concord.example/members/" + member, Tags: []fhir.Coding{{System: "https://concord.example/member", Code: member}}})
			return st.ID, err
		}
		patient := func(member, sys, mrn, family string, person mpistore.PersonID) (string, mpistore.PersonID, error) {
			id, err := put(member, "", `{"resourceType":"Patient","identifier":[{"system":"`+sys+`","value":"`+mrn+`"}],"name":[{"family":"`+family+`","given":["Ann"]}],"gender":"female","birthDate":"1970-01-01"}`)
			if err != nil {
				return "", "", err
			}
			src, _, err := ms.Upsert(ctx, tx, member, sys, mrn, id, map[string]string{}, person)
			return id, src.PersonID, err
		}
		obs := func(member, patient, code, day, label string) (string, error) {
			sec := ""
			if label != "" {
				sec = `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"` + label + `"}]},`
			}
			return put(member, patient, `{"resourceType":"Observation",`+sec+`"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"`+code+`"}]},"subject":{"reference":"Patient/`+patient+`"},"effectiveDateTime":"2025-01-`+day+`"}`)
		}
		var err error
		var p, q mpistore.PersonID
		if f.pa, p, err = patient("a", sysA, "mrnP", "Smith", ""); err != nil {
			return err
		}
		if f.pb, _, err = patient("b", sysB, "mrnPb", "Smith", p); err != nil {
			return err
		}
		if f.qb, q, err = patient("b", sysB, "mrnQ", "Smith", ""); err != nil {
			return err
		}
		f.p, f.q = string(p), string(q)
		f.forbidden[f.qb] = true
		codes := []string{"4548-4", "2345-7", "718-7"}
		for i := range 6 {
			id, err := obs("a", f.pa, codes[i%3], fmt.Sprintf("%02d", 1+i*3), "")
			if err != nil {
				return err
			}
			f.obsA = append(f.obsA, id)
			f.visible[id] = true
		}
		for i := range 4 {
			id, err := obs("b", f.pb, codes[i%3], fmt.Sprintf("%02d", 2+i*5), "")
			if err != nil {
				return err
			}
			f.obsB = append(f.obsB, id)
			f.visible[id] = true
		}
		if f.psy, err = obs("b", f.pb, "4548-4", "10", "PSY"); err != nil {
			return err
		}
		f.forbidden[f.psy] = true
		var qobs []string
		for i := range 5 {
			id, err := obs("b", f.qb, codes[i%3], fmt.Sprintf("%02d", 3+i*4), "")
			if err != nil {
				return err
			}
			qobs = append(qobs, id)
			f.forbidden[id] = true
		}
		dr := func(patient string, results ...string) (string, error) {
			var refs []string
			for _, r := range results {
				refs = append(refs, `{"reference":"Observation/`+r+`"}`)
			}
			return put("b", patient, `{"resourceType":"DiagnosticReport","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"LAB"}]}],"code":{"text":"panel"},"subject":{"reference":"Patient/`+patient+`"},"effectiveDateTime":"2025-01-12","result":[`+strings.Join(refs, ",")+`]}`)
		}
		if f.report, err = dr(f.pb, f.obsB[0], f.psy); err != nil {
			return err
		}
		qr, err := dr(f.qb, qobs[0], qobs[1])
		f.forbidden[qr] = true
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.dirs = &personDirectives{by: map[string][]consent.Directive{f.p: consent.DefaultPolicies(consent.PolicyConfig{})}}
	svc := records.New(fs, ms, f.dirs, f.log, nil).WithBreakGlass(records.NewBreakGlassStore(pool))
	f.svc, f.pool = svc, pool
	h, err := audit.NewHasher(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	f.x, err = records.NewSearcher(svc, records.SearchConfig{CursorKey: bytes.Repeat([]byte{9}, 32), Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var memberA = records.Viewer{Client: "client-a", Org: "a", Role: consent.RoleSystem, Purpose: consent.PurposeTreatment, RequestID: "r1"}

func query(t testing.TB, raw string) url.Values {
	t.Helper()
	q, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func ids(list []store.Stored) []string {
	out := make([]string, len(list))
	for i, st := range list {
		out[i] = st.ID
	}
	sort.Strings(out)
	return out
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestSearchRegionalViewByIdAndMRN(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	for _, raw := range []string{"patient=" + f.pa, "subject=Patient/" + f.pa, "patient.identifier=" + sysA + "|mrnP"} {
		f.log.events = nil
		page, err := f.x.Search(ctx, memberA, "Observation", query(t, raw+"&category=laboratory&_count=50"))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if got, want := ids(page.Matches), keys(f.visible); !slices.Equal(got, want) {
			t.Fatalf("%s: %d matches, want %d (a's and b's unlabelled results, not the PSY one)", raw, len(got), len(want))
		}
		if page.Total == nil || *page.Total != len(f.visible) || page.Next != "" {
			t.Fatalf("%s: total %v next %q; want %d and no next page", raw, page.Total, page.Next, len(f.visible))
		}
		if len(f.log.events) != 1 || f.log.events[0].Patient != f.p || f.log.events[0].Action != audit.Query || len(f.log.events[0].Resources) != len(f.visible) {
			t.Fatalf("%s: audit = %+v; want one query event for P naming every disclosed resource", raw, f.log.events)
		}
		if q := f.log.events[0].Query; strings.Contains(q, "mrnP") || !strings.Contains(q, "category=laboratory") {
			t.Fatalf("audit query %q: the MRN must be hashed and the rest kept", q)
		}
	}
	// B's own view of pb includes its own PSY result (a member sees what it sent).
	memberB := memberA
	memberB.Org, memberB.Client = "b", "client-b"
	page, err := f.x.Search(ctx, memberB, "Observation", query(t, "patient="+f.pb))
	if err != nil || !slices.Contains(ids(page.Matches), f.psy) {
		t.Fatalf("member b's view of its own patient: %v, %v", ids(page.Matches), err)
	}
	// Another member's Patient id, an unknown one and an unknown MRN: empty, total 0, alike.
	for _, raw := range []string{"patient=" + f.pb, "patient=" + f.qb, "patient=nope", "patient.identifier=" + sysB + "|mrnQ"} {
		page, err := f.x.Search(ctx, memberA, "Observation", query(t, raw))
		if err != nil || len(page.Matches) != 0 || page.Total == nil || *page.Total != 0 {
			t.Fatalf("%s: %d matches, total %v, %v; want an empty page", raw, len(page.Matches), page.Total, err)
		}
	}
	// No patient, two patients, or a patient of the wrong type: 400.
	for _, raw := range []string{"code=4548-4", "patient=" + f.pa + "," + f.pb, "patient=" + f.pa + "&subject=" + f.pa, "subject=Group/g1"} {
		if _, err := f.x.Search(ctx, memberA, "Observation", query(t, raw)); errs.CodeOf(err) != errs.Invalid {
			t.Fatalf("%s: %v; want Invalid", raw, err)
		}
	}
}

func TestSearchIncludeAuthorizesEachRow(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	page, err := f.x.Search(ctx, memberA, "DiagnosticReport", query(t, "patient="+f.pa+"&_include=DiagnosticReport:result&_include=DiagnosticReport:patient"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(page.Matches); !slices.Equal(got, []string{f.report}) {
		t.Fatalf("matches %v", got)
	}
	inc := ids(page.Included)
	if !slices.Contains(inc, f.obsB[0]) || !slices.Contains(inc, f.pb) || slices.Contains(inc, f.psy) || len(inc) != 2 {
		t.Fatalf("included %v; want b's unlabelled result and b's Patient, never the PSY result", inc)
	}
}

func TestSearchRevIncludeAuthorizesEachRow(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	// The report at b points at obsB[0] (a match) and at the PSY result: it comes along once;
	// Q's report points only at Q's results, which are not matches.
	page, err := f.x.Search(ctx, memberA, "Observation", query(t, "patient="+f.pa+"&_count=100&_revinclude=DiagnosticReport:result"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(page.Matches); !slices.Equal(got, keys(f.visible)) {
		t.Fatalf("matches %v", got)
	}
	if got := ids(page.Included); !slices.Equal(got, []string{f.report}) {
		t.Fatalf("revincluded %v; want only b's report", got)
	}
	// A Patient search: each matched Patient's Observations, decided by its person's
	// consent: a's and b's results about P, never the PSY one, never Q's.
	page, err = f.x.Search(ctx, memberA, "Patient", query(t, "family=smith&_count=100&_revinclude=Observation:patient"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(page.Matches); !slices.Equal(got, ids([]store.Stored{{ID: f.pa}, {ID: f.pb}})) {
		t.Fatalf("Patient matches %v; want pa and pb", got)
	}
	if got := ids(page.Included); !slices.Equal(got, keys(f.visible)) {
		t.Fatalf("Patient revincluded %v; want %v", got, keys(f.visible))
	}
	var ev audit.Event // P's event; Q's, found and withheld, is a deny of its own
	for _, e := range f.log.events {
		if e.Patient == f.p {
			ev = e
		}
	}
	if ev.Patient != f.p || len(ev.Resources) != 2+len(f.visible) {
		t.Fatalf("audit of the Patient search: %+v; want P's event naming pa, pb and every revincluded result", ev)
	}
	// For a purpose that stays within the caller's own records, only a's own results.
	ops := memberA
	ops.Purpose = consent.PurposeOperations
	page, err = f.x.Search(ctx, ops, "Patient", query(t, "family=smith&_revinclude=Observation:patient"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(page.Included); !slices.Equal(got, ids(storedIDs(f.obsA))) {
		t.Fatalf("operations purpose revincluded %v; want a's own %v", got, f.obsA)
	}
	// Past MaxRevIncluded on one page: refused, not cut short.
	fs := store.New(f.pool)
	err = db.InTx(ctx, f.pool, func(tx db.Querier) error {
		for range records.MaxRevIncluded - len(f.obsA) + 1 {
			_, err := fs.Put(ctx, tx, store.Write{MemberID: "a", PatientID: f.pa, At: time.Now(),
				Resource: fhir.MustParse([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + f.pa + `"}}`))})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.x.Search(ctx, ops, "Patient", query(t, "family=smith&_revinclude=Observation:patient"))
	if errs.CodeOf(err) != errs.Invalid || !strings.Contains(errs.MessageOf(err), "_revinclude") {
		t.Fatalf("over the cap: %v; want Invalid naming _revinclude", err)
	}
}

func storedIDs(ids []string) []store.Stored {
	out := make([]store.Stored, len(ids))
	for i, id := range ids {
		out[i].ID = id
	}
	return out
}

func TestSearchCursorBinding(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	first, err := f.x.Search(ctx, memberA, "Observation", query(t, "patient="+f.pa+"&_count=3&_sort=-date"))
	if err != nil || len(first.Matches) != 3 || first.Next == "" || first.Total != nil {
		t.Fatalf("first page: %d, next %q, total %v, %v", len(first.Matches), first.Next, first.Total, err)
	}
	// Paging to the end visits every visible row once, in order.
	all := slices.Clone(first.Matches)
	next := first.Next
	for next != "" {
		p, err := f.x.Search(ctx, memberA, "Observation", url.Values{records.CursorParam: {next}})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Matches...)
		next = p.Next
	}
	if got := ids(all); !slices.Equal(got, keys(f.visible)) {
		t.Fatalf("paged %d rows; want %d distinct visible ones", len(got), len(f.visible))
	}
	// Tampered, truncated, or presented by another client or member: Invalid.
	raw := []byte(first.Next)
	raw[len(raw)/2] ^= 1
	other := memberA
	other.Client = "client-a2"
	otherOrg := memberA
	otherOrg.Org = "b"
	for name, tc := range map[string]struct {
		v   records.Viewer
		cur string
	}{
		"tampered": {memberA, string(raw)}, "truncated": {memberA, first.Next[:len(first.Next)-4]}, "garbage": {memberA, "!!"},
		"other client": {other, first.Next}, "other member": {otherOrg, first.Next},
	} {
		if _, err := f.x.Search(ctx, tc.v, "Observation", url.Values{records.CursorParam: {tc.cur}}); errs.CodeOf(err) != errs.Invalid {
			t.Fatalf("%s cursor: %v; want Invalid", name, err)
		}
	}
	// A cursor for one type does not page another.
	if _, err := f.x.Search(ctx, memberA, "DiagnosticReport", url.Values{records.CursorParam: {first.Next}}); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("cursor replayed on another type: %v", err)
	}
	// A consent change between pages invalidates the cursor: consent is re-checked.
	revoked := consent.DefaultPolicies(consent.PolicyConfig{Version: 2})
	f.dirs.by[f.p] = revoked
	if _, err := f.x.Search(ctx, memberA, "Observation", url.Values{records.CursorParam: {first.Next}}); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("cursor after a consent change: %v; want Invalid", err)
	}
}

func TestPatientSearchShowsConsentedOnly(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	page, err := f.x.Search(ctx, memberA, "Patient", query(t, "family=smi&given=ann&birthdate=1970-01-01&_total=accurate"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{f.pa, f.pb}
	sort.Strings(want)
	if got := ids(page.Matches); !slices.Equal(got, want) || *page.Total != 2 {
		t.Fatalf("Patient search = %v (total %v); want pa and pb, never qb", got, page.Total)
	}
	// One event per person: a permit for P (shown) and a deny for Q, found and withheld.
	outcome := map[string]audit.Outcome{}
	for _, ev := range f.log.events {
		if ev.Action == audit.Query {
			outcome[ev.Patient] = ev.Outcome
		}
	}
	if len(outcome) != 2 || outcome[f.p] != audit.Permit || outcome[f.q] != audit.Deny {
		t.Fatalf("audit outcomes by person = %v; want permit for P and deny for Q", outcome)
	}
	for _, ev := range f.log.events {
		if strings.Contains(ev.Query, "smi") || strings.Contains(ev.Query, "1970-01-01") {
			t.Fatalf("audit query leaks PHI: %q", ev.Query)
		}
	}
	// :exact compares the value as written: "Smith" matches, "smith" does not.
	for raw, want := range map[string]int{"family:exact=Smith": 2, "family:exact=smith": 0, "family:exact=Smi": 0} {
		page, err := f.x.Search(ctx, memberA, "Patient", query(t, raw+"&_total=accurate"))
		if err != nil || len(page.Matches) != want || *page.Total != want {
			t.Fatalf("%s: %d matches, %v; want %d", raw, len(page.Matches), err, want)
		}
	}
	// Without treatment purpose only a's own Patient.
	ops := memberA
	ops.Purpose = consent.PurposeOperations
	page, err = f.x.Search(ctx, ops, "Patient", query(t, "family=smith"))
	if err != nil || !slices.Equal(ids(page.Matches), []string{f.pa}) {
		t.Fatalf("HOPERAT Patient search = %v, %v; want only a's own", ids(page.Matches), err)
	}
}

func TestEverything(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	var all []store.Stored
	next := ""
	q := query(t, "_count=4")
	for range 20 {
		p, err := f.x.Everything(ctx, memberA, f.pa, q, nil)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Matches...)
		if p.Next == "" {
			break
		}
		next = p.Next
		q = url.Values{records.CursorParam: {next}}
	}
	want := append(keys(f.visible), f.pa, f.pb, f.report)
	sort.Strings(want)
	if got := ids(all); !slices.Equal(got, want) {
		t.Fatalf("$everything = %d resources, want %d (P's Patients, report and visible results)", len(got), len(want))
	}
	p, err := f.x.Everything(ctx, memberA, f.pa, query(t, "_type=DiagnosticReport"), nil)
	if err != nil || !slices.Equal(ids(p.Matches), []string{f.report}) {
		t.Fatalf("_type filter: %v, %v", ids(p.Matches), err)
	}
	p, err = f.x.Everything(ctx, memberA, f.pa, query(t, "_since=2030-01-01T00:00:00Z"), nil)
	if err != nil || len(p.Matches) != 0 {
		t.Fatalf("_since filter: %v, %v", ids(p.Matches), err)
	}
	_, errForeign := f.x.Everything(ctx, memberA, f.qb, nil, nil)
	_, errMissing := f.x.Everything(ctx, memberA, "nope", nil, nil)
	if errs.CodeOf(errForeign) != errs.NotFound || errs.MessageOf(errForeign) != errs.MessageOf(errMissing) {
		t.Fatalf("foreign %v, missing %v; want the same NotFound", errForeign, errMissing)
	}
}

// TestSearchLeakProperty runs seeded random searches, includes, $everything and paging as
// member a and checks that no page ever holds Q's resources or the PSY result, and that no
// total counts them.
func TestSearchLeakProperty(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(20261128, 6))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	patients := []string{"patient=" + f.pa, "patient=" + f.pb, "patient=" + f.qb, "subject=" + f.pa, "subject=Patient/" + f.qb,
		"patient.identifier=" + sysA + "|mrnP", "patient.identifier=" + sysB + "|mrnQ", "patient.identifier=" + sysB + "|mrnPb"}
	cases := 0 // pages
	for search := 0; search < 500; search++ {
		var typ string
		var parts []string
		everything := rng.IntN(8) == 0
		switch rng.IntN(4) {
		case 0:
			typ = "Patient"
			parts = append(parts, pick("family=smith", "given=ann", "name=sm", "birthdate=1970", "gender=female", "identifier="+sysB+"|mrnQ", "family:contains=mit"))
			if rng.IntN(2) == 0 {
				parts = append(parts, pick("_revinclude=Observation:patient", "_revinclude=Observation:subject", "_revinclude=DiagnosticReport:patient"))
			}
		case 1:
			typ = "DiagnosticReport"
			parts = append(parts, pick(patients...))
			if rng.IntN(2) == 0 {
				parts = append(parts, "_include=DiagnosticReport:result")
			}
			if rng.IntN(3) == 0 {
				parts = append(parts, "_include=DiagnosticReport:patient")
			}
		default:
			typ = "Observation"
			parts = append(parts, pick(patients...))
			if rng.IntN(2) == 0 {
				parts = append(parts, pick("category=laboratory", "code=4548-4", "code=http://loinc.org|2345-7", "code:not=718-7", "status=final"))
			}
			if rng.IntN(2) == 0 {
				parts = append(parts, "date="+pick("ge", "le", "gt", "lt", "eq", "ne", "sa", "eb")+pick("2025-01-05", "2025-01-10", "2025-01", "2025"))
			}
			if rng.IntN(3) == 0 {
				parts = append(parts, "_include=Observation:patient")
			}
			if rng.IntN(3) == 0 {
				parts = append(parts, "_revinclude=DiagnosticReport:result")
			}
		}
		if rng.IntN(2) == 0 {
			parts = append(parts, "_sort="+pick("-date", "date", "_lastUpdated", "-_lastUpdated"))
			if typ == "Patient" {
				parts[len(parts)-1] = "_sort=" + pick("birthdate", "-_lastUpdated")
			}
		}
		if rng.IntN(3) == 0 {
			parts = append(parts, "_total="+pick("accurate", "none"))
		}
		parts = append(parts, fmt.Sprintf("_count=%d", 1+rng.IntN(6)))
		q := query(t, strings.Join(parts, "&"))
		if everything {
			q = query(t, fmt.Sprintf("_count=%d", 1+rng.IntN(6)))
		}
		seen := map[string]bool{}
		var total *int
		orig := q.Encode()
		evPatient := pick(f.pa, f.pa, f.qb, f.pb)
		for pageNo := 0; ; pageNo++ {
			var p records.Page
			var err error
			if everything {
				p, err = f.x.Everything(ctx, memberA, evPatient, q, nil)
				if errs.CodeOf(err) == errs.NotFound {
					break
				}
			} else {
				p, err = f.x.Search(ctx, memberA, typ, q)
			}
			if err != nil {
				t.Fatalf("case %d %s %s page %d: %v", cases, typ, orig, pageNo, err)
			}
			cases++
			if pageNo == 0 {
				total = p.Total
			}
			for _, st := range append(slices.Clone(p.Matches), p.Included...) {
				if f.forbidden[st.ID] {
					t.Fatalf("case %d %s %v: page holds forbidden %s/%s", cases, typ, q, st.Type, st.ID)
				}
			}
			for _, st := range p.Matches {
				if seen[st.ID] {
					t.Fatalf("case %d %s %v: %s repeated across pages", cases, typ, q, st.ID)
				}
				seen[st.ID] = true
			}
			if p.Next == "" || pageNo > 30 {
				break
			}
			q = url.Values{records.CursorParam: {p.Next}}
		}
		if total != nil && *total != len(seen) {
			t.Fatalf("case %d %s: total %d but %d matches shown across pages", cases, typ, *total, len(seen))
		}
	}
	for _, ev := range f.log.events {
		if ev.Patient == f.q {
			for _, r := range ev.Resources {
				t.Fatalf("audit shows a disclosure of Q's %s/%s", r.Type, r.ID)
			}
		}
	}
	t.Logf("500 searches, %d pages checked", cases)
}

// TestSearchChainsOnlyIntoReferenceData: a chain is matched against its target in SQL,
// where no consent decision or scope check sees the target, so one into a clinical
// resource (a report's results, an observation's encounter) is refused whatever the data;
// one into shared reference data is searched.
func TestSearchChainsOnlyIntoReferenceData(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	for typ, raw := range map[string]string{
		"DiagnosticReport": "patient=" + f.pa + "&result.code=http://loinc.org|4548-4",
		"Observation":      "patient=" + f.pa + "&encounter.date=ge2000",
	} {
		if _, err := f.x.Search(ctx, memberA, typ, query(t, raw)); errs.CodeOf(err) != errs.Invalid {
			t.Errorf("%s?%s: %v; want Invalid", typ, raw, err)
		}
	}
	med := query(t, "patient="+f.pa+"&medication.code=http://www.nlm.nih.gov/research/umls/rxnorm|197361")
	if _, err := f.x.Search(ctx, memberA, "MedicationRequest", med); err != nil {
		t.Errorf("MedicationRequest?medication.code: %v", err)
	}
	noMed := func(typ string) bool { return typ != "Medication" }
	if _, err := f.x.SearchAllowed(ctx, memberA, "MedicationRequest", med, noMed); errs.CodeOf(err) != errs.Invalid {
		t.Errorf("MedicationRequest?medication.code without Medication scope: %v; want Invalid", err)
	}
}

// TestReferenceDataSearchAndRead: Organizations, Practitioners and the like are shared
// reference data: any member reads and searches them whoever sent them (the
// CapabilityStatement lists their parameters), with a query event that names no patient.
// Includes from them never reach a patient's record.
func TestReferenceDataSearchAndRead(t *testing.T) {
	f := setupRegional(t)
	ctx := context.Background()
	var org store.Stored
	err := db.InTx(ctx, f.pool, func(tx db.Querier) error {
		var err error
		org, err = store.New(f.pool).Put(ctx, tx, store.Write{MemberID: "b", At: time.Now(), Resource: fhir.MustParse([]byte(
			`{"resourceType":"Organization","identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"1234567893"}],"name":"Riverside Lab"}`))})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f.log.events = nil
	page, err := f.x.Search(ctx, memberA, "Organization", query(t, "identifier=http://hl7.org/fhir/sid/us-npi|1234567893&_revinclude=Endpoint:organization"))
	if err != nil || !slices.Equal(ids(page.Matches), []string{org.ID}) || len(page.Included) != 0 {
		t.Fatalf("Organization?identifier as member a: %v, %v", ids(page.Matches), err)
	}
	if len(f.log.events) != 1 || f.log.events[0].Patient != "" || f.log.events[0].Outcome != audit.Permit {
		t.Fatalf("audit of the reference search: %+v; want one permit naming no patient", f.log.events)
	}
	if st, err := f.svc.Read(ctx, memberA, "Organization", org.ID); err != nil || st.ID != org.ID {
		t.Fatalf("member a reads b's Organization: %v", err)
	}
	if _, err := f.x.Search(ctx, memberA, "Observation", query(t, "code=http://loinc.org|4548-4")); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("a clinical search without a patient: %v; want Invalid", err)
	}
	// A labelled one (a Part 2 program labels everything it sends) stays its sender's.
	var part2 store.Stored
	err = db.InTx(ctx, f.pool, func(tx db.Querier) error {
		var err error
		part2, err = store.New(f.pool).Put(ctx, tx, store.Write{MemberID: "b", At: time.Now(), Resource: fhir.MustParse([]byte(
			`{"resourceType":"Organization","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"42CFRPart2"}]},"identifier":[{"system":"http://hl7.org/fhir/sid/us-npi","value":"1245319599"}],"name":"Harbor Recovery"}`))})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	npi := query(t, "identifier=http://hl7.org/fhir/sid/us-npi|1245319599")
	if page, err := f.x.Search(ctx, memberA, "Organization", npi); err != nil || len(page.Matches) != 0 {
		t.Fatalf("member a finds b's labelled Organization: %v, %v", ids(page.Matches), err)
	}
	if _, err := f.svc.Read(ctx, memberA, "Organization", part2.ID); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("member a reads b's labelled Organization: %v; want NotFound", err)
	}
	memberB := memberA
	memberB.Org, memberB.Client = "b", "client-b"
	if page, err := f.x.Search(ctx, memberB, "Organization", npi); err != nil || !slices.Equal(ids(page.Matches), []string{part2.ID}) {
		t.Fatalf("member b's own labelled Organization: %v, %v", ids(page.Matches), err)
	}
}
