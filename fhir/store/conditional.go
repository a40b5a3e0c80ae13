package store

import (
	"context"
	"net/url"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// Condition is a conditional-create or conditional-reference criterion that Concord can
// evaluate: one identifier (system|value) of a resource type. Matching is scoped to one
// member's own current resources.
type Condition struct {
	Type   string
	System string
	Value  string
}

// Key is the condition's canonical text, used to serialize writers on it.
func (c Condition) Key() string { return c.Type + "?identifier=" + c.System + "|" + c.Value }

// ParseCondition parses the query part of If-None-Exist, request.ifNoneExist or a
// conditional reference ("identifier=system|value") for resource type typ. Only a single
// identifier with both system and value is supported: anything else is errs.Invalid
// (a broader search could match resources the condition did not mean).
func ParseCondition(typ, query string) (Condition, error) {
	const op = "fhir.store.ParseCondition"
	q, err := url.ParseQuery(strings.TrimPrefix(query, "?"))
	if err != nil {
		return Condition{}, errs.E(op, errs.Invalid, "malformed condition")
	}
	if !Matchable(typ) {
		return Condition{}, errs.E(op, errs.Invalid, "identifier is not a search parameter of this resource type")
	}
	vals := q["identifier"]
	if len(q) != 1 || len(vals) != 1 {
		return Condition{}, errs.E(op, errs.Invalid, "only a single identifier=system|value condition is supported")
	}
	sys, val, ok := strings.Cut(vals[0], "|")
	if !ok || sys == "" || val == "" || strings.Contains(val, ",") {
		return Condition{}, errs.E(op, errs.Invalid, "the identifier condition needs system|value")
	}
	return Condition{Type: typ, System: sys, Value: val}, nil
}

// Matchable reports whether resources of typ are indexed by identifier, so a Condition
// on typ can match anything (a condition that could never match would silently create
// duplicates).
func Matchable(typ string) bool {
	for _, p := range fhir.Params(typ) {
		if p.Name == "identifier" && p.Type == fhir.ParamToken {
			return true
		}
	}
	return false
}

// LockConditions takes transaction-scoped advisory locks on the member's conditions, in a
// fixed order (so two transactions that share conditions cannot deadlock on them). Two
// writers of the same condition are serialized: the second sees the first's committed
// resource when it evaluates the condition after the lock, so a conditional create never
// creates twice. Any string key can be locked the same way (e.g. a Patient's MRN). Keys
// are taken in bytewise sorted order, and a condition's key starts with its resource type,
// so a caller's own key that must precede every condition's starts below 'A'.
func (s *Store) LockConditions(ctx context.Context, tx db.Querier, member string, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	ks := append([]string(nil), keys...)
	sort.Strings(ks)
	b := &pgx.Batch{}
	prev := ""
	for i, k := range ks {
		if i > 0 && k == prev {
			continue
		}
		prev = k
		b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "fhir-cond\x1f"+member+"\x1f"+k)
	}
	return db.Map("fhir.store.LockConditions", tx.SendBatch(ctx, b).Close())
}

// MatchLocked takes c's lock for the rest of tx (LockConditions) and then returns Match:
// the answer holds until tx ends, so a conditional create, update or delete that acts on
// it cannot race another doing the same.
func (s *Store) MatchLocked(ctx context.Context, tx db.Querier, member string, c Condition) ([]string, error) {
	if err := s.LockConditions(ctx, tx, member, []string{c.Key()}); err != nil {
		return nil, err
	}
	return s.Match(ctx, tx, member, c)
}

// Match returns the ids of the member's current resources that satisfy c (at most 2, so
// a caller can tell none, one and many apart).
func (s *Store) Match(ctx context.Context, q db.Querier, member string, c Condition) ([]string, error) {
	const op = "fhir.store.Match"
	rows, err := q.Query(ctx, `SELECT r.id FROM fhir_idx_token t JOIN fhir_resources r ON r.type = t.type AND r.id = t.id
		WHERE t.type = $1 AND t.param = 'identifier' AND t.code = $3 AND t.system = $2 AND r.member_id = $4 AND NOT r.deleted
		ORDER BY r.id LIMIT 2`, c.Type, c.System, c.Value, member)
	if err != nil {
		return nil, db.Map(op, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, db.Map(op, err)
}
