package db_test

import (
	"context"
	"testing"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

func TestMigrationsApplyAndCheck(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	if err := db.CheckSchema(ctx, pool); err != nil {
		t.Fatalf("CheckSchema on a migrated clone: %v", err)
	}
	if got, err := db.Migrate(ctx, pool); err != nil || len(got) != 0 {
		t.Fatalf("second Migrate = %v, %v; want nothing applied", got, err)
	}
	// Pretend the newest migration was never applied: the schema is behind.
	ms := db.Migrations()
	last := ms[len(ms)-1].Version
	if _, err := pool.Exec(ctx, "DELETE FROM schema_migrations WHERE version = $1", last); err != nil {
		t.Fatal(err)
	}
	err := db.CheckSchema(ctx, pool)
	if errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("CheckSchema behind = %v; want Unavailable", err)
	}
	// An edited migration is refused.
	if _, err := pool.Exec(ctx, "INSERT INTO schema_migrations(version, name, checksum) VALUES ($1, 'x', 'edited')", last); err != nil {
		t.Fatal(err)
	}
	if err := db.CheckSchema(ctx, pool); errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("CheckSchema edited = %v; want Conflict", err)
	}
}

func TestInTxRollsBackAndMapsErrors(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		if _, err := tx.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO t VALUES (1)")
		return err
	})
	if errs.CodeOf(err) != errs.Conflict {
		t.Fatalf("duplicate insert = %v; want Conflict", err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows after rollback = %d, %v; want 0", n, err)
	}
	err = db.Map("x", pool.QueryRow(ctx, "SELECT id FROM t WHERE id = 42").Scan(&n))
	if errs.CodeOf(err) != errs.NotFound {
		t.Fatalf("no rows = %v; want NotFound", err)
	}
}

// TestOpenPlansGenerically: Concord's connections plan prepared statements once for any
// values, unless the URL says otherwise.
func TestOpenPlansGenerically(t *testing.T) {
	url := testkit.DatabaseURL(t)
	ctx := context.Background()
	for _, tt := range []struct{ url, want string }{
		{url, "force_generic_plan"},
		{url + "&plan_cache_mode=auto", "auto"},
	} {
		pool, err := db.Open(ctx, tt.url, db.Options{MaxConns: 1})
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = pool.QueryRow(ctx, "SHOW plan_cache_mode").Scan(&got)
		pool.Close()
		if err != nil || got != tt.want {
			t.Errorf("plan_cache_mode = %q, %v; want %q", got, err, tt.want)
		}
	}
}
