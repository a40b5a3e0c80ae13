package main

import "github.com/concord-hie/concord/internal/bench"

// mixName is benchmarks.md's "mix": the read scenarios interleaved, measured closed-loop for
// the maximum rate and then open-model (a fixed arrival rate) at half of it, where the
// goal is p99 <= 3 x p50 with no errors.
const mixName = "mix"

// mixWorkers is the closed loop's concurrency; the open model has four times as many
// workers, so that one is free for every operation due unless the server falls behind.
const mixWorkers = 16

// mixShares are the mix's parts by weight. benchmarks.md asks for 60 % S1/S2, 25 % S3/S4,
// 10 % S5 and 5 % S7; S7 is left out because its bundles write and the mix runs among the
// reads, and the other shares keep their proportions (95 in all).
var mixShares = []struct {
	name   string
	weight int
}{
	{"thin-slice-read", 30}, {"s2-family-birthdate", 10}, {"s2-identifier", 10}, {"s2-match", 10},
	{"s3-lab", 13}, {"s4-docref-category", 12}, {"s5-binary-4k", 10},
}

// mixParts picks the mix's parts from the built scenarios; a part whose scenario was not
// built (S4 without its notes) is left out. HTTP parts get connections for every open-model
// worker.
func mixParts(ss []bench.Scenario) []bench.MixPart {
	var parts []bench.MixPart
	for _, sh := range mixShares {
		for _, s := range ss {
			if s.ScenarioName() != sh.name {
				continue
			}
			if h, ok := s.(bench.HTTPScenario); ok {
				h.Conns = 4 * mixWorkers
				s = h
			}
			parts = append(parts, bench.MixPart{Scenario: s, Weight: sh.weight})
		}
	}
	return parts
}
