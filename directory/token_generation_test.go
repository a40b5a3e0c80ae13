package directory

import (
	"context"
	"testing"

	"github.com/concord-hie/concord/internal/db"
)

// A client's token generation never comes back: whatever is done to its row (deleted and
// inserted again, the table emptied and reloaded, the generator rewound, triggers switched
// off for a restore), a token issued before the change stays refused. The review's proofs
// (a) to (d) each made an old token verify again after a key change.
func TestVerifyGenerationNeverComesBack(t *testing.T) {
	t.Parallel()
	other := jwksJSON(t, pubJWK(&keys.ec2.PublicKey, "k2"))
	inTx := func(f *tokenFixture, fn func(tx db.Querier) error) error {
		ts, ok := f.store.db.(db.TxStarter)
		if !ok {
			t.Fatal("the fixture's store is not on a pool")
		}
		return db.InTx(context.Background(), ts, fn)
	}
	tests := []struct {
		name   string
		change func(f *tokenFixture, c Client) error
	}{
		{"(a) deleted, then inserted again with new keys and the old generation", func(f *tokenFixture, c Client) error {
			ctx := context.Background()
			var gen string
			if err := f.store.db.QueryRow(ctx, `SELECT token_generation::text FROM directory_clients WHERE client_id = $1`, c.ID).Scan(&gen); err != nil {
				return err
			}
			if _, err := f.store.db.Exec(ctx, `DELETE FROM directory_clients WHERE client_id = $1`, c.ID); err != nil {
				return err
			}
			_, err := f.store.db.Exec(ctx, `INSERT INTO directory_clients(client_id, member_id, jwks, scopes, purposes, token_generation) VALUES ($1, $2, $3, $4, $5, $6)`,
				c.ID, c.MemberID, other, c.Scopes, c.Purposes, gen)
			return err
		}},
		{"(b) table emptied with RESTART IDENTITY and reloaded, the client with new keys", func(f *tokenFixture, c Client) error {
			ctx := context.Background()
			return inTx(f, func(tx db.Querier) error {
				for _, sql := range []string{
					`CREATE TEMP TABLE saved ON COMMIT DROP AS SELECT * FROM directory_clients`,
					`TRUNCATE directory_clients RESTART IDENTITY`,
				} {
					if _, err := tx.Exec(ctx, sql); err != nil {
						return err
					}
				}
				// Reloaded in the order they were registered, each taking the default.
				_, err := tx.Exec(ctx, `INSERT INTO directory_clients(client_id, member_id, jwks, scopes, purposes, created_at, disabled_at)
					SELECT client_id, member_id, CASE WHEN client_id = $1 THEN $2 ELSE jwks END, scopes, purposes, created_at, disabled_at
					FROM saved ORDER BY token_generation`, c.ID, other)
				return err
			})
		}},
		{"(c) generator rewound one before the generation, then keys replaced", func(f *tokenFixture, c Client) error {
			ctx := context.Background()
			// The sequence of migration 0101, if there is one: set so that its next value is
			// the generation the client's tokens name.
			if _, err := f.store.db.Exec(ctx, `SELECT setval(s, c.token_generation::text::bigint - 1)
				FROM directory_clients c, to_regclass('directory_client_generation') s
				WHERE c.client_id = $1 AND s IS NOT NULL`, c.ID); err != nil {
				return err
			}
			_, err := f.store.db.Exec(ctx, `UPDATE directory_clients SET jwks = $2 WHERE client_id = $1`, c.ID, other)
			return err
		}},
		{"(d) keys replaced with session_replication_role = replica", func(f *tokenFixture, c Client) error {
			ctx := context.Background()
			return inTx(f, func(tx db.Querier) error {
				if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `UPDATE directory_clients SET jwks = $2 WHERE client_id = $1`, c.ID, other)
				return err
			})
		}},
		{"(d) deleted and inserted again with the old generation, replica role", func(f *tokenFixture, c Client) error {
			ctx := context.Background()
			return inTx(f, func(tx db.Querier) error {
				if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
					return err
				}
				for _, sql := range []string{
					`CREATE TEMP TABLE saved ON COMMIT DROP AS SELECT * FROM directory_clients WHERE client_id = $1`,
					`DELETE FROM directory_clients WHERE client_id = $1`,
				} {
					if _, err := tx.Exec(ctx, sql, c.ID); err != nil {
						return err
					}
				}
				_, err := tx.Exec(ctx, `INSERT INTO directory_clients(client_id, member_id, jwks, scopes, purposes, token_generation)
					SELECT client_id, member_id, $1, scopes, purposes, token_generation FROM saved`, other)
				return err
			})
		}},
		{"only the generation written back, after a disable and re-enable", func(f *tokenFixture, c Client) error {
			ctx := context.Background()
			return inTx(f, func(tx db.Querier) error {
				for _, sql := range []string{
					`CREATE TEMP TABLE saved ON COMMIT DROP AS SELECT * FROM directory_clients WHERE client_id = $1`,
					`UPDATE directory_clients SET disabled_at = now() WHERE client_id = $1`,
					`UPDATE directory_clients SET disabled_at = NULL WHERE client_id = $1`,
					`UPDATE directory_clients c SET token_generation = s.token_generation FROM saved s WHERE c.client_id = $1`,
				} {
					if _, err := tx.Exec(ctx, sql, c.ID); err != nil {
						return err
					}
				}
				return nil
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newTokenFixture(t)
			c, tok := f.issue(t, f.a.ID, []string{"system/*.rs"}, nil, "system/*.rs", "")
			if err := tt.change(f, c); err != nil {
				t.Fatal(err)
			}
			f.wantRefused(t, tok, "after the change")
			f.wantRefused(t, tok, "again")
		})
	}
}

