// Package store keeps members' FHIR resources in PostgreSQL: each resource as its member
// sent it (byte for byte), versioned with full history, with search index rows extracted
// on every write. It decides nothing about who may see what: callers authorize first.
package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// Stored is one version of a stored resource.
type Stored struct {
	Type        string
	ID          string
	Version     int
	MemberID    string // the member that sent it
	PatientID   string // the member's Patient whose compartment holds it; "" for none
	LastUpdated time.Time
	Deleted     bool
	Body        []byte
	// Unchanged is set by Put when the write held the content of the current version
	// already: nothing was stored, and the fields describe that version.
	Unchanged bool
}

// Store reads and writes resources.
type Store struct{ db db.Querier }

// New returns a Store on q (usually the pool).
func New(q db.Querier) *Store { return &Store{db: q} }

// NewID returns a fresh server-assigned resource id (32 hex characters).
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Write describes a create or an update.
type Write struct {
	Resource  *fhir.Resource // validated; id and meta are stamped by Put
	ID        string         // "" on create: a new id is assigned
	MemberID  string
	PatientID string
	Source    string        // meta.source to stamp
	Tags      []fhir.Coding // tags to add (e.g. the source member)
	Security  []fhir.Coding // security labels to add (by ingest rules)
	At        time.Time
	// SkipUnchanged makes an update that would store the current version's content again
	// store nothing (Put); an update (PUT, PATCH) sets it, other writes make a version.
	SkipUnchanged bool
}

