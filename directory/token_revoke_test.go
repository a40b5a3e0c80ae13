package directory

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// issue registers a client of member with keys.ec (kid k), scopes and purposes, and returns
// it with an access token for scope and purpose, already verified once (so Verify has it
// in memory and the next call is a cache hit).
func (f *tokenFixture) issue(t testing.TB, member string, scopes, purposes []string, scope, purpose string) (Client, string) {
	t.Helper()
	ctx := context.Background()
	c, err := f.store.AddClient(ctx, member, jwksJSON(t, pubJWK(&keys.ec.PublicKey, "k")), scopes, purposes)
	if err != nil {
		t.Fatal(err)
	}
	a := f.valid(c, jose.ES384, keys.ec, "k")
	if purpose != "" {
		a = a.withPurpose(`"` + purpose + `"`)
	}
	tr, err := f.exchange(t, tokenForm(a.sign(t), scope))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if _, err := f.tokens.Verify(ctx, tr.AccessToken); err != nil {
		t.Fatalf("Verify before the change: %v", err)
	}
	return c, tr.AccessToken
}

// wantRefused fails unless Verify refuses tok as an invalid token, with no principal.
func (f *tokenFixture) wantRefused(t *testing.T, tok, when string) {
	t.Helper()
	p, err := f.tokens.Verify(context.Background(), tok)
	if err == nil || errs.CodeOf(err) != errs.Unauthenticated {
		t.Fatalf("%s: Verify = %+v, %v; want unauthenticated", when, p, err)
	}
	if p.ClientID != "" || p.MemberID != "" || p.Scopes != nil || p.Purpose != "" {
		t.Fatalf("%s: Verify returned a principal with its error: %+v", when, p)
	}
}

