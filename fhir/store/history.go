package store

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// Head is the current state of a stored resource, read under a row lock.
type Head struct {
	MemberID string
	Version  int
	Deleted  bool
}

// Lock reads the current state of a resource and locks its row until tx ends, so a
// version check (If-Match) and the write that follows see the same version. It returns
// errs.NotFound when the resource was never stored; a deleted resource is returned with
// Deleted set. Callers must treat another member's resource as absent.
func (s *Store) Lock(ctx context.Context, tx db.Querier, typ, id string) (Head, error) {
	const op = "fhir.store.Lock"
	var h Head
	err := tx.QueryRow(ctx, `SELECT member_id, version, deleted FROM fhir_resources WHERE type = $1 AND id = $2 FOR UPDATE`, typ, id).
		Scan(&h.MemberID, &h.Version, &h.Deleted)
	if err != nil {
		return Head{}, db.Map(op, err)
	}
	return h, nil
}

// Delete soft-deletes a member's resource in tx: a new version marked deleted is added to
// the history (keeping the last body, so the row stays well-formed), the current row is
// marked deleted, and its search index rows are removed. It returns errs.NotFound when the
// resource does not exist or belongs to another member. Deleting an already deleted
// resource changes nothing and returns the deleted head.
func (s *Store) Delete(ctx context.Context, tx db.Querier, typ, id, memberID string, at time.Time) (Stored, error) {
	const op = "fhir.store.Delete"
	h, err := s.Lock(ctx, tx, typ, id)
	if err != nil {
		return Stored{}, err
	}
	if h.MemberID != memberID {
		return Stored{}, errs.E(op, errs.NotFound, "resource not found")
	}
	at = at.UTC().Truncate(time.Millisecond)
	st := Stored{Type: typ, ID: id, Version: h.Version, MemberID: memberID, LastUpdated: at, Deleted: true}
	if h.Deleted {
		return st, nil
	}
	st.Version = h.Version + 1
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO fhir_history(type, id, version, member_id, last_updated, deleted, body)
		SELECT type, id, $3, member_id, $4, true, body FROM fhir_resources WHERE type = $1 AND id = $2`, typ, id, st.Version, at)
	b.Queue(`UPDATE fhir_resources SET version = $3, last_updated = $4, deleted = true WHERE type = $1 AND id = $2`, typ, id, st.Version, at)
	for _, t := range indexTables {
		b.Queue(`DELETE FROM `+t+` WHERE type = $1 AND id = $2`, typ, id)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return Stored{}, db.Map(op, err)
	}
	return st, nil
}

// Version returns one version of a resource from its history (vread). A deleted version
// is returned with Deleted set and the body it had before deletion; callers answer 410.
// It returns errs.NotFound when the resource or the version does not exist. Ownership is
// the caller's to check (MemberID).
func (s *Store) Version(ctx context.Context, q db.Querier, typ, id string, version int) (Stored, error) {
	const op = "fhir.store.Version"
	if q == nil {
		q = s.db
	}
	st := Stored{Type: typ, ID: id, Version: version}
	err := q.QueryRow(ctx, `SELECT member_id, last_updated, deleted, body FROM fhir_history WHERE type = $1 AND id = $2 AND version = $3`, typ, id, version).
		Scan(&st.MemberID, &st.LastUpdated, &st.Deleted, &st.Body)
	if err != nil {
		return Stored{}, db.Map(op, err)
	}
	return st, nil
}

// History returns the versions of a resource, newest first, at most limit. It returns an
// empty list when the resource does not exist. Ownership is the caller's to check.
func (s *Store) History(ctx context.Context, q db.Querier, typ, id string, limit int) ([]Stored, error) {
	const op = "fhir.store.History"
	if q == nil {
		q = s.db
	}
	rows, err := q.Query(ctx, `SELECT version, member_id, last_updated, deleted, body FROM fhir_history
		WHERE type = $1 AND id = $2 ORDER BY version DESC LIMIT $3`, typ, id, limit)
	if err != nil {
		return nil, db.Map(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Stored, error) {
		st := Stored{Type: typ, ID: id}
		err := r.Scan(&st.Version, &st.MemberID, &st.LastUpdated, &st.Deleted, &st.Body)
		return st, err
	})
	return out, db.Map(op, err)
}

// ETag returns the weak entity tag of a version, W/"n".
func ETag(version int) string { return `W/"` + strconv.Itoa(version) + `"` }

// ParseETag returns the version named by an If-Match value (W/"n" or "n"), or false.
func ParseETag(s string) (int, bool) {
	if len(s) >= 2 && s[:2] == "W/" {
		s = s[2:]
	}
	if len(s) < 3 || s[0] != '"' || s[len(s)-1] != '"' {
		return 0, false
	}
	n, err := strconv.Atoi(s[1 : len(s)-1])
	return n, err == nil && n > 0
}
