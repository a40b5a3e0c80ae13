package audit_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

func testKey(seed byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed
	}
	return ed25519.NewKeyFromSeed(s)
}

func newLog(t testing.TB, pool *pgxpool.Pool, cfg audit.Config) *audit.Log {
	t.Helper()
	l, err := audit.New(context.Background(), pool, cfg)
	if err != nil {
		t.Fatalf("audit.New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func ev(i int) audit.Event {
	return audit.Event{
		Action: audit.Read, Outcome: audit.Permit, Actor: "https://idp.example|u" + fmt.Sprint(i%7),
		Client: "ehr-a", Org: []string{"riverside", "hillcrest"}[i%2], Role: "clinician", Purpose: "TREAT",
		Patient: fmt.Sprintf("person-%d", i%13), Resources: []audit.Resource{{Type: "Observation", ID: fmt.Sprint("o", i)}},
		RequestID: fmt.Sprint("req-", i), SourceIP: "10.1.2.3", TokenID: fmt.Sprint("jti-", i),
	}
}

// checkChain reads the whole table and checks seq 1..n, links and the head.
func checkChain(t *testing.T, q db.Querier, want int) {
	t.Helper()
	rep, err := audit.Verify(context.Background(), q, nil, nil)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !rep.OK || rep.Events != int64(want) {
		t.Fatalf("Verify = %+v; want OK with %d events", rep, want)
	}
}

func TestAppendGroupCommitAndAppendTxInterleave(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	l := newLog(t, pool, audit.Config{CheckpointEvery: -1})
	const appenders, each, txers, txEach = 12, 40, 3, 10
	var wg sync.WaitGroup
	errc := make(chan error, appenders*each+txers*txEach)
	for g := 0; g < appenders; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				errc <- l.Append(ctx, ev(g*1000+i))
			}
		}(g)
	}
	for g := 0; g < txers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < txEach; i++ {
				errc <- db.InTx(ctx, pool, func(tx db.Querier) error {
					if _, err := tx.Exec(ctx, "SELECT 1"); err != nil { // the caller's own change
						return err
					}
					return l.AppendTx(ctx, tx, ev(100000+g*100+i), ev(200000+g*100+i), ev(300000+g*100+i))
				})
			}
		}(g)
	}
	// A caller transaction that rolls back leaves no trace and no gap.
	err := db.InTx(ctx, pool, func(tx db.Querier) error {
		if err := l.AppendTx(ctx, tx, ev(999999)); err != nil {
			return err
		}
		return errors.New("caller changed its mind")
	})
	if err == nil {
		t.Fatal("rolled-back transaction reported success")
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	checkChain(t, pool, appenders*each+txers*txEach*3)
	var reqs int
	if err := pool.QueryRow(ctx, "SELECT count(DISTINCT request_id) FROM audit_events").Scan(&reqs); err != nil || reqs != appenders*each+txers*txEach*3 {
		t.Fatalf("distinct request ids = %d, %v", reqs, err)
	}
}

func TestAppendRejectsInvalidAndFailsClosed(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	l := newLog(t, pool, audit.Config{CheckpointEvery: -1})
	bad := ev(1)
	bad.Action = "peek"
	if err := l.Append(ctx, bad); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("invalid event: %v; want Invalid", err)
	}
	old := ev(2)
	old.Time = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := l.Append(ctx, old); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("1990 event: %v; want Invalid", err)
	}
	// An insert that fails must fail every caller of the batch, with Unavailable (503).
	if _, err := pool.Exec(ctx, `CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit down'; END $$;
		CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION fail_audit()`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures int
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := l.Append(ctx, ev(i)); errs.CodeOf(err) == errs.Unavailable {
				mu.Lock()
				failures++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if failures != 10 {
		t.Fatalf("%d of 10 appends failed with Unavailable; want all", failures)
	}
	if _, err := pool.Exec(ctx, "DROP TRIGGER fail_audit ON audit_events"); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, ev(3)); err != nil {
		t.Fatalf("append after recovery: %v", err)
	}
	checkChain(t, pool, 1)
	// A closed log refuses.
	l.Close()
	if err := l.Append(ctx, ev(4)); errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("append after Close: %v; want Unavailable", err)
	}
	// A context that ends first is Unavailable too.
	l2 := newLog(t, pool, audit.Config{CheckpointEvery: -1})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l2.Append(cctx, ev(5)); errs.CodeOf(err) != errs.Unavailable {
		t.Fatalf("append with ended context: %v; want Unavailable", err)
	}
}