// The security review's finding: a token kept working for up to 300 s after its client was
// disabled or cut back. Every change to a client's registration must be in force for the
// next Verify, cache hit or not, and stay in force for the rest of the token's life.
func TestVerifyFollowsClientRegistration(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	ctx := context.Background()
	q := f.store.db
	other := jwksJSON(t, pubJWK(&keys.ec2.PublicKey, "k2"))
	exec := func(sql string, args ...any) func(Client) error {
		return func(c Client) error {
			_, err := q.Exec(ctx, sql, append([]any{c.ID}, args...)...)
			return err
		}
	}
	steps := func(fs ...func(Client) error) func(Client) error {
		return func(c Client) error {
			for _, fn := range fs {
				if err := fn(c); err != nil {
					return err
				}
			}
			return nil
		}
	}
	tests := []struct {
		name    string
		change  func(Client) error
		refused bool
	}{
		{"the review's proof: scopes cut and client disabled", exec(`UPDATE directory_clients SET scopes = ARRAY['system/Observation.r'], disabled_at = now() WHERE client_id = $1`), true},
		{"disabled", exec(`UPDATE directory_clients SET disabled_at = now() WHERE client_id = $1`), true},
		{"scopes cut to one the token does not have", exec(`UPDATE directory_clients SET scopes = ARRAY['system/Observation.r'] WHERE client_id = $1`), true},
		{"one of two scopes dropped", exec(`UPDATE directory_clients SET scopes = ARRAY['system/*.rs'] WHERE client_id = $1`), true},
		{"purpose dropped", exec(`UPDATE directory_clients SET purposes = ARRAY['HPAYMT'] WHERE client_id = $1`), true},
		{"keys replaced", exec(`UPDATE directory_clients SET jwks = $2 WHERE client_id = $1`, other), true},
		{"moved to another member", exec(`UPDATE directory_clients SET member_id = $2 WHERE client_id = $1`, f.b.ID), true},
		{"removed", exec(`DELETE FROM directory_clients WHERE client_id = $1`), true},
		{"disabled, then enabled again", steps(
			exec(`UPDATE directory_clients SET disabled_at = now() WHERE client_id = $1`),
			exec(`UPDATE directory_clients SET disabled_at = NULL WHERE client_id = $1`)), true},
		{"disabled, then enabled with the old generation written back", func(c Client) error {
			if err := exec(`UPDATE directory_clients SET disabled_at = now() WHERE client_id = $1`)(c); err != nil {
				return err
			}
			return exec(`UPDATE directory_clients SET disabled_at = NULL, token_generation = $2 WHERE client_id = $1`, c.TokenGeneration)(c)
		}, true},
		// Any change ends the client's tokens, even one that only adds: the client asks for
		// a new token (a 401 is what a backend client already handles at expiry).
		{"scope added", exec(`UPDATE directory_clients SET scopes = scopes || 'system/Patient.c'::text WHERE client_id = $1`), true},

		// Controls: what changes nothing about the client leaves its tokens alone.
		{"control: the same values written again", exec(`UPDATE directory_clients SET scopes = scopes, purposes = purposes, jwks = jwks, disabled_at = disabled_at WHERE client_id = $1`), false},
		{"control: another client of the member disabled", func(Client) error {
			_, err := q.Exec(ctx, `UPDATE directory_clients SET disabled_at = now() WHERE client_id = $1`, f.multi.ID)
			return err
		}, false},
		{"control: nothing", func(Client) error { return nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, tok := f.issue(t, f.a.ID, []string{"system/*.rs", "system/Observation.c"}, []string{"TREAT", "HPAYMT"},
				"system/*.rs system/Observation.c", "TREAT")
			if err := tt.change(c); err != nil {
				t.Fatal(err)
			}
			if !tt.refused {
				for _, d := range []time.Duration{0, 299 * time.Second} {
					f.clock.Advance(d)
					p, err := f.tokens.Verify(ctx, tok)
					f.clock.Advance(-d)
					if err != nil || p.ClientID != c.ID {
						t.Fatalf("Verify at +%v = %+v, %v; want the client's principal", d, p, err)
					}
				}
				return
			}
			f.wantRefused(t, tok, "the next request")
			f.wantRefused(t, tok, "again")
			f.clock.Advance(299 * time.Second)
			defer f.clock.Advance(-299 * time.Second)
			f.wantRefused(t, tok, "299 s later")
		})
	}

	// After the review's change the client gets nothing new either, and once enabled again
	// a new token carries only what is registered now.
	t.Run("new tokens follow the registration", func(t *testing.T) {
		c, old := f.issue(t, f.a.ID, []string{"system/*.rs", "system/Observation.c"}, nil, "system/*.rs system/Observation.c", "")
		if _, err := q.Exec(ctx, `UPDATE directory_clients SET scopes = ARRAY['system/Observation.r'], disabled_at = now() WHERE client_id = $1`, c.ID); err != nil {
			t.Fatal(err)
		}
		_, err := f.exchange(t, tokenForm(f.valid(c, jose.ES384, keys.ec, "k").sign(t), "system/*.rs"))
		wantOAuth(t, err, "invalid_client", "unknown client")
		if _, err := q.Exec(ctx, `UPDATE directory_clients SET disabled_at = NULL WHERE client_id = $1`, c.ID); err != nil {
			t.Fatal(err)
		}
		f.wantRefused(t, old, "old token after re-enabling")
		tr, err := f.exchange(t, tokenForm(f.valid(c, jose.ES384, keys.ec, "k").sign(t), "system/Observation.rs system/Observation.c"))
		if err != nil {
			t.Fatalf("Exchange after re-enabling: %v", err)
		}
		p, err := f.tokens.Verify(ctx, tr.AccessToken)
		if err != nil || len(p.Scopes) != 1 || p.Scopes[0] != (Scope{"system", "Observation", "r"}) {
			t.Fatalf("new token: %+v, %v; want system/Observation.r only", p, err)
		}
	})
}

