package fhir

import (
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/concord-hie/concord/internal/errs"
)

// Search is a parsed, validated FHIR search on one resource type. The server turns it into
// SQL over the rows of Extract; the semantics it must implement are stated on each type.
type Search struct {
	ResourceType string
	// Clauses are ANDed (repeated parameters give several clauses); the Values of one clause
	// are ORed (comma-separated). Clauses are sorted by parameter name, then query order.
	Clauses []Clause
	// Count is the page size: _count, or the default; never above the maximum. Zero means
	// only the total is wanted (as with _summary=count).
	Count int
	// Sort keys in priority order; empty means the server's order (newest _lastUpdated first
	// is recommended).
	Sort []SortKey
	// Include and RevInclude list _include and _revinclude. Included resources are fetched
	// by id and each is authorized on its own; :iterate is not supported.
	Include    []Include
	RevInclude []Include
	Total      TotalMode
	// SummaryCount is set by _summary=count: return the total and no entries.
	SummaryCount bool
	// Elements lists _elements (top-level element names of ResourceType); the server returns
	// those plus the mandatory ones and tags the result SUBSETTED.
	Elements []string
	// Format is _format when given; the exchange checks it like Accept.
	Format string
}

// Clause is one search parameter occurrence.
type Clause struct {
	Param    string
	Type     ParamType
	Modifier Modifier
	// Chain is set for a chained parameter (patient.identifier=...): match resources whose
	// Param reference points at a resource of Chain.TargetType that matches Chain.Param
	// with these Values.
	Chain  *Chain
	Values []Value
}

// Chain describes the second half of a chained parameter.
type Chain struct {
	TargetType string
	Param      string
	ParamType  ParamType
}

// Modifier is a search parameter modifier.
type Modifier uint8

const (
	ModNone Modifier = iota
	// ModExact (string): the value equals IndexValue.Exact, case- and accent-sensitive.
	ModExact
	// ModContains (string): IndexValue.Norm contains the normalized value anywhere.
	ModContains
	// ModMissing: Value.Missing true matches resources with no row for the parameter; false
	// matches resources with at least one.
	ModMissing
	// ModNot (token): matches resources with no row matching the value, including resources
	// with no row at all (FHIR R4 :not semantics).
	ModNot
	// ModOfType (Patient identifier): Value.TypeSystem|TypeCode is the Identifier.type
	// coding and Code the identifier value. Extract does not index identifier types, so the
	// server must check the type on the stored resource.
	ModOfType
)

// TotalMode is the _total parameter.
type TotalMode uint8

const (
	TotalDefault  TotalMode = iota // not given: the server decides
	TotalNone                      // none: omit Bundle.total
	TotalEstimate                  // estimate
	TotalAccurate                  // accurate
)

// Prefix is a date comparison prefix.
type Prefix uint8

// Date prefixes, with the R4 semantics (http://hl7.org/fhir/R4/search.html#prefix and
// #date). The search value covers [pL, pH) (Value.Date.Low/High, its precision's range) and
// an indexed value [tL, tH) (IndexValue.Low/High; a zero Low is -∞, a zero High is +∞).
// A resource matches when any of its rows for the parameter matches:
const (
	PrefixEq Prefix = iota // eq (default): pL <= tL AND tH <= pH (the search range contains the target)
	PrefixNe               // ne: NOT (pL <= tL AND tH <= pH)
	PrefixGt               // gt: tH > pH (the target extends beyond the search range)
	PrefixLt               // lt: tL < pL (the target starts before the search range)
	PrefixGe               // ge: tH > pH OR (pL <= tL AND tH <= pH)
	PrefixLe               // le: tL < pL OR (pL <= tL AND tH <= pH)
	PrefixSa               // sa: tL >= pH (starts after the search range ends)
	PrefixEb               // eb: tH <= pL (ends before the search range starts)
)

var prefixes = map[string]Prefix{"eq": PrefixEq, "ne": PrefixNe, "gt": PrefixGt, "lt": PrefixLt,
	"ge": PrefixGe, "le": PrefixLe, "sa": PrefixSa, "eb": PrefixEb}

