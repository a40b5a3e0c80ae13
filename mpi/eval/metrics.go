package eval

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/concord-hie/concord/mpi"
)

// Report holds the quality figures of one run.
type Report struct {
	Dataset   string
	Records   int
	TruePairs int64
	// Pairwise figures over all true pairs (blocking misses are false negatives).
	Precision, Recall, F1 float64
	// Auto-link edge precision: of record pairs put in one person, the share that are one.
	// B³ cluster precision and recall.
	B3Precision, B3Recall float64
	// Blocking.
	CandidatePairs   int64
	PairCompleteness float64
	ReductionRatio   float64
	// Share of records that ended in review.
	ReviewRate float64
	// Overlays: distinct true-person pairs merged into one person, by kind.
	Overlays map[string]int
	Duration time.Duration
	Model    string
}

// Options control Run.
type Options struct {
	Model   *mpi.Model // nil: train on the dataset itself (unsupervised EM)
	Workers int
	Seed    uint64
	// Precision is the posterior probability an unsupervised model needs to auto-link
	// (default 0.999); FEBRL is scored at 0.5, the F1-optimal point.
	Precision float64
	// Guards overrides the guards in force when training (0: all).
	Guards mpi.Guard
}

// Run normalizes ds, trains a model when none is given, links it in batch and measures
// the result against the ground truth.
func Run(ctx context.Context, ds *Dataset, opts Options) (*Report, *mpi.Model, error) {
	start := time.Now()
	norm := mpi.NewNormalizer(mpi.DefaultNicknames())
	norm.LenientSSN = ds.Lenient
	recs := make([]mpi.Record, len(ds.Inputs))
	for i, in := range ds.Inputs {
		recs[i] = norm.Normalize(in)
	}
	m := opts.Model
	if m == nil {
		var err error
		m, err = mpi.Train(recs, mpi.TrainOptions{Version: ds.Name + "-em", Seed: opts.Seed, Precision: opts.Precision, Guards: opts.Guards})
		if err != nil {
			return nil, nil, err
		}
	} else {
		cp := *m
		cp.FitTF(recs) // term frequencies from the population being linked
		m = &cp
	}
	var res *mpi.BatchResult
	var err error
	if ds.Side != nil {
		res, err = linkTwoSided(ctx, m, recs, ds)
	} else {
		res, err = m.LinkBatch(ctx, recs, opts.Workers, nil)
	}
	if err != nil {
		return nil, nil, err
	}
	rep := Measure(ds, recs, res)
	rep.Duration = time.Since(start)
	rep.Model = m.Version
	return rep, m, nil
}

