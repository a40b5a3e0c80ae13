package bench

import (
	"math"
	"math/bits"
	"sort"
	"time"
)

// Histogram buckets are log-linear: values below 2^subBits nanoseconds get a bucket each,
// and every power of two above is split into 2^subBits equal buckets, so any recorded value
// is known to within 1/64 (1.6 %) of itself, from 1 ns to the largest Duration.
const (
	subBits  = 6
	subCount = 1 << subBits
	nBuckets = (64-subBits+1)*subCount + subCount
)

// Histogram records latencies. Record does not allocate and Merge adds another histogram,
// so each worker keeps its own and the run merges them at the end. The zero value is empty
// and ready to use; a Histogram is not safe for concurrent use.
type Histogram struct {
	counts [nBuckets]uint64
	n      uint64
	sum    uint64
	min    uint64
	max    uint64
}

// bucketOf returns the bucket index of v nanoseconds.
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	msb := bits.Len64(v) - 1 // >= subBits
	shift := msb - subBits
	m := v >> uint(shift) // in [subCount, 2*subCount)
	return (shift+1)*subCount + int(m-subCount)
}

// bucketBounds returns the smallest and largest value that fall into bucket i.
func bucketBounds(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i)
	}
	g := i / subCount // >= 1
	sub := uint64(i % subCount)
	shift := uint(g - 1)
	lo = (subCount + sub) << shift
	hi = lo + (uint64(1) << shift) - 1
	return lo, hi
}

// Record adds one latency. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest recorded value exactly, or 0 when h is empty.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max returns the largest recorded value exactly, or 0 when h is empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the exact mean of the recorded values, or 0 when h is empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

// Quantile returns the q-quantile (0 <= q <= 1) of the recorded values: the middle of the
// bucket holding the value of rank ceil(q·n), clamped to the exact minimum and maximum, so it
// is within 1/64 of the true order statistic. It returns 0 when h is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return time.Duration(h.min)
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank == 0 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			lo, hi := bucketBounds(i)
			v := lo + (hi-lo)/2
			if v < h.min {
				v = h.min
			}
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// Spread summarises repeated measurements of one figure: the median and the extremes.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// SpreadOf returns the median, minimum and maximum of xs, ignoring NaNs. The median of an
// even count is the mean of the two middle values. An empty (or all-NaN) input gives N == 0
// and NaN figures.
func SpreadOf(xs []float64) Spread {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	sort.Float64s(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Spread{Median: med, Min: v[0], Max: v[n-1], N: n}
}
