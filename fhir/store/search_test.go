package store_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

// searchFixture stores a few Observations with known dates and codes and returns the
// store and a name → id map.
func searchFixture(t *testing.T) (*store.Store, map[string]string) {
	t.Helper()
	pool, s := memberA(t)
	ctx := context.Background()
	docs := []struct{ name, patient, body string }{
		{"o1", "p1", `"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"effectiveDateTime":"2025-01-15T10:00:00Z","status":"final"`},
		{"o2", "p1", `"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"effectiveDateTime":"2025-02","status":"final"`},
		{"o3", "p1", `"code":{"coding":[{"code":"abc"}]},"effectivePeriod":{"start":"2025-01-20"},"status":"final"`},
		{"o4", "p1", `"code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"status":"preliminary"`},
		{"o5", "p2", `"code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"effectiveDateTime":"2025-01-15T10:00:00Z","status":"final"`},
	}
	ids := map[string]string{}
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		for i, d := range docs {
			body := `{"resourceType":"Observation",` + d.body + `,"subject":{"reference":"Patient/` + d.patient + `"}}`
			st, err := s.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(body)), MemberID: "a", PatientID: d.patient,
				At: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)})
			if err != nil {
				return err
			}
			ids[d.name] = st.ID
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, ids
}

func names(rows []store.Row, ids map[string]string) []string {
	rev := map[string]string{}
	for n, id := range ids {
		rev[id] = n
	}
	var out []string
	for _, r := range rows {
		out = append(out, rev[r.ID])
	}
	return out
}

func mustQuery(t *testing.T, raw string) fhir.Search {
	t.Helper()
	q, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fhir.ParseSearch("Observation", q)
	if err != nil {
		t.Fatalf("ParseSearch(%s): %v", raw, err)
	}
	return s
}

// memberA returns a migrated database with member "a" and a store over it.
func memberA(t testing.TB) (*pgxpool.Pool, *store.Store) {
	t.Helper()
	pool := testkit.DB(t)
	if _, err := pool.Exec(context.Background(), `INSERT INTO directory_members(id, name, system) VALUES ('a', 'a', 'urn:oid:1.2.9')`); err != nil {
		t.Fatal(err)
	}
	return pool, store.New(pool)
}

