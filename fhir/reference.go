package fhir

import (
	"bytes"
	"net/url"
	"strings"

	"github.com/concord-hie/concord/internal/errs"
)

// RefKind says what form a Reference.reference string takes.
type RefKind uint8

const (
	RefRelative    RefKind = iota + 1 // Patient/123 or Patient/123/_history/2
	RefAbsolute                       // https://example.org/fhir/Patient/123[/_history/2]
	RefURN                            // urn:uuid:... or urn:oid:... (resolved inside a Bundle)
	RefConditional                    // Patient?identifier=sys|val (resolved by search in a transaction)
	RefContained                      // #id, a contained resource
)

// Reference is a parsed Reference.reference string.
type Reference struct {
	Kind    RefKind
	Base    string     // RefAbsolute: the service base URL, without a trailing slash
	Type    string     // resource type (RefRelative, RefAbsolute, RefConditional)
	ID      string     // RefRelative, RefAbsolute; RefContained: the contained id
	Version string     // _history version, if any
	URN     string     // RefURN: the whole urn
	Query   url.Values // RefConditional: the search parameters
	// RawQuery is the conditional reference's query as written.
	RawQuery string
}

// String renders the reference in the form it was parsed from (queries re-encoded).
func (r Reference) String() string {
	switch r.Kind {
	case RefURN:
		return r.URN
	case RefContained:
		return "#" + r.ID
	case RefConditional:
		return r.Type + "?" + r.RawQuery
	}
	s := r.Type + "/" + r.ID
	if r.Version != "" {
		s += "/_history/" + r.Version
	}
	if r.Kind == RefAbsolute {
		s = r.Base + "/" + s
	}
	return s
}

