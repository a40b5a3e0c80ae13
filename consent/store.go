package consent

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// Store keeps directives in PostgreSQL (tables consent_*, migration 0020), versioned:
// every Save inserts a new version and closes the previous one, so LoadAt can answer as
// of any past time. Its methods take the caller's db.Querier so a save commits with its
// audit row; Save must run inside a transaction (db.InTx). Any database failure comes
// back as errs.Unavailable (or the code db.Map gives it): callers must then deny with
// 503, never permit.
type Store struct {
	// loc reads dates without a time in stored resources; FormatConsent writes only UTC
	// dates, so UTC reads them back exactly.
	loc *time.Location
}

// NewStore returns a Store.
func NewStore() *Store { return &Store{loc: time.UTC} }

// Versions are the counters a cached decision must be keyed by: the person's consent
// version and the regional policy version. Both start at 0 (nothing saved yet).
type Versions struct {
	Person int64
	Policy int64
}

// Save stores d as a new version in the caller's transaction tx and returns it with its
// version set, and the counters after the save. d.Version is the version the caller
// means to create: 0 means "the next one"; any other value must be exactly one more than
// the current version, else errs.Conflict (a concurrent edit won). Saving a patient's
// directive bumps the consent version of that person and of every person of its merge
// family (see Load); saving a default policy bumps the policy
// version. savedBy is the saving user's or client's ID.
//
// It returns errs.Invalid for a directive that breaks Validate, or whose person does not
// exist, and errs.Conflict when the ID already belongs to another person or kind.
func (s *Store) Save(ctx context.Context, tx db.Querier, d Directive, savedBy string) (Directive, Versions, error) {
	return s.save(ctx, tx, d, savedBy, nil)
}

// SaveFiled is Save for a directive a member's system files through the exchange: the
// member ID filedBy is stored with the version, so FiledBy can tell later which member
// may change it. filedBy must not be empty.
func (s *Store) SaveFiled(ctx context.Context, tx db.Querier, d Directive, savedBy, filedBy string) (Directive, Versions, error) {
	if filedBy == "" {
		return Directive{}, Versions{}, errs.E("consent.Store.SaveFiled", errs.Invalid, "the filing member is required")
	}
	return s.save(ctx, tx, d, savedBy, &filedBy)
}

// FiledBy returns the member that filed the current version of directive id through the
// exchange, "" for one saved another way (portal, officer, defaults), and errs.NotFound
// for an id never stored.
func (s *Store) FiledBy(ctx context.Context, q db.Querier, id DirectiveID) (string, error) {
	const op = "consent.Store.FiledBy"
	var member *string
	err := q.QueryRow(ctx, `SELECT filed_by_member FROM consent_directives
		WHERE directive_id = $1 ORDER BY version DESC LIMIT 1`, string(id)).Scan(&member)
	if err != nil {
		return "", db.Map(op, err)
	}
	if member == nil {
		return "", nil
	}
	return *member, nil
}