func TestAppRoleCannotRewriteAudit(t *testing.T) {
	url := testkit.DatabaseURL(t)
	ctx := context.Background()
	admin, err := db.Open(ctx, url, db.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// A table made by a later migration (as the migrating role) is usable by the app role.
	if _, err := admin.Exec(ctx, "CREATE TABLE consent_probe (id bigserial PRIMARY KEY, v text)"); err != nil {
		t.Fatal(err)
	}
	app, err := db.Open(ctx, url, db.Options{MaxConns: 4, AppRole: "concord_app"})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	l := newLog(t, app, audit.Config{CheckpointEvery: -1, SigningKey: testKey(1)})
	if err := l.Append(ctx, ev(1)); err != nil {
		t.Fatalf("Append as concord_app: %v", err)
	}
	far := ev(2)
	far.Time = time.Date(2019, 6, 5, 0, 0, 0, 0, time.UTC) // a month without a partition yet
	if err := l.Append(ctx, far); err != nil {
		t.Fatalf("Append to a new month as concord_app: %v", err)
	}
	if err := db.InTx(ctx, app, func(tx db.Querier) error { return l.AppendTx(ctx, tx, ev(3)) }); err != nil {
		t.Fatalf("AppendTx as concord_app: %v", err)
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatalf("Checkpoint as concord_app: %v", err)
	}
	for _, s := range []string{
		"INSERT INTO consent_probe (v) VALUES ('x')", "UPDATE consent_probe SET v = 'y'", "DELETE FROM consent_probe",
		"SELECT count(*) FROM audit_events", "SELECT count(*) FROM schema_migrations",
	} {
		if _, err := app.Exec(ctx, s); err != nil {
			t.Errorf("app role: %s: %v; want allowed", s, err)
		}
	}
	for _, s := range []string{
		"UPDATE audit_events SET purpose = 'HACK'",
		"DELETE FROM audit_events",
		"TRUNCATE audit_events",
		"UPDATE audit_events_2019_06 SET purpose = 'HACK'",
		"DELETE FROM audit_events_2019_06",
		"UPDATE audit_checkpoints SET size = 0",
		"DELETE FROM audit_checkpoints",
		"DELETE FROM audit_chain_head",
		"INSERT INTO audit_anchor (id, seq, hash, frontier, pruned_at) VALUES (true, 0, '\\x00', '\\x0000000000000000', now())",
		"UPDATE audit_anchor SET seq = 0",
		"DELETE FROM audit_anchor",
		"TRUNCATE audit_anchor",
		"DROP TABLE audit_events_2019_06",
		"DELETE FROM schema_migrations",
	} {
		_, err := app.Exec(ctx, s)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || (pe.Code != "42501" && pe.Code != "42809") {
			t.Errorf("app role: %s: %v; want permission denied", s, err)
		}
	}
	checkChain(t, admin, 3)
}

// BenchmarkAppend measures group-committed Append throughput with 16 (and 64) concurrent
// appenders on the real database:
//
//	go test -run XXX -bench Append -benchtime 20000x ./audit
func BenchmarkAppend(b *testing.B) {
	for _, workers := range []int{16, 64} {
		b.Run(fmt.Sprintf("appenders=%d", workers), func(b *testing.B) {
			pool := testkit.DB(b)
			l := newLog(b, pool, audit.Config{CheckpointEvery: -1})
			ctx := context.Background()
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(w), 9))
					for i := w; i < b.N; i += workers {
						if err := l.Append(ctx, ev(r.IntN(1<<20))); err != nil {
							b.Error(err)
							return
						}
					}
				}(w)
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
