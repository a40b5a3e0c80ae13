package store_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// resourceState is everything of a stored resource that Reindex may read: its row (but
// for the date bounds, which are index), its history and its index rows.
type resourceState struct {
	Version     int
	LastUpdated time.Time
	Body        string
	History     int
	DateLo      *int64
	DateHi      *int64
	Index       []string
}

func stateOf(t *testing.T, pool *pgxpool.Pool, typ, id string) resourceState {
	t.Helper()
	ctx := context.Background()
	var st resourceState
	err := pool.QueryRow(ctx, `SELECT version, last_updated, convert_from(body, 'UTF8'), date_lo, date_hi,
			(SELECT count(*) FROM fhir_history h WHERE h.type = r.type AND h.id = r.id)
		FROM fhir_resources r WHERE type = $1 AND id = $2`, typ, id).
		Scan(&st.Version, &st.LastUpdated, &st.Body, &st.DateLo, &st.DateHi, &st.History)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT 'token ' || param || ' ' || system || '|' || code FROM fhir_idx_token WHERE type = $1 AND id = $2
		UNION ALL SELECT 'date ' || param || ' ' || lo || '/' || hi FROM fhir_idx_date WHERE type = $1 AND id = $2
		UNION ALL SELECT 'string ' || param || ' ' || value || ' @' || last_updated FROM fhir_idx_string WHERE type = $1 AND id = $2
		UNION ALL SELECT 'ref ' || param || ' ' || ref_type || '/' || ref_id FROM fhir_idx_ref WHERE type = $1 AND id = $2
		ORDER BY 1`, typ, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Index, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	return st
}

func (a resourceState) equal(b resourceState) bool {
	eq := func(x, y *int64) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return a.Version == b.Version && a.LastUpdated.Equal(b.LastUpdated) && a.Body == b.Body && a.History == b.History &&
		eq(a.DateLo, b.DateLo) && eq(a.DateHi, b.DateHi) && slices.Equal(a.Index, b.Index)
}

func putResource(t *testing.T, pool *pgxpool.Pool, s *store.Store, id, body string) store.Stored {
	t.Helper()
	ctx := context.Background()
	var st store.Stored
	err := db.InTx(ctx, pool, func(tx db.Querier) (err error) {
		st, err = s.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(body)), ID: id, MemberID: "a", At: time.Now()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// found returns the ids of typ that the search query finds.
func found(t *testing.T, s *store.Store, typ, query string) []string {
	t.Helper()
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	sq, err := fhir.ParseSearch(typ, q)
	if err != nil {
		t.Fatalf("ParseSearch(%s?%s): %v", typ, query, err)
	}
	rows, err := s.Search(context.Background(), nil, store.Query{Type: typ, Clauses: sq.Clauses, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

// TestReindexRebuildsMissingRows stores resources, removes the index rows of one
// parameter each as if it had been added to the registry after they were stored, and
// checks that Reindex makes them searchable again with exactly the rows a write gives,
// touching nothing else; a dry run before writes nothing, and a second run finds nothing to
// do.
func TestReindexRebuildsMissingRows(t *testing.T) {
	pool, s := memberA(t)
	ctx := context.Background()
	loc1 := putResource(t, pool, s, "", `{"resourceType":"Location","name":"Harbor Street Clinic","address":{"city":"Springfield","state":"IL"},"managingOrganization":{"reference":"Organization/o1"}}`)
	loc2 := putResource(t, pool, s, "", `{"resourceType":"Location","name":"Hilltop Annex","address":{"city":"Shelbyville"}}`)
	role := putResource(t, pool, s, "", `{"resourceType":"PractitionerRole","practitioner":{"reference":"Practitioner/pr1"},"organization":{"reference":"Organization/o1"},"code":[{"coding":[{"system":"http://nucc.org/provider-taxonomy","code":"207Q00000X"}]}]}`)
	obs := putResource(t, pool, s, "", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveDateTime":"2025-01-15T10:00:00Z"}`)
	org := putResource(t, pool, s, "", `{"resourceType":"Organization","name":"Harbor Health"}`) // no parameter of its type is missing
	gone := putResource(t, pool, s, "", `{"resourceType":"Location","name":"Springfield Depot","address":{"city":"Springfield"}}`)
	if err := db.InTx(ctx, pool, func(tx db.Querier) error {
		_, err := s.Delete(ctx, tx, "Location", gone.ID, "a", time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	all := []store.Stored{loc1, loc2, role, obs, org}
	written := map[string]resourceState{}
	for _, st := range all {
		written[st.ID] = stateOf(t, pool, st.Type, st.ID)
	}
	goneState := stateOf(t, pool, "Location", gone.ID)

	// Stored before address-city, PractitionerRole's references and Observation date existed.
	mustExec(t, pool, `DELETE FROM fhir_idx_string WHERE type = 'Location' AND param = 'address-city'`)
	mustExec(t, pool, `DELETE FROM fhir_idx_ref WHERE type = 'PractitionerRole'`)
	mustExec(t, pool, `DELETE FROM fhir_idx_date WHERE type = 'Observation' AND param = 'date'`)
	mustExec(t, pool, `UPDATE fhir_resources SET date_lo = NULL, date_hi = NULL WHERE type = 'Observation'`)
	searches := []struct {
		typ, query string
		want       []string
	}{
		{"Location", "address-city=springfield", []string{loc1.ID}},
		{"Location", "address-city=shelbyville", []string{loc2.ID}},
		{"PractitionerRole", "practitioner=Practitioner/pr1", []string{role.ID}},
		{"Observation", "date=2025-01", []string{obs.ID}},
	}
	for _, q := range searches {
		if got := found(t, s, q.typ, q.query); len(got) != 0 {
			t.Fatalf("%s?%s before reindex = %v, want nothing", q.typ, q.query, got)
		}
	}

	rep, err := s.Reindex(ctx, store.ReindexOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.ReindexReport{Examined: 5, Reindexed: 4, Unchanged: 1}); !reportEqual(rep, want) {
		t.Fatalf("dry run = %+v, want %+v", rep, want)
	}
	if got := found(t, s, "Location", "address-city=springfield"); len(got) != 0 {
		t.Fatalf("a dry run wrote index rows: %v", got)
	}

	var batches int
	rep, err = s.Reindex(ctx, store.ReindexOptions{Batch: 1, Progress: func(store.ReindexReport) { batches++ }})
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.ReindexReport{Examined: 5, Reindexed: 4, Unchanged: 1}); !reportEqual(rep, want) || batches != 5 {
		t.Fatalf("reindex = %+v in %d batches, want %+v in 5", rep, batches, want)
	}
	for _, q := range searches {
		if got := found(t, s, q.typ, q.query); !slices.Equal(got, q.want) {
			t.Errorf("%s?%s after reindex = %v, want %v", q.typ, q.query, got, q.want)
		}
	}
	for _, st := range all {
		if got := stateOf(t, pool, st.Type, st.ID); !got.equal(written[st.ID]) {
			t.Errorf("%s after reindex:\n%+v\nwant as written:\n%+v", st.Type, got, written[st.ID])
		}
	}
	if got := stateOf(t, pool, "Location", gone.ID); !got.equal(goneState) || len(got.Index) != 0 {
		t.Errorf("deleted Location after reindex: %+v, want untouched with no index rows", got)
	}

	rep, err = s.Reindex(ctx, store.ReindexOptions{Types: []string{"Location", "PractitionerRole", "Observation", "Location"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.ReindexReport{Examined: 4, Unchanged: 4}); !reportEqual(rep, want) {
		t.Fatalf("second run = %+v, want %+v", rep, want)
	}
}

func reportEqual(a, b store.ReindexReport) bool {
	return a.Examined == b.Examined && a.Reindexed == b.Reindexed && a.Unchanged == b.Unchanged &&
		a.Skipped == b.Skipped && a.Failed == b.Failed && slices.Equal(a.FailedRefs, b.FailedRefs)
}

// waitForLockWait returns once some session of the test's database waits for a lock, or
// once done (if not nil) holds a value: the session it waited for finished without waiting.
func waitForLockWait[T any](t *testing.T, pool *pgxpool.Pool, done chan T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && (done == nil || len(done) == 0) {
		var n int
		err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	if done == nil || len(done) == 0 {
		t.Fatal("no session waited for a lock within 10s")
	}
}

// TestReindexConcurrentWrite interleaves a reindex with an update of the same resource,
// both ways round, and checks that the update is never lost: the resource ends at the
// writer's version with the writer's index rows only.
func TestReindexConcurrentWrite(t *testing.T) {
	pool, s := memberA(t)
	ctx := context.Background()
	const body = `{"resourceType":"Location","name":"Harbor Street Clinic","identifier":[{"system":"urn:x","value":"%s"}]}`
	loc := putResource(t, pool, s, "", fmt.Sprintf(body, "v1"))
	update := func(tx db.Querier, value string) error {
		_, err := s.Put(ctx, tx, store.Write{Resource: fhir.MustParse([]byte(fmt.Sprintf(body, value))), ID: loc.ID, MemberID: "a", At: time.Now()})
		return err
	}
	// checkWriterWon checks that the resource is at version and its index rows are those of
	// its body, found by identifier value and by no older one.
	checkWriterWon := func(t *testing.T, version int, value string, older ...string) {
		t.Helper()
		got, err := s.Get(ctx, nil, "Location", loc.ID)
		if err != nil || got.Version != version {
			t.Fatalf("Get = version %d, %v; want %d", got.Version, err, version)
		}
		if ids := found(t, s, "Location", "identifier=urn:x|"+value); !slices.Equal(ids, []string{loc.ID}) {
			t.Errorf("identifier=%s finds %v, want the Location", value, ids)
		}
		for _, v := range older {
			if ids := found(t, s, "Location", "identifier=urn:x|"+v); len(ids) != 0 {
				t.Errorf("identifier=%s (an older version's) finds %v, want nothing", v, ids)
			}
		}
		rep, err := s.Reindex(ctx, store.ReindexOptions{Types: []string{"Location"}, DryRun: true})
		if err != nil || rep.Reindexed != 0 {
			t.Errorf("dry run after = %+v, %v; want nothing out of date", rep, err)
		}
	}
	stale := func() {
		mustExec(t, pool, `DELETE FROM fhir_idx_token WHERE type = 'Location' AND id = $1 AND param = 'identifier'`, loc.ID)
	}

	t.Run("the writer waits for the batch", func(t *testing.T) {
		stale()
		wrote := make(chan error, 1)
		var once sync.Once
		o := store.WithLockedHook(store.ReindexOptions{Types: []string{"Location"}}, func() {
			once.Do(func() {
				go func() { wrote <- db.InTx(ctx, pool, func(tx db.Querier) error { return update(tx, "v2") }) }()
				waitForLockWait(t, pool, wrote) // the writer is blocked on the batch's row lock
			})
		})
		rep, err := s.Reindex(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
		if want := (store.ReindexReport{Examined: 1, Reindexed: 1}); !reportEqual(rep, want) {
			t.Errorf("reindex = %+v, want %+v", rep, want)
		}
		checkWriterWon(t, 2, "v2", "v1")
	})

	t.Run("the batch leaves the writer's row and waits for it alone", func(t *testing.T) {
		stale()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if err := update(tx, "v3"); err != nil { // holds the row lock until Commit
			t.Fatal(err)
		}
		type result struct {
			rep store.ReindexReport
			err error
		}
		done := make(chan result, 1)
		go func() {
			rep, err := s.Reindex(ctx, store.ReindexOptions{Types: []string{"Location"}})
			done <- result{rep, err}
		}()
		waitForLockWait(t, pool, done)
		select {
		case r := <-done:
			t.Fatalf("reindex returned while the writer held the row: %+v, %v", r.rep, r.err)
		default:
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		// The writer indexed its own version: nothing was left for the reindex to do.
		if want := (store.ReindexReport{Examined: 1, Unchanged: 1}); !reportEqual(r.rep, want) {
			t.Errorf("reindex = %+v, want %+v", r.rep, want)
		}
		checkWriterWon(t, 3, "v3", "v1", "v2")
	})
}

// TestReindexRefusals checks that an unknown type is refused before anything is read, and
// that a stored body that no longer parses is counted, named and left alone.
func TestReindexRefusals(t *testing.T) {
	pool, s := memberA(t)
	ctx := context.Background()
	if _, err := s.Reindex(ctx, store.ReindexOptions{Types: []string{"Location", "Nope"}}); errs.CodeOf(err) != errs.Invalid {
		t.Errorf("unknown type: %v, want Invalid", err)
	}
	loc := putResource(t, pool, s, "", `{"resourceType":"Location","name":"Harbor Street Clinic"}`)
	mustExec(t, pool, `UPDATE fhir_resources SET body = convert_to('{"resourceType":"Location","bogus":true}', 'UTF8') WHERE type = 'Location' AND id = $1`, loc.ID)
	mustExec(t, pool, `DELETE FROM fhir_idx_string WHERE type = 'Location' AND id = $1`, loc.ID)
	before := stateOf(t, pool, "Location", loc.ID)
	rep, err := s.Reindex(ctx, store.ReindexOptions{Types: []string{"Location"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.ReindexReport{Examined: 1, Failed: 1, FailedRefs: []string{"Location/" + loc.ID}}); !reportEqual(rep, want) {
		t.Errorf("reindex = %+v, want %+v", rep, want)
	}
	if got := stateOf(t, pool, "Location", loc.ID); !got.equal(before) {
		t.Errorf("an unreadable resource was changed: %+v, want %+v", got, before)
	}
}

// TestReindexUnstorableValue: a resource whose fresh index rows the database refuses (here a
// NUL character, which a text column cannot hold, in a string that a parameter added after
// it was stored indexes) is counted as failed, named and left as it was, like an unreadable
// one; it must not stop the run, or every run would stop at its batch and never finish.
func TestReindexUnstorableValue(t *testing.T) {
	pool, s := memberA(t)
	ctx := context.Background()
	bad := putResource(t, pool, s, "", `{"resourceType":"Location","name":"Harbor Street Clinic","address":{"city":"Springfield"}}`)
	good := putResource(t, pool, s, "", `{"resourceType":"Location","name":"Hilltop Annex","address":{"city":"Shelbyville"}}`)
	mustExec(t, pool, `UPDATE fhir_resources SET body = convert_to('{"resourceType":"Location","id":"' || id || '","name":"Harbor Street Clinic","address":{"city":"Spring\u0000field"}}', 'UTF8') WHERE type = 'Location' AND id = $1`, bad.ID)
	mustExec(t, pool, `DELETE FROM fhir_idx_string WHERE type = 'Location' AND param = 'address-city'`)
	before := stateOf(t, pool, "Location", bad.ID)
	for _, batch := range []int{1, 10} {
		rep, err := s.Reindex(ctx, store.ReindexOptions{Types: []string{"Location"}, Batch: batch})
		if err != nil {
			t.Fatalf("batch %d: %v; want the run to finish", batch, err)
		}
		want := store.ReindexReport{Examined: 2, Reindexed: 1, Failed: 1, FailedRefs: []string{"Location/" + bad.ID}}
		if batch == 10 {
			want.Reindexed, want.Unchanged = 0, 1 // the first run reindexed the good one
		}
		if !reportEqual(rep, want) {
			t.Errorf("batch %d: reindex = %+v, want %+v", batch, rep, want)
		}
		if got := found(t, s, "Location", "address-city=shelbyville"); !slices.Equal(got, []string{good.ID}) {
			t.Errorf("batch %d: address-city=shelbyville finds %v, want the other Location", batch, got)
		}
		if got := stateOf(t, pool, "Location", bad.ID); !got.equal(before) {
			t.Errorf("batch %d: the refused resource was changed: %+v, want %+v", batch, got, before)
		}
	}
}
