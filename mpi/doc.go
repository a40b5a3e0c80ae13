// Package mpi is Concord's master patient index engine: pure matching code with no I/O
// (apart from LinkNDJSON, which reads and writes the streams it is given).
//
// The pipeline, as in docs/mpi.md:
//
//	r := norm.Normalize(input)       // Normalizer: names, DOB, sex, SSN, phone, address, IDs
//	model.Prepare(&r)                // term-frequency features from the model's tables
//	keys := mpi.BlockKeys(&r)        // OR of AND-keys; the store keeps Hash and Fine
//	w, ev := model.Score(&r, &other) // Fellegi–Sunter weight and per-field evidence
//	g := model.Guard(&r, &other, ev.Levels)
//	out := model.Decide(w, g)        // AutoLink / Review / NoLink
//	a := model.Assign(&r, cands)     // incremental clustering against candidate persons
//
// A Model is trained by Train (u from random pairs, m by EM over blocking passes,
// thresholds from the posterior or calibrated on labelled pairs), serialized as JSON, and
// DefaultModel returns the one shipped in the binary. LinkBatch and LinkNDJSON link a
// whole population in memory with the same rule as Assign; LinkNDJSON keeps each record
// packed (interned strings, one byte blob) and rebuilds a Record only to score it, to stay
// within the ~1 KB per record of docs/mpi.md.
//
// Records hold PHI: never log them. Record and Input redact themselves under slog.
package mpi

import "log/slog"

// LogValue redacts a record in logs.
func (Record) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// LogValue redacts an input in logs.
func (Input) LogValue() slog.Value { return slog.StringValue("[redacted]") }
