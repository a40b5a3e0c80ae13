package store

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// DefaultReindexBatch is how many resources Reindex takes per transaction when
// ReindexOptions.Batch is not set.
const DefaultReindexBatch = 500

// maxFailedRefs caps ReindexReport.FailedRefs.
const maxFailedRefs = 10

// ReindexOptions select what Reindex rebuilds and how.
type ReindexOptions struct {
	// Types are the resource types to rebuild; empty means every R4 resource type.
	Types []string
	// Batch is the number of resources per transaction; zero or less means
	// DefaultReindexBatch.
	Batch int
	// DryRun compares only: it counts the resources whose index rows are out of date and
	// writes nothing, reading each batch from one snapshot and locking no rows.
	DryRun bool
	// Progress, if set, is called with the running totals after each batch.
	Progress func(ReindexReport)

	// locked, if set, runs inside each batch's transaction once its rows are locked and
	// before their index rows are read (tests).
	locked func()
}

// ReindexReport counts what Reindex did. Examined is Reindexed + Unchanged + Skipped +
// Failed.
type ReindexReport struct {
	Examined  int // current (undeleted) resources found
	Reindexed int // their index rows were out of date and were replaced (in a dry run: would be)
	Unchanged int // their index rows already matched the registry
	Skipped   int // deleted by a concurrent write before their turn
	// Failed: the stored body no longer parses, or the database refuses a value of its new
	// index rows (a NUL character in a newly indexed string): index rows left as they were.
	Failed int
	// FailedRefs are "Type/id" of the first resources that failed (at most 10).
	FailedRefs []string
}

func (r *ReindexReport) add(o ReindexReport) {
	r.Reindexed += o.Reindexed
	r.Unchanged += o.Unchanged
	r.Skipped += o.Skipped
	r.Failed += o.Failed
	for _, ref := range o.FailedRefs {
		if len(r.FailedRefs) < maxFailedRefs {
			r.FailedRefs = append(r.FailedRefs, ref)
		}
	}
}

// Reindex rebuilds the search index rows of the current resources of o.Types from the
// current registry (fhir.Params), exactly as a write would extract them, so that resources
// stored before a search parameter existed can be found by it. It is index maintenance, not
// a write: versions, bodies, last_updated and history stay as they are, and a resource whose
// rows already match is not touched, so a second run changes nothing. The copies of the
// resource row's patient_id and last_updated that index rows carry count as part of a row:
// stale ones are rewritten.
//
// It commits every o.Batch resources and is safe beside a serving exchange: a batch locks
// its rows as Put and Delete do (FOR UPDATE), so a concurrent write of the same resource
// either waits for the batch or is waited for; rows a writer holds are skipped by the batch
// and then taken one at a time, each in its own transaction, so a batch never waits while
// holding locks (no deadlock with a multi-resource transaction). A resource whose body no
// longer parses, or whose new index rows the database refuses, is left as it was and
// counted Failed, and the run goes on. Any other error stops the run and comes back with
// the report so far; the batches before it stay committed, and running again finishes the
// job.
//
// It returns errs.Invalid for a type that is not an R4 resource type, and errs.Internal
// when the Store was made on a transaction instead of a pool.
func (s *Store) Reindex(ctx context.Context, o ReindexOptions) (ReindexReport, error) {
	const op = "fhir.store.Reindex"
	ts, ok := s.db.(db.TxStarter)
	if !ok {
		return ReindexReport{}, errs.E(op, errs.Internal, "reindex commits batch by batch: it needs a pool, not a transaction")
	}
	types := fhir.ResourceTypes()
	if len(o.Types) > 0 {
		types = slices.Clone(o.Types)
		slices.Sort(types)
		types = slices.Compact(types)
		for _, t := range types {
			if !fhir.IsResourceType(t) {
				return ReindexReport{}, errs.E(op, errs.Invalid, "unknown resource type "+strconv.Quote(t))
			}
		}
	}
	if o.Batch <= 0 {
		o.Batch = DefaultReindexBatch
	}
	var rep ReindexReport
	for _, typ := range types {
		after := ""
		for {
			ids, err := s.reindexBatch(ctx, ts, typ, after, o, &rep)
			if err != nil {
				return rep, errs.E(op, err)
			}
			if o.Progress != nil && len(ids) > 0 {
				o.Progress(rep)
			}
			if len(ids) < o.Batch {
				break
			}
			after = ids[len(ids)-1]
		}
	}
	return rep, nil
}

