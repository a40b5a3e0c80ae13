package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsAreContiguousAndTight(t *testing.T) {
	var prevHi uint64
	for i := 0; i < nBuckets; i++ {
		lo, hi := bucketBounds(i)
		if i > 0 && lo != prevHi+1 {
			if lo == 0 && hi == 0 {
				break // past the last bucket a uint64 can reach
			}
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if got := bucketOf(lo); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", lo, got, i)
		}
		if got := bucketOf(hi); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d", hi, got, i)
		}
		if lo >= subCount && float64(hi-lo+1)/float64(lo) > 1.0/subCount+1e-12 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d of its start", i, lo, hi, subCount)
		}
		prevHi = hi
		if hi == math.MaxUint64 {
			break
		}
	}
	if b := bucketOf(math.MaxUint64); b >= nBuckets {
		t.Fatalf("bucketOf(max) = %d, beyond %d buckets", b, nBuckets)
	}
}

func TestQuantilesWithinBucketError(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range []struct {
		name string
		gen  func() time.Duration
	}{
		{"uniform 0-2ms", func() time.Duration { return time.Duration(rng.IntN(2_000_000)) }},
		{"lognormal around 150µs", func() time.Duration {
			return time.Duration(150_000 * math.Exp(rng.NormFloat64()))
		}},
		{"tiny", func() time.Duration { return time.Duration(rng.IntN(50)) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			vals := make([]time.Duration, 20000)
			for i := range vals {
				vals[i] = tt.gen()
				h.Record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.5, 0.9, 0.95, 0.99, 0.999} {
				want := vals[int(math.Ceil(q*float64(len(vals))))-1]
				got := h.Quantile(q)
				tol := float64(want)/subCount + 1
				if math.Abs(float64(got-want)) > tol {
					t.Errorf("q%.3f = %v, want %v ± %.0fns", q, got, want, tol)
				}
			}
			if h.Min() != vals[0] || h.Max() != vals[len(vals)-1] {
				t.Errorf("min/max = %v/%v, want %v/%v", h.Min(), h.Max(), vals[0], vals[len(vals)-1])
			}
			if h.Count() != uint64(len(vals)) {
				t.Errorf("count = %d, want %d", h.Count(), len(vals))
			}
			var sum time.Duration
			for _, v := range vals {
				sum += v
			}
			if got, want := h.Mean(), sum/time.Duration(len(vals)); got != want {
				t.Errorf("mean = %v, want %v", got, want)
			}
		})
	}
}

func TestMergeEqualsRecordingTogether(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var all Histogram
	parts := make([]Histogram, 4)
	for i := 0; i < 10000; i++ {
		d := time.Duration(rng.ExpFloat64() * 1e6)
		all.Record(d)
		parts[i%4].Record(d)
	}
	var merged Histogram
	for i := range parts {
		merged.Merge(&parts[i])
	}
	merged.Merge(&Histogram{}) // merging an empty one changes nothing
	if merged != all {
		t.Fatalf("merged histogram differs: p99 %v vs %v, n %d vs %d", merged.Quantile(.99), all.Quantile(.99), merged.Count(), all.Count())
	}
}

func TestEmptyHistogram(t *testing.T) {
	var h Histogram
	if h.Quantile(.5) != 0 || h.Max() != 0 || h.Mean() != 0 || h.Count() != 0 {
		t.Fatal("empty histogram reports values")
	}
	h.Record(-5)
	if h.Quantile(.5) != 0 || h.Count() != 1 {
		t.Fatalf("negative duration: q50 %v count %d", h.Quantile(.5), h.Count())
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	h := new(Histogram)
	d := time.Duration(1)
	if n := testing.AllocsPerRun(1000, func() { h.Record(d); d = d*3 + 7 }); n != 0 {
		t.Fatalf("Record allocates %.1f times per call", n)
	}
}

func TestSpreadOf(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []float64
		want Spread
	}{
		{"odd", []float64{3, 1, 2}, Spread{Median: 2, Min: 1, Max: 3, N: 3}},
		{"even", []float64{4, 1, 3, 2}, Spread{Median: 2.5, Min: 1, Max: 4, N: 4}},
		{"one", []float64{7}, Spread{Median: 7, Min: 7, Max: 7, N: 1}},
		{"NaN ignored", []float64{math.NaN(), 5, 1}, Spread{Median: 3, Min: 1, Max: 5, N: 2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := SpreadOf(tt.in); got != tt.want {
				t.Errorf("SpreadOf(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
	if s := SpreadOf(nil); s.N != 0 || !math.IsNaN(s.Median) {
		t.Errorf("SpreadOf(nil) = %+v", s)
	}
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i * 977))
	}
}