// Put stores a new version of a resource in tx and returns it as stored. On update the
// resource must belong to the same member (errs.NotFound otherwise: another member's
// record looks absent). Index rows are replaced in the same transaction.
//
// With w.SkipUnchanged, an update whose stamped result has the content of the current, live
// version (sameContent: everything but meta.versionId and meta.lastUpdated, so meta.source,
// the tags and the security labels count as the stamp leaves them) in the same compartment
// stores nothing: no version, no history row, no index rows. Put then returns the current
// version with Unchanged set, and callers skip the side effects of a write (notifications,
// MPI re-linking) but still audit it. The comparison reads the current body under the row
// lock Put takes, so no concurrent write can slip between the check and the answer.
func (s *Store) Put(ctx context.Context, tx db.Querier, w Write) (Stored, error) {
	const op = "fhir.store.Put"
	typ := w.Resource.ResourceType
	id := w.ID
	version := 1
	var cur *Stored // the current, live version of id, if any
	if id == "" {
		id = NewID()
	} else {
		c := Stored{Type: typ, ID: id}
		var patient *string
		// The body only when it is to be compared: other writes need not read it.
		err := tx.QueryRow(ctx, `SELECT member_id, version, patient_id, last_updated, deleted, CASE WHEN $3 THEN body END
			FROM fhir_resources WHERE type = $1 AND id = $2 FOR UPDATE`, typ, id, w.SkipUnchanged).
			Scan(&c.MemberID, &c.Version, &patient, &c.LastUpdated, &c.Deleted, &c.Body)
		switch {
		case err == nil && c.MemberID != w.MemberID:
			return Stored{}, errs.E(op, errs.NotFound, "resource not found")
		case err == nil:
			version = c.Version + 1
			if patient != nil {
				c.PatientID = *patient
			}
			if !c.Deleted {
				cur = &c
			}
		case errs.CodeOf(db.Map(op, err)) != errs.NotFound:
			return Stored{}, db.Map(op, err)
		}
	}
	at := w.At.UTC().Truncate(time.Millisecond)
	r, err := w.Resource.Stamp(fhir.Stamp{ID: id, VersionID: strconv.Itoa(version), LastUpdated: at, Source: w.Source, AddTags: w.Tags, Security: w.Security})
	if err != nil {
		return Stored{}, errs.E(op, err)
	}
	if w.SkipUnchanged && cur != nil && cur.PatientID == w.PatientID && sameContent(cur.Body, r.Bytes()) {
		cur.Unchanged = true
		return *cur, nil
	}
	st := Stored{Type: typ, ID: id, Version: version, MemberID: w.MemberID, PatientID: w.PatientID, LastUpdated: at, Body: r.Bytes()}
	var patient *string
	if w.PatientID != "" {
		patient = &w.PatientID
	}
	var idx indexBatch
	lo, hi := idx.add(typ, id, w.PatientID, at, r)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO fhir_resources(type, id, version, member_id, patient_id, last_updated, deleted, body, date_lo, date_hi)
		VALUES ($1, $2, $3, $4, $5, $6, false, $7, $8, $9)
		ON CONFLICT (type, id) DO UPDATE SET version = EXCLUDED.version, patient_id = EXCLUDED.patient_id,
			last_updated = EXCLUDED.last_updated, deleted = false, body = EXCLUDED.body,
			date_lo = EXCLUDED.date_lo, date_hi = EXCLUDED.date_hi`,
		typ, id, version, w.MemberID, patient, at, st.Body, lo, hi)
	b.Queue(`INSERT INTO fhir_history(type, id, version, member_id, last_updated, deleted, body) VALUES ($1, $2, $3, $4, $5, false, $6)`,
		typ, id, version, w.MemberID, at, st.Body)
	if version > 1 { // a new resource has no index rows to replace
		for _, t := range indexTables {
			b.Queue(`DELETE FROM `+t+` WHERE type = $1 AND id = $2`, typ, id)
		}
	}
	idx.queue(b)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return Stored{}, db.Map(op, err)
	}
	return st, nil
}

// sameContent reports whether a and b, two bodies of one resource, hold the same content
// apart from meta.versionId and meta.lastUpdated, which every version sets anew. Content is
// compared as JSON values, not bytes (stored bodies are kept as sent, so a resend may be
// formatted differently): objects member by member in any order, arrays in order, strings
// after unescaping, numbers by their text, so 1.0 and 1.00 differ as FHIR decimals do. A
// body that does not decode is never the same.
func sameContent(a, b []byte) bool {
	x, ok := contentOf(a)
	if !ok {
		return false
	}
	y, ok := contentOf(b)
	return ok && reflect.DeepEqual(x, y)
}

// contentOf decodes a resource body for sameContent, without meta.versionId and
// meta.lastUpdated (and without meta when nothing else is in it).
func contentOf(body []byte) (map[string]any, bool) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || d.More() {
		return nil, false
	}
	if meta, ok := m["meta"].(map[string]any); ok {
		delete(meta, "versionId")
		delete(meta, "lastUpdated")
		if len(meta) == 0 {
			delete(m, "meta")
		}
	}
	return m, true
}

// Get returns the current version of a resource, or errs.NotFound when it does not exist
// or was deleted.
func (s *Store) Get(ctx context.Context, q db.Querier, typ, id string) (Stored, error) {
	st, _, err := s.get(ctx, q, typ, id, nil)
	return st, err
}

// CompartmentLookup renders a scalar SQL subquery that maps the SQL expression patientExpr
// (a member Patient id, possibly NULL; it names columns of fhir_resources as r.*, so the
// subquery's own columns cannot capture it) to a text value such as the MPI person holding that
// Patient, or NULL. It lets a caller that owns another table read the resource and what its
// compartment maps to in one statement (one round trip) without this package knowing that
// table. The result must contain no placeholders.
type CompartmentLookup func(patientExpr string) string

// GetInCompartment is Get that also returns lookup's value for the resource's compartment
// Patient (the resource itself for a Patient), "" when NULL, read in the same statement, so
// both come from one snapshot.
func (s *Store) GetInCompartment(ctx context.Context, q db.Querier, typ, id string, lookup CompartmentLookup) (Stored, string, error) {
	return s.get(ctx, q, typ, id, lookup)
}

func (s *Store) get(ctx context.Context, q db.Querier, typ, id string, lookup CompartmentLookup) (Stored, string, error) {
	const op = "fhir.store.Get"
	if q == nil {
		q = s.db
	}
	st := Stored{Type: typ, ID: id}
	var patient, extra *string
	sql := `SELECT version, member_id, patient_id, last_updated, deleted, body, NULL::text FROM fhir_resources WHERE type = $1 AND id = $2`
	if lookup != nil {
		sql = `SELECT version, member_id, patient_id, last_updated, deleted, body, ` +
			lookup(`(CASE WHEN r.type = 'Patient' THEN r.id ELSE r.patient_id END)`) +
			` FROM fhir_resources r WHERE r.type = $1 AND r.id = $2`
	}
	err := q.QueryRow(ctx, sql, typ, id).Scan(&st.Version, &st.MemberID, &patient, &st.LastUpdated, &st.Deleted, &st.Body, &extra)
	if err != nil {
		if errs.CodeOf(db.Map(op, err)) == errs.NotFound {
			return Stored{}, "", errs.E(op, errs.NotFound, "resource not found", err)
		}
		return Stored{}, "", db.Map(op, err)
	}
	if st.Deleted {
		return Stored{}, "", errs.E(op, errs.NotFound, "resource not found")
	}
	if patient != nil {
		st.PatientID = *patient
	}
	v := ""
	if extra != nil {
		v = *extra
	}
	return st, v, nil
}

// ByPatients returns the current, undeleted resources of type typ in the compartments of
// the given members' Patients (patient IDs), newest first, at most limit (all of them when
// limit is zero or less). A Patient is in its own compartment: for typ "Patient" it
// returns those Patients themselves, with PatientID set to their own id.
func (s *Store) ByPatients(ctx context.Context, typ string, patientIDs []string, limit int) ([]Stored, error) {
	const op = "fhir.store.ByPatients"
	compartment := "patient_id"
	if typ == "Patient" {
		compartment = "id"
	}
	rows, err := s.db.Query(ctx, `SELECT id, version, member_id, `+compartment+`, last_updated, body FROM fhir_resources
		WHERE `+compartment+` = ANY($1) AND type = $2 AND NOT deleted ORDER BY last_updated DESC, id LIMIT $3`, patientIDs, typ, pgLimit(limit))
	if err != nil {
		return nil, db.Map(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Stored, error) {
		st := Stored{Type: typ}
		err := r.Scan(&st.ID, &st.Version, &st.MemberID, &st.PatientID, &st.LastUpdated, &st.Body)
		return st, err
	})
	return out, db.Map(op, err)
}

// pgLimit is a LIMIT argument: limit, or NULL (no limit) when limit is zero or less.
func pgLimit(limit int) any {
	if limit <= 0 {
		return nil
	}
	return limit
}

// Idempotent looks up a member's idempotency key. It returns errs.NotFound when the key is new.
func (s *Store) Idempotent(ctx context.Context, q db.Querier, member, key string) (status int, location string, body []byte, err error) {
	err = q.QueryRow(ctx, `SELECT status, location, body FROM fhir_idempotency WHERE member_id = $1 AND key = $2`, member, key).Scan(&status, &location, &body)
	return status, location, body, db.Map("fhir.store.Idempotent", err)
}

// RememberIdempotent records the response to a member's idempotency key in tx. A
// concurrent first use of the same key makes one of the two transactions fail with
// errs.Conflict, so exactly one response is remembered.
func (s *Store) RememberIdempotent(ctx context.Context, tx db.Querier, member, key string, status int, location string, body []byte) error {
	_, err := tx.Exec(ctx, `INSERT INTO fhir_idempotency(member_id, key, status, location, body) VALUES ($1, $2, $3, $4, $5)`, member, key, status, location, body)
	return db.Map("fhir.store.RememberIdempotent", err)
}