// reindexBatch rebuilds the index rows of the next o.Batch current resources of typ whose
// ids sort after after, adds what it did to rep, and returns the ids it examined.
func (s *Store) reindexBatch(ctx context.Context, ts db.TxStarter, typ, after string, o ReindexOptions, rep *ReindexReport) ([]string, error) {
	txo, lock := pgx.TxOptions{}, " FOR UPDATE SKIP LOCKED"
	if o.DryRun {
		txo, lock = pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, ""
	}
	var (
		ids     []string
		missing []string // listed, then locked by a writer (or deleted) when the batch came to them
		got     ReindexReport
	)
	err := db.InTxOpts(ctx, ts, txo, func(tx db.Querier) error {
		rows, err := tx.Query(ctx, `SELECT id FROM fhir_resources WHERE type = $1 AND id > $2 AND NOT deleted ORDER BY id LIMIT $3`, typ, after, o.Batch)
		if err != nil {
			return err
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || len(ids) == 0 {
			return err
		}
		cur, err := currentRows(ctx, tx, typ, ids, lock)
		if err != nil {
			return err
		}
		if o.locked != nil {
			o.locked()
		}
		read := make(map[string]bool, len(cur))
		for _, c := range cur {
			read[c.id] = true
		}
		missing = missing[:0]
		for _, id := range ids {
			if !read[id] {
				missing = append(missing, id)
			}
		}
		got, err = refreshIndex(ctx, tx, typ, cur, o.DryRun)
		return err
	})
	if err != nil && !o.DryRun && errs.CodeOf(err) == errs.Invalid && len(ids) > 0 {
		// The database refused a value of some resource's new index rows (a NUL character
		// in a string that a new parameter indexes, say), so nothing of the batch was
		// written: take each of its resources alone, so that only the refused one is left
		// as it was (Failed) and the run goes on instead of stopping at this batch each time.
		missing, got, err = ids, ReindexReport{}, nil
	}
	if err != nil {
		return nil, err
	}
	rep.Examined += len(ids)
	rep.add(got)
	// Each resource a writer held (or that was deleted meanwhile) is taken alone: its
	// transaction waits for that one row's lock while holding no other, so the wait cannot
	// close a deadlock, and it reads the version the writer left.
	lock = " FOR UPDATE"
	if o.DryRun {
		lock = ""
	}
	for _, id := range missing {
		err := db.InTxOpts(ctx, ts, txo, func(tx db.Querier) error {
			cur, err := currentRows(ctx, tx, typ, []string{id}, lock)
			if err != nil {
				return err
			}
			if len(cur) == 0 {
				got = ReindexReport{Skipped: 1}
				return nil
			}
			got, err = refreshIndex(ctx, tx, typ, cur, o.DryRun)
			return err
		})
		if err != nil && !o.DryRun && errs.CodeOf(err) == errs.Invalid {
			got, err = ReindexReport{Failed: 1, FailedRefs: []string{typ + "/" + id}}, nil
		}
		if err != nil {
			return nil, err
		}
		rep.add(got)
	}
	return ids, nil
}

// current is what Reindex reads of a resource row.
type current struct {
	id      string
	patient string // patient_id, "" for none
	at      time.Time
	body    []byte
	lo, hi  *int64 // date_lo, date_hi
}

// currentRows reads the undeleted rows of typ among ids, in id order, with lock appended to
// the statement ("", " FOR UPDATE" or " FOR UPDATE SKIP LOCKED").
func currentRows(ctx context.Context, q db.Querier, typ string, ids []string, lock string) ([]current, error) {
	rows, err := q.Query(ctx, `SELECT id, COALESCE(patient_id, ''), last_updated, body, date_lo, date_hi FROM fhir_resources
		WHERE type = $1 AND id = ANY($2) AND NOT deleted ORDER BY id`+lock, typ, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (current, error) {
		var c current
		err := r.Scan(&c.id, &c.patient, &c.at, &c.body, &c.lo, &c.hi)
		return c, err
	})
}

// refreshIndex compares the index rows of the resources in cur (all of type typ, read in
// tx, locked unless dryRun) with the rows a write would give them now, and unless dryRun
// replaces the rows of those that differ, as Put does, together with their date bounds
// (date_lo, date_hi). Nothing else of the resource row changes.
func refreshIndex(ctx context.Context, tx db.Querier, typ string, cur []current, dryRun bool) (ReindexReport, error) {
	var rep ReindexReport
	if len(cur) == 0 {
		return rep, nil
	}
	ids := make([]string, len(cur))
	for i, c := range cur {
		ids[i] = c.id
	}
	have, err := indexKeys(ctx, tx, typ, ids)
	if err != nil {
		return rep, err
	}
	var (
		fresh            indexBatch
		freshIDs         []string
		freshLo, freshHi []*int64
	)
	for _, c := range cur {
		r, err := fhir.Parse(c.body)
		if err != nil || r.ResourceType != typ {
			rep.Failed++
			if len(rep.FailedRefs) < maxFailedRefs {
				rep.FailedRefs = append(rep.FailedRefs, typ+"/"+c.id)
			}
			continue
		}
		var one indexBatch
		lo, hi := one.add(typ, c.id, c.patient, c.at, r)
		want := one.keys()
		got := have[c.id]
		slices.Sort(got)
		if slices.Equal(want, got) && sameBound(lo, c.lo) && sameBound(hi, c.hi) {
			rep.Unchanged++
			continue
		}
		rep.Reindexed++
		fresh.appendBatch(&one)
		freshIDs, freshLo, freshHi = append(freshIDs, c.id), append(freshLo, lo), append(freshHi, hi)
	}
	if dryRun || len(freshIDs) == 0 {
		return rep, nil
	}
	b := &pgx.Batch{}
	for _, t := range indexTables {
		b.Queue(`DELETE FROM `+t+` WHERE type = $1 AND id = ANY($2)`, typ, freshIDs)
	}
	fresh.queue(b)
	b.Queue(`UPDATE fhir_resources r SET date_lo = u.lo, date_hi = u.hi
		FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS u(id, lo, hi)
		WHERE r.type = $1 AND r.id = u.id AND (r.date_lo IS DISTINCT FROM u.lo OR r.date_hi IS DISTINCT FROM u.hi)`,
		typ, freshIDs, freshLo, freshHi)
	return rep, tx.SendBatch(ctx, b).Close()
}

func sameBound(a, b *int64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// Index rows are compared as strings, one per row, with every column the row is written
// with; keys and indexKeys must name the same columns as indexBatch.queue. Instants are
// compared as Unix microseconds, the precision PostgreSQL keeps (and pgx truncates to).
func tokenKey(param, system, code, patient string, at time.Time) string {
	return "t\x00" + param + "\x00" + system + "\x00" + code + "\x00" + patient + "\x00" + strconv.FormatInt(at.UnixMicro(), 10)
}
func refKey(param, refType, refID string) string {
	return "r\x00" + param + "\x00" + refType + "\x00" + refID
}
func dateKey(param string, lo, hi time.Time) string {
	return "d\x00" + param + "\x00" + strconv.FormatInt(lo.UnixMicro(), 10) + "\x00" + strconv.FormatInt(hi.UnixMicro(), 10)
}
func stringKey(param, value string, at time.Time) string {
	return "s\x00" + param + "\x00" + value + "\x00" + strconv.FormatInt(at.UnixMicro(), 10)
}

// keys returns the rows in x, of one resource, as sorted comparable strings.
func (x *indexBatch) keys() []string {
	var out []string
	for i := range x.tok[0] {
		out = append(out, tokenKey(x.tok[2][i], x.tok[3][i], x.tok[4][i], x.tok[5][i], x.tAt[i]))
	}
	for i := range x.date[0] {
		out = append(out, dateKey(x.date[2][i], x.dLo[i], x.dHi[i]))
	}
	for i := range x.str[0] {
		out = append(out, stringKey(x.str[2][i], x.str[3][i], x.sAt[i]))
	}
	for i := range x.ref[0] {
		out = append(out, refKey(x.ref[2][i], x.ref[3][i], x.ref[4][i]))
	}
	slices.Sort(out)
	return out
}

// indexKeys reads the stored index rows of typ's resources ids in one round trip, as
// comparable strings by resource id (unsorted).
func indexKeys(ctx context.Context, q db.Querier, typ string, ids []string) (map[string][]string, error) {
	out := make(map[string][]string, len(ids))
	b := &pgx.Batch{}
	b.Queue(`SELECT id, param, system, code, COALESCE(patient_id, ''), last_updated FROM fhir_idx_token WHERE type = $1 AND id = ANY($2)`, typ, ids).Query(func(rows pgx.Rows) error {
		var id, param, system, code, patient string
		var at time.Time
		_, err := pgx.ForEachRow(rows, []any{&id, &param, &system, &code, &patient, &at}, func() error {
			out[id] = append(out[id], tokenKey(param, system, code, patient, at))
			return nil
		})
		return err
	})
	b.Queue(`SELECT id, param, lo, hi FROM fhir_idx_date WHERE type = $1 AND id = ANY($2)`, typ, ids).Query(func(rows pgx.Rows) error {
		var id, param string
		var lo, hi time.Time
		_, err := pgx.ForEachRow(rows, []any{&id, &param, &lo, &hi}, func() error {
			out[id] = append(out[id], dateKey(param, lo, hi))
			return nil
		})
		return err
	})
	b.Queue(`SELECT id, param, value, last_updated FROM fhir_idx_string WHERE type = $1 AND id = ANY($2)`, typ, ids).Query(func(rows pgx.Rows) error {
		var id, param, value string
		var at time.Time
		_, err := pgx.ForEachRow(rows, []any{&id, &param, &value, &at}, func() error {
			out[id] = append(out[id], stringKey(param, value, at))
			return nil
		})
		return err
	})
	b.Queue(`SELECT id, param, ref_type, ref_id FROM fhir_idx_ref WHERE type = $1 AND id = ANY($2)`, typ, ids).Query(func(rows pgx.Rows) error {
		var id, param, refType, refID string
		_, err := pgx.ForEachRow(rows, []any{&id, &param, &refType, &refID}, func() error {
			out[id] = append(out[id], refKey(param, refType, refID))
			return nil
		})
		return err
	})
	return out, q.SendBatch(ctx, b).Close()
}