// LockDirective takes a transaction-level advisory lock on directive id in tx, held until
// tx ends. A caller that checks a stored directive (its person, its filer) before Save
// takes it first, so no other save of the id can land between the check and the save.
// Save takes it too; the lock is re-entrant within a transaction.
func (s *Store) LockDirective(ctx context.Context, tx db.Querier, id DirectiveID) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('consent-directive:' || $1, 0))`, string(id))
	return db.Map("consent.Store.LockDirective", err)
}

func (s *Store) save(ctx context.Context, tx db.Querier, d Directive, savedBy string, filedBy *string) (Directive, Versions, error) {
	const op = "consent.Store.Save"
	want := d.Version
	if d.Version == 0 {
		d.Version = 1 // placeholder so Validate passes; replaced below
	}
	if err := d.Validate(); err != nil {
		return Directive{}, Versions{}, errs.E(op, err)
	}
	if savedBy == "" {
		return Directive{}, Versions{}, errs.E(op, errs.Invalid, "saved by whom is required")
	}
	if err := s.LockDirective(ctx, tx, d.ID); err != nil {
		return Directive{}, Versions{}, errs.E(op, err)
	}
	var vs Versions
	var err error
	// Bump the counter first: its row lock serializes every save for this person (or for
	// the default policies), so the version check below cannot race.
	if d.Kind == KindPatient {
		vs.Person, err = bumpPersonVersion(ctx, tx, d.PersonID)
		if err == nil {
			vs.Policy, err = policyVersion(ctx, tx)
		}
	} else {
		vs.Policy, err = bumpPolicyVersion(ctx, tx)
	}
	if err != nil {
		return Directive{}, Versions{}, errs.E(op, err)
	}
	// The transaction time of this version: read after the lock, so versions of one
	// person's (or the policies') directives get increasing times even when a transaction
	// that began earlier commits later (now() is the transaction's start).
	var at time.Time
	if err := tx.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&at); err != nil {
		return Directive{}, Versions{}, db.Map(op, err)
	}
	cur, err := currentVersion(ctx, tx, d)
	if err != nil {
		return Directive{}, Versions{}, errs.E(op, err)
	}
	if want != 0 && want != cur+1 {
		return Directive{}, Versions{}, errs.E(op, errs.Conflict, "directive was changed by someone else")
	}
	d.Version = cur + 1
	res, err := FormatConsent(d)
	if err != nil {
		return Directive{}, Versions{}, errs.E(op, err)
	}
	if cur > 0 {
		if _, err := tx.Exec(ctx, `UPDATE consent_directives SET valid_to = $3
			WHERE directive_id = $1 AND version = $2 AND valid_to IS NULL`, string(d.ID), cur, at); err != nil {
			return Directive{}, Versions{}, db.Map(op, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO consent_directives
		(directive_id, version, person_id, kind, status, title, resource, valid_from, saved_by, filed_by_member)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		string(d.ID), d.Version, personArg(d), d.Kind.String(), string(d.Status), d.Title, res, at, savedBy, filedBy); err != nil {
		return Directive{}, Versions{}, db.Map(op, err)
	}
	return d, vs, nil
}

func personArg(d Directive) any {
	if d.Kind == KindDefault {
		return nil
	}
	return d.PersonID
}

// currentVersion returns the current version of d.ID (0 if none) after checking that
// the stored directive belongs to the same person and kind. It locks the current row.
func currentVersion(ctx context.Context, q db.Querier, d Directive) (int, error) {
	const op = "consent.currentVersion"
	var v int
	var person *string
	var kind string
	err := q.QueryRow(ctx, `SELECT version, person_id::text, kind FROM consent_directives
		WHERE directive_id = $1 ORDER BY version DESC LIMIT 1 FOR UPDATE`, string(d.ID)).Scan(&v, &person, &kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, db.Map(op, err)
	}
	if kind != d.Kind.String() || (person == nil) != (d.Kind == KindDefault) || (person != nil && *person != d.PersonID) {
		return 0, errs.E(op, errs.Conflict, "directive id belongs to another directive")
	}
	return v, nil
}

// bumpPersonVersion bumps the consent version of person and of every other person of its
// merge family (mpi_person_family, migration 0107: what is in force for any of them
// includes person's directives) and returns person's new version. The family is read
// again after the bump until it no longer grows: a merge that committed while the first
// statement waited for a row lock it held is then seen, and the persons it joined are
// bumped too, so a decision cached under their versions meanwhile goes stale when tx
// commits. Rows are locked in person order, as the merge trigger locks them.
func bumpPersonVersion(ctx context.Context, q db.Querier, person string) (int64, error) {
	const op = "consent.bumpPersonVersion"
	var own int64
	done := []string{}
	for range 8 {
		rows, err := q.Query(ctx, `INSERT INTO consent_versions (person_id, version)
			SELECT f.person_id, 1 FROM mpi_person_family($1::uuid) f WHERE f.person_id <> ALL($2::uuid[]) ORDER BY f.person_id
			ON CONFLICT (person_id) DO UPDATE SET version = consent_versions.version + 1, updated_at = now()
			RETURNING person_id::text, version`, person, done)
		if err != nil {
			return 0, db.Map(op, err)
		}
		n := 0
		for rows.Next() {
			var p string
			var v int64
			if err := rows.Scan(&p, &v); err != nil {
				rows.Close()
				return 0, db.Map(op, err)
			}
			if p == person {
				own = v
			}
			done = append(done, p)
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, db.Map(op, err)
		}
		if n == 0 {
			return own, nil
		}
	}
	return 0, errs.E(op, errs.Unavailable, "the person's merge family keeps changing; try again")
}

func bumpPolicyVersion(ctx context.Context, q db.Querier) (int64, error) {
	var v int64
	err := q.QueryRow(ctx, `INSERT INTO consent_policy_version (id, version) VALUES (true, 1)
		ON CONFLICT (id) DO UPDATE SET version = consent_policy_version.version + 1, updated_at = now()
		RETURNING version`).Scan(&v)
	return v, db.Map("consent.bumpPolicyVersion", err)
}

func policyVersion(ctx context.Context, q db.Querier) (int64, error) {
	var v int64
	err := q.QueryRow(ctx, `SELECT version FROM consent_policy_version WHERE id`).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return v, db.Map("consent.policyVersion", err)
}

// Versions returns person's consent version and the policy version, for cache keys.
// A person with nothing saved has version 0. Besides every save in its merge family, every
// merge, unmerge or HL7 merge that changes that family bumps it (migration 0107).
func (s *Store) Versions(ctx context.Context, q db.Querier, person string) (Versions, error) {
	const op = "consent.Store.Versions"
	var vs Versions
	err := q.QueryRow(ctx, `SELECT
		COALESCE((SELECT version FROM consent_versions WHERE person_id = $1), 0),
		COALESCE((SELECT version FROM consent_policy_version WHERE id), 0)`, person).Scan(&vs.Person, &vs.Policy)
	if err != nil {
		return Versions{}, db.Map(op, err)
	}
	return vs, nil
}

// VersionsSQL renders a scalar SQL expression giving, as text "person-version
// policy-version", the versions Versions returns for the person ID (uuid text) that the SQL
// expression personExpr yields. A caller embeds it in the statement that reads the data the
// decision gates, so data and versions come from one snapshot in one round trip;
// ParseVersions reads the text back.
func VersionsSQL(personExpr string) string {
	return `(COALESCE((SELECT cv.version FROM consent_versions cv WHERE cv.person_id = (` + personExpr + `)::uuid), 0) || ' ' ||
		COALESCE((SELECT pv.version FROM consent_policy_version pv WHERE pv.id), 0))`
}

// ParseVersions reads the text VersionsSQL renders.
func ParseVersions(s string) (Versions, error) {
	p, pol, ok := strings.Cut(s, " ")
	if !ok {
		return Versions{}, errs.E("consent.ParseVersions", errs.Internal, "malformed consent versions")
	}
	var v Versions
	var err1, err2 error
	v.Person, err1 = strconv.ParseInt(p, 10, 64)
	v.Policy, err2 = strconv.ParseInt(pol, 10, 64)
	if err1 != nil || err2 != nil {
		return Versions{}, errs.E("consent.ParseVersions", errs.Internal, "malformed consent versions")
	}
	return v, nil
}

// The statements of Load, LoadAt and History. Each reads the merge family into an array
// first (an initplan, evaluated once) and matches person_id = ANY of it, so PostgreSQL
// looks the family's directives and the default policies up by index (a BitmapOr over
// consent_directives_person, rows in table order as before migration 0107). person_id IN (SELECT ... mpi_person_family(...)) OR person_id IS NULL cannot
// become a semi-join under the OR and filtered every current directive of every patient
// (TestStoreLoadUsesIndexes). Each is still one statement: one snapshot, also outside a
// transaction.
const (
	loadSQL = `SELECT resource, title FROM consent_directives
		WHERE (person_id = ANY(ARRAY(SELECT f.person_id FROM mpi_person_family($1::uuid) f)) OR person_id IS NULL)
		AND valid_to IS NULL`
	loadAtSQL = `SELECT resource, title FROM consent_directives
		WHERE (person_id = ANY(ARRAY(SELECT f.person_id FROM mpi_person_family_at($1::uuid, $2) f)) OR person_id IS NULL)
		AND valid_from <= $2 AND (valid_to IS NULL OR valid_to > $2)`
	historySQL = `SELECT resource, title, valid_from, valid_to FROM consent_directives
		WHERE person_id = ANY(ARRAY(SELECT f.person_id FROM mpi_person_family($1::uuid) f)) OR person_id IS NULL
		ORDER BY valid_from, directive_id, version`
)

// Load returns the directives in force now: the current versions of the directives of
// person's merge family (the live person it resolves to and every person retired into
// that one: a merge makes the lost person's directives govern the kept person's records,
// an unmerge gives each person back its own) and the current default policies. Those filed
// for another person of the family come back with AppliesTo set to person, so Decide
// applies them. An empty result is not an error (Decide then denies).
func (s *Store) Load(ctx context.Context, q db.Querier, person string) ([]Directive, error) {
	return s.load(ctx, q, "consent.Store.Load", loadSQL, person)
}

// LoadAt returns the directives that were stored at transaction time t: for person's merge
// family as it was at t (see Load) and for the default policies, the version of each
// directive current at t. Decide(dirs, req) with req.At = t re-evaluates a decision as of
// then.
func (s *Store) LoadAt(ctx context.Context, q db.Querier, person string, t time.Time) ([]Directive, error) {
	return s.load(ctx, q, "consent.Store.LoadAt", loadAtSQL, person, t)
}

// Family returns person's merge family as Load reads it, sorted: person, the live person
// it resolves to and every person retired into that one. A directive of any of them is in
// force for person. An unknown person comes back alone (it has no directives either).
func (s *Store) Family(ctx context.Context, q db.Querier, person string) ([]string, error) {
	var fam []string
	err := q.QueryRow(ctx, `SELECT ARRAY(SELECT f.person_id::text FROM mpi_person_family($1::uuid) f ORDER BY 1)`, person).Scan(&fam)
	if err != nil {
		return nil, db.Map("consent.Store.Family", err)
	}
	return fam, nil
}

// History returns every stored version of the directives of person's current merge family
// (see Load) and of the default policies with their transaction-time validity, oldest
// first, for InForce and audit. It does not say when each family member joined: an as-of
// question across a merge is LoadAt's.
func (s *Store) History(ctx context.Context, q db.Querier, person string) ([]Version, error) {
	const op = "consent.Store.History"
	rows, err := q.Query(ctx, historySQL, person)
	if err != nil {
		return nil, db.Map(op, err)
	}
	defer rows.Close()
	var out []Version
	for rows.Next() {
		var res []byte
		var title string
		var from time.Time
		var to *time.Time
		if err := rows.Scan(&res, &title, &from, &to); err != nil {
			return nil, db.Map(op, err)
		}
		d, err := s.decode(op, res, title)
		if err != nil {
			return nil, err
		}
		appliesTo(&d, person)
		v := Version{Directive: d, ValidFrom: from}
		if to != nil {
			v.ValidTo = *to
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, db.Map(op, err)
	}
	return out, nil
}

// load reads the directives sql selects; args[0] is the person they are loaded for.
func (s *Store) load(ctx context.Context, q db.Querier, op, sql string, args ...any) ([]Directive, error) {
	person, _ := args[0].(string)
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, db.Map(op, err)
	}
	defer rows.Close()
	var out []Directive
	for rows.Next() {
		var res []byte
		var title string
		if err := rows.Scan(&res, &title); err != nil {
			return nil, db.Map(op, err)
		}
		d, err := s.decode(op, res, title)
		if err != nil {
			return nil, err
		}
		appliesTo(&d, person)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, db.Map(op, err)
	}
	return out, nil
}

// appliesTo marks d, loaded for person, as in force for person when it is a patient's
// directive filed for another person of person's merge family.
func appliesTo(d *Directive, person string) {
	if d.Kind == KindPatient && d.PersonID != person {
		d.AppliesTo = person
	}
}

// decode parses a stored resource. A stored directive that no longer parses is an
// internal error, never "no directive": the caller must fail closed.
func (s *Store) decode(op string, res []byte, title string) (Directive, error) {
	d, err := ParseConsent(res, s.loc)
	if err != nil {
		return Directive{}, errs.E(op, errs.Internal, "stored directive does not parse", err)
	}
	d.Title = title
	return d, nil
}

// EnsureDefaults saves each of policies (DefaultPolicies) whose ID has never been stored,
// so a new region starts with its documented defaults, and brings up to date each one
// whose current version savedBy itself saved but which says something else than the
// policy given (a release that changed a default, or a changed PolicyConfig), as a new
// version. A default an officer has edited since, or withdrawn, is kept as it is. It
// returns how many versions it saved.
func (s *Store) EnsureDefaults(ctx context.Context, tx db.Querier, policies []Directive, savedBy string) (int, error) {
	const op = "consent.Store.EnsureDefaults"
	n := 0
	for _, p := range policies {
		var (
			res          []byte
			title, curBy string
		)
		err := tx.QueryRow(ctx, `SELECT resource, title, saved_by FROM consent_directives
			WHERE directive_id = $1 ORDER BY version DESC LIMIT 1`, string(p.ID)).Scan(&res, &title, &curBy)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			p.Version = 0
		case err != nil:
			return n, db.Map(op, err)
		case curBy != savedBy:
			continue
		default:
			cur, err := ParseConsent(res, time.UTC)
			if err != nil {
				return n, errs.E(op, errs.Internal, "stored default policy does not parse", err)
			}
			cur.Title = title
			p.Version = cur.Version
			same, err := sameDirective(cur, p)
			if err != nil {
				return n, errs.E(op, err)
			}
			if same {
				continue
			}
			p.Version = cur.Version + 1
		}
		if _, _, err := s.Save(ctx, tx, p, savedBy); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// sameDirective reports whether a and b say the same, as their stored Consent and title.
func sameDirective(a, b Directive) (bool, error) {
	ra, err := FormatConsent(a)
	if err != nil {
		return false, err
	}
	rb, err := FormatConsent(b)
	if err != nil {
		return false, err
	}
	return a.Title == b.Title && bytes.Equal(ra, rb), nil
}

// Decide loads the directives in force for req.PersonID and decides req. When they
// cannot be loaded it returns the denial UnavailableDecision(req) together with the
// error (errs.Unavailable for a database failure): the caller answers 503 and discloses
// nothing. "No directive on file" is not an error; it is Decide's NoDirective denial.
func (s *Store) Decide(ctx context.Context, q db.Querier, req Request) (Decision, error) {
	dirs, err := s.Load(ctx, q, req.PersonID)
	if err != nil {
		return UnavailableDecision(req), errs.E("consent.Store.Decide", err)
	}
	return Decide(dirs, req), nil
}

// UnavailableDecision is the denial recorded when consent could not be read.
func UnavailableDecision(req Request) Decision {
	return decision(ConsentUnavailable, nil, &req)
}

// UnreadableDecision is the denial recorded for an item whose labels and categories could
// not be read, so that Decide cannot be asked about it.
func UnreadableDecision(req Request) Decision {
	return decision(ItemUnreadable, nil, &req)
}
