package store

import (
	"context"
	"encoding/json"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/mpi"
)

// blockCap bounds how many source records one blocking key may contribute as candidates;
// a larger block (a very common name or date) is searched by its refined key instead.
const blockCap = 500

// Matcher runs the MPI engine against the records in PostgreSQL: blocking keys live in
// mpi_block_keys so every replica shares one index.
type Matcher struct {
	store *Store
	model *mpi.Model
	norm  *mpi.Normalizer
	// legacy makes candidates use the query and re-normalization of before the features
	// column, so a benchmark can compare both on one database (set by tests only).
	legacy bool
}

// NewMatcher returns a matcher with the engine's default model and nickname table.
func NewMatcher(s *Store) (*Matcher, error) {
	m, err := mpi.DefaultModel()
	if err != nil {
		return nil, errs.E("mpi.store.NewMatcher", errs.Internal, err)
	}
	return &Matcher{store: s, model: m, norm: mpi.NewNormalizer(mpi.DefaultNicknames())}, nil
}

// Model returns the version string of the matching model.
func (m *Matcher) Model() string { return m.model.Version }

// Record normalizes a FHIR Patient (JSON) into a prepared engine record.
func (m *Matcher) Record(patient []byte) (mpi.Record, error) {
	in, err := mpi.PatientInput(patient)
	if err != nil {
		return mpi.Record{}, errs.E("mpi.store.Matcher.Record", errs.Invalid, "the Patient cannot be matched", err)
	}
	r := m.norm.Normalize(in)
	m.model.Prepare(&r)
	return r, nil
}

// Match decides which person a new member patient joins. It fetches candidates through
// the blocking keys (capped per key), groups them by person and applies the engine's
// clustering rule. MANUAL cannot-link decisions are honoured because a record in review
// keeps its own person until a steward decides; a re-match of a stored source passes its
// CannotLink persons as exclude, and those persons are never candidates.
func (m *Matcher) Match(ctx context.Context, q db.Querier, r *mpi.Record, exclude ...PersonID) (mpi.Assignment, error) {
	byPerson, err := m.candidates(ctx, q, r)
	if err != nil {
		return mpi.Assignment{}, err
	}
	for _, p := range exclude {
		delete(byPerson, string(p))
	}
	persons := make([]string, 0, len(byPerson))
	for p := range byPerson {
		persons = append(persons, p)
	}
	sort.Strings(persons) // deterministic
	cands := make([]mpi.Candidate, len(persons))
	for i, p := range persons {
		cands[i] = mpi.Candidate{Person: p, Records: byPerson[p]}
	}
	return m.model.Assign(r, cands), nil
}

// candidates fetches the records that share a blocking key with r (small blocks by their
// coarse key, blocks over the cap by their refined key), grouped by person.
func (m *Matcher) candidates(ctx context.Context, q db.Querier, r *mpi.Record) (map[string][]*mpi.Record, error) {
	return m.candidatesOf(ctx, q, r, nil)
}