// linkTwoSided links a one-to-one A×B link (FEBRL4): each B record joins its best A
// record when the pair auto-links and that A record is not taken by a better B record.
func linkTwoSided(ctx context.Context, m *mpi.Model, recs []mpi.Record, ds *Dataset) (*mpi.BatchResult, error) {
	n := len(recs)
	for i := range recs {
		m.Prepare(&recs[i])
	}
	pairs := mpi.CandidatePairs(recs, mpi.DefaultBlockCap)
	type cand struct {
		a, b int
		w    float64
		out  mpi.Outcome
	}
	var cs []cand
	res := &mpi.BatchResult{Person: make([]int32, n), Outcome: make([]mpi.Outcome, n)}
	for _, p := range pairs {
		i, j := int(p[0]), int(p[1])
		if ds.Side[i] == ds.Side[j] {
			continue
		}
		if ds.Side[i] == 1 {
			i, j = j, i
		}
		res.Pairs++
		w, ev := m.Score(&recs[i], &recs[j])
		out := m.Decide(w, m.Guard(&recs[i], &recs[j], ev.Levels))
		if out != mpi.NoLink {
			cs = append(cs, cand{i, j, w, out})
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Slice(cs, func(x, y int) bool { return cs[x].w > cs[y].w })
	for i := range res.Person {
		res.Person[i] = int32(i)
	}
	taken := make([]bool, n)
	for _, c := range cs {
		if taken[c.a] || taken[c.b] {
			continue
		}
		taken[c.a], taken[c.b] = true, true
		if c.out == mpi.AutoLink {
			res.Person[c.b] = res.Person[c.a]
			res.Outcome[c.b] = mpi.AutoLink
		} else {
			res.Outcome[c.b] = mpi.Review
			res.Reviews = append(res.Reviews, mpi.ReviewItem{Record: c.b, Other: c.a, Score: c.w})
		}
	}
	res.Persons = n
	return res, nil
}

// Measure compares a batch result with the ground truth of ds.
func Measure(ds *Dataset, recs []mpi.Record, res *mpi.BatchResult) *Report {
	n := len(recs)
	rep := &Report{Dataset: ds.Name, Records: n, Overlays: map[string]int{}}
	if ds.Kind != nil { // report the hard cases even when they are zero
		for _, k := range []string{"twin", "jrsr", "namesake", "household"} {
			rep.Overlays[k] = 0
		}
	}
	cross := func(i, j int) bool { return ds.Side == nil || ds.Side[i] != ds.Side[j] }
	// true pairs
	byEnt := map[int32][]int{}
	for i, e := range ds.Entity {
		byEnt[e] = append(byEnt[e], i)
	}
	truePair := map[[2]int]bool{}
	for _, ms := range byEnt {
		for x := 0; x < len(ms); x++ {
			for y := x + 1; y < len(ms); y++ {
				if cross(ms[x], ms[y]) {
					truePair[[2]int{ms[x], ms[y]}] = true
				}
			}
		}
	}
	rep.TruePairs = int64(len(truePair))
	// predicted pairs
	byPer := map[int32][]int{}
	for i, p := range res.Person {
		byPer[p] = append(byPer[p], i)
	}
	var tp, fp int64
	overlay := map[[2]int32]bool{}
	for _, ms := range byPer {
		for x := 0; x < len(ms); x++ {
			for y := x + 1; y < len(ms); y++ {
				i, j := ms[x], ms[y]
				if !cross(i, j) {
					continue
				}
				if ds.Entity[i] == ds.Entity[j] {
					tp++
				} else {
					fp++
					a, b := ds.Entity[i], ds.Entity[j]
					if a > b {
						a, b = b, a
					}
					overlay[[2]int32{a, b}] = true
				}
			}
		}
	}
	for k := range overlay {
		kind := "other"
		if ds.Kind != nil {
			kind = ds.Kind(k[0], k[1])
		}
		rep.Overlays[kind]++
	}
	fn := rep.TruePairs - tp
	rep.Precision = ratio(tp, tp+fp)
	rep.Recall = ratio(tp, tp+fn)
	if rep.Precision+rep.Recall > 0 {
		rep.F1 = 2 * rep.Precision * rep.Recall / (rep.Precision + rep.Recall)
	}
	// B³ over records (deduplication view).
	var bp, br float64
	for i := range n {
		cl := byPer[res.Person[i]]
		ent := byEnt[ds.Entity[i]]
		same := 0
		for _, j := range cl {
			if ds.Entity[j] == ds.Entity[i] {
				same++
			}
		}
		bp += float64(same) / float64(len(cl))
		br += float64(same) / float64(len(ent))
	}
	rep.B3Precision, rep.B3Recall = bp/float64(n), br/float64(n)
	// blocking
	pairs := mpi.CandidatePairs(recs, mpi.DefaultBlockCap)
	var found int64
	var cand int64
	for _, p := range pairs {
		i, j := int(p[0]), int(p[1])
		if !cross(i, j) {
			continue
		}
		cand++
		if truePair[[2]int{i, j}] {
			found++
		}
	}
	rep.CandidatePairs = cand
	rep.PairCompleteness = ratio(found, rep.TruePairs)
	var all float64
	if ds.Side != nil {
		a := 0
		for _, s := range ds.Side {
			if s == 0 {
				a++
			}
		}
		all = float64(a) * float64(n-a)
	} else {
		all = float64(n) * float64(n-1) / 2
	}
	rep.ReductionRatio = 1 - float64(cand)/all
	reviewed := 0
	for _, o := range res.Outcome {
		if o == mpi.Review {
			reviewed++
		}
	}
	rep.ReviewRate = float64(reviewed) / float64(n)
	return rep
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// WriteTable prints reports as an aligned text table.
func WriteTable(w io.Writer, reps []*Report) error {
	if _, err := fmt.Fprintf(w, "%-10s %8s %8s %7s %7s %7s %7s %7s %8s %7s %7s %s\n",
		"dataset", "records", "true", "P", "R", "F1", "B3-P", "B3-R", "PC", "RR", "review", "overlays"); err != nil {
		return err
	}
	for _, r := range reps {
		ov := ""
		keys := make([]string, 0, len(r.Overlays))
		for k := range r.Overlays {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ov += fmt.Sprintf("%s=%d ", k, r.Overlays[k])
		}
		if ov == "" {
			ov = "0"
		}
		if _, err := fmt.Fprintf(w, "%-10s %8d %8d %7.4f %7.4f %7.4f %7.4f %7.4f %8.4f %7.4f %6.2f%% %s (%s, %.1fs)\n",
			r.Dataset, r.Records, r.TruePairs, r.Precision, r.Recall, r.F1, r.B3Precision, r.B3Recall,
			r.PairCompleteness, r.ReductionRatio, 100*r.ReviewRate, ov, r.Model, r.Duration.Seconds()); err != nil {
			return err
		}
	}
	return nil
}

// TrainLabelled trains a model on a labelled population: m and u as in mpi.Train, and
// the thresholds calibrated on its ground truth for the auto-link precision target.
func TrainLabelled(ds *Dataset, precision float64) (*mpi.Model, error) {
	norm := mpi.NewNormalizer(mpi.DefaultNicknames())
	norm.LenientSSN = ds.Lenient
	recs := make([]mpi.Record, len(ds.Inputs))
	for i, in := range ds.Inputs {
		recs[i] = norm.Normalize(in)
	}
	return mpi.Train(recs, mpi.TrainOptions{
		Version: fmt.Sprintf("%s-em-p%g", ds.Name, precision), Seed: 7, Precision: precision,
		Same: func(i, j int) bool { return ds.Entity[i] == ds.Entity[j] },
	})
}

// DefaultModelVersion names the model embedded in package mpi.
const DefaultModelVersion = "hie-gen1-em-p0.999"

// TrainDefault trains the model shipped as mpi.DefaultModel: EM on a seeded 8,000-person
// generated population, thresholds calibrated there for 0.999 auto-link precision.
func TrainDefault() (*mpi.Model, error) {
	m, err := TrainLabelled(Generate(GenOptions{Seed: 1, Persons: 8000}), 0.999)
	if err != nil {
		return nil, err
	}
	m.Version = DefaultModelVersion
	return m, nil
}
