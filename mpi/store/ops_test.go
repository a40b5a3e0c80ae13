package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
	"github.com/concord-hie/concord/mpi"
	"github.com/concord-hie/concord/mpi/store"
)

type opsEnv struct {
	t       *testing.T
	ctx     context.Context
	pool    *pgxpool.Pool
	m       *store.Matcher
	ops     *store.Ops
	steward store.Steward
}

func newOpsEnv(t *testing.T) *opsEnv {
	t.Helper()
	pool := testkit.DB(t)
	ctx := context.Background()
	for i, m := range []string{"a", "b", "c", "d"} {
		if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ($1, $1, $2)`, m, fmt.Sprintf("urn:oid:1.2.%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	log, err := audit.New(ctx, pool, audit.Config{CheckpointEvery: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	s := store.New(pool)
	m, err := store.NewMatcher(s)
	if err != nil {
		t.Fatal(err)
	}
	return &opsEnv{t: t, ctx: ctx, pool: pool, m: m, ops: store.NewOps(pool, log, m.Model()),
		steward: store.Steward{Subject: "https://idp|steward-1", Org: "a", Role: "steward"}}
}

func (e *opsEnv) link(member, mrn string, body []byte) store.Link {
	e.t.Helper()
	var l store.Link
	sys := map[string]string{"a": "urn:oid:1.2.1", "b": "urn:oid:1.2.2", "c": "urn:oid:1.2.3", "d": "urn:oid:1.2.4"}[member]
	err := db.InTx(e.ctx, e.pool, func(tx db.Querier) error {
		var err error
		l, err = e.m.LinkPatient(e.ctx, tx, member, sys, mrn, "pat-"+member+"-"+mrn, body)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// memberships is every source's person and link state: the compartments as the MPI holds them.
func (e *opsEnv) memberships() map[int64]string {
	e.t.Helper()
	rows, err := e.pool.Query(e.ctx, `SELECT id, person_id::text || '/' || link_state || '/' || coalesce(link_score::text, '') || '/' || link_rule FROM mpi_source_records`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var s string
		if err := rows.Scan(&id, &s); err != nil {
			e.t.Fatal(err)
		}
		out[id] = s
	}
	return out
}

func (e *opsEnv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func ana() []byte {
	return patient("Ana", "Rivera", "female", "1984-03-12", "418 Willow Creek Rd", "951-555-0142", "523-41-7789")
}

func TestMergeUnmergeRestoresCompartments(t *testing.T) {
	e := newOpsEnv(t)
	a1 := e.link("a", "A1", ana())
	b1 := e.link("b", "B1", ana())
	if b1.Source.PersonID != a1.Source.PersonID {
		t.Fatal("setup: same person not auto-linked")
	}
	marcus := e.link("c", "C1", patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344"))
	marcus2 := e.link("d", "D1", patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344"))
	if marcus2.Source.PersonID != marcus.Source.PersonID || marcus.Source.PersonID == a1.Source.PersonID {
		t.Fatal("setup: persons not as expected")
	}
	before := e.memberships()
	outbox0 := e.count(`SELECT count(*) FROM outbox_events WHERE topic = $1`, store.TopicLinkChanged)

	mc, err := e.ops.Merge(e.ctx, a1.Source.PersonID, marcus.Source.PersonID, e.steward)
	if err != nil {
		t.Fatal(err)
	}
	if len(mc.Moved) != 2 || mc.Merge == 0 {
		t.Fatalf("merge moved %d sources, id %d", len(mc.Moved), mc.Merge)
	}
	srcs, err := store.New(e.pool).Sources(e.ctx, a1.Source.PersonID)
	if err != nil || len(srcs) != 4 {
		t.Fatalf("after merge the kept person has %d sources (%v)", len(srcs), err)
	}
	if n := e.count(`SELECT count(*) FROM mpi_persons WHERE id = $1 AND retired_into = $2`, string(marcus.Source.PersonID), string(a1.Source.PersonID)); n != 1 {
		t.Fatal("the lost person is not a redirect to the kept one")
	}
	// A second merge of the retired person is refused.
	if _, err := e.ops.Merge(e.ctx, a1.Source.PersonID, marcus.Source.PersonID, e.steward); errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("merging a retired person again: %v", err)
	}

	uc, err := e.ops.Unmerge(e.ctx, mc.Merge, e.steward)
	if err != nil {
		t.Fatal(err)
	}
	if len(uc.Moved) != 2 {
		t.Fatalf("unmerge moved %d", len(uc.Moved))
	}
	after := e.memberships()
	for id, want := range before {
		if after[id] != want {
			t.Errorf("source %d: before merge %s, after unmerge %s", id, want, after[id])
		}
	}
	if n := e.count(`SELECT count(*) FROM mpi_persons WHERE id = $1 AND retired_into IS NULL`, string(marcus.Source.PersonID)); n != 1 {
		t.Fatal("the lost person is not live again")
	}
	if _, err := e.ops.Unmerge(e.ctx, mc.Merge, e.steward); errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("second unmerge: %v", err)
	}
	// History: 2 merge rows and 2 unmerge rows with the steward and the model.
	if n := e.count(`SELECT count(*) FROM mpi_link_history WHERE merge_id = $1 AND actor = $2 AND model = $3 AND evidence IS NOT NULL`, mc.Merge, e.steward.Subject, e.m.Model()); n != 4 {
		t.Fatalf("history rows for the merge: %d", n)
	}
	if n := e.count(`SELECT count(*) FROM outbox_events WHERE topic = $1`, store.TopicLinkChanged) - outbox0; n != 2 {
		t.Fatalf("outbox events: %d", n)
	}
	// The outbox payload carries IDs only: no name, no birth date.
	var payload string
	if err := e.pool.QueryRow(e.ctx, `SELECT payload::text FROM outbox_events WHERE topic = $1 ORDER BY id LIMIT 1`, store.TopicLinkChanged).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(payload, "Rivera") || strings.Contains(payload, "1984-03-12") || !strings.Contains(payload, string(marcus.Source.PersonID)) {
		t.Fatalf("outbox payload: %s", payload)
	}
	// Audit: a merge and an unmerge event for each of the two persons.
	if n := e.count(`SELECT count(*) FROM audit_events WHERE action IN ('merge', 'unmerge') AND actor = $1`, e.steward.Subject); n != 4 {
		t.Fatalf("audit events: %d", n)
	}
}

func TestUnmergeRefusesAfterLaterMove(t *testing.T) {
	e := newOpsEnv(t)
	a1 := e.link("a", "A1", ana())
	m1 := e.link("c", "C1", patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344"))
	mc, err := e.ops.Merge(e.ctx, a1.Source.PersonID, m1.Source.PersonID, e.steward)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ops.Unlink(e.ctx, m1.Source.ID, e.steward); err != nil {
		t.Fatal(err)
	}
	before := e.memberships()
	if _, err := e.ops.Unmerge(e.ctx, mc.Merge, e.steward); errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("unmerge after a later unlink: %v", err)
	}
	after := e.memberships()
	for id, want := range before {
		if after[id] != want {
			t.Errorf("refused unmerge changed source %d", id)
		}
	}
}

func TestManualUnlinkSurvivesReingest(t *testing.T) {
	e := newOpsEnv(t)
	a1 := e.link("a", "A1", ana())
	b1 := e.link("b", "B1", ana())
	if b1.Source.PersonID != a1.Source.PersonID {
		t.Fatal("setup: not auto-linked")
	}
	old := a1.Source.PersonID
	lone := e.link("c", "C9", patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344"))
	if _, err := e.ops.Unlink(e.ctx, lone.Source.ID, e.steward); errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("unlinking a person's only record: %v", err)
	}
	uc, err := e.ops.Unlink(e.ctx, b1.Source.ID, e.steward)
	if err != nil {
		t.Fatal(err)
	}
	fresh := store.PersonID(uc.Moved[0].To)
	if fresh == old || fresh == "" {
		t.Fatalf("unlink gave person %q", fresh)
	}
	state := func(id int64) (store.PersonID, string) {
		var p, s string
		if err := e.pool.QueryRow(e.ctx, `SELECT person_id::text, link_state FROM mpi_source_records WHERE id = $1`, id).Scan(&p, &s); err != nil {
			t.Fatal(err)
		}
		return store.PersonID(p), s
	}
	// Re-ingest of the same record (same MRN) keeps it apart and MANUAL.
	again := e.link("b", "B1", ana())
	if p, s := state(b1.Source.ID); p != fresh || s != "MANUAL" || again.Source.PersonID != fresh {
		t.Fatalf("after re-ingest: person %s state %s (want %s MANUAL)", p, s, fresh)
	}
	// A new record that matches both: the unlinked source stays apart from the old person.
	c1 := e.link("c", "C1", ana())
	if p, s := state(b1.Source.ID); p != fresh || s != "MANUAL" {
		t.Fatalf("after a new matching record: person %s state %s", p, s)
	}
	if c1.Source.PersonID == fresh && c1.Outcome == mpi.AutoLink {
		// Joining the unlinked source's person is allowed; joining both is impossible by
		// construction (one person per source). Either way the old person stays without b1.
		t.Logf("new record joined the unlinked person")
	}
	srcs, err := store.New(e.pool).Sources(e.ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range srcs {
		if s.ID == b1.Source.ID {
			t.Fatal("unlinked source back in the old person")
		}
	}
	// The constraint is recorded and a re-match never offers the old person.
	cl, err := store.CannotLink(e.ctx, e.pool, b1.Source.ID)
	if err != nil || len(cl) != 1 || cl[0] != old {
		t.Fatalf("cannot-link: %v %v", cl, err)
	}
	rec, err := e.m.Record(ana())
	if err != nil {
		t.Fatal(err)
	}
	a, err := e.m.Match(e.ctx, e.pool, &rec, cl...)
	if err != nil {
		t.Fatal(err)
	}
	if a.Person == string(old) || a.RunnerUp == string(old) {
		t.Fatalf("re-match offered the cannot-link person (%s)", a.Outcome)
	}
	// A merge of the two persons is refused while the decision stands.
	if _, err := e.ops.Merge(e.ctx, old, fresh, e.steward); errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("merge across a cannot-link: %v", err)
	}
	// A MANUAL link withdraws the constraint and is kept on re-ingest.
	if _, err := e.ops.Link(e.ctx, b1.Source.ID, old, e.steward); err != nil {
		t.Fatal(err)
	}
	e.link("b", "B1", ana())
	if p, s := state(b1.Source.ID); p != old || s != "MANUAL" {
		t.Fatalf("after manual link and re-ingest: %s %s", p, s)
	}
	if cl, _ := store.CannotLink(e.ctx, e.pool, b1.Source.ID); len(cl) != 0 {
		t.Fatalf("constraint kept after a must-link: %v", cl)
	}
	if n := e.count(`SELECT count(*) FROM mpi_link_history WHERE source_id = $1 AND action IN ('unlink', 'link') AND state = 'MANUAL' AND actor = $2`, b1.Source.ID, e.steward.Subject); n != 2 {
		t.Fatalf("manual history rows: %d", n)
	}
	if n := e.count(`SELECT count(*) FROM audit_events WHERE action IN ('link', 'unlink')`); n != 4 {
		t.Fatalf("audit events for unlink+link: %d (want 2 persons each)", n)
	}
}

// review opens a review item for source against candidate, as LinkPatient does for a
// doubtful record.
func (e *opsEnv) review(source int64, candidate store.PersonID) int64 {
	e.t.Helper()
	var id int64
	if err := e.pool.QueryRow(e.ctx, `INSERT INTO mpi_review_items(source_id, candidate, kind, score, evidence, model)
		VALUES ($1, $2, 'review', 9.5, '{}', $3) RETURNING id`, source, string(candidate), e.m.Model()).Scan(&id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func TestResolveReviewKeepApart(t *testing.T) {
	e := newOpsEnv(t)
	a1 := e.link("a", "A1", ana())
	twin := e.link("c", "C1", patient("Eva", "Rivera", "female", "1984-03-12", "418 Willow Creek Rd", "951-555-0142", "523-41-7790"))
	if twin.Source.PersonID == a1.Source.PersonID {
		t.Fatal("setup: twin linked to her sister")
	}
	item := e.review(twin.Source.ID, a1.Source.PersonID)
	ch, err := e.ops.ResolveReview(e.ctx, item, store.DecideKeepApart, e.steward)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Moved) != 1 || ch.Moved[0].To != string(twin.Source.PersonID) {
		t.Fatalf("keep-apart moved the record: %+v", ch.Moved)
	}
	if _, err := e.ops.ResolveReview(e.ctx, item, store.DecideLink, e.steward); errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("second resolution: %v", err)
	}
	cl, err := store.CannotLink(e.ctx, e.pool, twin.Source.ID)
	if err != nil || len(cl) != 1 || cl[0] != a1.Source.PersonID {
		t.Fatalf("kept apart without a constraint: %v %v", cl, err)
	}
	if n := e.count(`SELECT count(*) FROM mpi_review_items WHERE id = $1 AND status = 'kept-apart' AND resolved_by = $2`, item, e.steward.Subject); n != 1 {
		t.Fatal("review item not closed")
	}
	if n := e.count(`SELECT count(*) FROM mpi_source_records WHERE id = $1 AND link_state = 'MANUAL' AND person_id = $2`, twin.Source.ID, string(twin.Source.PersonID)); n != 1 {
		t.Fatal("kept-apart record not MANUAL in its own person")
	}
	if _, err := e.ops.ResolveReview(e.ctx, item+1000, store.DecideLink, e.steward); errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("unknown item: %v", err)
	}
}

func TestResolveReviewLink(t *testing.T) {
	e := newOpsEnv(t)
	a1 := e.link("a", "A1", ana())
	c1 := e.link("c", "C1", patient("Anna", "Rivera-Lopez", "female", "1984-03-21", "77 Pine Ave", "951-555-7777", ""))
	if c1.Source.PersonID == a1.Source.PersonID {
		t.Fatal("setup: already linked")
	}
	item := e.review(c1.Source.ID, a1.Source.PersonID)
	ch, err := e.ops.ResolveReview(e.ctx, item, store.DecideLink, e.steward)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Moved) != 1 || ch.Moved[0].To != string(a1.Source.PersonID) || ch.Moved[0].From != string(c1.Source.PersonID) {
		t.Fatalf("review link moved %+v", ch.Moved)
	}
	if n := e.count(`SELECT count(*) FROM mpi_link_history WHERE source_id = $1 AND action = 'link' AND state = 'MANUAL' AND evidence->>'decision' = 'link'`, c1.Source.ID); n != 1 {
		t.Fatal("no history row with the review decision")
	}
	if n := e.count(`SELECT count(*) FROM mpi_review_items WHERE id = $1 AND status = 'linked'`, item); n != 1 {
		t.Fatal("review item not closed")
	}
}

// Concurrent merges and unmerges over the same persons, in both lock orders, must queue and
// never deadlock: each operation runs once, without the retry that would hide a deadlock.
func TestConcurrentMergeUnmergeNoDeadlock(t *testing.T) {
	e := newOpsEnv(t)
	store.SingleAttempt(e.ops)
	var ids []store.PersonID
	names := []string{"Ana", "Marcus", "Lena", "Omar"}
	for i, n := range names {
		l := e.link("a", fmt.Sprintf("A%d", i), patient(n, fmt.Sprintf("Zed%d", i), "female", fmt.Sprintf("19%d0-0%d-1%d", 5+i, 1+i, i), fmt.Sprintf("%d Oak St", 10+i), fmt.Sprintf("951-555-01%d0", i), ""))
		e.link("b", fmt.Sprintf("B%d", i), patient(n, fmt.Sprintf("Zed%d", i), "female", fmt.Sprintf("19%d0-0%d-1%d", 5+i, 1+i, i), fmt.Sprintf("%d Oak St", 10+i), fmt.Sprintf("951-555-01%d0", i), ""))
		ids = append(ids, l.Source.PersonID)
	}
	before := e.memberships()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 6 {
				// Goroutine g merges pair (x, y), odd goroutines in the opposite direction
				// to even ones, then unmerges.
				x, y := ids[(g/2+round)%len(ids)], ids[(g/2+round+1)%len(ids)]
				if g%2 == 1 {
					x, y = y, x
				}
				mc, err := e.ops.Merge(e.ctx, x, y, e.steward)
				if err == nil {
					_, err = e.ops.Unmerge(e.ctx, mc.Merge, e.steward)
				}
				if err != nil && errs.CodeOf(err) != errs.Conflict {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range failures {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "40P01" {
			t.Errorf("deadlock: %v", err)
		} else {
			t.Errorf("unexpected error: %v", err)
		}
	}
	// A merge that found its person already merged got Conflict; any merge that succeeded
	// but whose unmerge conflicted is still open — undo those now, newest first.
	rows, err := e.pool.Query(e.ctx, `SELECT id FROM mpi_merges WHERE undone_at IS NULL ORDER BY id DESC`)
	if err != nil {
		t.Fatal(err)
	}
	var open []int64
	for rows.Next() {
		var id int64
		_ = rows.Scan(&id)
		open = append(open, id)
	}
	rows.Close()
	for _, id := range open {
		if _, err := e.ops.Unmerge(e.ctx, id, e.steward); err != nil {
			t.Fatalf("undo open merge %d: %v", id, err)
		}
	}
	after := e.memberships()
	keys := make([]int64, 0, len(before))
	for id := range before {
		keys = append(keys, id)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, id := range keys {
		if before[id] != after[id] {
			t.Errorf("source %d: %s before, %s after all merges were undone", id, before[id], after[id])
		}
	}
	if n := e.count(`SELECT count(*) FROM mpi_merges`); n == 0 {
		t.Fatal("no merge ran")
	}
}

func TestUnmergeAfterLaterMergeUndone(t *testing.T) {
	e := newOpsEnv(t)
	a := e.link("a", "A1", ana())
	b := e.link("c", "C1", patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344"))
	c := e.link("d", "D1", patient("Lena", "Ortiz", "female", "1990-11-02", "5 Bay Ln", "951-555-4444", "612-30-4455"))
	before := e.memberships()
	m1, err := e.ops.Merge(e.ctx, a.Source.PersonID, b.Source.PersonID, e.steward)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := e.ops.Merge(e.ctx, c.Source.PersonID, a.Source.PersonID, e.steward)
	if err != nil {
		t.Fatal(err)
	}
	// The first merge's kept person is retired now: undo the second first.
	if _, err := e.ops.Unmerge(e.ctx, m1.Merge, e.steward); errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("unmerge under a later merge: %v", err)
	}
	if _, err := e.ops.Unmerge(e.ctx, m2.Merge, e.steward); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ops.Unmerge(e.ctx, m1.Merge, e.steward); err != nil {
		t.Fatal(err)
	}
	after := e.memberships()
	for id, want := range before {
		if after[id] != want {
			t.Errorf("source %d: %s before, %s after", id, want, after[id])
		}
	}
}

// New records auto-linking while a steward merges their person away must follow the
// redirect: no source may ever belong to a retired person.
func TestLinkDuringMergeFollowsRedirect(t *testing.T) {
	e := newOpsEnv(t)
	p := e.link("a", "A1", ana())
	q := e.link("c", "C1", patient("Marcus", "Baker", "male", "1971-07-30", "9 Elm Dr", "951-555-9999", "611-20-3344"))
	orphans := func() int {
		return e.count(`SELECT count(*) FROM mpi_source_records s JOIN mpi_persons p ON p.id = s.person_id WHERE p.retired_into IS NOT NULL`)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 15 {
			mrn := fmt.Sprintf("B%d", i)
			err := db.InTx(e.ctx, e.pool, func(tx db.Querier) error {
				_, err := e.m.LinkPatient(e.ctx, tx, "b", "urn:oid:1.2.2", mrn, "pat-b-"+mrn, ana())
				return err
			})
			if err != nil {
				t.Error(err) // not Fatal: this is not the test's goroutine
				return
			}
		}
	}()
	for range 10 {
		mc, err := e.ops.Merge(e.ctx, q.Source.PersonID, p.Source.PersonID, e.steward)
		if err != nil {
			t.Fatal(err)
		}
		if n := orphans(); n != 0 {
			t.Fatalf("%d sources on a retired person after a merge", n)
		}
		if _, err := e.ops.Unmerge(e.ctx, mc.Merge, e.steward); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if n := orphans(); n != 0 {
		t.Fatalf("%d sources on a retired person", n)
	}
}
