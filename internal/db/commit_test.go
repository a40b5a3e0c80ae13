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