// Value is one OR-ed value of a clause. Which fields are set depends on the clause type.
type Value struct {
	// Missing is the :missing value.
	Missing bool

	// Token. SystemMode says how System constrains the row:
	//   AnySystem   "code"        rows with Code = code, whatever the system
	//   NoSystem    "|code"       rows with Code = code and an empty System
	//   ExactSystem "sys|code"    rows with System = sys and Code = code
	//   ExactSystem "sys|" (Code empty): rows with System = sys, any code
	// Codes compare exactly (FHIR leaves case-sensitivity to the code system; Concord is
	// case-sensitive).
	SystemMode SystemMode
	System     string
	Code       string
	// TypeSystem and TypeCode are the identifier type for ModOfType.
	TypeSystem, TypeCode string

	// Reference: rows with RefType = Type (when not empty) and RefID = ID. A bare id gives
	// Type = the parameter's only target type, or "" (any type) when it has several.
	RefType, RefID string

	// Date: the search value and its prefix.
	Prefix Prefix
	Date   DateValue

	// Quantity and number: Number is the value and [NumLow, NumHigh) its implicit range
	// from its significant digits (5.4 → [5.35, 5.45); 100 → [99.5, 100.5); 1e2, one
	// significant digit, → [50, 150)). With Prefix
	// eq a row matches when NumLow <= row.Number < NumHigh; ne is the negation; gt, lt,
	// ge and le compare row.Number with Number (>, <, >=, <=); sa is gt and eb is lt.
	// For a quantity, SystemMode/System/Code constrain the row's unit like a token
	// ("5.4|http://unitsofmeasure.org|mg" that system and code; "5.4||mg" code mg in any
	// system; "5.4" any unit).
	Number, NumLow, NumHigh float64

	// String: Norm is NormalizeString(Raw). Default: row Norm starts with Norm; ModExact:
	// row Exact = Raw; ModContains: row Norm contains Norm.
	Raw, Norm string
}

// SystemMode says how a token's system part constrains a match.
type SystemMode uint8

const (
	AnySystem SystemMode = iota
	NoSystem
	ExactSystem
)

// SortKey is one _sort key. For a date parameter, an ascending sort orders resources by the
// earliest Low of their rows and a descending sort by the latest High (a zero High, an open
// end, sorts as +∞); resources without a row sort last either way.
type SortKey struct {
	Param string
	Desc  bool
}

// Include is one _include or _revinclude: resources of SourceType whose Param references
// point at (include: are pointed at by) the matches. TargetType, if set, restricts the type.
type Include struct {
	SourceType, Param, TargetType string
}

// SearchOptions holds the server's paging limits.
type SearchOptions struct {
	DefaultCount int // used when _count is absent
	MaxCount     int // _count above this is lowered to it
}

// Limits on the size of a search, so one query cannot make unbounded SQL.
const (
	MaxClauses  = 32  // parameter occurrences (AND), excluding _count, _sort, ...
	MaxOrValues = 100 // comma-separated values in one occurrence
	MaxIncludes = 8   // _include plus _revinclude
)

// Default paging limits of ParseSearch.
const (
	DefaultCount    = 20
	DefaultMaxCount = 100
)

// ParseSearch parses q as a search on resourceType with the default limits (DefaultCount
// per page, at most DefaultMaxCount).
func ParseSearch(resourceType string, q url.Values) (Search, error) {
	return SearchOptions{DefaultCount: DefaultCount, MaxCount: DefaultMaxCount}.Parse(resourceType, q)
}

