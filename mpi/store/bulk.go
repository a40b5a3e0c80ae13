package store

import (
	"context"
	"encoding/json"
	"runtime"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/mpi"
)

// BulkSource is one member patient for BulkLoad.
type BulkSource struct {
	MemberID  string
	System    string // assigning authority of the MRN
	Value     string // the MRN
	PatientID string // the member's FHIR Patient id
	// Person is the person the record belongs to (an earlier MPI's decision, or a new one);
	// it is created when it does not exist yet. Empty gives the record a person of its own.
	Person  PersonID
	Patient []byte // the FHIR Patient as JSON, stored as the demographics
}

// BulkLoad writes srcs into the MPI with COPY: an initial load (a migration from an earlier
// MPI, a test population), not matching. Each record is stored exactly as LinkPatient would
// store a new record — its demographics, normalized features and blocking keys, a 'create'
// history row — in the person it names, with link rule 'bulk-load' and no score. No record
// is matched against another. An MRN (system, value) or Patient id that is already stored
// makes the whole call fail (errs.Conflict), so run it in a transaction (tx) to keep a
// failed chunk out. Records the engine cannot read are stored without features or keys,
// like LinkPatient stores them. Normalization runs on GOMAXPROCS goroutines. For an
// initial load of millions into an empty MPI, call it in chunks of about 10,000 and drop
// mpi_block_keys' indexes before and recreate them after (BenchmarkOnlineMatch does).
func (m *Matcher) BulkLoad(ctx context.Context, tx db.Querier, srcs []BulkSource) error {
	const op = "mpi.store.Matcher.BulkLoad"
	if len(srcs) == 0 {
		return nil
	}
	type prepared struct {
		features []byte
		keys     []mpi.BlockKey
	}
	prep := make([]prepared, len(srcs))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(srcs); i += workers {
				r, err := m.Record(srcs[i].Patient)
				if err != nil {
					continue
				}
				prep[i] = prepared{features: encodeFeatures(&r), keys: mpi.BlockKeys(&r)}
			}
		}()
	}
	wg.Wait()

	// Persons: the named ones not yet stored, and a fresh one for each record without.
	persons := make([]PersonID, len(srcs))
	named := map[PersonID]bool{}
	var fresh []string
	for i, s := range srcs {
		persons[i] = s.Person
		if s.Person == "" {
			persons[i] = NewPersonID()
			fresh = append(fresh, string(persons[i]))
		} else if !named[s.Person] {
			named[s.Person] = true
		}
	}
	if len(named) > 0 {
		ids := make([]string, 0, len(named))
		for p := range named {
			ids = append(ids, string(p))
		}
		rows, err := tx.Query(ctx, `SELECT id::text FROM mpi_persons WHERE id = ANY($1::uuid[])`, ids)
		if err != nil {
			return db.Map(op, err)
		}
		stored, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return db.Map(op, err)
		}
		for _, p := range stored {
			delete(named, PersonID(p))
		}
		for p := range named {
			fresh = append(fresh, string(p))
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"mpi_persons"}, []string{"id"},
		pgx.CopyFromSlice(len(fresh), func(i int) ([]any, error) { return []any{fresh[i]}, nil })); err != nil {
		return db.Map(op, err)
	}

	// Source ids from the table's own sequence, so later online inserts do not collide.
	rows, err := tx.Query(ctx, `SELECT nextval(pg_get_serial_sequence('mpi_source_records', 'id')) FROM generate_series(1, $1)`, len(srcs))
	if err != nil {
		return db.Map(op, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return db.Map(op, err)
	}
	model := m.model.Version
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"mpi_source_records"},
		[]string{"id", "member_id", "system", "value", "patient_id", "person_id", "link_rule", "model", "demographics", "features"},
		pgx.CopyFromSlice(len(srcs), func(i int) ([]any, error) {
			s := srcs[i]
			return []any{ids[i], s.MemberID, s.System, s.Value, s.PatientID, string(persons[i]), "bulk-load", model, json.RawMessage(s.Patient), prep[i].features}, nil
		})); err != nil {
		return db.Map(op, err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"mpi_link_history"}, []string{"source_id", "person_id", "action", "state", "model"},
		pgx.CopyFromSlice(len(srcs), func(i int) ([]any, error) {
			return []any{ids[i], string(persons[i]), "create", "AUTO", model}, nil
		})); err != nil {
		return db.Map(op, err)
	}
	// Blocking keys, flattened.
	i, k := 0, 0
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"mpi_block_keys"}, []string{"hash", "fine", "source_id"},
		pgx.CopyFromFunc(func() ([]any, error) {
			for i < len(prep) && k >= len(prep[i].keys) {
				i, k = i+1, 0
			}
			if i >= len(prep) {
				return nil, nil
			}
			key := prep[i].keys[k]
			k++
			return []any{int64(key.Hash), int64(key.Fine), ids[i]}, nil
		})); err != nil {
		return db.Map(op, err)
	}
	return nil
}