// The database, not the writer, chooses a client's generation: an INSERT never keeps one it
// is given, an UPDATE that writes one gets a new one instead, and only an UPDATE that
// changes nothing at all keeps the current one.
func TestClientGenerationAssignedByTheDatabase(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	ctx := context.Background()
	gen := func(t *testing.T, id string) string {
		t.Helper()
		var g string
		if err := f.store.db.QueryRow(ctx, `SELECT token_generation::text FROM directory_clients WHERE client_id = $1`, id).Scan(&g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	t.Run("a supplied generation on INSERT is ignored", func(t *testing.T) {
		_, err := f.store.db.Exec(ctx, `INSERT INTO directory_clients(client_id, member_id, jwks, scopes, purposes, token_generation)
			SELECT 'supplied', member_id, jwks, scopes, purposes, token_generation FROM directory_clients WHERE client_id = $1`, f.single.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got, other := gen(t, "supplied"), gen(t, f.single.ID); got == other {
			t.Fatalf("the inserted client kept the generation it was given (another client's, %s)", other)
		}
	})
	t.Run("only the generation written, with another client's", func(t *testing.T) {
		before, other := gen(t, f.multi.ID), gen(t, f.narrow.ID)
		if _, err := f.store.db.Exec(ctx, `UPDATE directory_clients SET token_generation = (SELECT token_generation FROM directory_clients WHERE client_id = $2) WHERE client_id = $1`,
			f.multi.ID, f.narrow.ID); err != nil {
			t.Fatal(err)
		}
		if got := gen(t, f.multi.ID); got == before || got == other {
			t.Fatalf("generation %s after writing %s over %s; want a new one", got, other, before)
		}
	})
	t.Run("control: nothing changed", func(t *testing.T) {
		before := gen(t, f.narrow.ID)
		if _, err := f.store.db.Exec(ctx, `UPDATE directory_clients SET jwks = jwks, token_generation = token_generation WHERE client_id = $1`, f.narrow.ID); err != nil {
			t.Fatal(err)
		}
		if got := gen(t, f.narrow.ID); got != before {
			t.Fatalf("generation %s after an UPDATE that changed nothing; want %s kept", got, before)
		}
	})
}