// Parse parses the query q of a search on resourceType. It is strict: it returns
// errs.Invalid (Msg naming the parameter, never a value) for a resourceType that is not an
// R4 type, an unknown parameter or modifier, a modifier the parameter's type does not take,
// more than MaxClauses parameters, MaxOrValues values in one, or MaxIncludes includes,
// a malformed value (date, prefix, token, reference, _count, _sort, _include, _total,
// _summary, _elements), a repeated _count, _total, _summary, _format, _elements or _sort, a chain other than on a reference parameter to a single target
// type, or an empty value.
func (o SearchOptions) Parse(resourceType string, q url.Values) (Search, error) {
	const op = "fhir.ParseSearch"
	bad := func(msg string) (Search, error) { return Search{}, errs.E(op, errs.Invalid, msg) }
	if !isResourceName(resourceType) {
		return bad("unknown resource type")
	}
	s := Search{ResourceType: resourceType, Count: o.DefaultCount}
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		vals := q[name]
		safe := safeName([]byte(strings.NewReplacer(":", "_", ".", "_", "-", "_").Replace(name)))
		switch name {
		case "_count", "_total", "_summary", "_format", "_elements", "_sort":
			if len(vals) > 1 {
				return bad(name + " may be given only once")
			}
		}
		for _, raw := range vals {
			if raw == "" {
				return bad("empty value for search parameter " + safe)
			}
			var err error
			switch name {
			case "_count":
				n, convErr := strconv.Atoi(raw)
				if convErr != nil || n < 0 {
					return bad("_count must be a non-negative integer")
				}
				s.Count = min(n, o.MaxCount)
			case "_sort":
				err = s.parseSort(raw)
			case "_include", "_revinclude":
				err = s.parseInclude(name == "_revinclude", raw)
				if len(s.Include)+len(s.RevInclude) > MaxIncludes {
					return bad("too many _include and _revinclude")
				}
			case "_total":
				switch raw {
				case "none":
					s.Total = TotalNone
				case "estimate":
					s.Total = TotalEstimate
				case "accurate":
					s.Total = TotalAccurate
				default:
					return bad("_total must be none, estimate or accurate")
				}
			case "_summary":
				if raw != "count" {
					return bad("only _summary=count is supported")
				}
				s.SummaryCount = true
			case "_elements":
				err = s.parseElements(raw)
			case "_format":
				s.Format = raw
			default:
				var c Clause
				c, err = parseClause(resourceType, name, raw)
				if err == nil {
					s.Clauses = append(s.Clauses, c)
				}
				if len(s.Clauses) > MaxClauses {
					return bad("too many search parameters")
				}
			}
			if err != nil {
				if e, ok := err.(*errs.Error); ok && e.Msg == "" {
					e.Msg = "invalid search parameter " + safe
				}
				return Search{}, err
			}
		}
	}
	return s, nil
}

func (s *Search) parseSort(raw string) error {
	for _, k := range strings.Split(raw, ",") {
		key := SortKey{Param: k}
		if strings.HasPrefix(k, "-") {
			key = SortKey{Param: k[1:], Desc: true}
		}
		p, ok := param(s.ResourceType, key.Param)
		if !ok || p.Type != ParamDate {
			return errs.E("fhir.ParseSearch", errs.Invalid, "_sort supports only date parameters and _lastUpdated")
		}
		s.Sort = append(s.Sort, key)
	}
	return nil
}

func (s *Search) parseInclude(rev bool, raw string) error {
	bad := errs.E("fhir.ParseSearch", errs.Invalid, "unsupported _include or _revinclude")
	parts := strings.Split(raw, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return bad
	}
	inc := Include{SourceType: parts[0], Param: parts[1]}
	if len(parts) == 3 {
		inc.TargetType = parts[2]
	}
	p, ok := param(inc.SourceType, inc.Param)
	if !ok || p.Type != ParamReference {
		return bad
	}
	if inc.TargetType != "" && (!isResourceName(inc.TargetType) || len(p.Targets) > 0 && !slices.Contains(p.Targets, inc.TargetType)) {
		return bad
	}
	if !rev {
		if inc.SourceType != s.ResourceType {
			return bad
		}
		s.Include = append(s.Include, inc)
		return nil
	}
	// _revinclude: the source parameter must be able to point at the searched type, and a
	// search of reference data includes no clinical record (revIncludable).
	if !canTarget(p, s.ResourceType) || inc.TargetType != "" && inc.TargetType != s.ResourceType {
		return bad
	}
	if !revIncludable(inc.SourceType, p, s.ResourceType) {
		return errs.E("fhir.ParseSearch", errs.Invalid, "unsupported _revinclude "+raw+": a search of "+s.ResourceType+
			" (reference data) includes only "+strings.Join(ReferenceDataTypes(), ", ")+" and Endpoint, never a patient's records")
	}
	s.RevInclude = append(s.RevInclude, inc)
	return nil
}

