// Package store keeps the master patient index in PostgreSQL: persons, members' source
// patient records and their links, link history, and portal login enrolments. Matching
// itself is the pure engine in package mpi.
package store

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// PersonID is an enterprise person identifier (a UUID).
type PersonID string

// NewPersonID returns a random (version 4) UUID.
func NewPersonID() PersonID {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return PersonID(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

// Source is a member's patient record as the MPI knows it.
type Source struct {
	ID        int64
	MemberID  string
	System    string
	Value     string
	PatientID string
	PersonID  PersonID
	Version   int
}

// Store reads and writes the MPI.
type Store struct{ db db.Querier }

// New returns a Store on q (usually the pool).
func New(q db.Querier) *Store { return &Store{db: q} }

// Upsert records a member's patient identified by (system, value) in tx. The same pair
// again is an update of the same source record (its demographics are replaced and its
// version bumped), never a new match. A new pair gets person, or a new person when person
// is empty. It returns the source as stored and whether it was created. An update clears
// the stored match features (they described the old demographics); LinkPatient writes new
// ones.
func (s *Store) Upsert(ctx context.Context, tx db.Querier, memberID, system, value, patientID string, demographics any, person PersonID) (Source, bool, error) {
	const op = "mpi.store.Upsert"
	demo, err := json.Marshal(demographics)
	if err != nil {
		return Source{}, false, errs.E(op, errs.Internal, err)
	}
	src := Source{MemberID: memberID, System: system, Value: value}
	err = tx.QueryRow(ctx, `UPDATE mpi_source_records SET demographics = $3, features = NULL, version = version + 1, updated_at = now()
		WHERE system = $1 AND value = $2 RETURNING id, member_id, patient_id, person_id, version`, system, value, demo).
		Scan(&src.ID, &src.MemberID, &src.PatientID, &src.PersonID, &src.Version)
	if err == nil {
		if src.MemberID != memberID {
			return Source{}, false, errs.E(op, errs.Invalid, "identifier system belongs to another member")
		}
		return src, false, nil
	}
	if err != pgx.ErrNoRows {
		return Source{}, false, db.Map(op, err)
	}
	if person == "" {
		person = NewPersonID()
		if _, err := tx.Exec(ctx, `INSERT INTO mpi_persons(id) VALUES ($1)`, person); err != nil {
			return Source{}, false, db.Map(op, err)
		}
	}
	src.PatientID, src.PersonID, src.Version = patientID, person, 1
	err = tx.QueryRow(ctx, `INSERT INTO mpi_source_records(member_id, system, value, patient_id, person_id, demographics)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, memberID, system, value, patientID, person, demo).Scan(&src.ID)
	if err != nil {
		return Source{}, false, db.Map(op, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO mpi_link_history(source_id, person_id, action, state) VALUES ($1, $2, 'create', 'AUTO')`, src.ID, person); err != nil {
		return Source{}, false, db.Map(op, err)
	}
	return src, true, nil
}

// SourceByPatient returns the source record of a member's FHIR Patient id, or errs.NotFound.
func (s *Store) SourceByPatient(ctx context.Context, q db.Querier, patientID string) (Source, error) {
	if q == nil {
		q = s.db
	}
	var src Source
	err := q.QueryRow(ctx, `SELECT id, member_id, system, value, patient_id, person_id, version FROM mpi_source_records WHERE patient_id = $1`, patientID).
		Scan(&src.ID, &src.MemberID, &src.System, &src.Value, &src.PatientID, &src.PersonID, &src.Version)
	return src, db.Map("mpi.store.SourceByPatient", err)
}

// Compartment is a member Patient's source record, the Patient ids of every source record
// of its person (its own included; by member, then id, as Sources) and, when asked for, a
// value computed for the person in the same statement (see CompartmentOf).
type Compartment struct {
	Source   Source
	Patients []string
	With     string
}

// CompartmentOf finds a member Patient's source record, by Patient id when mrnSystem is ""
// and else by MRN (mrnSystem, mrnValue), with everything Compartment holds, in one
// statement: with(personExpr), when not nil, is evaluated for the person (records reads the
// person's consent versions along, see consent.VersionsSQL). It is errs.NotFound when no
// source record matches.
func (s *Store) CompartmentOf(ctx context.Context, patientID, mrnSystem, mrnValue string, with func(personExpr string) string) (Compartment, error) {
	col := "''"
	if with != nil {
		col = with("s.person_id")
	}
	where, args := "s.patient_id = $1", []any{patientID}
	if mrnSystem != "" {
		where, args = "s.system = $1 AND s.value = $2", []any{mrnSystem, mrnValue}
	}
	var c Compartment
	src := &c.Source
	err := s.db.QueryRow(ctx, `SELECT s.id, s.member_id, s.system, s.value, s.patient_id, s.person_id, s.version,
		ARRAY(SELECT o.patient_id FROM mpi_source_records o WHERE o.person_id = s.person_id ORDER BY o.member_id, o.id), `+col+`
		FROM mpi_source_records s WHERE `+where, args...).
		Scan(&src.ID, &src.MemberID, &src.System, &src.Value, &src.PatientID, &src.PersonID, &src.Version, &c.Patients, &c.With)
	return c, db.Map("mpi.store.CompartmentOf", err)
}

// SourcesOfMember returns member's source records whose identifier value is value, in any
// of the member's identifier systems, by id (a member rarely has two).
func (s *Store) SourcesOfMember(ctx context.Context, member, value string) ([]Source, error) {
	const op = "mpi.store.SourcesOfMember"
	rows, err := s.db.Query(ctx, `SELECT id, member_id, system, value, patient_id, person_id, version FROM mpi_source_records
		WHERE member_id = $1 AND value = $2 ORDER BY id LIMIT 10`, member, value)
	if err != nil {
		return nil, db.Map(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Source, error) {
		var src Source
		return src, r.Scan(&src.ID, &src.MemberID, &src.System, &src.Value, &src.PatientID, &src.PersonID, &src.Version)
	})
	return out, db.Map(op, err)
}

// PersonOfPatient is a fhir/store.CompartmentLookup: the SQL subquery giving the person ID
// (text) that the member Patient patientExpr is linked to, NULL when it has no source record.
// It reads the same row SourceByPatient does.
func PersonOfPatient(patientExpr string) string {
	return `(SELECT person_id::text FROM mpi_source_records WHERE mpi_source_records.patient_id = ` + patientExpr + `)`
}

// SourceByIdentifier returns the source record with MRN (system, value), or errs.NotFound.
func (s *Store) SourceByIdentifier(ctx context.Context, q db.Querier, system, value string) (Source, error) {
	if q == nil {
		q = s.db
	}
	var src Source
	err := q.QueryRow(ctx, `SELECT id, member_id, system, value, patient_id, person_id, version FROM mpi_source_records WHERE system = $1 AND value = $2`, system, value).
		Scan(&src.ID, &src.MemberID, &src.System, &src.Value, &src.PatientID, &src.PersonID, &src.Version)
	return src, db.Map("mpi.store.SourceByIdentifier", err)
}

// PersonsOfPatients maps each of the member Patient ids that has a source record to its
// person, in one query; ids without one are missing from the map.
func (s *Store) PersonsOfPatients(ctx context.Context, patientIDs []string) (map[string]PersonID, error) {
	persons, _, err := s.PersonsOfPatientsWith(ctx, patientIDs, nil)
	return persons, err
}

// PersonsOfPatientsWith is PersonsOfPatients that also returns, per Patient id, the text
// of with(personExpr) evaluated for its person in the same statement (records reads the
// persons' consent versions along, see consent.VersionsSQL). with may be nil.
func (s *Store) PersonsOfPatientsWith(ctx context.Context, patientIDs []string, with func(personExpr string) string) (map[string]PersonID, map[string]string, error) {
	const op = "mpi.store.PersonsOfPatients"
	out := make(map[string]PersonID, len(patientIDs))
	extra := map[string]string{}
	if len(patientIDs) == 0 {
		return out, extra, nil
	}
	col := "''"
	if with != nil {
		col = with("person_id")
	}
	rows, err := s.db.Query(ctx, `SELECT patient_id, person_id, `+col+` FROM mpi_source_records WHERE patient_id = ANY($1)`, patientIDs)
	if err != nil {
		return nil, nil, db.Map(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		var pid, x string
		var person PersonID
		if err := rows.Scan(&pid, &person, &x); err != nil {
			return nil, nil, db.Map(op, err)
		}
		out[pid], extra[pid] = person, x
	}
	if err := rows.Err(); err != nil {
		return nil, nil, db.Map(op, err)
	}
	return out, extra, nil
}

// SourcesOf returns the source records linked to each of persons, each person's in the
// order Sources gives (by member, then id), in one query.
func (s *Store) SourcesOf(ctx context.Context, persons []PersonID) (map[PersonID][]Source, error) {
	const op = "mpi.store.SourcesOf"
	out := make(map[PersonID][]Source, len(persons))
	if len(persons) == 0 {
		return out, nil
	}
	ids := make([]string, len(persons))
	for i, p := range persons {
		ids[i] = string(p)
	}
	rows, err := s.db.Query(ctx, `SELECT id, member_id, system, value, patient_id, person_id, version FROM mpi_source_records
		WHERE person_id = ANY($1::uuid[]) ORDER BY person_id, member_id, id`, ids)
	if err != nil {
		return nil, db.Map(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		var src Source
		if err := rows.Scan(&src.ID, &src.MemberID, &src.System, &src.Value, &src.PatientID, &src.PersonID, &src.Version); err != nil {
			return nil, db.Map(op, err)
		}
		out[src.PersonID] = append(out[src.PersonID], src)
	}
	return out, db.Map(op, rows.Err())
}

// Sources returns every source record linked to person, by member.
func (s *Store) Sources(ctx context.Context, person PersonID) ([]Source, error) {
	const op = "mpi.store.Sources"
	rows, err := s.db.Query(ctx, `SELECT id, member_id, system, value, patient_id, person_id, version FROM mpi_source_records WHERE person_id = $1 ORDER BY member_id, id`, person)
	if err != nil {
		return nil, db.Map(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Source, error) {
		var src Source
		return src, r.Scan(&src.ID, &src.MemberID, &src.System, &src.Value, &src.PatientID, &src.PersonID, &src.Version)
	})
	return out, db.Map(op, err)
}

// Enrol links a portal login (issuer, subject) to person. by names who verified it (an
// officer, or an enrolment code). Re-enrolling the same login to another person is
// errs.Conflict.
func (s *Store) Enrol(ctx context.Context, issuer, subject string, person PersonID, by string) error {
	const op = "mpi.store.Enrol"
	tag, err := s.db.Exec(ctx, `INSERT INTO mpi_logins(issuer, subject, person_id, enrolled_by) VALUES ($1, $2, $3, $4)
		ON CONFLICT (issuer, subject) DO UPDATE SET enrolled_by = mpi_logins.enrolled_by WHERE mpi_logins.person_id = EXCLUDED.person_id`,
		issuer, subject, person, by)
	if err != nil {
		return db.Map(op, err)
	}
	if tag.RowsAffected() == 0 {
		return errs.E(op, errs.Conflict, "login already enrolled to another person")
	}
	return nil
}

// PersonForLogin returns the person a portal login was enrolled to, or errs.NotFound. It
// never links by name, email or birth date.
func (s *Store) PersonForLogin(ctx context.Context, issuer, subject string) (PersonID, error) {
	var p PersonID
	err := s.db.QueryRow(ctx, `SELECT person_id FROM mpi_logins WHERE issuer = $1 AND subject = $2`, issuer, subject).Scan(&p)
	return p, db.Map("mpi.store.PersonForLogin", err)
}