func TestSearchSemantics(t *testing.T) {
	s, ids := searchFixture(t)
	ctx := context.Background()
	tests := []struct {
		query string
		want  []string
	}{
		{"date=2025-01", []string{"o1"}},
		{"date=eq2025-01-15", []string{"o1"}},
		{"date=ge2025-02-01", []string{"o2", "o3"}},
		{"date=gt2025-01", []string{"o2", "o3"}},
		{"date=lt2025-01-16", []string{"o1"}},
		{"date=le2025-01-31", []string{"o1", "o3"}},
		{"date=sa2025-01-15", []string{"o2", "o3"}},
		{"date=eb2025-02-01", []string{"o1"}},
		{"date=ne2025-01", []string{"o2", "o3"}},
		{"date=ge2025-01-01&date=lt2025-01-31", []string{"o1", "o3"}}, // o3 starts in January and is open-ended: both hold
		{"date:missing=true", []string{"o4"}},
		{"date:missing=false", []string{"o1", "o2", "o3"}},
		{"code=http://loinc.org|4548-4", []string{"o1", "o4"}},
		{"code=4548-4", []string{"o1", "o4"}},
		{"code=|abc", []string{"o3"}},
		{"code=|4548-4", nil},
		{"code=http://loinc.org|", []string{"o1", "o2", "o4"}},
		{"code=abc,2345-7", []string{"o2", "o3"}},
		{"code:not=http://loinc.org|4548-4", []string{"o2", "o3"}},
		{"category=laboratory&code=4548-4", []string{"o1"}},
		{"status=preliminary", []string{"o4"}},
		{"patient=Patient/p1&status=preliminary", []string{"o4"}},
		{"subject=p1&code=abc", []string{"o3"}},
		{"_lastUpdated=ge2026-01-01T00:00:02Z", []string{"o3", "o4"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			sq := mustQuery(t, tt.query)
			rows, err := s.Search(ctx, nil, store.Query{Type: "Observation", Clauses: sq.Clauses, Patients: []string{"p1"}, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			got := names(rows, ids)
			sort.Strings(got)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			n, err := s.Count(ctx, nil, store.Query{Type: "Observation", Clauses: sq.Clauses, Patients: []string{"p1"}})
			if err != nil || n != len(tt.want) {
				t.Fatalf("Count = %d, %v; want %d", n, err, len(tt.want))
			}
		})
	}
	// The patient restriction holds: o5 (p2) never appears for p1, and does for p2.
	rows, _ := s.Search(ctx, nil, store.Query{Type: "Observation", Patients: []string{"p2"}, Limit: 10})
	if got := names(rows, ids); !slices.Equal(got, []string{"o5"}) {
		t.Fatalf("p2 compartment = %v", got)
	}
	if rows, _ := s.Search(ctx, nil, store.Query{Type: "Observation", Patients: []string{}, Limit: 10}); len(rows) != 0 {
		t.Fatalf("empty compartment list matched %d rows", len(rows))
	}
	// Quantities are not indexed: the search says so rather than matching nothing.
	if _, err := s.Search(ctx, nil, store.Query{Type: "Observation", Clauses: []fhir.Clause{{Param: "value-quantity", Type: fhir.ParamQuantity, Values: []fhir.Value{{Number: 1}}}}}); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("quantity search = %v; want Invalid (not indexed)", err)
	}
}

func TestSearchSortAndKeysetPaging(t *testing.T) {
	s, ids := searchFixture(t)
	ctx := context.Background()
	for _, tt := range []struct {
		sort string
		want []string
	}{
		{"-date", []string{"o3", "o2", "o1", "o4"}}, // o3 is open-ended (+∞), o4 has no date: last
		{"date", []string{"o1", "o3", "o2", "o4"}},
		{"_lastUpdated", []string{"o1", "o2", "o3", "o4"}},
		{"-_lastUpdated", []string{"o4", "o3", "o2", "o1"}},
		{"", []string{"o4", "o3", "o2", "o1"}}, // default: newest first
	} {
		t.Run(tt.sort, func(t *testing.T) {
			var sk []fhir.SortKey
			if tt.sort != "" {
				sk = mustQuery(t, "_sort="+tt.sort).Sort
			}
			all, err := s.Search(ctx, nil, store.Query{Type: "Observation", Patients: []string{"p1"}, Sort: sk, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if got := names(all, ids); !slices.Equal(got, tt.want) {
				t.Fatalf("order %v, want %v", got, tt.want)
			}
			for size := 1; size <= 3; size++ {
				var paged []store.Row
				var after *store.Key
				for range 10 {
					page, err := s.Search(ctx, nil, store.Query{Type: "Observation", Patients: []string{"p1"}, Sort: sk, After: after, Limit: size})
					if err != nil {
						t.Fatal(err)
					}
					paged = append(paged, page...)
					if len(page) < size {
						break
					}
					after = &page[len(page)-1].Key
				}
				if got := names(paged, ids); !slices.Equal(got, tt.want) {
					t.Fatalf("pages of %d: %v, want %v", size, got, tt.want)
				}
			}
		})
	}
}

func TestSearchIncludeHelpersAndExplain(t *testing.T) {
	s, ids := searchFixture(t)
	ctx := context.Background()
	refs, err := s.Refs(ctx, nil, "Observation", "patient", "", []string{ids["o1"], ids["o5"]})
	if err != nil || len(refs) != 2 || refs[0] != [2]string{"Patient", "p1"} || refs[1] != [2]string{"Patient", "p2"} {
		t.Fatalf("Refs = %v, %v", refs, err)
	}
	got, err := s.GetMany(ctx, nil, [][2]string{{"Observation", ids["o2"]}, {"Observation", "missing"}, {"Patient", ids["o2"]}})
	if err != nil || len(got) != 1 || got[0].ID != ids["o2"] {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
	// The lab query plan reaches the rows through the compartment index, not a scan of
	// every resource.
	sq := mustQuery(t, "category=laboratory&_sort=-date")
	rows, err := s.Explain(ctx, store.Query{Type: "Observation", Clauses: sq.Clauses, Sort: sq.Sort, Patients: []string{"p1"}, Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(rows, "\n")
	if !strings.Contains(plan, "fhir_resources_patient") {
		t.Fatalf("lab search does not use the compartment index:\n%s", plan)
	}
}

// TestPagingAcrossTypesWithOneID: in a search of several types ($everything), two
// resources of different types may share an id and a change time (one transaction): pages
// of one row still return both, because the type breaks ties before the id.
func TestPagingAcrossTypesWithOneID(t *testing.T) {
	pool, s := memberA(t)
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		for _, body := range []string{
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`,
			`{"resourceType":"Condition","subject":{"reference":"Patient/p1"}}`,
			`{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p1"}}`,
		} {
			if _, err := s.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(body)), ID: "same", MemberID: "a", PatientID: "p1", At: at}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, patients := range [][]string{{"p1"}, {"p1", "p2"}} {
		q := store.Query{Types: []string{"Observation", "Condition", "Encounter"}, Patients: patients, Limit: 1}
		var got []string
		for range 5 {
			page, err := s.Search(ctx, nil, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page {
				got = append(got, r.Type+"/"+r.ID)
			}
			if len(page) < q.Limit {
				break
			}
			q.After = &page[len(page)-1].Key
		}
		if want := []string{"Condition/same", "Encounter/same", "Observation/same"}; !slices.Equal(got, want) {
			t.Errorf("patients %v: pages of one gave %v, want %v", patients, got, want)
		}
	}
}

// TestCompartmentPageStopsEarly: a page of a patient's resources, in the default order
// (newest change first) or by -date, is read off the compartment's index in order and
// stops at the page's end rather than sorting every one of the patient's resources of the
// type; with several patients (a person several members know) each patient's rows are
// walked that way and the page cut from their merged heads. With a token clause (a
// category) in the default order the walk is of the patient's token rows with that code
// instead. Keyset pages follow one another exactly, through ties broken by id.
func TestCompartmentPageStopsEarly(t *testing.T) {
	pool, s := memberA(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		for i := range 400 {
			patient := []string{"p1", "p1", "p1", "p2"}[i%4] // p2: every fourth, interleaved in time
			body := fmt.Sprintf(`{"resourceType":"DocumentReference","status":"current","category":[{"coding":[{"code":"clinical-note"}]}],"subject":{"reference":"Patient/%s"},"date":"20%02d-01-01T00:00:00Z","content":[{"attachment":{"contentType":"text/plain","url":"Binary/x"}}]}`, patient, i%25)
			if _, err := s.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(body)), MemberID: "a", PatientID: patient,
				At: t0.Add(time.Duration(i/3) * time.Millisecond)}); err != nil { // ties of three
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A region holds far more rows than these patients' (rows alone stand for them here),
	// so that reading one patient's rows off an index beats reading the whole table.
	if _, err := pool.Exec(ctx, `INSERT INTO fhir_resources (type, id, version, member_id, patient_id, last_updated, body)
			SELECT 'Observation', 'o' || g, 1, 'a', 'q' || (g % 2000), now(), '{}' FROM generate_series(1, 40000) g;
		INSERT INTO fhir_idx_token (type, id, param, system, code, patient_id, last_updated)
			SELECT 'Observation', 'o' || g, p, 'http://loinc.org', (g % 700)::text, 'q' || (g % 2000), now()
			FROM generate_series(1, 40000) g, unnest(ARRAY['code', 'category', 'status']) p`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		params   url.Values
		patients []string
		index    string
		want     int
	}{
		{"one patient", url.Values{"date": {"ge2010"}}, []string{"p1"}, "fhir_resources_patient_updated", 180},
		{"several patients", url.Values{"date": {"ge2010"}}, []string{"p1", "p2", "p9", "p2"}, "fhir_resources_patient_updated", 240},
		{"one patient with a code", url.Values{"category": {"clinical-note"}, "date": {"ge2010"}}, []string{"p1"}, "fhir_idx_token_patient", 180},
		{"several patients with a code", url.Values{"category": {"clinical-note"}, "date": {"ge2010"}}, []string{"p1", "p2", "p9", "p2"}, "fhir_idx_token_patient", 240},
		{"several patients by -date", url.Values{"category": {"clinical-note"}, "_sort": {"-date"}}, []string{"p2", "p1"}, "fhir_resources_patient_date", 400},
		// No index gives this order: checks first, then each patient's passing rows sorted.
		{"several patients by date, then -_lastUpdated", url.Values{"date": {"ge2020"}, "_sort": {"date,-_lastUpdated"}}, []string{"p1", "p2"}, "", 80},
	} {
		t.Run(c.name, func(t *testing.T) {
			sq, err := fhir.ParseSearch("DocumentReference", c.params)
			if err != nil {
				t.Fatal(err)
			}
			q := store.Query{Type: "DocumentReference", Clauses: sq.Clauses, Sort: sq.Sort, Patients: c.patients, Limit: 51}
			rows, err := s.Explain(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			// Each patient's rows come in order from the compartment's rows alone, and the
			// search checks run on them one by one under the page's limit, so they stop
			// when the page is full: a Limit right over the filtered subquery.
			plan := strings.Join(rows, "\n")
			stops := false
			for i := 0; i+2 < len(rows); i++ {
				if strings.Contains(rows[i], "Limit") && strings.Contains(rows[i+1], "Subquery Scan on r_") && strings.Contains(rows[i+2], "Filter:") && strings.Contains(rows[i+2], "SubPlan") {
					stops = true
				}
			}
			if c.index != "" && (!stops || !strings.Contains(plan, "using "+c.index) || strings.Contains(plan, "Seq Scan on fhir_resources r_")) {
				t.Fatalf("the page is not read off %s in order:\n%s", c.index, strings.Join(rows, "\n"))
			}
			all, err := s.Search(ctx, nil, store.Query{Type: q.Type, Clauses: q.Clauses, Sort: q.Sort, Patients: q.Patients})
			if err != nil || len(all) != c.want {
				t.Fatalf("unpaged: %d rows, %v; want %d", len(all), err, c.want)
			}
			var paged []store.Row
			for {
				page, err := s.Search(ctx, nil, q)
				if err != nil {
					t.Fatal(err)
				}
				paged = append(paged, page...)
				if len(page) < q.Limit {
					break
				}
				q.After = &page[len(page)-1].Key
			}
			if len(paged) != len(all) {
				t.Fatalf("%d rows over all pages, want %d", len(paged), len(all))
			}
			for i := range paged {
				if paged[i].ID != all[i].ID {
					t.Fatalf("row %d: paged %s, unpaged %s", i, paged[i].ID, all[i].ID)
				}
				if a, b := all[max(i-1, 0)], all[i]; i > 0 && len(c.params["_sort"]) == 0 &&
					(b.LastUpdated.After(a.LastUpdated) || b.LastUpdated.Equal(a.LastUpdated) && b.ID <= a.ID) {
					t.Fatalf("row %d (%v, %s) does not follow row %d (%v, %s)", i, b.LastUpdated, b.ID, i-1, a.LastUpdated, a.ID)
				}
			}
		})
	}
}

// genericPlan prepares sql as name on conn, whose session must plan generically
// (plan_cache_mode = force_generic_plan), and returns the lines of EXPLAIN EXECUTE with
// args written as literals (EXECUTE takes no bind parameters). It fails the test unless the
// plan is generic (it shows $1).
func genericPlan(t *testing.T, conn *pgxpool.Conn, name, sql string, args []any) []string {
	t.Helper()
	ctx := context.Background()
	if _, err := conn.Conn().Prepare(ctx, name, sql); err != nil {
		t.Fatal(err)
	}
	lits := make([]string, len(args))
	for i, a := range args {
		switch a := a.(type) {
		case string:
			lits[i] = "'" + strings.ReplaceAll(a, "'", "''") + "'"
		case []string:
			lits[i] = "'{" + strings.Join(a, ",") + "}'"
		case int:
			lits[i] = fmt.Sprint(a)
		default:
			t.Fatalf("argument %d is a %T", i+1, a)
		}
	}
	prows, err := conn.Query(ctx, "EXPLAIN EXECUTE "+name+"("+strings.Join(lits, ", ")+")")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := pgx.CollectRows(prows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if plan := strings.Join(rows, "\n"); !strings.Contains(plan, "$1") {
		t.Fatalf("not a generic plan:\n%s", plan)
	}
	return rows
}

// TestCompartmentTokenCheckGenericPlan: the server's statements are prepared and, after a
// few runs, planned once for any values. A generic plan cannot tell a common code from a
// rare one, and on the bench's data it checked each candidate of a compartment search by
// reading every index row of the region with the code, through the (type, param, code,
// system) index. The per-row token check must not be able to: even with the row index
// gone, no plan may use an index to find the code, except the patient's own token rows
// (fhir_idx_token_patient) that a single code drives the search from.
func TestCompartmentTokenCheckGenericPlan(t *testing.T) {
	pool, _ := memberA(t)
	ctx := context.Background()
	// A region's notes: 20,000 of 2,000 patients with server ids (32 hex digits), one type
	// code common and the rest spread, among the index rows of many other resources.
	if _, err := pool.Exec(ctx, `INSERT INTO fhir_resources (type, id, version, member_id, patient_id, last_updated, body)
			SELECT 'DocumentReference', md5(g::text), 1, 'a', 'q' || (g % 2000), now(), '{}' FROM generate_series(1, 20000) g;
		INSERT INTO fhir_idx_token (type, id, param, system, code, patient_id, last_updated)
			SELECT 'DocumentReference', md5(g::text), 'type', 'http://loinc.org', CASE WHEN g % 3 = 0 THEN '34111-5' ELSE (g % 5000)::text END, 'q' || (g % 2000), now()
			FROM generate_series(1, 20000) g;
		INSERT INTO fhir_idx_token (type, id, param, system, code, patient_id, last_updated)
			SELECT 'DocumentReference', md5(g::text), 'category', '', 'clinical-note', 'q' || (g % 2000), now()
			FROM generate_series(1, 20000) g;
		INSERT INTO fhir_idx_token (type, id, param, system, code, patient_id, last_updated)
			SELECT 'Observation', md5('o' || g), p, 'http://loinc.org', (g % 700)::text, 'q' || (g % 2000), now()
			FROM generate_series(1, 60000) g, unnest(ARRAY['code', 'category', 'status']) p;
		ANALYZE`); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// In a transaction rolled back at the end, without the row index, so that the
	// planner's only index on the token rows by code is the one the check must not use.
	if _, err := conn.Exec(ctx, `BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; DROP INDEX fhir_idx_token_row`); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, `ROLLBACK`)
	for i, params := range []url.Values{
		{"type": {"http://loinc.org|34111-5,http://loinc.org|11506-3"}},       // two codes: checked per row
		{"type": {"http://loinc.org|34111-5"}, "category": {"clinical-note"}}, // the type drives, the category is checked
	} {
		sq, err := fhir.ParseSearch("DocumentReference", params)
		if err != nil {
			t.Fatal(err)
		}
		sql, args, err := store.BuildSelect(store.Query{Type: "DocumentReference", Clauses: sq.Clauses, Patients: []string{"q7", "q8"}, Limit: 51})
		if err != nil {
			t.Fatal(err)
		}
		rows := genericPlan(t, conn, fmt.Sprintf("docs_by_type_%d", i), sql, args)
		plan := strings.Join(rows, "\n")
		for _, line := range rows {
			if strings.Contains(line, "Index Cond:") && strings.Contains(line, "code =") && !strings.Contains(line, "patient_id = c.pid") {
				t.Fatalf("%s: a per-row token check searches an index by code:\n%s", params.Encode(), plan)
			}
		}
		if drives := len(sq.Clauses) > 1; drives != strings.Contains(plan, "using fhir_idx_token_patient") {
			t.Fatalf("%s: walked off the patient's token rows: %v, want %v:\n%s", params.Encode(), !drives, drives, plan)
		}
	}
}

// TestNameSearchPlanFollowsTheName: in a table of a thousand Patients, half of them one
// gender, among many other index rows, a name+gender search is driven from the name prefix
// (a few rows) rather than the gender (hundreds), whether planned for its values or once
// for any values.
func TestNameSearchPlanFollowsTheName(t *testing.T) {
	pool, s := memberA(t)
	ctx := context.Background()
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		for i := range 1000 {
			body := fmt.Sprintf(`{"resourceType":"Patient","name":[{"family":"Family%02d","given":["Given%03d"]}],"gender":"%s","birthDate":"19%02d-01-01"}`,
				i%50, i, []string{"male", "female"}[(i/50)%2], i%100)
			if _, err := s.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(body)), MemberID: "a", At: time.Now()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A region's index tables are mostly other types' rows (a Patient has dozens of
	// Observations): index rows alone stand for them here.
	if _, err := pool.Exec(ctx, `INSERT INTO fhir_idx_token (type, id, param, system, code, patient_id, last_updated)
		SELECT 'Observation', 'o' || g, p, 'http://loinc.org', (g % 700)::text, 'q' || (g % 2000), now()
		FROM generate_series(1, 30000) g, unnest(ARRAY['code', 'category', 'status']) p`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	sq, err := fhir.ParseSearch("Patient", url.Values{"family": {"family07"}, "gender": {"male"}})
	if err != nil {
		t.Fatal(err)
	}
	// Planned for its values (a statement's first runs; the multivariate statistics of 0092
	// tell the planner that param "gender" belongs to Patients alone and how common "male"
	// is).
	q := store.Query{Type: "Patient", Clauses: sq.Clauses, Sort: sq.Sort, Limit: 21}
	custom, err := s.Explain(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if plan := strings.Join(custom, "\n"); !strings.Contains(plan, "fhir_idx_string_type_param_value_idx") {
		t.Fatalf("name+gender search planned for its values is not driven from the name index:\n%s", plan)
	}
	// The server's statements are prepared and, after a few runs, planned once for any
	// values (a generic plan): plan this one that way from the start.
	sql, args, err := store.BuildSelect(q)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(genericPlan(t, conn, "name_gender", sql, args), "\n")
	if !strings.Contains(plan, "fhir_idx_string_type_param_value_idx") {
		t.Fatalf("the generic plan of a name+gender search is not driven from the name index:\n%s", plan)
	}
	got, err := s.Search(ctx, nil, store.Query{Type: "Patient", Clauses: sq.Clauses, Limit: 100})
	if err != nil || len(got) != 10 {
		t.Fatalf("family07 and male: %d rows, %v; want 10", len(got), err)
	}
}

// TestStringDrivenSearch: a name search with only low-cardinality companions (gender) in
// the default order is driven from the string index, whose rows carry last_updated: the
// candidates are sorted off that index alone and the rest is checked row by row up to the
// page's end. It must answer exactly what the planner's usual plan answers (forced here by
// a member filter that every row passes), page by page, after updates and deletes, and
// with _since.
func TestStringDrivenSearch(t *testing.T) {
	pool, s := memberA(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	patient := func(i int, family, gender string) *fhir.Resource {
		return fhir.MustParse([]byte(fmt.Sprintf(`{"resourceType":"Patient","name":[{"family":%q,"given":["Given%03d"]},{"family":"Chenoweth"}],"gender":%q}`, family, i, gender)))
	}
	var ids []string
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		for i := range 600 {
			family := []string{"Chen", "Moreno", "Chenault"}[i%3]
			st, err := s.Put(ctx, tx, store.Write{Resource: patient(i, family, []string{"female", "male"}[(i/3)%2]), MemberID: "a",
				At: t0.Add(time.Duration(i/4) * time.Millisecond)}) // ties of four
			if err != nil {
				return err
			}
			ids = append(ids, st.ID)
		}
		// A new version moves a Patient to the front; a deleted one matches nothing.
		if _, err := s.Put(ctx, tx, store.Write{ID: ids[3], Resource: patient(3, "Chen", "female"), MemberID: "a", At: t0.Add(time.Hour)}); err != nil {
			return err
		}
		_, err := s.Delete(ctx, tx, "Patient", ids[6], "a", t0.Add(2*time.Hour))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		params url.Values
		since  time.Time
	}{
		{url.Values{"family": {"chen"}, "gender": {"female"}}, time.Time{}},
		{url.Values{"name": {"chen"}}, time.Time{}},
		{url.Values{"family:exact": {"Chen"}, "given": {"given1"}}, time.Time{}},
		{url.Values{"family": {"chen,moreno"}, "gender": {"male"}}, t0.Add(50 * time.Millisecond)},
	} {
		t.Run(c.params.Encode(), func(t *testing.T) {
			sq, err := fhir.ParseSearch("Patient", c.params)
			if err != nil {
				t.Fatal(err)
			}
			driven := store.Query{Type: "Patient", Clauses: sq.Clauses, Since: c.since, Limit: 7}
			plan, err := s.Explain(ctx, driven)
			if err != nil {
				t.Fatal(err)
			}
			// The candidates come off the string index rows (through the index, unless
			// most rows match as "chen" does every name here), and the only resource rows
			// read are the page's bodies.
			if p := strings.Join(plan, "\n"); !strings.Contains(p, " on fhir_idx_string x") || strings.Count(p, " on fhir_resources") != 1 {
				t.Fatalf("not driven from the string index alone:\n%s", p)
			}
			usual := driven
			usual.Members = []string{"a"}
			pages := func(q store.Query) []string {
				var out []string
				for {
					page, err := s.Search(ctx, nil, q)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range page {
						out = append(out, r.ID)
					}
					if len(page) < q.Limit {
						return out
					}
					q.After = &page[len(page)-1].Key
				}
			}
			got, want := pages(driven), pages(usual)
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Fatalf("driven pages %d rows %v\nusual plan %d rows %v", len(got), got, len(want), want)
			}
			if slices.Contains(got, ids[6]) {
				t.Fatal("a deleted Patient was found")
			}
		})
	}
}
