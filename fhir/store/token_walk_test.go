package store_test

import (
	"context"
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
