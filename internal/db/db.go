// Package db owns Concord's PostgreSQL plumbing: the pool, the Querier that a pool and a
// transaction both satisfy, transactions with retry, the one SQLSTATE-to-errs mapping, and
// embedded migrations.
package db

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"

	"github.com/concord-hie/concord/internal/errs"
)

// Querier runs SQL. *pgxpool.Pool, *pgxpool.Conn and pgx.Tx satisfy it, so store helpers
// compose inside one caller's transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error)
}

var (
	_ Querier = (*pgxpool.Pool)(nil)
	_ Querier = (pgx.Tx)(nil)
)

// Options tune the pool. The zero value is usable.
type Options struct {
	MaxConns         int32         // 0 means pgxpool's default (max(4, GOMAXPROCS))
	StatementTimeout time.Duration // per statement; 0 means 15 s
	AppRole          string        // if set, every connection runs SET ROLE to it
}

// Open connects a pool to url and checks that the server answers. It returns
// errs.Invalid for a malformed URL and errs.Unavailable when the server does not answer.
func Open(ctx context.Context, url string, o Options) (*pgxpool.Pool, error) {
	const op = "db.Open"
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, errs.E(op, errs.Invalid, "malformed database URL", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	st := o.StatementTimeout
	if st == 0 {
		st = 15 * time.Second
	}
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(st.Milliseconds(), 10)
	cfg.ConnConfig.RuntimeParams["application_name"] = "concord"
	// Every statement is prepared once per connection (pgx's statement cache); left to
	// itself PostgreSQL re-plans one for its values at each execution whenever it judges
	// that plan cheaper than the generic one, which for Concord's short index lookups is
	// nearly always, and planning then costs more than running. Measured with `concord
	// bench` at 10,000 people: S2 family+birthdate 1,573 → 3,200 req/s, identifier 2,501 →
	// 4,470, S1 5,567 → 6,533; at 36 people nothing got slower. Statements whose generic
	// plan would be poor are written for it (a search prefix is also a range, see
	// fhir/store). A plan_cache_mode parameter in the URL wins.
	if _, ok := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !ok {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	if o.AppRole != "" {
		role := o.AppRole
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize())
			return err
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "database unavailable", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, errs.E(op, errs.Unavailable, "database unavailable", err)
	}
	return pool, nil
}

// TxStarter is what InTx needs: a pool (or a connection) that can begin a transaction.
type TxStarter interface {
	BeginTx(ctx context.Context, o pgx.TxOptions) (pgx.Tx, error)
}

// InTx runs fn in one transaction and commits when fn returns nil. It retries the whole
// function up to 3 times on serialization failure (40001) or deadlock (40P01), so fn must be
// safe to run again. Errors come back mapped through Map, except a COMMIT that got no answer:
// errs.Unavailable with the message CommitUnknown, since it may have been applied.
func InTx(ctx context.Context, p TxStarter, fn func(tx Querier) error) error {
	return InTxOpts(ctx, p, pgx.TxOptions{}, fn)
}

// InTxOpts is InTx with explicit transaction options (isolation level, read-only).
func InTxOpts(ctx context.Context, p TxStarter, o pgx.TxOptions, fn func(tx Querier) error) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		err = inTxOnce(ctx, p, o, fn)
		if !retryable(err) {
			return err
		}
	}
	return err
}

func inTxOnce(ctx context.Context, p TxStarter, o pgx.TxOptions, fn func(tx Querier) error) (err error) {
	tx, err := p.BeginTx(ctx, o)
	if err != nil {
		return Map("db.InTx", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err = fn(tx); err != nil {
		return Map("db.InTx", err)
	}
	if err = tx.Commit(ctx); err != nil {
		if commitUnanswered(err) { // it may have been applied
			return errs.E("db.InTx", errs.Unavailable, CommitUnknown, err)
		}
		return Map("db.InTx", err)
	}
	return nil
}

// CommitUnknown is the message of InTx's error when COMMIT was sent and got no answer (the
// connection broke, or the context ended while it waited): the transaction may or may not
// have been applied, so the caller must not say that nothing was stored.
const CommitUnknown = "the database did not confirm the change: it may or may not have been saved; check before repeating it"

// commitUnanswered reports whether a failed COMMIT may still have been applied: it was
// sent and no answer came back. An answer (a PgError, or ROLLBACK for a transaction that
// had already failed: pgx.ErrTxCommitRollback) is definite, and so is a COMMIT never sent
// (the context ended first: pgconn.SafeToRetry).
func commitUnanswered(err error) bool {
	var pe *pgconn.PgError
	return !errors.As(err, &pe) && !errors.Is(err, pgx.ErrTxCommitRollback) && !pgconn.SafeToRetry(err)
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// Map turns a database error into an *errs.Error. It is the one SQLSTATE map: 23505 →
// Conflict, 23503/23514/22xxx → Invalid, pgx.ErrNoRows → NotFound, 57014 (statement
// timeout) and connection failures → Unavailable. An *errs.Error passes through unchanged.
func Map(op string, err error) error {
	if err == nil {
		return nil
	}
	var ee *errs.Error
	if errors.As(err, &ee) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return errs.E(op, errs.NotFound, "not found", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return errs.E(op, errs.Unavailable, "database timeout", err)
	}
	if errors.Is(err, puddle.ErrClosedPool) {
		return errs.E(op, errs.Unavailable, "database pool closed", err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505":
			return errs.E(op, errs.Conflict, "conflict", err)
		case pe.Code == "23503", pe.Code == "23514", pe.Code == "23502", len(pe.Code) == 5 && pe.Code[:2] == "22":
			return errs.E(op, errs.Invalid, "invalid value", err)
		case pe.Code == "57014", pe.Code == "57P01", pe.Code == "53300", pe.Code[:2] == "08":
			return errs.E(op, errs.Unavailable, "database unavailable", err)
		case pe.Code == "40001", pe.Code == "40P01":
			return errs.E(op, errs.Unavailable, "database busy", pe)
		}
		return errs.E(op, errs.Internal, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return errs.E(op, errs.Unavailable, "database unavailable", err)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return errs.E(op, errs.Unavailable, "database unavailable", err)
	}
	return errs.E(op, errs.Internal, err)
}