func (s *Search) parseElements(raw string) error {
	fields := r4Types[s.ResourceType]
	for _, e := range strings.Split(raw, ",") {
		_, ok := fields[e]
		if !ok { // a choice element by its base name (value for valueQuantity)
			for name := range fields {
				if len(name) > len(e) && strings.HasPrefix(name, e) && name[len(e)] >= 'A' && name[len(e)] <= 'Z' {
					ok = true
					break
				}
			}
		}
		if !ok {
			return errs.E("fhir.ParseSearch", errs.Invalid, "_elements names an unknown element")
		}
		s.Elements = append(s.Elements, e)
	}
	return nil
}

// parseClause parses name (with an optional modifier or chain) = raw.
func parseClause(rt, name, raw string) (Clause, error) {
	bad := func(msg string) (Clause, error) { return Clause{}, errs.E("fhir.ParseSearch", errs.Invalid, msg) }
	base, mod, hasMod := strings.Cut(name, ":")
	base, chainParam, chained := strings.Cut(base, ".")
	p, ok := param(rt, base)
	if !ok {
		return bad("unknown search parameter " + safeName([]byte(strings.ReplaceAll(base, "-", "_"))))
	}
	c := Clause{Param: p.Name, Type: p.Type}
	if chained {
		if p.Type != ParamReference || len(p.Targets) != 1 || hasMod {
			return bad("unsupported chained parameter")
		}
		cp, ok := param(p.Targets[0], chainParam)
		if !ok || cp.Type == ParamReference {
			return bad("unsupported chained parameter")
		}
		c.Chain = &Chain{TargetType: p.Targets[0], Param: cp.Name, ParamType: cp.Type}
		p = cp // values are parsed as the chained parameter's type
	}
	if hasMod {
		switch {
		case mod == "missing":
			c.Modifier = ModMissing
		case mod == "exact" && p.Type == ParamString:
			c.Modifier = ModExact
		case mod == "contains" && p.Type == ParamString:
			c.Modifier = ModContains
		case mod == "not" && p.Type == ParamToken:
			c.Modifier = ModNot
		case mod == "of-type" && p.Name == "identifier" && rt == "Patient":
			c.Modifier = ModOfType
		case p.Type == ParamReference && isResourceName(mod) && (len(p.Targets) == 0 || slices.Contains(p.Targets, mod)):
			// subject:Patient=123 — the type modifier, folded into the values below
		default:
			return bad("unsupported modifier")
		}
	}
	vals := splitOr(raw)
	if len(vals) > MaxOrValues {
		return bad("too many values in one search parameter")
	}
	for _, v := range vals {
		if v == "" {
			return bad("empty value in list")
		}
		var val Value
		switch {
		case c.Modifier == ModMissing:
			switch v {
			case "true":
				val.Missing = true
			case "false":
			default:
				return bad(":missing must be true or false")
			}
		case c.Modifier == ModOfType:
			parts := strings.SplitN(v, "|", 3)
			if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
				return bad(":of-type needs system|code|value")
			}
			val.TypeSystem, val.TypeCode, val.Code = parts[0], parts[1], parts[2]
		default:
			var err error
			if val, err = parseValue(p, v); err != nil {
				return Clause{}, err
			}
			if p.Type == ParamReference && hasMod {
				if val.RefType != "" && val.RefType != mod {
					return bad("reference type does not match the modifier")
				}
				val.RefType = mod
			}
		}
		c.Values = append(c.Values, val)
	}
	if c.Modifier == ModMissing && len(c.Values) != 1 {
		return bad(":missing takes one value")
	}
	return c, nil
}

// numberRange parses a JSON-style decimal and returns its implicit range by significant
// digits: half a unit of the last digit either side.
func numberRange(s string) (lo, v, hi float64, ok bool) {
	sc := scanner{data: []byte(s)}
	if _, _, good := sc.number(); !good || sc.pos != len(s) {
		return 0, 0, 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, 0, 0, false
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		exp, _ = strconv.Atoi(s[i+1:])
	}
	frac := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		frac = len(mant) - i - 1
	}
	half := 0.5
	for e := exp - frac; e > 0; e-- {
		half *= 10
	}
	for e := exp - frac; e < 0; e++ {
		half /= 10
	}
	return v - half, v, v + half, true
}

