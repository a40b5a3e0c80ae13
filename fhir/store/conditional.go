package store

import (
	"context"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// Condition is the criterion of a conditional create (If-None-Exist, request.ifNoneExist),
// update, delete or patch, or of a conditional reference: a conjunction of search
// parameters of one resource type, with the search API's semantics for each (fhir.Search,
// Store.Search). Matching is scoped to one member's own current resources.
//
// A condition of exactly one identifier=system|value is kept in System and Value (the
// identifier form, which Match answers from the identifier index directly, and which a
// caller may build as a literal); ParseCondition keeps any other in parsed form.
type Condition struct {
	Type   string
	System string
	Value  string
	// clauses and key are set for a condition that is not of the identifier form: its
	// clauses as fhir.ParseSearch parsed them, deduplicated, and its canonical text.
	clauses []fhir.Clause
	key     string
}

// Key is the condition's canonical text, used to serialize writers on it: the type, '?',
// then the parameters sorted and deduplicated, each with its values as the parser
// understood them (sorted and deduplicated; strings normalized, dates as their UTC range,
// a bare reference id with the type it implies; ',', '|', '&' and '\' in values escaped
// with '\'), so two spellings of the same condition have the same key. The identifier form's
// key is "Type?identifier=system|value", unescaped (its key before conditions took other
// parameters); for such a value the canonical text of the same condition is the same.
//
// Equal keys mean the same condition; the converse is all that serialization needs.
// Different conditions have different keys even when they match the same resource
// (identifier=a|1 and identifier=a|1&status=final), so writers of two different
// conditions are not serialized against each other: each can find no match and create.
// Only writers that send the same condition are kept from creating twice.
func (c Condition) Key() string {
	if c.key != "" {
		return c.key
	}
	return c.Type + "?identifier=" + c.System + "|" + c.Value
}

// resultParams shape a search's answer rather than select resources: a condition must not
// contain them.
var resultParams = map[string]bool{"_count": true, "_sort": true, "_include": true, "_revinclude": true, "_summary": true,
	"_elements": true, "_total": true, "_format": true, "_offset": true, "_cursor": true}

// ParseCondition parses the query part of If-None-Exist, request.ifNoneExist, a
// conditional update, delete or patch URL, or a conditional reference, for resource type
// typ: search parameters declared for typ (fhir.Params), ANDed, parsed as fhir.ParseSearch
// parses them. It returns errs.Invalid, with a message naming the parameter, for a
// condition with no parameter, a result parameter (_count, _sort, _include, _revinclude,
// _summary, _elements, _total, _format, _offset, _cursor), an unknown parameter, an empty
// or malformed value, a chained parameter, a modifier (:missing, :not, :exact, :contains,
// :of-type: a condition names what it means, and the index answers :exact only
// approximately; a reference's type modifier, subject:Patient=, is accepted), a parameter
// the index cannot answer (Store.Search's rule: quantities and numbers), or more than
// fhir.MaxClauses parameters.
func ParseCondition(typ, query string) (Condition, error) {
	const op = "fhir.store.ParseCondition"
	bad := func(msg string) (Condition, error) { return Condition{}, errs.E(op, errs.Invalid, msg) }
	q, err := url.ParseQuery(strings.TrimPrefix(query, "?"))
	if err != nil {
		return bad("malformed condition")
	}
	if !fhir.IsResourceType(typ) {
		return bad("unknown resource type")
	}
	if len(q) == 0 {
		return bad("a condition needs at least one search parameter")
	}
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names) // fhir.ParseSearch's clause order
	var clauses []fhir.Clause
	for _, name := range names {
		base, _, _ := strings.Cut(name, ":")
		base, _, _ = strings.Cut(base, ".")
		switch {
		case name == "":
			return bad("a condition parameter has no name")
		case resultParams[base]:
			return bad(base + " is a result parameter and cannot be part of a condition")
		}
		s, err := fhir.ParseSearch(typ, url.Values{name: q[name]})
		if err != nil {
			if !Matchable(typ, base) || slices.Contains(q[name], "") {
				return Condition{}, errs.E(op, err) // ParseSearch names an unknown or empty parameter itself
			}
			return Condition{}, errs.E(op, errs.Invalid, "invalid condition parameter "+base+": "+errs.MessageOf(err), err)
		}
		for _, c := range s.Clauses {
			switch {
			case c.Chain != nil:
				return bad("chained parameter " + c.Param + "." + c.Chain.Param + " is not supported in a condition")
			case c.Modifier != fhir.ModNone:
				return bad("modifier :" + modifierNames[c.Modifier] + " on " + c.Param + " is not supported in a condition")
			}
		}
		clauses = append(clauses, s.Clauses...)
	}
	if len(clauses) > fhir.MaxClauses {
		return bad("too many parameters in a condition")
	}
	// What the index cannot answer (a quantity) is refused here, before anything is
	// written, by the same rule as a search's.
	if _, err := (&builder{}).where(Query{Type: typ, Clauses: clauses}); err != nil {
		return Condition{}, errs.E(op, err)
	}
	clauses, key := canonical(typ, clauses)
	if len(clauses) == 1 && clauses[0].Param == "identifier" && len(clauses[0].Values) == 1 {
		if v := clauses[0].Values[0]; v.SystemMode == fhir.ExactSystem && v.Code != "" {
			return Condition{Type: typ, System: v.System, Value: v.Code}, nil
		}
	}
	return Condition{Type: typ, clauses: clauses, key: key}, nil
}

var modifierNames = map[fhir.Modifier]string{fhir.ModExact: "exact", fhir.ModContains: "contains", fhir.ModMissing: "missing",
	fhir.ModNot: "not", fhir.ModOfType: "of-type"}

