package eval

import (
	"context"
	"fmt"
	"testing"

	"github.com/concord-hie/concord/mpi"
)

func TestDebugModel(t *testing.T) {
	dir := dataDir(t, "febrl")
	ds, _ := LoadFEBRL(dir, 2)
	norm := mpi.NewNormalizer(mpi.DefaultNicknames())
	norm.LenientSSN = true
	recs := make([]mpi.Record, len(ds.Inputs))
	for i, in := range ds.Inputs {
		recs[i] = norm.Normalize(in)
	}
	m, _ := mpi.Train(recs, mpi.TrainOptions{Seed: 1, Precision: 0.5})
	fmt.Printf("lambda %.5f link %.2f review %.2f\n", m.Lambda, m.Link, m.Review)
	res, _ := m.LinkBatch(context.Background(), recs, 1, nil)
	g := map[string]int{}
	for k, r := range res.Reviews {
		g[r.Guards.String()]++
		if k < 0 {
			w, ev := m.Score(&recs[r.Record], &recs[r.Other])
			fmt.Printf("%.1f %v %v %+v | %+v\n", w, ev.Levels, r.PossibleDuplicate, ds.Inputs[r.Record], ds.Inputs[r.Other])
		}
	}
	fmt.Println(g)
	for f := range m.M {
		fmt.Printf("%s w=", mpi.FieldNames[f])
		for l := 1; l < len(m.M[f]); l++ {
			fmt.Printf(" %.2f", m.Weight(f, l))
		}
		fmt.Println()
	}
	byP := map[int32][]int{}
	for i, p := range res.Person {
		byP[p] = append(byP[p], i)
	}
	shown := 0
	for _, ms := range byP {
		for x := range ms {
			for y := x + 1; y < len(ms); y++ {
				i, j := ms[x], ms[y]
				if ds.Entity[i] != ds.Entity[j] && shown < 8 {
					shown++
					w, ev := m.Score(&recs[i], &recs[j])
					fmt.Printf("FP %.1f %v\n   %+v\n   %+v\n", w, ev.Levels, ds.Inputs[i], ds.Inputs[j])
				}
			}
		}
	}
}
