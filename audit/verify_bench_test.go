package audit

import (
	"context"
	"crypto/ed25519"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
)

// genSource produces n chained events for COPY, one at a time.
type genSource struct {
	n, i int64
	r    *rand.Rand
	prev Hash
	base time.Time
	row  []any
}

func (g *genSource) Next() bool { return g.i < g.n }
func (g *genSource) Err() error { return nil }
func (g *genSource) Values() ([]any, error) {
	g.i++
	ev := sampleEvent(g.r)
	ev.Time = g.base.Add(time.Duration(g.i) * time.Millisecond)
	ev.Seq = g.i
	enc := Encode(&ev)
	h := ChainHash(g.prev, g.i, enc)
	p := g.prev
	g.prev = h
	return []any{g.i, ev.Time, string(ev.Action), string(ev.Outcome), ev.Reason, ev.Actor, ev.Client,
		ev.Org, ev.Role, ev.Purpose, ev.Patient, resourceStrings(ev.Resources), ev.Consent, ev.ConsentVersion,
		ev.TokenID, ev.RequestID, ev.SourceIP, ev.Query, ev.BreakGlass, ev.ShareLink, enc, p[:], h[:]}, nil
}

// BenchmarkVerify1M generates 1,000,000 chained events with COPY (not timed), writes a
// signed checkpoint over them, and times Verify over the whole log. Run it with
//
//	go test -run XXX -bench Verify1M -benchtime 1x ./audit
func BenchmarkVerify1M(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	pool, err := db.Open(ctx, testkit.DatabaseURL(b), db.Options{MaxConns: 4, StatementTimeout: 10 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	base := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	if err := EnsurePartitions(ctx, pool, base, 1); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	g := &genSource{n: n, r: rand.New(rand.NewPCG(1, 1)), base: base}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"audit_events"}, eventColumns, g); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "UPDATE audit_chain_head SET seq = $1, hash = $2", int64(n), g.prev[:]); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "ANALYZE audit_events"); err != nil {
		b.Fatal(err)
	}
	key := seededKey(3)
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		_, err := makeCheckpoint(ctx, tx, key, time.Now())
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d events and a checkpoint in %v", n, time.Since(start))
	pub := key.Public().(ed25519.PublicKey)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := Verify(ctx, pool, pub, nil)
		if err != nil || !rep.OK || rep.Events != n {
			b.Fatalf("Verify = %+v, %v", rep, err)
		}
		b.Logf("verified %d events and %d checkpoint(s) in %v", rep.Events, rep.Checkpoints, rep.Took)
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
