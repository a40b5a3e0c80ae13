package store_test

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
	"github.com/concord-hie/concord/mpi"
	"github.com/concord-hie/concord/mpi/eval"
	"github.com/concord-hie/concord/mpi/store"
)

var (
	onlineRecords = flag.Int("online-records", 10_000, "source records bulk-loaded before BenchmarkOnlineMatch measures (the target is ≥ 1,000,000)")
	onlineDB      = flag.String("online-db", "", "PostgreSQL URL of a database to load once and reuse across runs (created and migrated if missing; never dropped); empty: a fresh test database")
	onlineLegacy  = flag.Bool("online-legacy", false, "also measure the candidate fetch of before the features column, on the same database")
)

// BenchmarkOnlineMatch measures online create-with-match (Matcher.LinkPatient in its own
// transaction, committed) with -online-records source records indexed: a seeded HIE-style
// population from mpi/eval, persons as its ground truth, bulk-loaded with
// Matcher.BulkLoad (the same features and blocking keys the online path writes), then
// VACUUM (ANALYZE). The incoming records are further registrations of the same
// population (so most have a person to match, with the generator's hard cases) under
// fresh MRNs. It reports p50/p95/p99 latency in ms and the share auto-linked, for 1 and 8
// concurrent callers. The target (issue 4; docs/mpi.md says records) is p99 < 50 ms with
// ≥ 1 M persons in the store; the generator gives ≈ 2.4 registrations per person, so
// 2,450,000 records hold ≈ 1.01 M persons (the load prints the count):
//
//	go test ./mpi/store -run '^$' -bench OnlineMatch -benchtime 2000x -online-records 2450000 -timeout 60m
//
// The load of 1 M records takes 5–15 minutes on these shared cores (2.45 M: about 10 on a
// quiet machine); -online-db URL keeps the
// loaded database for later runs, and -online-legacy adds the candidate fetch of before
// the features column (slow at 1 M: seconds per match) for comparison.
func BenchmarkOnlineMatch(b *testing.B) {
	ctx := context.Background()
	n := *onlineRecords
	var pool *pgxpool.Pool
	if *onlineDB != "" {
		if err := db.EnsureDatabase(ctx, *onlineDB); err != nil {
			b.Fatal(err)
		}
		var err error
		if pool, err = db.Open(ctx, *onlineDB, db.Options{MaxConns: 10, StatementTimeout: time.Hour}); err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		if _, err := db.Migrate(ctx, pool); err != nil {
			b.Fatal(err)
		}
	} else {
		var err error
		if pool, err = db.Open(ctx, testkit.DatabaseURL(b), db.Options{MaxConns: 10, StatementTimeout: time.Hour}); err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
	}
	m, err := store.NewMatcher(store.New(pool))
	if err != nil {
		b.Fatal(err)
	}

	// ~2.5 registrations per person; the registrations past n are the incoming pool.
	ds := eval.Generate(eval.GenOptions{Seed: 4, Persons: n*10/24 + 2_000, Members: 6})
	if len(ds.Inputs) < n+1000 {
		b.Fatalf("generator gave %d registrations for %d records", len(ds.Inputs), n)
	}
	members := map[string]string{} // assigning authority -> member id
	for _, in := range ds.Inputs {
		if _, ok := members[in.Source.System]; !ok {
			id := fmt.Sprintf("bench-m%d", len(members))
			members[in.Source.System] = id
			if _, err := pool.Exec(ctx, `INSERT INTO directory_members(id, name, system) VALUES ($1, $1, $2) ON CONFLICT DO NOTHING`, id, in.Source.System); err != nil {
				b.Fatal(err)
			}
		}
	}
	var stored int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM mpi_source_records WHERE link_rule = 'bulk-load'`).Scan(&stored); err != nil {
		b.Fatal(err)
	}
	switch {
	case stored == 0:
		loadPopulation(b, pool, m, ds, n, members)
	case stored != n:
		b.Fatalf("database holds %d bulk-loaded records, not %d: use another -online-db", stored, n)
	default:
		fmt.Printf("reusing %d bulk-loaded records\n", stored)
	}
	var total int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM mpi_source_records`).Scan(&total); err != nil {
		b.Fatal(err)
	}
	fmt.Printf("%d source records indexed\n", total)

	// A reused database already holds the registrations earlier runs created: start after
	// them, or they would come back as a second MRN of the same member (a guard).
	incoming := ds.Inputs[n:]
	if total-n+4*b.N > len(incoming) {
		b.Logf("warning: the incoming pool (%d) is used up; registrations repeat", len(incoming))
	}
	run := testkit.RandomID(6)
	var next atomic.Int64
	next.Store(int64(total - n))
	bench := func(b *testing.B, callers int) {
		lat := make([]time.Duration, b.N)
		var auto, review atomic.Int64
		var idx atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan error, callers)
		b.ResetTimer()
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(idx.Add(1)) - 1
					if i >= b.N {
						return
					}
					k := next.Add(1)
					in := incoming[int(k)%len(incoming)]
					in.Source.Value = fmt.Sprintf("on-%s-%d", run, k) // a new registration, never an update
					body, err := eval.PatientJSON(in)
					if err != nil {
						errc <- err
						return
					}
					member := members[in.Source.System]
					start := time.Now()
					var l store.Link
					err = db.InTx(ctx, pool, func(tx db.Querier) error {
						var err error
						l, err = m.LinkPatient(ctx, tx, member, in.Source.System, in.Source.Value, "pat-"+in.Source.Value, body)
						return err
					})
					lat[i] = time.Since(start)
					if err != nil {
						errc <- err
						return
					}
					switch l.Outcome {
					case mpi.AutoLink:
						auto.Add(1)
					case mpi.Review:
						review.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		close(errc)
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		pct := func(p float64) float64 {
			return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
		}
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.95), "p95-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(100*float64(auto.Load())/float64(b.N), "autolink-%")
		b.ReportMetric(100*float64(review.Load())/float64(b.N), "review-%")
	}
	paths := []bool{false}
	if *onlineLegacy {
		paths = append(paths, true)
	}
	for _, legacy := range paths {
		name := "features"
		if legacy {
			name = "legacy"
		}
		store.Legacy(m, legacy)
		for _, callers := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/callers=%d", name, callers), func(b *testing.B) { bench(b, callers) })
		}
	}
	store.Legacy(m, false)
}