// splitOr splits a value on unescaped commas and unescapes \, \| \$ \\ .
func splitOr(s string) []string {
	var out []string
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s) && strings.IndexByte(`,|$\`, s[i+1]) >= 0:
			if s[i+1] == '|' {
				b.WriteByte('\\') // keep \| escaped for the token splitter
			}
			b.WriteByte(s[i+1])
			i++
		case c == ',':
			out = append(out, b.String())
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	return append(out, b.String())
}

// cutPipe splits a token at the first unescaped '|' and unescapes "\|".
func cutPipe(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			continue
		}
		if s[i] == '|' {
			return unpipe(s[:i]), unpipe(s[i+1:]), true
		}
	}
	return unpipe(s), "", false
}

func unpipe(s string) string { return strings.ReplaceAll(s, `\|`, "|") }

func parseValue(p ParamDef, v string) (Value, error) {
	bad := func(msg string) (Value, error) { return Value{}, errs.E("fhir.ParseSearch", errs.Invalid, msg) }
	var val Value
	switch p.Type {
	case ParamToken:
		sys, code, hasPipe := cutPipe(v)
		switch {
		case !hasPipe:
			val.SystemMode, val.Code = AnySystem, sys
		case sys == "" && code == "":
			return bad("invalid token")
		case sys == "":
			val.SystemMode, val.Code = NoSystem, code
		default:
			val.SystemMode, val.System, val.Code = ExactSystem, sys, code
		}
	case ParamReference:
		if strings.Contains(v, "/") {
			r, err := ParseReference(v)
			if err != nil || r.Kind != RefRelative && r.Kind != RefAbsolute || r.Version != "" {
				return bad("invalid reference value")
			}
			if len(p.Targets) > 0 && !slices.Contains(p.Targets, r.Type) {
				return bad("reference type not allowed for this parameter")
			}
			val.RefType, val.RefID = r.Type, r.ID
		} else {
			if !validID(v) {
				return bad("invalid reference id")
			}
			val.RefID = v
			if len(p.Targets) == 1 {
				val.RefType = p.Targets[0]
			}
		}
	case ParamDate:
		val.Prefix = PrefixEq
		if len(v) >= 2 && v[0] >= 'a' && v[0] <= 'z' {
			pr, ok := prefixes[v[:2]]
			if !ok {
				return bad("unsupported date prefix")
			}
			val.Prefix, v = pr, v[2:]
		}
		// An unencoded '+' of a zone offset arrives as a space after query decoding.
		d, ok := parseDate(strings.Replace(v, " ", "+", 1), kindSearch)
		if !ok {
			return bad("invalid date value")
		}
		val.Date = d
	case ParamQuantity, ParamNumber:
		val.Prefix = PrefixEq
		if len(v) >= 2 && v[0] >= 'a' && v[0] <= 'z' {
			pr, ok := prefixes[v[:2]]
			if !ok {
				return bad("unsupported number prefix")
			}
			val.Prefix, v = pr, v[2:]
		}
		num, unit, hasUnit := strings.Cut(v, "|")
		lo, mid, hi, ok := numberRange(num)
		if !ok {
			return bad("invalid number")
		}
		val.Raw, val.Number, val.NumLow, val.NumHigh = num, mid, lo, hi
		if hasUnit {
			if p.Type == ParamNumber {
				return bad("invalid number")
			}
			sys, code, ok := strings.Cut(unit, "|")
			switch {
			case !ok || code == "":
				return bad("quantity unit must be system|code")
			case sys == "": // "5.4||mg": code or unit mg in any system
				val.SystemMode, val.Code = AnySystem, code
			default:
				val.SystemMode, val.System, val.Code = ExactSystem, sys, code
			}
		}
	case ParamString:
		val.Raw, val.Norm = v, NormalizeString(v)
		if val.Norm == "" {
			return bad("empty string value")
		}
	default:
		val.Raw = v
	}
	return val, nil
}