// ParseReference parses a Reference.reference value. It returns errs.Invalid for strings
// that are none of the forms of RefKind, name a type that is not an R4 resource type, or have
// a malformed id or version. Absolute URLs must be http or https and end in Type/id.
func ParseReference(s string) (Reference, error) {
	const op = "fhir.ParseReference"
	bad := func(msg string) (Reference, error) { return Reference{}, errs.E(op, errs.Invalid, msg) }
	switch {
	case s == "":
		return bad("empty reference")
	case strings.HasPrefix(s, "#"):
		if !validID(s[1:]) {
			return bad("invalid contained reference")
		}
		return Reference{Kind: RefContained, ID: s[1:]}, nil
	case strings.HasPrefix(s, "urn:uuid:"):
		if !validUUID(s[len("urn:uuid:"):]) {
			return bad("invalid urn:uuid reference")
		}
		return Reference{Kind: RefURN, URN: strings.ToLower(s)}, nil
	case strings.HasPrefix(s, "urn:oid:"):
		if !validOID(s[len("urn:oid:"):]) {
			return bad("invalid urn:oid reference")
		}
		return Reference{Kind: RefURN, URN: s}, nil
	}
	if i := strings.IndexByte(s, '?'); i >= 0 && !strings.Contains(s[:i], "/") {
		if !isResourceName(s[:i]) {
			return bad("unknown resource type in reference")
		}
		q, err := url.ParseQuery(s[i+1:])
		if err != nil || len(q) == 0 {
			return bad("invalid conditional reference")
		}
		return Reference{Kind: RefConditional, Type: s[:i], Query: q, RawQuery: s[i+1:]}, nil
	}
	ref := Reference{Kind: RefRelative}
	rest := s
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return bad("invalid absolute reference")
		}
		ref.Kind = RefAbsolute
		rest = strings.TrimPrefix(u.EscapedPath(), "/")
		segs := strings.Split(rest, "/")
		n := 2
		if len(segs) >= 4 && segs[len(segs)-2] == "_history" {
			n = 4
		}
		if len(segs) < n {
			return bad("invalid absolute reference")
		}
		ref.Base = u.Scheme + "://" + u.Host
		if base := strings.Join(segs[:len(segs)-n], "/"); base != "" {
			ref.Base += "/" + base
		}
		rest = strings.Join(segs[len(segs)-n:], "/")
	}
	segs := strings.Split(rest, "/")
	switch {
	case len(segs) == 2:
	case len(segs) == 4 && segs[2] == "_history":
		if !validID(segs[3]) {
			return bad("invalid version in reference")
		}
		ref.Version = segs[3]
	default:
		return bad("invalid reference")
	}
	if !isResourceName(segs[0]) {
		return bad("unknown resource type in reference")
	}
	if !validID(segs[1]) {
		return bad("invalid id in reference")
	}
	ref.Type, ref.ID = segs[0], segs[1]
	return ref, nil
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range []byte(s) {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

func validOID(s string) bool {
	if s == "" || s[0] < '0' || s[0] > '2' {
		return false
	}
	prevDot := true
	for _, c := range []byte(s) {
		switch {
		case c == '.':
			if prevDot {
				return false
			}
			prevDot = true
		case c >= '0' && c <= '9':
			prevDot = false
		default:
			return false
		}
	}
	return !prevDot
}

// References returns every Reference.reference string in r, including those inside
// contained resources and Bundle entries, in document order.
func References(r *Resource) []string {
	var out []string
	_, _ = RewriteReferences(r, func(ref string) (string, error) {
		out = append(out, ref)
		return ref, nil
	})
	return out
}

// RewriteReferences calls fn on every Reference.reference string in r (the element of type
// Reference; not the uri-typed elements that happen to be named "reference"), and on every
// Attachment.url that is a urn: (urn:uuid, urn:oid — a Bundle entry's fullUrl, as FHIR's
// transaction rules require), including in extensions, contained resources and Bundle
// entries, and returns a resource in which each is replaced by what fn returns. All other bytes are kept. An error from fn stops the walk
// and is returned as is. When nothing changes, r itself is returned.
func RewriteReferences(r *Resource, fn func(ref string) (string, error)) (*Resource, error) {
	w := refWalker{s: scanner{data: r.raw}, fn: fn}
	if err := w.resource(); err != nil {
		return nil, err
	}
	if len(w.edits) == 0 {
		return r, nil
	}
	var b bytes.Buffer
	last := 0
	for _, e := range w.edits {
		b.Write(r.raw[last:e.start])
		b.Write(jsonString(e.value))
		last = e.end
	}
	b.Write(r.raw[last:])
	out, err := Parse(b.Bytes())
	if err != nil {
		return nil, errs.E("fhir.RewriteReferences", err)
	}
	return out, nil
}

type refEdit struct {
	start, end int
	value      string
}

// refWalker walks validated JSON with the R4 types to find Reference.reference values.
type refWalker struct {
	s     scanner
	fn    func(string) (string, error)
	edits []refEdit
}

var errWalk = errs.E("fhir.RewriteReferences", errs.Internal, "resource bytes do not match the R4 definitions")

func (w *refWalker) resource() error {
	w.s.skipWS()
	p := parser{s: w.s}
	rt, ok := p.findResourceType()
	if !ok {
		return errWalk
	}
	return w.object(rt)
}

func (w *refWalker) object(typ string) error {
	fields := r4Types[typ]
	if !w.s.consume('{') {
		return errWalk
	}
	if w.s.consume('}') {
		return nil
	}
	for {
		k, ok := w.s.str()
		if !ok || !w.s.consume(':') {
			return errWalk
		}
		f, known := fields[string(k)]
		switch {
		case typ == "Reference" && string(k) == "reference":
			if err := w.rewrite(func(string) bool { return true }); err != nil {
				return err
			}
		case typ == "Attachment" && string(k) == "url":
			// FHIR transaction rules rewrite a uri/url that names an entry's fullUrl too; an
			// attachment pointing at a Binary of the same Bundle (MHD ITI-65) does this.
			if err := w.rewrite(func(v string) bool { return len(v) >= 4 && strings.EqualFold(v[:4], "urn:") }); err != nil {
				return err
			}
		case known && !isPrimitive(f.Type):
			if err := w.value(f); err != nil {
				return err
			}
		default:
			if !w.s.skip(maxDepth) {
				return errWalk
			}
		}
		if w.s.consume('}') {
			return nil
		}
		if !w.s.consume(',') {
			return errWalk
		}
	}
}

// rewrite reads the string value at the scanner and, when want accepts it, records fn's
// replacement for it.
func (w *refWalker) rewrite(want func(string) bool) error {
	w.s.skipWS()
	start := w.s.pos
	v, ok := w.s.str()
	if !ok {
		return errWalk
	}
	old := string(v)
	if !want(old) {
		return nil
	}
	nv, err := w.fn(old)
	if err != nil {
		return err
	}
	if nv != old {
		w.edits = append(w.edits, refEdit{start, w.s.pos, nv})
	}
	return nil
}

func (w *refWalker) value(f field) error {
	one := func() error {
		if f.Type == "Resource" || isResourceName(f.Type) {
			w.s.skipWS()
			return w.resource()
		}
		return w.object(f.Type)
	}
	if !f.Array {
		return one()
	}
	if !w.s.consume('[') {
		return errWalk
	}
	if w.s.consume(']') {
		return nil
	}
	for {
		if err := one(); err != nil {
			return err
		}
		if w.s.consume(']') {
			return nil
		}
		if !w.s.consume(',') {
			return errWalk
		}
	}
}
