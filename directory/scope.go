package directory

import (
	"strings"

	"github.com/concord-hie/concord/internal/errs"
)

// Scope is one parsed SMART scope: context (system, user, patient), resource type or "*",
// and the permitted interactions (SMART v2 letters c, r, u, d, s).
type Scope struct {
	Context  string
	Resource string
	Ops      string
}

// ParseScope parses a SMART v2 scope such as "system/Observation.rs" or a v1 scope such as
// "system/*.read" (read = rs, write = cud, * = cruds). It returns errs.Invalid otherwise.
func ParseScope(s string) (Scope, error) {
	bad := errs.E("directory.ParseScope", errs.Invalid, "malformed scope")
	ctx, rest, ok := strings.Cut(s, "/")
	if !ok || (ctx != "system" && ctx != "user" && ctx != "patient") {
		return Scope{}, bad
	}
	res, ops, ok := strings.Cut(rest, ".")
	if !ok || res == "" {
		return Scope{}, bad
	}
	for _, r := range res {
		if !(r == '*' && len(res) == 1) && !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') {
			return Scope{}, bad
		}
	}
	if q := strings.IndexByte(ops, '?'); q >= 0 { // v2 granular scopes: not supported yet
		return Scope{}, bad
	}
	switch ops {
	case "read":
		ops = "rs"
	case "write":
		ops = "cud"
	case "*":
		ops = "cruds"
	default:
		last := -1
		for _, c := range ops {
			i := strings.IndexRune("cruds", c)
			if i <= last { // letters in order, each once
				return Scope{}, bad
			}
			last = i
		}
		if ops == "" {
			return Scope{}, bad
		}
	}
	return Scope{Context: ctx, Resource: res, Ops: ops}, nil
}

func (s Scope) String() string { return s.Context + "/" + s.Resource + "." + s.Ops }

// BreakGlassResource is the scope resource name that lets a client declare break-the-glass
// access (system/BreakGlass.c). Grant never derives it from a wildcard registration.
const BreakGlassResource = "BreakGlass"

// BulkExportResource is the scope resource name that lets a client export its rosters'
// records in bulk (system/BulkExport.r, Group/{id}/$export). Like BreakGlassResource, a
// wildcard registration never covers it: population-level export is an explicit decision
// at registration.
const BulkExportResource = "BulkExport"

// explicitOnly reports whether a scope on resource must be registered by name.
func explicitOnly(resource string) bool {
	return resource == BreakGlassResource || resource == BulkExportResource
}

// Scopes is a granted scope set.
type Scopes []Scope

// Allows reports whether the set grants interaction op (one of c, r, u, d, s) on type.
func (ss Scopes) Allows(resourceType string, op byte) bool {
	for _, s := range ss {
		if (s.Resource == "*" || s.Resource == resourceType) && strings.IndexByte(s.Ops, op) >= 0 {
			return true
		}
	}
	return false
}

// Grant intersects the requested scopes with the registered ones: each requested scope is
// kept with the operations that some registered scope of the same context allows. Unknown
// or malformed requested scopes are an error. The break-the-glass and bulk export scopes
// (BreakGlassResource, BulkExportResource) are granted only from a registered scope that
// names them: a wildcard registration never covers them, since emergency access and
// population-level export must be explicit decisions at registration.
func Grant(requested string, registered []string) (Scopes, error) {
	var reg Scopes
	for _, r := range registered {
		s, err := ParseScope(r)
		if err != nil {
			return nil, err
		}
		reg = append(reg, s)
	}
	var out Scopes
	for _, f := range strings.Fields(requested) {
		s, err := ParseScope(f)
		if err != nil {
			return nil, errs.E("directory.Grant", errs.Invalid, "invalid_scope")
		}
		var ops []byte
		for i := 0; i < len(s.Ops); i++ {
			for _, r := range reg {
				covers := r.Resource == s.Resource || (r.Resource == "*" && !explicitOnly(s.Resource))
				if r.Context == s.Context && covers && strings.IndexByte(r.Ops, s.Ops[i]) >= 0 {
					ops = append(ops, s.Ops[i])
					break
				}
			}
		}
		if len(ops) > 0 {
			out = append(out, Scope{Context: s.Context, Resource: s.Resource, Ops: string(ops)})
		}
	}
	if len(out) == 0 {
		return nil, errs.E("directory.Grant", errs.Forbidden, "invalid_scope")
	}
	return out, nil
}

// Purposes of use (v3-ActReason) that Concord knows, per standards.md §4.
var purposes = map[string]bool{"TREAT": true, "ETREAT": true, "HPAYMT": true, "HOPERAT": true, "PUBHLTH": true, "PATRQT": true, "BTG": true}

// KnownPurpose reports whether p is a purpose-of-use code Concord accepts.
func KnownPurpose(p string) bool { return purposes[p] }

// NormalizePurpose accepts a plain code (TREAT) or the system-qualified form
// (urn:oid:2.16.840.1.113883.5.8#TREAT) and returns the plain code, or "" if unknown.
func NormalizePurpose(p string) string {
	if code, ok := strings.CutPrefix(p, "urn:oid:2.16.840.1.113883.5.8#"); ok {
		p = code
	} else if code, ok := strings.CutPrefix(p, "http://terminology.hl7.org/CodeSystem/v3-ActReason#"); ok {
		p = code
	}
	if purposes[p] {
		return p
	}
	return ""
}
