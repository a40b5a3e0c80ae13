package db_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

// commitTx is a pgx.Tx whose Commit fails with err; fn never calls anything else.
type commitTx struct {
	pgx.Tx
	err error
}

func (c commitTx) Commit(context.Context) error   { return c.err }
func (c commitTx) Rollback(context.Context) error { return nil }

type starter struct{ tx pgx.Tx }

func (s starter) BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error) { return s.tx, nil }

// TestInTxCommitUnanswered: a COMMIT that got no answer (connection lost) may have been
// applied, so InTx says so (CommitUnknown) rather than that nothing was stored; a COMMIT
// the server refused is a definite failure, mapped as usual.
func TestInTxCommitUnanswered(t *testing.T) {
	ctx := context.Background()
	noop := func(db.Querier) error { return nil }
	err := db.InTx(ctx, starter{commitTx{err: io.ErrUnexpectedEOF}}, noop)
	if errs.CodeOf(err) != errs.Unavailable || errs.MessageOf(err) != db.CommitUnknown || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("lost commit = %v (%q); want Unavailable %q wrapping the cause", err, errs.MessageOf(err), db.CommitUnknown)
	}
	refused := &pgconn.PgError{Code: "23505"}
	err = db.InTx(ctx, starter{commitTx{err: refused}}, noop)
	if errs.CodeOf(err) != errs.Conflict || errs.MessageOf(err) == db.CommitUnknown {
		t.Fatalf("refused commit = %v; want Conflict, not unknown", err)
	}
}

// TestInTxCommitDefiniteFailures: a COMMIT that PostgreSQL answered with ROLLBACK (fn
// swallowed an error, so the transaction had aborted) and a COMMIT never sent (the context
// ended first) both stored nothing: they are definite failures, never CommitUnknown, which
// would tell a client its write may have been stored.
func TestInTxCommitDefiniteFailures(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE commit_probe (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		if _, err := tx.Exec(ctx, `INSERT INTO commit_probe VALUES (1)`); err != nil {
			return err
		}
		_, _ = tx.Exec(ctx, `SELECT 1/0`) // swallowed: the transaction is aborted
		return nil
	})
	if err == nil || errs.MessageOf(err) == db.CommitUnknown {
		t.Errorf("COMMIT answered ROLLBACK = %v (%q); want a definite failure", err, errs.MessageOf(err))
	}
	cctx, cancel := context.WithCancel(ctx)
	err = db.InTx(cctx, pool, func(tx db.Querier) error {
		_, err := tx.Exec(cctx, `INSERT INTO commit_probe VALUES (2)`)
		cancel() // COMMIT is never sent
		return err
	})
	if err == nil || errs.MessageOf(err) == db.CommitUnknown {
		t.Errorf("COMMIT never sent = %v (%q); want a definite failure", err, errs.MessageOf(err))
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM commit_probe`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows stored (%v); want none", n, err)
	}
}