// A member has no disabled state of its own: it is cut off by disabling its clients, or
// removed after its clients are. Either ends its tokens at once, and only its tokens.
func TestVerifyFollowsMemberRemoval(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("all clients of a member disabled", func(t *testing.T) {
		t.Parallel()
		f := newTokenFixture(t)
		_, a1 := f.issue(t, f.a.ID, []string{"system/*.rs"}, nil, "system/*.rs", "")
		_, a2 := f.issue(t, f.a.ID, []string{"system/*.rs"}, nil, "system/Observation.rs", "")
		_, b := f.issue(t, f.b.ID, []string{"system/*.rs"}, nil, "system/*.rs", "")
		if _, err := f.store.db.Exec(ctx, `UPDATE directory_clients SET disabled_at = now() WHERE member_id = $1`, f.a.ID); err != nil {
			t.Fatal(err)
		}
		f.wantRefused(t, a1, "member A's first client")
		f.wantRefused(t, a2, "member A's second client")
		if p, err := f.tokens.Verify(ctx, b); err != nil || p.MemberID != f.b.ID {
			t.Fatalf("member B's token: %+v, %v; want it to keep working", p, err)
		}
	})
	t.Run("member removed", func(t *testing.T) {
		t.Parallel()
		f := newTokenFixture(t)
		_, b := f.issue(t, f.b.ID, []string{"system/*.rs"}, nil, "system/*.rs", "")
		_, a := f.issue(t, f.a.ID, []string{"system/*.rs"}, nil, "system/*.rs", "")
		ts, ok := f.store.db.(db.TxStarter)
		if !ok {
			t.Fatal("the fixture's store is not on a pool")
		}
		err := db.InTx(ctx, ts, func(tx db.Querier) error {
			for _, sql := range []string{
				`DELETE FROM directory_clients WHERE member_id = $1`,
				`DELETE FROM directory_authorities WHERE member_id = $1`,
				`DELETE FROM directory_members WHERE id = $1`,
			} {
				if _, err := tx.Exec(ctx, sql, f.b.ID); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		f.wantRefused(t, b, "removed member's token")
		if _, err := f.tokens.Verify(ctx, a); err != nil {
			t.Fatalf("member A's token: %v; want it to keep working", err)
		}
	})
}

// Verify reads the directory for every token, remembered or not: when it cannot, it fails
// closed with Unavailable (503), not with a principal and not with a 401 that would send
// clients for new tokens.
func TestVerifyDirectoryUnreadable(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	_, tok := f.issue(t, f.a.ID, []string{"system/*.rs"}, nil, "system/*.rs", "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p, err := f.tokens.Verify(ctx, tok)
	if err == nil || errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("Verify with the directory unreadable = %+v, %v; want unavailable", p, err)
	}
	if p.ClientID != "" || p.Scopes != nil {
		t.Fatalf("Verify returned a principal with its error: %+v", p)
	}
	if _, err := f.tokens.Verify(context.Background(), tok); err != nil {
		t.Fatalf("Verify once the directory answers: %v", err)
	}
}

// BenchmarkVerify is the cost of checking a token on each FHIR request: a remembered token
// still reads its client's row.
func BenchmarkVerify(b *testing.B) {
	f := newTokenFixture(b)
	_, tok := f.issue(b, f.a.ID, []string{"system/*.rs"}, nil, "system/*.rs", "")
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.tokens.Verify(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Verify's client reads are shared between concurrent requests, and sharing must not let
// one through on a registration read before it started: while eight goroutines verify the
// same token without pause, the client is disabled; no Verify that started after the
// disabling statement returned may succeed.
func TestVerifyConcurrentDisable(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	ctx := context.Background()
	for round := range 20 {
		c, tok := f.issue(t, f.a.ID, []string{"system/*.rs"}, nil, "system/*.rs", "")
		var disabledAt atomic.Int64 // unix nanos once the UPDATE has returned; 0 before
		var bad atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					after := disabledAt.Load() != 0 // read before Verify starts
					if _, err := f.tokens.Verify(ctx, tok); err == nil && after {
						bad.Add(1)
					}
				}
			}()
		}
		time.Sleep(time.Duration(round%5) * time.Millisecond)
		if _, err := f.store.db.Exec(ctx, `UPDATE directory_clients SET disabled_at = now() WHERE client_id = $1`, c.ID); err != nil {
			t.Fatal(err)
		}
		disabledAt.Store(time.Now().UnixNano())
		time.Sleep(5 * time.Millisecond)
		close(stop)
		wg.Wait()
		if n := bad.Load(); n > 0 {
			t.Fatalf("round %d: %d verifications that started after the client was disabled succeeded", round, n)
		}
		f.wantRefused(t, tok, "after the round")
	}
}
