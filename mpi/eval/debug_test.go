package eval

import (
	"context"
	"fmt"
	"testing"

	"github.com/concord-hie/concord/mpi"
)

func TestDebugHIE(t *testing.T) {
	train := Generate(GenOptions{Seed: 1, Persons: 8000})
	m, _ := TrainLabelled(train, 0.9995)
	ds := Generate(GenOptions{Seed: 2, Persons: 8000})
	norm := mpi.NewNormalizer(mpi.DefaultNicknames())
	recs := make([]mpi.Record, len(ds.Inputs))
	for i, in := range ds.Inputs {
		recs[i] = norm.Normalize(in)
	}
	cp := *m
	cp.FitTF(recs)
	res, _ := cp.LinkBatch(context.Background(), recs, 1, nil)
	for f := range m.M {
		fmt.Printf("%s w=", mpi.FieldNames[f])
		for l := 1; l < len(m.M[f]); l++ {
			fmt.Printf(" %.2f", m.Weight(f, l))
		}
		fmt.Println()
	}
	st := map[string]int{}
	shown := map[string]int{}
	for _, r := range res.Reviews {
		w, ev := cp.Score(&recs[r.Record], &recs[r.Other])
		same := ds.Entity[r.Record] == ds.Entity[r.Other]
		k := fmt.Sprintf("g=%v dup=%v band=%v same=%v", r.Guards, r.PossibleDuplicate, r.Score < cp.Link, same)
		if !same {
			k += " " + ds.Kind(ds.Entity[r.Record], ds.Entity[r.Other])
		}
		st[k]++
		if shown[k] < 8 && k == "g=twin dup=false band=false same=true" {
			shown[k]++
			fmt.Printf("%s %.1f %v\n  %.130v\n  %.130v\n", k, w, ev.Levels, ds.Inputs[r.Record], ds.Inputs[r.Other])
		}
	}
	for k, v := range st {
		fmt.Println(v, k)
	}
	firstOf := map[int32]int{}
	persOf := map[int32]map[int32]bool{}
	sst := map[string]int{}
	for i := range recs {
		e := ds.Entity[i]
		if _, ok := firstOf[e]; !ok {
			firstOf[e] = i
			persOf[e] = map[int32]bool{res.Person[i]: true}
			continue
		}
		if persOf[e][res.Person[i]] {
			continue
		}
		persOf[e][res.Person[i]] = true
		k := res.Outcome[i].String()
		for _, r := range res.Reviews {
			if r.Record == i {
				k += fmt.Sprintf(" g=%v dup=%v band=%v same=%v", r.Guards, r.PossibleDuplicate, r.Score < cp.Link, ds.Entity[r.Other] == e)
			}
		}
		if res.Outcome[i] == mpi.NoLink {
			w, ev := cp.Score(&recs[i], &recs[firstOf[e]])
			if sst[k] < 4 {
				fmt.Printf("NL %.1f %v\n  %.130v\n  %.130v\n", w, ev.Levels, ds.Inputs[i], ds.Inputs[firstOf[e]])
			}
		}
		sst[k]++
	}
	fmt.Println("SPLIT STARTERS", sst)
	byP := map[int32][]int{}
	for i, p := range res.Person {
		byP[p] = append(byP[p], i)
	}
	for _, ms := range byP {
		for x := range ms {
			for y := x + 1; y < len(ms); y++ {
				i, j := ms[x], ms[y]
				if ds.Entity[i] != ds.Entity[j] {
					w, ev := cp.Score(&recs[i], &recs[j])
					fmt.Printf("FP %s %.1f %v %v\n   %.150v\n   %.150v\n", ds.Kind(ds.Entity[i], ds.Entity[j]), w, ev.Levels, mpi.Guards(&recs[i], &recs[j], ev.Levels), ds.Inputs[i], ds.Inputs[j])
				}
			}
		}
	}
}
