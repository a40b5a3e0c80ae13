package store_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
)

// staleCopies returns the index rows whose copies of their resource row's columns differ
// from it (token rows: patient_id and last_updated; string rows: last_updated), or that
// belong to no live resource, as "table type/id param", sorted. Searches driven from those
// index tables answer from the copies alone, so this must be empty after every write.
func staleCopies(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT 'token ' || x.type || '/' || x.id || ' ' || x.param FROM fhir_idx_token x
			LEFT JOIN fhir_resources r ON r.type = x.type AND r.id = x.id
			WHERE r.id IS NULL OR r.deleted OR x.patient_id IS DISTINCT FROM r.patient_id OR x.last_updated <> r.last_updated
		UNION ALL
		SELECT 'string ' || x.type || '/' || x.id || ' ' || x.param FROM fhir_idx_string x
			LEFT JOIN fhir_resources r ON r.type = x.type AND r.id = x.id
			WHERE r.id IS NULL OR r.deleted OR x.last_updated <> r.last_updated
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// docRef is a DocumentReference of patient ("" for none) with the given type codings (JSON).
func docRef(patient, codings, category, date string) *fhir.Resource {
	subject := ""
	if patient != "" {
		subject = `,"subject":{"reference":"Patient/` + patient + `"}`
	}
	return fhir.MustParse([]byte(`{"resourceType":"DocumentReference","status":"current","type":{"coding":[` + codings +
		`]},"category":[{"coding":[{"code":"` + category + `"}]}],"date":"` + date + `T00:00:00Z"` + subject +
		`,"content":[{"attachment":{"contentType":"text/plain","url":"Binary/x"}}]}`))
}

// TestIndexCopiesFollowTheResource: every index row's copies of its resource's patient_id
// and last_updated (migrations 0096, 0100) equal the resource row's after each way the
// store writes: create, bulk create, update (also to another compartment or none), an update
// that changes nothing, delete, a write after a delete, and Reindex, which also repairs
// copies gone stale.
func TestIndexCopiesFollowTheResource(t *testing.T) {
	pool, s := memberA(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	put := func(w store.Write) store.Stored {
		t.Helper()
		var st store.Stored
		err := db.InTx(ctx, pool, func(tx db.Querier) (err error) {
			w.MemberID = "a"
			st, err = s.Put(ctx, tx, w)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	check := func(step string) {
		t.Helper()
		if stale := staleCopies(t, pool); len(stale) > 0 {
			t.Fatalf("after %s, index rows disagree with their resource: %v", step, stale)
		}
	}
	count := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	loinc := `{"system":"http://loinc.org","code":"34111-5"}`

	a := put(store.Write{Resource: docRef("p1", loinc, "clinical-note", "2025-01-01"), PatientID: "p1", At: t0})
	b := put(store.Write{Resource: docRef("", loinc, "clinical-note", "2025-01-01"), At: t0}) // in no compartment
	check("create")
	if n := count(`SELECT count(*) FROM fhir_idx_token WHERE id = $1 AND patient_id = 'p1'`, a.ID); n == 0 {
		t.Fatal("a created resource's token rows do not name its patient")
	}

	var bulk []store.Stored
	err := db.InTx(ctx, pool, func(tx db.Querier) (err error) {
		bulk, err = s.CreateMany(ctx, tx, []store.Write{
			{Resource: docRef("p2", loinc, "clinical-note", "2025-02-01"), MemberID: "a", PatientID: "p2", At: t0.Add(time.Second)},
			{Resource: docRef("", loinc, "imaging", "2025-02-01"), MemberID: "a", At: t0.Add(time.Second)},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	check("bulk create")

	put(store.Write{ID: a.ID, Resource: docRef("p2", loinc, "clinical-note", "2025-01-01"), PatientID: "p2", At: t0.Add(time.Minute)}) // another compartment
	put(store.Write{ID: b.ID, Resource: docRef("p3", loinc, "clinical-note", "2025-01-01"), PatientID: "p3", At: t0.Add(time.Minute)}) // into one
	put(store.Write{ID: bulk[0].ID, Resource: docRef("", loinc, "clinical-note", "2025-02-01"), At: t0.Add(time.Minute)})              // out of one
	check("update")
	if n := count(`SELECT count(*) FROM fhir_idx_token WHERE id = $1 AND patient_id = 'p2'`, a.ID); n == 0 {
		t.Fatal("an update to another compartment left the token rows behind")
	}

	if st := put(store.Write{ID: a.ID, Resource: docRef("p2", loinc, "clinical-note", "2025-01-01"), PatientID: "p2", At: t0.Add(time.Hour), SkipUnchanged: true}); !st.Unchanged {
		t.Fatal("an update with the same content was stored")
	}
	check("an unchanged update")

	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		_, err := s.Delete(ctx, tx, "DocumentReference", bulk[1].ID, "a", t0.Add(2*time.Minute))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	check("delete")
	put(store.Write{ID: bulk[1].ID, Resource: docRef("p1", loinc, "imaging", "2025-02-01"), PatientID: "p1", At: t0.Add(3 * time.Minute)})
	check("a write after a delete")

	// Copies gone stale (as a writer that forgot them would leave them) are found, and
	// Reindex rewrites them.
	mustExec(t, pool, `UPDATE fhir_idx_token SET patient_id = 'p9' WHERE id = $1`, a.ID)
	mustExec(t, pool, `UPDATE fhir_idx_token SET patient_id = NULL WHERE id = $1`, b.ID)
	mustExec(t, pool, `UPDATE fhir_idx_token SET last_updated = last_updated - interval '1 hour' WHERE id = $1`, bulk[0].ID)
	mustExec(t, pool, `DELETE FROM fhir_idx_token WHERE id = $1 AND param = 'type'`, bulk[1].ID) // a new parameter's rows
	if stale := staleCopies(t, pool); len(stale) == 0 {
		t.Fatal("stale copies were not found")
	}
	rep, err := s.Reindex(ctx, store.ReindexOptions{Types: []string{"DocumentReference"}})
	if err != nil || rep.Reindexed != 4 {
		t.Fatalf("Reindex = %+v, %v; want 4 reindexed", rep, err)
	}
	check("reindex")
	if n := count(`SELECT count(*) FROM fhir_idx_token WHERE id = $1 AND param = 'type' AND patient_id = 'p1'`, bulk[1].ID); n == 0 {
		t.Fatal("Reindex wrote token rows without their patient")
	}
	if rep, err := s.Reindex(ctx, store.ReindexOptions{Types: []string{"DocumentReference"}}); err != nil || rep.Reindexed != 0 {
		t.Fatalf("second Reindex = %+v, %v; want nothing to do", rep, err)
	}
}

// TestTokenDrivenSearch: a patient's search with a token clause of one code, in the default
// order, walks the patient's token rows with that code (tokenDriver). It must answer exactly
// what the compartment walk answers (forced here by a member filter that every row passes),
// with the same keys, page by page, for one patient or several, a code with a system,
// without one, in any system, in two systems or twice in one resource, with other clauses,
// after updates, moves to another patient and deletes, and with _since.
func TestTokenDrivenSearch(t *testing.T) {
	pool, s := memberA(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	codings := []string{
		`{"system":"http://loinc.org","code":"34111-5"}`,
		`{"system":"http://loinc.org","code":"34111-5"},{"system":"http://example.org/local","code":"34111-5"}`, // two systems
		`{"code":"34111-5"}`, // no system
		`{"system":"http://loinc.org","code":"11506-3"}`,
		`{"system":"http://loinc.org","code":"34111-5"},{"system":"http://loinc.org","code":"34111-5"}`, // twice
	}
	patients := []string{"p1", "p1", "p2", "p3"}
	var ids []string
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		for i := range 240 {
			p := patients[i%4]
			st, err := s.Put(ctx, tx, store.Write{Resource: docRef(p, codings[i%5], []string{"clinical-note", "imaging", "clinical-note"}[i%3],
				fmt.Sprintf("20%02d-01-01", 10+i%15)), MemberID: "a", PatientID: p, At: t0.Add(time.Duration(i/3) * time.Millisecond)}) // ties of three
			if err != nil {
				return err
			}
			ids = append(ids, st.ID)
		}
		// A new version moves to the front, a resource moves to another patient, deleted
		// ones match nothing.
		if _, err := s.Put(ctx, tx, store.Write{ID: ids[0], Resource: docRef("p1", codings[0], "clinical-note", "2020-01-01"), MemberID: "a", PatientID: "p1", At: t0.Add(time.Hour)}); err != nil {
			return err
		}
		if _, err := s.Put(ctx, tx, store.Write{ID: ids[5], Resource: docRef("p2", codings[0], "clinical-note", "2020-01-01"), MemberID: "a", PatientID: "p2", At: t0.Add(time.Hour)}); err != nil {
			return err
		}
		for _, i := range []int{10, 11, 12} {
			if _, err := s.Delete(ctx, tx, "DocumentReference", ids[i], "a", t0.Add(2*time.Hour)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if stale := staleCopies(t, pool); len(stale) > 0 {
		t.Fatalf("index rows disagree with their resource: %v", stale)
	}
	deleted := []string{ids[10], ids[11], ids[12]}
	for _, c := range []struct {
		params   url.Values
		patients []string
		since    time.Time
	}{
		{url.Values{"type": {"http://loinc.org|34111-5"}}, []string{"p1"}, time.Time{}},
		{url.Values{"type": {"http://loinc.org|34111-5"}}, []string{"p3", "p1", "p2", "p9"}, time.Time{}},
		{url.Values{"type": {"34111-5"}}, []string{"p1", "p2"}, time.Time{}},
		{url.Values{"type": {"|34111-5"}}, []string{"p1", "p2", "p3"}, time.Time{}},
		{url.Values{"type": {"http://example.org/local|34111-5"}}, []string{"p1", "p3"}, time.Time{}},
		{url.Values{"type": {"http://loinc.org|34111-5"}, "category": {"clinical-note"}}, []string{"p1", "p2"}, time.Time{}},
		{url.Values{"category": {"clinical-note"}, "type": {"34111-5"}, "date": {"ge2015"}}, []string{"p2", "p1"}, time.Time{}},
		{url.Values{"type": {"34111-5", "http://loinc.org|34111-5"}}, []string{"p1", "p2"}, time.Time{}},
		{url.Values{"type": {"http://loinc.org|34111-5"}}, []string{"p1", "p2"}, t0.Add(30 * time.Millisecond)},
	} {
		t.Run(strings.Join(c.patients, ",")+"?"+c.params.Encode(), func(t *testing.T) {
			sq, err := fhir.ParseSearch("DocumentReference", c.params)
			if err != nil {
				t.Fatal(err)
			}
			driven := store.Query{Type: "DocumentReference", Clauses: sq.Clauses, Patients: c.patients, Since: c.since, Limit: 7}
			usual := driven
			usual.Members = []string{"a"}
			for q, want := range map[*store.Query]bool{&driven: true, &usual: false} {
				sql, _, err := store.BuildSelect(*q)
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.Contains(sql, "FROM fhir_idx_token x WHERE x.patient_id = c.pid"); got != want {
					t.Fatalf("members %v: walked off the token rows %v, want %v:\n%s", q.Members, got, want, sql)
				}
			}
			pages := func(q store.Query) []string {
				var out []string
				for {
					page, err := s.Search(ctx, nil, q)
					if err != nil {
						t.Fatal(err)
					}
					for _, r := range page {
						out = append(out, fmt.Sprintf("%s %s %v", r.ID, r.PatientID, r.Key))
					}
					if len(page) < q.Limit {
						return out
					}
					q.After = &page[len(page)-1].Key
				}
			}
			got, want := pages(driven), pages(usual)
			if len(want) <= driven.Limit || !slices.Equal(got, want) {
				t.Fatalf("driven pages %d rows %v\nusual plan %d rows %v", len(got), got, len(want), want)
			}
			driven.Limit, usual.Limit = 1000, 1000
			if got, want := pages(driven), pages(usual); !slices.Equal(got, want) {
				t.Fatalf("driven %d rows %v\nusual plan %d rows %v", len(got), got, len(want), want)
			}
			for _, row := range got {
				id, patient, _ := strings.Cut(row, " ")
				if slices.Contains(deleted, id) {
					t.Fatalf("a deleted resource was found: %s", row)
				}
				if id == ids[5] && !strings.HasPrefix(patient, "p2 ") {
					t.Fatalf("a resource moved to p2 was found in its old compartment: %s", row)
				}
			}
		})
	}
}

// TestTokenWalkStaleCopies: the token walk trusts the patient_id and last_updated copied into
// the index rows only to find candidates; each is checked against its resource row. A
// resource whose token rows name another patient (as SQL by hand or a partial restore
// could leave them) and one marked deleted with its index rows left behind are not
// returned, and the pages stay full: they equal the compartment walk's, which reads the
// resource rows themselves. One whose rows carry another last_updated cannot be placed in
// the order, so the walk leaves it out too (Reindex repairs the copies).
func TestTokenWalkStaleCopies(t *testing.T) {
	pool, s := memberA(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	loinc := `{"system":"http://loinc.org","code":"34111-5"}`
	byPatient := map[string][]string{}
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		for i := range 30 {
			p := []string{"p1", "p2"}[i%2]
			st, err := s.Put(ctx, tx, store.Write{Resource: docRef(p, loinc, "clinical-note", "2025-01-01"), MemberID: "a", PatientID: p,
				At: t0.Add(time.Duration(i) * time.Second)})
			if err != nil {
				return err
			}
			byPatient[p] = append(byPatient[p], st.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	other, gone, old := byPatient["p2"][14], byPatient["p1"][14], byPatient["p1"][13] // each the newest left
	mustExec(t, pool, `UPDATE fhir_idx_token SET patient_id = 'p1' WHERE id = $1`, other)
	mustExec(t, pool, `UPDATE fhir_resources SET deleted = true WHERE type = 'DocumentReference' AND id = $1`, gone)
	mustExec(t, pool, `UPDATE fhir_idx_token SET last_updated = last_updated + interval '1 hour' WHERE id = $1`, old)
	if stale := staleCopies(t, pool); len(stale) == 0 {
		t.Fatal("the copies were not made stale")
	}

	sq, err := fhir.ParseSearch("DocumentReference", url.Values{"type": {"http://loinc.org|34111-5"}})
	if err != nil {
		t.Fatal(err)
	}
	driven := store.Query{Type: "DocumentReference", Clauses: sq.Clauses, Patients: []string{"p1"}, Limit: 4}
	if sql, _, err := store.BuildSelect(driven); err != nil || !strings.Contains(sql, "FROM fhir_idx_token x WHERE x.patient_id = c.pid") {
		t.Fatalf("not walked off the token rows (%v):\n%s", err, sql)
	}
	usual := driven
	usual.Members = []string{"a"}
	pages := func(q store.Query) (out []string) {
		t.Helper()
		for {
			page, err := s.Search(ctx, nil, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page {
				if r.ID == other || r.ID == gone {
					t.Fatalf("members %v: found %s of %s, deleted %v", q.Members, r.ID, r.PatientID, r.ID == gone)
				}
				out = append(out, fmt.Sprintf("%s %s %v", r.ID, r.PatientID, r.Key))
			}
			if len(page) < q.Limit {
				return out
			}
			q.After = &page[len(page)-1].Key
		}
	}
	got, want := pages(driven), pages(usual)
	want = slices.DeleteFunc(want, func(row string) bool { return strings.HasPrefix(row, old+" ") })
	if len(want) != 13 || !slices.Equal(got, want) {
		t.Fatalf("driven pages %d rows %v\nusual plan %d rows %v", len(got), got, len(want), want)
	}
}