var prefixNames = map[fhir.Prefix]string{fhir.PrefixEq: "eq", fhir.PrefixNe: "ne", fhir.PrefixGt: "gt", fhir.PrefixLt: "lt",
	fhir.PrefixGe: "ge", fhir.PrefixLe: "le", fhir.PrefixSa: "sa", fhir.PrefixEb: "eb"}

// canonical returns cs with duplicate values and duplicate clauses dropped, sorted by
// their canonical text, and the condition's key (Condition.Key). cs hold no modifier and no
// chain (ParseCondition refuses them).
func canonical(typ string, cs []fhir.Clause) ([]fhir.Clause, string) {
	type text struct {
		c fhir.Clause
		s string
	}
	var ts []text
	for _, c := range cs {
		type val struct {
			v fhir.Value
			s string
		}
		vs := make([]val, 0, len(c.Values))
		for _, v := range c.Values {
			vs = append(vs, val{v, canonicalValue(c.Type, v)})
		}
		slices.SortFunc(vs, func(a, b val) int { return strings.Compare(a.s, b.s) })
		vs = slices.CompactFunc(vs, func(a, b val) bool { return a.s == b.s })
		c.Values = make([]fhir.Value, len(vs))
		parts := make([]string, len(vs))
		for i, v := range vs {
			c.Values[i], parts[i] = v.v, v.s
		}
		ts = append(ts, text{c, c.Param + "=" + strings.Join(parts, ",")})
	}
	slices.SortFunc(ts, func(a, b text) int { return strings.Compare(a.s, b.s) })
	ts = slices.CompactFunc(ts, func(a, b text) bool { return a.s == b.s })
	out := make([]fhir.Clause, len(ts))
	parts := make([]string, len(ts))
	for i, t := range ts {
		out[i], parts[i] = t.c, t.s
	}
	return out, typ + "?" + strings.Join(parts, "&")
}

// escapeCondition escapes the separators of a canonical condition inside one value.
var escapeCondition = strings.NewReplacer(`\`, `\\`, `,`, `\,`, `|`, `\|`, `&`, `\&`)

// canonicalValue renders v, a value of a parameter of type t, by what the store compares
// (Store.Search): two values with the same text match the same rows.
func canonicalValue(t fhir.ParamType, v fhir.Value) string {
	esc := escapeCondition.Replace
	switch t {
	case fhir.ParamToken:
		switch v.SystemMode {
		case fhir.AnySystem:
			return esc(v.Code)
		case fhir.NoSystem:
			return "|" + esc(v.Code)
		}
		return esc(v.System) + "|" + esc(v.Code)
	case fhir.ParamReference:
		if v.RefType == "" {
			return esc(v.RefID)
		}
		return v.RefType + "/" + esc(v.RefID)
	case fhir.ParamDate:
		return prefixNames[v.Prefix] + instant(v.Date.Low) + "/" + instant(v.Date.High)
	case fhir.ParamString:
		return esc(v.Norm)
	}
	return esc(v.Raw) // uri
}

// instant renders t in UTC to the nanosecond, or "" for an open end.
func instant(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Matchable reports whether a condition on resources of typ over params can be evaluated:
// typ is an R4 resource type and each of params is a search parameter declared for it
// (fhir.Params; _id and _lastUpdated are declared for every type). With no params it
// reports whether typ takes conditions at all. A condition on anything else could never
// match, so a conditional create would silently create duplicates: ParseCondition refuses it.
func Matchable(typ string, params ...string) bool {
	defs := fhir.Params(typ)
	if len(defs) == 0 {
		return false
	}
	for _, p := range params {
		if !slices.ContainsFunc(defs, func(d fhir.ParamDef) bool { return d.Name == p }) {
			return false
		}
	}
	return true
}

// LockConditions takes transaction-scoped advisory locks on the member's conditions, in a
// fixed order (so two transactions that share conditions cannot deadlock on them). Two
// writers of the same condition (the same Condition.Key, whatever the spelling) are
// serialized: the second sees the first's committed resource when it evaluates the
// condition after the lock, so a conditional create never creates twice. Writers of two
// different conditions that match the same resource are not (see Condition.Key). Any
// string key can be locked the same way (e.g. a Patient's MRN). Keys are taken in bytewise
// sorted order, and a condition's key starts with its resource type, so a caller's own key
// that must precede every condition's starts below 'A'.
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
// a caller can tell none, one and many apart; two come in no particular order). It
// returns errs.Invalid for a condition the index cannot answer (ParseCondition refuses those).
func (s *Store) Match(ctx context.Context, q db.Querier, member string, c Condition) ([]string, error) {
	const op = "fhir.store.Match"
	var rows pgx.Rows
	var err error
	if c.clauses == nil {
		rows, err = q.Query(ctx, `SELECT r.id FROM fhir_idx_token t JOIN fhir_resources r ON r.type = t.type AND r.id = t.id
			WHERE t.type = $1 AND t.param = 'identifier' AND t.code = $3 AND t.system = $2 AND r.member_id = $4 AND NOT r.deleted
			ORDER BY r.id LIMIT 2`, c.Type, c.System, c.Value, member)
	} else {
		// The search's own row filter. OFFSET 0 plans the filter for all its rows, so that
		// the LIMIT cannot lead PostgreSQL to walk every resource of the member in the hope
		// of finding two early: a conditional create usually finds none.
		b := &builder{}
		where, werr := b.where(Query{Type: c.Type, Clauses: c.clauses, Members: []string{member}})
		if werr != nil {
			return nil, errs.E(op, werr)
		}
		rows, err = q.Query(ctx, `SELECT id FROM (SELECT r.id FROM fhir_resources r WHERE `+where+` OFFSET 0) m LIMIT 2`, b.args...)
	}
	if err != nil {
		return nil, db.Map(op, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, db.Map(op, err)
}