// loadPopulation bulk-loads the first n registrations of ds, each in the person of its
// true entity, then runs VACUUM (ANALYZE) on the MPI tables. mpi_block_keys' indexes are
// dropped for the load and rebuilt after from their own definitions (pg_indexes), as an
// initial load of an empty MPI would do; the rebuild counts in the load time.
func loadPopulation(b *testing.B, pool *pgxpool.Pool, m *store.Matcher, ds *eval.Dataset, n int, members map[string]string) {
	ctx := context.Background()
	start := time.Now()
	rows, err := pool.Query(ctx, `SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'mpi_block_keys' ORDER BY indexname`)
	if err != nil {
		b.Fatal(err)
	}
	var indexes [][2]string
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			b.Fatal(err)
		}
		indexes = append(indexes, [2]string{name, def})
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	for _, ix := range indexes {
		if _, err := pool.Exec(ctx, "DROP INDEX "+ix[0]); err != nil {
			b.Fatal(err)
		}
	}
	persons := map[int32]store.PersonID{}
	const chunk = 10_000
	for lo := 0; lo < n; lo += chunk {
		hi := min(n, lo+chunk)
		srcs := make([]store.BulkSource, 0, hi-lo)
		for i := lo; i < hi; i++ {
			in := ds.Inputs[i]
			body, err := eval.PatientJSON(in)
			if err != nil {
				b.Fatal(err)
			}
			p, ok := persons[ds.Entity[i]]
			if !ok {
				p = store.NewPersonID()
				persons[ds.Entity[i]] = p
			}
			srcs = append(srcs, store.BulkSource{MemberID: members[in.Source.System], System: in.Source.System, Value: in.Source.Value,
				PatientID: fmt.Sprintf("bulk-%d", i), Person: p, Patient: body})
		}
		if err := db.InTx(ctx, pool, func(tx db.Querier) error { return m.BulkLoad(ctx, tx, srcs) }); err != nil {
			b.Fatal(err)
		}
	}
	copied := time.Since(start)
	for _, ix := range indexes {
		if _, err := pool.Exec(ctx, ix[1]); err != nil {
			b.Fatal(err)
		}
	}
	loaded := time.Since(start)
	for _, t := range []string{"mpi_persons", "mpi_source_records", "mpi_block_keys", "mpi_link_history"} {
		if _, err := pool.Exec(ctx, "VACUUM (ANALYZE) "+t); err != nil {
			b.Fatal(err)
		}
	}
	fmt.Printf("bulk-loaded %d records (%d persons) in %s (%.0f records/s; COPY %s, block-key indexes %s); VACUUM (ANALYZE) %s\n",
		n, len(persons), loaded.Round(time.Millisecond), float64(n)/loaded.Seconds(), copied.Round(time.Millisecond),
		(loaded - copied).Round(time.Millisecond), (time.Since(start) - loaded).Round(time.Millisecond))
}
