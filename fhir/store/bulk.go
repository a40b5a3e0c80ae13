package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// CreateMany stores new resources in tx with one round trip: the current rows, their
// first history versions and all their index rows go in as multi-row INSERTs (unnest of
// arrays), not one statement per row. It is Put for creates only: every Write's ID must be
// "" or a fresh id from NewID (a stored id fails the whole call with errs.Conflict; nothing
// is overwritten). Results are in the order of ws.
func (s *Store) CreateMany(ctx context.Context, tx db.Querier, ws []Write) ([]Stored, error) {
	const op = "fhir.store.CreateMany"
	out := make([]Stored, len(ws))
	var (
		rTypes, rIDs, rMembers, rPatients []string
		rAt                               []time.Time
		rLo, rHi                          []*int64
		rBodies                           [][]byte
		idx                               indexBatch
	)
	for i, w := range ws {
		typ, id := w.Resource.ResourceType, w.ID
		if id == "" {
			id = NewID()
		}
		at := w.At.UTC().Truncate(time.Millisecond)
		r, err := w.Resource.Stamp(fhir.Stamp{ID: id, VersionID: "1", LastUpdated: at, Source: w.Source, AddTags: w.Tags, Security: w.Security})
		if err != nil {
			return nil, errs.E(op, err)
		}
		out[i] = Stored{Type: typ, ID: id, Version: 1, MemberID: w.MemberID, PatientID: w.PatientID, LastUpdated: at, Body: r.Bytes()}
		rTypes, rIDs, rMembers, rPatients = append(rTypes, typ), append(rIDs, id), append(rMembers, w.MemberID), append(rPatients, w.PatientID)
		rAt, rBodies = append(rAt, at), append(rBodies, out[i].Body)
		lo, hi := idx.add(typ, id, w.PatientID, at, r)
		rLo, rHi = append(rLo, lo), append(rHi, hi)
	}
	if len(ws) == 0 {
		return out, nil
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO fhir_resources(type, id, version, member_id, patient_id, last_updated, deleted, body, date_lo, date_hi)
		SELECT t, i, 1, m, NULLIF(p, ''), a, false, body, lo, hi
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bytea[], $7::bigint[], $8::bigint[]) AS u(t, i, m, p, a, body, lo, hi)`,
		rTypes, rIDs, rMembers, rPatients, rAt, rBodies, rLo, rHi)
	b.Queue(`INSERT INTO fhir_history(type, id, version, member_id, last_updated, deleted, body)
		SELECT t, i, 1, m, a, false, body FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bytea[]) AS u(t, i, m, a, body)`,
		rTypes, rIDs, rMembers, rAt, rBodies)
	idx.queue(b)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, db.Map(op, err)
	}
	return out, nil
}