// candidatesOf is candidates that also records, in patients when it is not nil, the
// member Patient id of each record it returns (by record).
func (m *Matcher) candidatesOf(ctx context.Context, q db.Querier, r *mpi.Record, patients map[*mpi.Record]string) (map[string][]*mpi.Record, error) {
	const op = "mpi.store.Matcher.Match"
	keys := mpi.BlockKeys(r)
	if len(keys) == 0 {
		return nil, nil
	}
	coarse := make([]int64, len(keys))
	fine := make([]int64, len(keys))
	for i, k := range keys {
		coarse[i], fine[i] = int64(k.Hash), int64(k.Fine)
	}
	if m.legacy {
		return m.legacyCandidates(ctx, q, coarse, fine)
	}
	// The engine's rule (mpi.Index.Block), per key: its block when that holds at most
	// blockCap records, else its refined block when the key has one (Fine ≠ 0) within the
	// cap, else nothing: too common to be informative. Blocks are counted only up to the
	// cap + 1 (a common DOB or surname holds far more, and the exact size decides nothing).
	// Both reads are index-only (0073); "fine <> 0" lets them use the partial fine index.
	byPerson := map[string][]*mpi.Record{}
	rows, err := q.Query(ctx, `
		WITH k AS (
			SELECT h, f, (SELECT count(*) FROM (SELECT 1 FROM mpi_block_keys b WHERE b.hash = t.h LIMIT $3 + 1) x) AS n
			FROM unnest($1::bigint[], $2::bigint[]) AS t(h, f)
		), refined AS (
			SELECT f FROM k WHERE n > $3 AND f <> 0
				AND (SELECT count(*) FROM (SELECT 1 FROM mpi_block_keys b WHERE b.fine = k.f AND b.fine <> 0 LIMIT $3 + 1) x) <= $3
		), hits AS (
			SELECT b.source_id FROM mpi_block_keys b WHERE b.hash IN (SELECT h FROM k WHERE n <= $3)
			UNION
			SELECT b.source_id FROM mpi_block_keys b WHERE b.fine IN (SELECT f FROM refined) AND b.fine <> 0
		)
		SELECT s.person_id, s.patient_id, s.features,
			CASE WHEN s.features IS NULL OR length(s.features) = 0 OR get_byte(s.features, 0) <> $4 THEN s.demographics END
		FROM mpi_source_records s
		WHERE s.id IN (SELECT source_id FROM hits LIMIT 5000)`, coarse, fine, blockCap, featuresVersion)
	if err != nil {
		return nil, db.Map(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		var person, patient string
		var features, demo []byte
		if err := rows.Scan(&person, &patient, &features, &demo); err != nil {
			return nil, db.Map(op, err)
		}
		rec, ok := m.storedRecord(features, demo)
		if !ok {
			continue // a stored record the engine cannot read takes no part in matching
		}
		if patients != nil {
			patients[rec] = patient
		}
		byPerson[person] = append(byPerson[person], rec)
	}
	if err := rows.Err(); err != nil {
		return nil, db.Map(op, err)
	}
	return byPerson, nil
}

// storedRecord is a source record as the engine compares it, from its stored features, or
// from its demographics when it has no features or features of another version (then
// demo must be set). ok is false for a record the engine cannot read.
func (m *Matcher) storedRecord(features, demo []byte) (*mpi.Record, bool) {
	rec := new(mpi.Record)
	if decodeFeatures(features, rec) == nil {
		m.model.Prepare(rec)
		return rec, true
	}
	r, err := m.Record(demo)
	if err != nil {
		return nil, false
	}
	*rec = r
	return rec, true
}

// legacyCandidates is candidates as it was before the features column: every block's
// size counted in full, every refined key's block added whatever its size — including
// Fine = 0, which every identifier key has, so at scale it fetched up to 5,000 arbitrary
// records — and every candidate parsed and normalized from its demographics. Kept for the
// benchmark's before/after comparison only.
func (m *Matcher) legacyCandidates(ctx context.Context, q db.Querier, coarse, fine []int64) (map[string][]*mpi.Record, error) {
	const op = "mpi.store.Matcher.Match"
	byPerson := map[string][]*mpi.Record{}
	rows, err := q.Query(ctx, `
		WITH sizes AS (
			SELECT hash, count(*) AS n FROM mpi_block_keys WHERE hash = ANY($1) GROUP BY hash
		), hits AS (
			SELECT k.source_id FROM mpi_block_keys k JOIN sizes s ON s.hash = k.hash WHERE s.n <= $3
			UNION
			SELECT k.source_id FROM mpi_block_keys k WHERE k.fine = ANY($2)
		)
		SELECT s.person_id, s.demographics FROM mpi_source_records s
		WHERE s.id IN (SELECT source_id FROM hits LIMIT 5000)`, coarse, fine, blockCap)
	if err != nil {
		return nil, db.Map(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		var person string
		var demo []byte
		if err := rows.Scan(&person, &demo); err != nil {
			return nil, db.Map(op, err)
		}
		rec, err := m.Record(demo)
		if err != nil {
			continue
		}
		byPerson[person] = append(byPerson[person], &rec)
	}
	return byPerson, db.Map(op, rows.Err())
}

// Link is the outcome of linking one member patient.
type Link struct {
	Source     Source
	Created    bool
	Outcome    mpi.Outcome
	Score      float64
	ReviewItem int64 // > 0 when the record went to the review queue
}

// LinkPatient records a member's Patient (MRN system/value, FHIR id, JSON) in tx and links
// it to a person: the same MRN again updates the same source record (its person and its
// link state are kept: a MANUAL decision of Ops is never overridden and an AUTO link is
// re-examined only by a steward or a batch re-link); a new MRN is matched online — auto-linked when the engine
// is certain, otherwise given a new person, with a review item when the engine was
// doubtful. The history row, blocking keys and review item are written in the same tx.
func (m *Matcher) LinkPatient(ctx context.Context, tx db.Querier, memberID, system, value, patientID string, patient []byte) (Link, error) {
	const op = "mpi.store.Matcher.LinkPatient"
	rec, recErr := m.Record(patient)
	existing, err := m.store.SourceByIdentifier(ctx, tx, system, value)
	switch {
	case err == nil:
		src, _, err := m.store.Upsert(ctx, tx, memberID, system, value, patientID, json.RawMessage(patient), "")
		if err != nil {
			return Link{}, err
		}
		if recErr == nil {
			if err := m.writeKeys(ctx, tx, src.ID, &rec); err != nil {
				return Link{}, err
			}
		}
		_ = existing
		return Link{Source: src, Outcome: mpi.AutoLink}, nil
	case errs.CodeOf(err) != errs.NotFound:
		return Link{}, err
	}
	var a mpi.Assignment
	if recErr == nil {
		if a, err = m.Match(ctx, tx, &rec); err != nil {
			return Link{}, err
		}
	}
	var person PersonID
	if a.Outcome == mpi.AutoLink {
		// A steward's merge may have retired the person since the candidates were read:
		// lock it against a concurrent merge and follow its redirect (livePerson, ops.go).
		if person, err = livePerson(ctx, tx, PersonID(a.Person)); err != nil {
			return Link{}, err
		}
	}
	ev, _ := json.Marshal(a.Evidence)
	if l, ok, err := m.create(ctx, tx, memberID, system, value, patientID, patient, person, a, ev, recErr, &rec); err != nil || ok {
		return l, err
	}
	// The MRN was stored meanwhile: the same steps as before create, one statement each.
	src, created, err := m.store.Upsert(ctx, tx, memberID, system, value, patientID, json.RawMessage(patient), person)
	if err != nil {
		return Link{}, err
	}
	if src.PatientID != patientID {
		// Another Patient of the member holds the MRN: linking this one would leave it
		// outside the MPI. Intake serialises on the MRN, so only a caller without that lock
		// gets here.
		return Link{}, errs.E(op, errs.Conflict, "the identifier names another of the member's Patients")
	}
	if _, err := tx.Exec(ctx, `UPDATE mpi_source_records SET link_score = $2, link_rule = $3, model = $4 WHERE id = $1`,
		src.ID, a.Score, a.Outcome.String(), m.model.Version); err != nil {
		return Link{}, db.Map(op, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE mpi_link_history SET action = CASE WHEN $2 THEN 'link' ELSE 'create' END, score = $3, evidence = $4, model = $5
		WHERE id = (SELECT max(id) FROM mpi_link_history WHERE source_id = $1)`, src.ID, a.Outcome == mpi.AutoLink, a.Score, ev, m.model.Version); err != nil {
		return Link{}, db.Map(op, err)
	}
	l := Link{Source: src, Created: created, Outcome: a.Outcome, Score: a.Score}
	if a.Outcome == mpi.Review && a.Person != "" {
		kind := "review"
		if a.PossibleDuplicate {
			kind = "possible-duplicate"
		}
		var runner *string
		if a.RunnerUp != "" {
			runner = &a.RunnerUp
		}
		err := tx.QueryRow(ctx, `INSERT INTO mpi_review_items(source_id, candidate, runner_up, kind, score, evidence, guards, model)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
			src.ID, a.Person, runner, kind, a.Score, ev, a.Guards.String(), m.model.Version).Scan(&l.ReviewItem)
		if err != nil {
			return Link{}, db.Map(op, err)
		}
	}
	if recErr == nil {
		if err := m.writeKeys(ctx, tx, src.ID, &rec); err != nil {
			return Link{}, err
		}
	}
	return l, nil
}

// create stores a new member patient with the outcome a in one statement (one round trip
// instead of eight): the source with its score, rule, model and features, a new person
// unless person is given (an auto-link), the history row, the review item when a is a
// review with a candidate, and the blocking keys. The rows are those Upsert followed by
// LinkPatient's updates would write. ok is false, with nothing written, when the MRN was
// stored since the caller looked (the caller then takes the update path).
func (m *Matcher) create(ctx context.Context, tx db.Querier, memberID, system, value, patientID string, patient []byte,
	person PersonID, a mpi.Assignment, ev []byte, recErr error, rec *mpi.Record) (Link, bool, error) {
	const op = "mpi.store.Matcher.LinkPatient"
	demo, err := json.Marshal(json.RawMessage(patient)) // as Upsert stores it
	if err != nil {
		return Link{}, false, errs.E(op, errs.Internal, err)
	}
	newPerson := person == ""
	if newPerson {
		person = NewPersonID()
	}
	var features []byte
	hashes, fines := []int64{}, []int64{}
	if recErr == nil {
		features = encodeFeatures(rec)
		for _, k := range mpi.BlockKeys(rec) {
			hashes, fines = append(hashes, int64(k.Hash)), append(fines, int64(k.Fine))
		}
	}
	action := "create"
	if a.Outcome == mpi.AutoLink {
		action = "link"
	}
	review := a.Outcome == mpi.Review && a.Person != ""
	kind := "review"
	if a.PossibleDuplicate {
		kind = "possible-duplicate"
	}
	var candidate, runner *string
	if review {
		candidate = &a.Person
		if a.RunnerUp != "" {
			runner = &a.RunnerUp
		}
	}
	l := Link{Source: Source{MemberID: memberID, System: system, Value: value, PatientID: patientID, PersonID: person, Version: 1},
		Created: true, Outcome: a.Outcome, Score: a.Score}
	// A data-modifying CTE's rows are all inserted before the statement's foreign-key
	// checks run, so the source may name the person inserted beside it.
	err = tx.QueryRow(ctx, `
		WITH s AS (
			INSERT INTO mpi_source_records(member_id, system, value, patient_id, person_id, demographics, features, link_score, link_rule, model)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (system, value) DO NOTHING RETURNING id
		), p AS (
			INSERT INTO mpi_persons(id) SELECT $5 FROM s WHERE $11
		), h AS (
			INSERT INTO mpi_link_history(source_id, person_id, action, state, score, evidence, model)
			SELECT id, $5, $12, 'AUTO', $8, $13, $10 FROM s
		), k AS (
			INSERT INTO mpi_block_keys(hash, fine, source_id) SELECT kh, kf, s.id FROM s, unnest($14::bigint[], $15::bigint[]) AS t(kh, kf)
		), r AS (
			INSERT INTO mpi_review_items(source_id, candidate, runner_up, kind, score, evidence, guards, model)
			SELECT id, $16, $17, $18, $8, $13, $19, $10 FROM s WHERE $16::uuid IS NOT NULL RETURNING id
		)
		SELECT s.id, coalesce((SELECT id FROM r), 0) FROM s`,
		memberID, system, value, patientID, string(person), demo, features, a.Score, a.Outcome.String(), m.model.Version,
		newPerson, action, ev, hashes, fines, candidate, runner, kind, a.Guards.String()).Scan(&l.Source.ID, &l.ReviewItem)
	if err == pgx.ErrNoRows {
		return Link{}, false, nil
	}
	if err != nil {
		return Link{}, false, db.Map(op, err)
	}
	return l, true, nil
}

// writeKeys replaces the blocking keys and the match features of a source with those of r.
func (m *Matcher) writeKeys(ctx context.Context, tx db.Querier, sourceID int64, r *mpi.Record) error {
	keys := mpi.BlockKeys(r)
	hashes := make([]int64, len(keys))
	fines := make([]int64, len(keys))
	for i, k := range keys {
		hashes[i], fines[i] = int64(k.Hash), int64(k.Fine)
	}
	b := &pgx.Batch{}
	b.Queue(`UPDATE mpi_source_records SET features = $2 WHERE id = $1`, sourceID, encodeFeatures(r))
	b.Queue(`DELETE FROM mpi_block_keys WHERE source_id = $1`, sourceID)
	b.Queue(`INSERT INTO mpi_block_keys(hash, fine, source_id) SELECT h, f, $3 FROM unnest($1::bigint[], $2::bigint[]) AS t(h, f)`, hashes, fines, sourceID)
	return db.Map("mpi.store.writeKeys", tx.SendBatch(ctx, b).Close())
}
