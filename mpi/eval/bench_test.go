package eval

import (
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/concord-hie/concord/mpi"
)

var benchPersons = flag.Int("bench.persons", 40000, "people generated for BenchmarkLinkBatch and BenchmarkLinkNDJSON (≈2.5 records each)")

// BenchmarkScore measures scored candidate pairs per second on one goroutine: the
// blocked pairs of a generated population, scored by the shipped model.
func BenchmarkScore(b *testing.B) {
	ds := Generate(GenOptions{Seed: 5, Persons: 20000})
	norm := mpi.NewNormalizer(mpi.DefaultNicknames())
	recs := make([]mpi.Record, len(ds.Inputs))
	for i, in := range ds.Inputs {
		recs[i] = norm.Normalize(in)
	}
	m, _ := mpi.DefaultModel()
	for i := range recs {
		m.Prepare(&recs[i])
	}
	pairs := mpi.CandidatePairs(recs, mpi.DefaultBlockCap)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	n := 0
	var sink float64
	for b.Loop() {
		p := pairs[n%len(pairs)]
		w, _ := m.Score(&recs[p[0]], &recs[p[1]])
		sink += w
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "pairs/s")
	// The box is shared: pairs per CPU-second of this process is the per-core figure.
	b.ReportMetric(float64(n)/(cpuTime()-cpu0).Seconds(), "pairs/cpu-s")
	_ = sink
}

// cpuTime returns the user+system CPU time of this process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchRecords(b *testing.B) []mpi.Record {
	ds := Generate(GenOptions{Seed: 6, Persons: *benchPersons})
	norm := mpi.NewNormalizer(mpi.DefaultNicknames())
	recs := make([]mpi.Record, len(ds.Inputs))
	for i, in := range ds.Inputs {
		recs[i] = norm.Normalize(in)
	}
	return recs
}

// BenchmarkLinkBatch measures the in-memory batch link (blocking, scoring on all cores,
// clustering) on normalized records: records/s and heap bytes per record.
func BenchmarkLinkBatch(b *testing.B) {
	recs := benchRecords(b)
	m, _ := mpi.DefaultModel()
	b.ResetTimer()
	cpu0 := cpuTime()
	var pairs int64
	for b.Loop() {
		cp := make([]mpi.Record, len(recs))
		copy(cp, recs)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		lm := *m
		lm.FitTF(cp)
		res, err := lm.LinkBatch(context.Background(), cp, 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		pairs = res.Pairs
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(len(recs)), "alloc-B/record")
	}
	b.ReportMetric(float64(len(recs))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(len(recs))*float64(b.N)/(cpuTime()-cpu0).Seconds(), "records/cpu-s")
	b.ReportMetric(float64(len(recs)), "records")
	b.ReportMetric(float64(pairs), "pairs")
}

// BenchmarkLinkNDJSON measures `concord mpi link` end to end (JSON parsing, normalization,
// linking, CSV), reading the NDJSON from a file as the command does, with peak live heap
// per record. -bench.persons 400000 gives the ≈1 M records of the batch target:
//
//	go test ./mpi/eval -run '^$' -bench LinkNDJSON -benchtime 1x -bench.persons 400000
//
// The heap is sampled every millisecond through runtime/metrics, which does
// not stop the world (runtime.ReadMemStats in a loop did, and slowed the run it measured).
func BenchmarkLinkNDJSON(b *testing.B) {
	ds := Generate(GenOptions{Seed: 6, Persons: *benchPersons})
	path := filepath.Join(b.TempDir(), "patients.ndjson")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := WriteNDJSON(f, ds); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	lines := len(ds.Inputs)
	ds = nil
	runtime.GC()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		in, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		var peak atomic.Uint64
		done := make(chan struct{})
		sampled := make(chan struct{})
		go func() { // sample the live heap (HeapInuse: objects + unused slots of in-use spans)
			defer close(sampled)
			s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				metrics.Read(s)
				if v := s[0].Value.Uint64() + s[1].Value.Uint64(); v > peak.Load() {
					peak.Store(v)
				}
				select {
				case <-done:
					return
				case <-t.C:
				}
			}
		}()
		st, err := mpi.LinkNDJSON(context.Background(), in, io.Discard, nil, mpi.LinkOptions{})
		close(done)
		<-sampled
		in.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(peak.Load())/float64(st.Records), "peak-heap-B/record")
		b.ReportMetric(float64(st.Records), "records")
		b.ReportMetric(float64(st.Pairs)/float64(st.Records), "pairs/record")
	}
	recs := float64(b.N) * float64(lines)
	b.ReportMetric(recs/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(recs/(cpuTime()-cpu0).Seconds(), "records/cpu-s")
}
