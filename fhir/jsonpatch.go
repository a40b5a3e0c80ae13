package fhir

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/concord-hie/concord/internal/errs"
)

// MediaTypeJSONPatch is the media type of a JSON Patch document (RFC 6902), one of the two
// patch formats Concord applies (FHIR R4 http.html#patch; the other is FHIRPath Patch,
// MediaTypeFHIRPathPatch).
const MediaTypeJSONPatch = "application/json-patch+json"

// ErrPatchNotApplied is the cause (errors.Is) of the error ApplyPatch returns when a
// well-formed patch cannot be applied to the document it was given. For a JSON Patch: a
// test operation failed, a path or from location does not exist, an array index is out of
// range, or a parent is not an object or array. For a FHIRPath Patch: a path matches no
// element (but for delete) or more than one, an index is beyond its list, or add names a
// single element that is there already. The patch is fine as a document; the resource's
// state is not what it expects (FHIR answers 422).
var ErrPatchNotApplied = errors.New("fhir: patch cannot be applied")

// MaxPatchOps is the most operations one patch may hold; real patches hold a handful.
// Operations find object members by a linear scan and shift array items, so ApplyPatch
// also bounds the work of the whole patch (patchWorkPerByte).
const MaxPatchOps = 10000

// MaxPatchValues is the most JSON values (objects, arrays and scalars, at any depth) a
// tree of the patch engine may hold: the patch document, the document patched, and that
// document as operations add to it. A value costs about a hundred bytes of memory in the
// tree however short its text (the 0 in [0,0,...] takes two bytes of the body), so bytes
// alone would let a body within the limit, or copies within the size bound, take
// gigabytes; a real resource holds a few thousand values.
const MaxPatchValues = 1 << 20

// patchWorkPerByte is the work ApplyPatch allows a patch per byte of its size bound: one
// unit is a member name compared or an array item moved. Ordinary patches use a tiny
// fraction; the bound stops operations that each walk or shift a large object or array
// (thousands of removes at the front of an array of a hundred thousand items, a test
// comparing two objects of many members) before they hold a CPU for minutes.
const patchWorkPerByte = 8

// Patch is a parsed patch: a JSON Patch document (RFC 6902, ParsePatch) or a FHIRPath
// Patch (a Parameters resource, ParseFHIRPathPatch), its operations applied in order, all
// or nothing, by the same engine (ApplyPatch). A Patch is immutable: ApplyPatch never
// modifies it, so one Patch may be applied again (a retried transaction).
type Patch struct {
	ops  []patchOp    // JSON Patch
	fops []fhirPathOp // FHIRPath Patch
}

// Len is the number of operations in p.
func (p *Patch) Len() int { return len(p.ops) + len(p.fops) }

type patchOp struct {
	op       string   // add, remove, replace, move, copy, test
	path     []string // JSON Pointer reference tokens, unescaped; empty for the whole document
	from     []string // move and copy
	value    *jnode   // add, replace, test
	safePath string   // path as sent when it holds element names and indexes only, for messages; else ""
}

// ParsePatch parses data as a JSON Patch document: a JSON array of operation objects, each
// with "op" (add, remove, replace, move, copy or test), "path" (a JSON Pointer, RFC 6901),
// "value" for add, replace and test, and "from" for move and copy. Members not defined for
// an operation are ignored, as RFC 6902 section 4 requires, but the whole document is read
// under Concord's strict JSON rules: invalid JSON, trailing data, a duplicate member name
// or two that differ only in case (at any depth, values included), and nesting beyond 96
// levels are refused.
//
// A document of more than MaxPatchValues JSON values is errs.TooLarge. Every other
// refusal is an *errs.Error with code errs.Invalid whose message names the operation
// (1-based) and the problem, never a value: not an array, an operation that is not an
// object, an unknown or missing op, a missing path, from or value, a member of the wrong
// JSON type, a malformed pointer (not starting with "/", "~" not followed by 0 or 1), or a
// move whose from is a proper prefix of its path.
func ParsePatch(data []byte) (*Patch, error) {
	const op = "fhir.ParsePatch"
	bad := func(msg string) error { return errs.E(op, errs.Invalid, "JSON Patch: "+msg) }
	d := jdecoder{s: scanner{data: data}}
	if d.s.peek() != kindArray {
		if d.s.peek() == kindInvalid {
			return nil, bad("the body is not JSON")
		}
		return nil, bad("the document must be a JSON array of operations")
	}
	root, err := d.value(0)
	if errors.Is(err, errTooManyValues) {
		return nil, errs.E(op, errs.TooLarge, fmt.Sprintf("JSON Patch: more than %d JSON values", MaxPatchValues))
	}
	if err != nil {
		return nil, bad(err.Error())
	}
	d.s.skipWS()
	if d.s.pos != len(data) {
		return nil, bad("trailing data after the JSON array")
	}
	if len(root.vals) > MaxPatchOps {
		return nil, bad(fmt.Sprintf("more than %d operations", MaxPatchOps))
	}
	p := &Patch{ops: make([]patchOp, 0, len(root.vals))}
	for i, o := range root.vals {
		n := i + 1
		if o.kind != kindObject {
			return nil, bad(fmt.Sprintf("operation %d is not a JSON object", n))
		}
		var po patchOp
		str := func(name string) (string, bool, error) {
			v := o.member(name)
			if v == nil {
				return "", false, nil
			}
			if v.kind != kindString {
				return "", true, bad(fmt.Sprintf("operation %d: %q must be a string", n, name))
			}
			return v.str, true, nil
		}
		name, ok, err := str("op")
		switch {
		case err != nil:
			return nil, err
		case !ok:
			return nil, bad(fmt.Sprintf("operation %d has no \"op\"", n))
		}
		switch name {
		case "add", "remove", "replace", "move", "copy", "test":
			po.op = name
		default:
			return nil, bad(fmt.Sprintf("operation %d: unknown op (want add, remove, replace, move, copy or test)", n))
		}
		path, ok, err := str("path")
		switch {
		case err != nil:
			return nil, err
		case !ok:
			return nil, bad(fmt.Sprintf("operation %d (%s) has no \"path\"", n, po.op))
		}
		if po.path, ok = parsePointer(path); !ok {
			return nil, bad(fmt.Sprintf("operation %d (%s): \"path\" is not a JSON Pointer", n, po.op))
		}
		po.safePath = safePointer(path)
		switch po.op {
		case "move", "copy":
			from, ok, err := str("from")
			switch {
			case err != nil:
				return nil, err
			case !ok:
				return nil, bad(fmt.Sprintf("operation %d (%s) has no \"from\"", n, po.op))
			}
			if po.from, ok = parsePointer(from); !ok {
				return nil, bad(fmt.Sprintf("operation %d (%s): \"from\" is not a JSON Pointer", n, po.op))
			}
			if po.op == "move" && len(po.from) < len(po.path) && hasPrefix(po.path, po.from) {
				return nil, bad(fmt.Sprintf("operation %d (move): a value cannot be moved into one of its own children", n))
			}
		case "add", "replace", "test":
			if po.value = o.member("value"); po.value == nil {
				return nil, bad(fmt.Sprintf("operation %d (%s) has no \"value\"", n, po.op))
			}
		}
		p.ops = append(p.ops, po)
	}
	return p, nil
}

// ApplyPatch applies p to the JSON document doc (valid JSON without duplicate member
// names, such as a stored resource; for a FHIRPath Patch, a resource) and returns the
// patched document, compact, members in their order (a member added to an object goes
// last). doc is not modified.
//
// It returns an *errs.Error: errs.Invalid wrapping ErrPatchNotApplied when an operation
// cannot be applied (see ErrPatchNotApplied; the message names the operation, 1-based, and
// its path: a JSON Pointer when that holds element names and indexes only, a FHIRPath with
// its literals left out, never a value); errs.TooLarge when the result would exceed
// maxBytes (copies can double a document each time), doc or the result would hold more
// than MaxPatchValues JSON values, or applying the patch would take more than
// patchWorkPerByte units of work per byte of maxBytes; and errs.Invalid when the result
// would nest deeper than 96 levels, doc is not valid JSON, or a FHIRPath Patch does not
// fit the resource's definition (its path starts with another resource type or names an
// element the type does not have, a value of the wrong type, an insert or move of an
// element that does not repeat: see ParseFHIRPathPatch). maxBytes 0 bounds neither size
// nor work. Beyond what a FHIRPath Patch needs to find its elements, nothing about the
// resource is checked here: Parse the result.
func ApplyPatch(doc []byte, p *Patch, maxBytes int64) ([]byte, error) {
	return applyPatch("fhir.ApplyPatch", doc, p, maxBytes, nil)
}

// PatchBudget is the work several patches applied one after another share, such as the
// PATCH entries of one Bundle: together they may take what one patch bounded by the same
// size may take alone (ApplyPatch). The zero value, like NewPatchBudget(0), bounds nothing.
// A PatchBudget is a value: a copy is a snapshot to go back to.
type PatchBudget struct {
	left    int64 // the work left
	bounded bool
}

// NewPatchBudget returns the work budget ApplyPatch gives one patch bounded by maxBytes
// (patchWorkPerByte units per byte); maxBytes 0 bounds nothing.
func NewPatchBudget(maxBytes int64) PatchBudget {
	return PatchBudget{left: patchWorkPerByte * max(maxBytes, 0), bounded: maxBytes > 0}
}

// Spent reports whether b has no work left: a patch applied within it would be refused
// at its first unit of work.
func (b *PatchBudget) Spent() bool { return b.bounded && b.left <= 0 }

// ApplyPatchWithin is ApplyPatch whose work, instead of its own bound, is taken from b,
// which it decrements by the work done whether or not the patch applies. A budget spent
// (Spent) or running out on the way is errs.TooLarge, as the bound of ApplyPatch is.
func ApplyPatchWithin(doc []byte, p *Patch, maxBytes int64, b *PatchBudget) ([]byte, error) {
	return applyPatch("fhir.ApplyPatchWithin", doc, p, maxBytes, b)
}

// errWorkSpent is the refusal of a patch whose work budget (ApplyPatchWithin) is spent.
const errWorkSpent = "the patches would take too much work to apply"

func applyPatch(op string, doc []byte, p *Patch, maxBytes int64, budget *PatchBudget) (_ []byte, err error) {
	maxWork := patchWorkPerByte * maxBytes
	if budget != nil {
		if budget.Spent() {
			return nil, errs.E(op, errs.TooLarge, errWorkSpent)
		}
		maxWork = 0
		if budget.bounded {
			maxWork = budget.left
		}
	}
	d := jdecoder{s: scanner{data: doc}}
	root, err := d.value(0)
	if errors.Is(err, errTooManyValues) {
		return nil, errs.E(op, errs.TooLarge, "the resource holds too many JSON values to be patched", err)
	}
	if err != nil {
		return nil, errs.E(op, errs.Invalid, "the document to patch is not valid JSON", err)
	}
	if d.s.skipWS(); d.s.pos != len(doc) {
		return nil, errs.E(op, errs.Invalid, "the document to patch is not valid JSON")
	}
	a := applier{root: root, size: int64(len(doc)), max: maxBytes, values: d.values, maxWork: maxWork}
	if budget != nil {
		// Patches that share a budget (a Bundle's entries) each read a document: that
		// counts too, one unit per JSON value, so many patches of a large resource run
		// out however cheap their operations.
		defer func() { budget.left -= a.work }()
		if err := a.spend(d.values); err != nil {
			return nil, errs.E(op, errs.TooLarge, errWorkSpent)
		}
	}
	for i := range p.ops {
		if err := a.apply(&p.ops[i]); err != nil {
			show := p.ops[i].safePath != "" || len(p.ops[i].path) == 0
			return nil, opError(op, "JSON Patch", i, p.ops[i].op, p.ops[i].safePath, show, err)
		}
	}
	for i := range p.fops {
		if err := a.applyFHIRPath(&p.fops[i]); err != nil {
			return nil, opError(op, "FHIRPath Patch", i, p.fops[i].typ, p.fops[i].path.text, true, err)
		}
	}
	var b bytes.Buffer
	b.Grow(int(min(a.size, 1<<20)))
	a.root.encode(&b)
	if maxBytes > 0 && int64(b.Len()) > maxBytes {
		return nil, errs.E(op, errs.TooLarge, "the patched resource is too large")
	}
	return b.Bytes(), nil
}

// ApplyPatch applies p to r (see the function ApplyPatch) and validates the result with
// Parse. A patch edits a resource, it cannot turn it into another one: a result whose id
// differs from r's (changed or removed) is errs.Invalid with Path naming the id (e.g.
// "Observation.id"), and one that is a valid resource of another type errs.Invalid with
// Path naming r's resourceType ("Observation.resourceType"). A result that is not a valid
// resource is Parse's errs.Invalid, with Parse's message and path; so a patch that removes
// resourceType, or sets it to no resource type, is "missing resourceType" or "unknown
// resourceType" with no path, and one that sets it to a type whose elements the result
// does not have names the first such element (e.g. "Basic.status").
func (r *Resource) ApplyPatch(p *Patch, maxBytes int64) (*Resource, error) {
	return r.applyPatch("fhir.Resource.ApplyPatch", p, maxBytes, nil)
}

// ApplyPatchWithin is Resource.ApplyPatch whose work is taken from b (see the function
// ApplyPatchWithin).
func (r *Resource) ApplyPatchWithin(p *Patch, maxBytes int64, b *PatchBudget) (*Resource, error) {
	return r.applyPatch("fhir.Resource.ApplyPatchWithin", p, maxBytes, b)
}

func (r *Resource) applyPatch(op string, p *Patch, maxBytes int64, b *PatchBudget) (*Resource, error) {
	out, err := applyPatch(op, r.raw, p, maxBytes, b)
	if err != nil {
		return nil, err
	}
	res, err := Parse(out)
	if err != nil {
		return nil, errs.E(op, err)
	}
	if res.ResourceType != r.ResourceType {
		e := errs.E(op, errs.Invalid, "a patch must not change resourceType")
		e.Path = r.ResourceType + ".resourceType"
		return nil, e
	}
	if res.ID != r.ID {
		e := errs.E(op, errs.Invalid, "a patch must not change or remove the id")
		e.Path = r.ResourceType + ".id"
		return nil, e
	}
	return res, nil
}

// patchError is an operation's failure inside the applier; ApplyPatch adds which
// operation failed. unapplied marks ErrPatchNotApplied (code Invalid).
type patchError struct {
	code      errs.Code
	msg       string
	unapplied bool
}

func (e *patchError) Error() string { return e.msg }

func notApplied(msg string) error { return &patchError{code: errs.Invalid, msg: msg, unapplied: true} }

// invalidPatch is an operation's failure that no state of the resource would avoid (a
// FHIRPath Patch that does not fit the resource's definition): errs.Invalid, 400.
func invalidPatch(msg string) error { return &patchError{code: errs.Invalid, msg: msg} }

// opError is the error of ApplyPatch for the failure err of operation i (0-based) of a
// patch of the given format: its message names the operation, its op or type, and path
// (quoted) when show, then the failure.
func opError(op, format string, i int, name, path string, show bool, err error) error {
	var pe *patchError
	if !errors.As(err, &pe) {
		return errs.E(op, err)
	}
	msg := fmt.Sprintf("%s operation %d (%s", format, i+1, name)
	if show {
		msg += " " + strconv.Quote(path)
	}
	msg += "): " + pe.msg
	if pe.unapplied {
		return errs.E(op, errs.Invalid, msg, ErrPatchNotApplied)
	}
	return errs.E(op, pe.code, msg)
}

// parsePointer splits a JSON Pointer (RFC 6901) into its unescaped reference tokens: ""
// is the whole document (no tokens); anything else starts with "/", and "~" must be
// followed by "0" (a "~") or "1" (a "/").
func parsePointer(s string) ([]string, bool) {
	if s == "" {
		return []string{}, true
	}
	if s[0] != '/' {
		return nil, false
	}
	parts := strings.Split(s[1:], "/")
	for i, t := range parts {
		if !strings.Contains(t, "~") {
			continue
		}
		var b strings.Builder
		for j := 0; j < len(t); j++ {
			if t[j] != '~' {
				b.WriteByte(t[j])
				continue
			}
			if j+1 >= len(t) || (t[j+1] != '0' && t[j+1] != '1') {
				return nil, false
			}
			if t[j+1] == '0' {
				b.WriteByte('~')
			} else {
				b.WriteByte('/')
			}
			j++
		}
		parts[i] = b.String()
	}
	return parts, true
}

// safePointer returns the pointer s when it names elements and indexes only (letters,
// digits, "_", "-", "/"), so it may appear in an error message and a log; else "".
func safePointer(s string) string {
	if len(s) > 256 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '/') {
			return ""
		}
	}
	return s
}

// hasPrefix reports whether the tokens of prefix begin path.
func hasPrefix(path, prefix []string) bool {
	if len(prefix) > len(path) {
		return false
	}
	for i := range prefix {
		if path[i] != prefix[i] {
			return false
		}
	}
	return true
}

// jnode is a JSON value as a tree that keeps object member order and scalars' bytes.
type jnode struct {
	kind jsonKind
	raw  []byte   // a scalar's JSON text as read (strings with quotes and escapes)
	str  string   // kindString: the unescaped value
	keys []string // kindObject: member names, unescaped, in order
	vals []*jnode // kindObject: member values (parallel to keys); kindArray: items
}

// member returns the value of the object member name, or nil.
func (n *jnode) member(name string) *jnode {
	for i, k := range n.keys {
		if k == name {
			return n.vals[i]
		}
	}
	return nil
}

// clone returns a deep copy of n (scalar bytes are shared: they are never modified).
func (n *jnode) clone() *jnode {
	c := *n
	if n.keys != nil {
		c.keys = append([]string(nil), n.keys...)
	}
	if n.vals != nil {
		c.vals = make([]*jnode, len(n.vals))
		for i, v := range n.vals {
			c.vals[i] = v.clone()
		}
	}
	return &c
}

// encodedSize is the length of n's compact encoding (member names counted as read).
func (n *jnode) encodedSize() int64 {
	switch n.kind {
	case kindObject:
		s := int64(2)
		for i, v := range n.vals {
			s += int64(len(n.keys[i])) + 4 + v.encodedSize() // "k":v,
		}
		return s
	case kindArray:
		s := int64(2)
		for _, v := range n.vals {
			s += v.encodedSize() + 1
		}
		return s
	}
	return int64(len(n.raw))
}

// count is the number of JSON values in n, n included.
func (n *jnode) count() int {
	c := 1
	for _, v := range n.vals {
		c += v.count()
	}
	return c
}

// depth is the nesting depth of n: 0 for a scalar, 1 for an object or array of scalars.
func (n *jnode) depth() int {
	d := 0
	for _, v := range n.vals {
		d = max(d, v.depth())
	}
	if n.kind == kindObject || n.kind == kindArray {
		d++
	}
	return d
}

func (n *jnode) encode(b *bytes.Buffer) {
	switch n.kind {
	case kindObject:
		b.WriteByte('{')
		for i, v := range n.vals {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(jsonString(n.keys[i]))
			b.WriteByte(':')
			v.encode(b)
		}
		b.WriteByte('}')
	case kindArray:
		b.WriteByte('[')
		for i, v := range n.vals {
			if i > 0 {
				b.WriteByte(',')
			}
			v.encode(b)
		}
		b.WriteByte(']')
	default:
		b.Write(n.raw)
	}
}

// numbersEqual compares two JSON numbers by value (1, 1.0 and 10e-1 are equal) without
// converting them to a float or big number: each is reduced to sign, significant digits
// and a decimal exponent. An exponent too large for an int64 compares by its text.
func numbersEqual(a, b []byte) bool {
	na, oka := normNumber(a)
	nb, okb := normNumber(b)
	if !oka || !okb {
		return bytes.Equal(a, b)
	}
	return na == nb
}

type normalNumber struct {
	neg    bool
	digits string // significant digits, no leading or trailing zeros; "" for zero
	exp    int64  // value = 0.digits... scaled: digits × 10^exp
}

func normNumber(s []byte) (normalNumber, bool) {
	var n normalNumber
	i := 0
	if i < len(s) && s[i] == '-' {
		n.neg = true
		i++
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	intPart := string(s[start:i])
	frac := ""
	if i < len(s) && s[i] == '.' {
		i++
		start = i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		frac = string(s[start:i])
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		e, err := strconv.ParseInt(string(s[i+1:]), 10, 64)
		if err != nil || e > 1<<60 || e < -(1<<60) {
			return n, false
		}
		exp = e
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	exp -= int64(len(frac))
	trimmed := strings.TrimRight(digits, "0")
	exp += int64(len(digits) - len(trimmed))
	n.digits = trimmed
	if n.digits == "" {
		return normalNumber{}, true // zero, whatever its sign and exponent
	}
	n.exp = exp
	return n, true
}

// jdecoder builds jnode trees with the package's strict scanner: RFC 8259 JSON, no
// duplicate member names or names that differ only in case, at most maxDepth levels and
// MaxPatchValues values (errTooManyValues).
type jdecoder struct {
	s      scanner
	values int // the values read so far
}

// errTooManyValues is jdecoder's error for a document of more than MaxPatchValues values.
var errTooManyValues = errors.New("more JSON values than MaxPatchValues")

func (d *jdecoder) value(depth int) (*jnode, error) {
	if depth >= maxDepth {
		return nil, errors.New("JSON nested too deeply")
	}
	if d.values++; d.values > MaxPatchValues {
		return nil, errTooManyValues
	}
	switch kind := d.s.peek(); kind {
	case kindObject:
		d.s.pos++
		n := &jnode{kind: kindObject, keys: []string{}, vals: []*jnode{}}
		if d.s.consume('}') {
			return n, nil
		}
		seen := map[string]string{} // folded name → name as read
		for {
			k, ok := d.s.str()
			if !ok {
				return nil, errors.New("invalid JSON")
			}
			key := string(k)
			fold := strings.ToLower(strings.ToUpper(key))
			if prev, dup := seen[fold]; dup {
				if prev == key {
					return nil, errors.New("duplicate JSON member name")
				}
				return nil, errors.New("JSON member names differ only in case")
			}
			seen[fold] = key
			if !d.s.consume(':') {
				return nil, errors.New("invalid JSON")
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, key)
			n.vals = append(n.vals, v)
			if d.s.consume('}') {
				return n, nil
			}
			if !d.s.consume(',') {
				return nil, errors.New("invalid JSON")
			}
		}
	case kindArray:
		d.s.pos++
		n := &jnode{kind: kindArray, vals: []*jnode{}}
		if d.s.consume(']') {
			return n, nil
		}
		for {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, v)
			if d.s.consume(']') {
				return n, nil
			}
			if !d.s.consume(',') {
				return nil, errors.New("invalid JSON")
			}
		}
	case kindString:
		start := d.s.pos // peek skipped the white space
		v, ok := d.s.str()
		if !ok {
			return nil, errors.New("invalid JSON string")
		}
		return &jnode{kind: kindString, str: string(v), raw: d.s.data[start:d.s.pos]}, nil
	case kindNumber, kindBool, kindNull:
		start := d.s.pos
		if !d.s.skip(1) {
			return nil, errors.New("invalid JSON")
		}
		return &jnode{kind: kind, raw: d.s.data[start:d.s.pos]}, nil
	}
	return nil, errors.New("invalid JSON")
}

// applier applies operations to a tree, keeping an upper bound of its encoded size and
// counting its work.
type applier struct {
	root    *jnode
	size    int64 // at least the encoded size of root: grows with what is added, never shrinks
	max     int64 // the bound on size; 0 for none
	values  int   // at least the JSON values in root, counted like size (MaxPatchValues)
	work    int64 // member names compared and array items moved so far
	maxWork int64 // the bound on work; 0 for none
}

// spend counts n units of work, refusing the patch once they pass the bound.
func (a *applier) spend(n int) error {
	a.work += int64(n)
	if a.maxWork > 0 && a.work > a.maxWork {
		return &patchError{code: errs.TooLarge, msg: "the patch would take too much work to apply"}
	}
	return nil
}

// index returns the position of member key in object n, or -1, counting the names it
// compares.
func (a *applier) index(n *jnode, key string) (int, error) {
	for i, k := range n.keys {
		if k == key {
			return i, a.spend(i + 1)
		}
	}
	return -1, a.spend(len(n.keys))
}

// equal is JSON equality as RFC 6902 section 4.6 defines it for test: same kind; strings
// by their characters; numbers by value; arrays item by item; objects by the same member
// names with equal values, in any order. Its member lookups count as work.
func (a *applier) equal(n, o *jnode) (bool, error) {
	if n.kind != o.kind {
		return false, nil
	}
	switch n.kind {
	case kindString:
		return n.str == o.str, nil
	case kindNumber:
		return numbersEqual(n.raw, o.raw), nil
	case kindArray:
		if len(n.vals) != len(o.vals) {
			return false, nil
		}
		for i := range n.vals {
			if eq, err := a.equal(n.vals[i], o.vals[i]); !eq || err != nil {
				return false, err
			}
		}
		return true, nil
	case kindObject:
		if len(n.keys) != len(o.keys) {
			return false, nil
		}
		for i, k := range n.keys {
			j, err := a.index(o, k)
			if err != nil || j < 0 {
				return false, err
			}
			if eq, err := a.equal(n.vals[i], o.vals[j]); !eq || err != nil {
				return false, err
			}
		}
		return true, nil
	}
	return bytes.Equal(n.raw, o.raw), nil // true, false, null
}

func (a *applier) apply(o *patchOp) error {
	switch o.op {
	case "add":
		return a.add(o.path, o.value.clone())
	case "remove":
		_, err := a.remove(o.path, "path")
		return err
	case "replace":
		return a.replace(o.path, o.value.clone())
	case "move":
		v, err := a.get(o.from, "from location")
		if err != nil {
			return err
		}
		if len(o.from) == len(o.path) && hasPrefix(o.path, o.from) {
			return nil // onto itself: nothing changes
		}
		if _, err := a.remove(o.from, "from location"); err != nil {
			return err
		}
		return a.add(o.path, v)
	case "copy":
		v, err := a.get(o.from, "from location")
		if err != nil {
			return err
		}
		return a.add(o.path, v.clone())
	case "test":
		v, err := a.get(o.path, "path")
		if err != nil {
			return err
		}
		if eq, err := a.equal(v, o.value); err != nil {
			return err
		} else if !eq {
			return notApplied("test failed: the value at the path is not the one given")
		}
		return nil
	}
	return fmt.Errorf("fhir: unknown patch op %q", o.op) // ParsePatch lets none through
}

// get returns the value at path; what names it is "path" or "from location", for the
// message when there is none.
func (a *applier) get(path []string, what string) (*jnode, error) {
	n := a.root
	for _, t := range path {
		switch n.kind {
		case kindObject:
			i, err := a.index(n, t)
			if err != nil {
				return nil, err
			}
			if i < 0 {
				return nil, notApplied("the " + what + " does not exist")
			}
			n = n.vals[i]
		case kindArray:
			i, ok := arrayIndex(t, len(n.vals)-1)
			if !ok {
				return nil, notApplied("the " + what + " does not exist (array index out of range or malformed)")
			}
			n = n.vals[i]
		default:
			return nil, notApplied("the " + what + " does not exist (it passes through a value that is not an object or array)")
		}
	}
	return n, nil
}

// parent returns the object or array that holds the last token of the non-empty path.
func (a *applier) parent(path []string, what string) (*jnode, error) {
	p, err := a.get(path[:len(path)-1], what)
	if err != nil {
		return nil, err
	}
	if p.kind != kindObject && p.kind != kindArray {
		return nil, notApplied("the " + what + "'s parent is not an object or array")
	}
	return p, nil
}

// grow checks that v, put at path, keeps the document within the size, depth and value
// bounds, and counts its size and values.
func (a *applier) grow(path []string, v *jnode) error {
	key := ""
	if len(path) > 0 {
		key = path[len(path)-1]
	}
	return a.growAt(len(path), key, v)
}

// growAt is grow for v put depth JSON levels below the root as the value of the member
// key (an array item: "").
func (a *applier) growAt(depth int, key string, v *jnode) error {
	if depth+v.depth() > maxDepth {
		return &patchError{code: errs.Invalid, msg: "the result would be nested too deeply"}
	}
	a.size += v.encodedSize() + 4 + int64(len(key))
	if a.max > 0 && a.size > a.max {
		return &patchError{code: errs.TooLarge, msg: "the patched resource would be too large"}
	}
	if a.values += v.count(); a.values > MaxPatchValues {
		return &patchError{code: errs.TooLarge, msg: "the patched resource would hold too many JSON values"}
	}
	return nil
}

// add is RFC 6902 add: the whole document for an empty path; an object member, replaced
// when it exists, added last when not; an array item inserted before the index, or
// appended for "-" or an index equal to the length.
func (a *applier) add(path []string, v *jnode) error {
	if err := a.grow(path, v); err != nil {
		return err
	}
	if len(path) == 0 {
		a.root = v
		return nil
	}
	p, err := a.parent(path, "path")
	if err != nil {
		return err
	}
	last := path[len(path)-1]
	if p.kind == kindObject {
		if i, err := a.index(p, last); err != nil {
			return err
		} else if i >= 0 {
			p.vals[i] = v
		} else {
			p.keys = append(p.keys, last)
			p.vals = append(p.vals, v)
		}
		return nil
	}
	i := len(p.vals)
	if last != "-" {
		var ok bool
		if i, ok = arrayIndex(last, len(p.vals)); !ok {
			return notApplied("array index out of range or malformed")
		}
	}
	if err := a.spend(len(p.vals) - i); err != nil { // the items after i move up
		return err
	}
	p.vals = append(p.vals, nil)
	copy(p.vals[i+1:], p.vals[i:])
	p.vals[i] = v
	return nil
}

// replace is RFC 6902 replace: the value at path, which must exist, becomes v (in place:
// an object member keeps its position).
func (a *applier) replace(path []string, v *jnode) error {
	if _, err := a.get(path, "path"); err != nil {
		return err
	}
	if err := a.grow(path, v); err != nil {
		return err
	}
	if len(path) == 0 {
		a.root = v
		return nil
	}
	p, err := a.parent(path, "path") // exists (get found its child) unless the work runs out
	if err != nil {
		return err
	}
	last := path[len(path)-1]
	if p.kind == kindObject {
		i, err := a.index(p, last)
		if err != nil {
			return err
		}
		p.vals[i] = v
	} else {
		i, _ := arrayIndex(last, len(p.vals)-1)
		p.vals[i] = v
	}
	return nil
}

// remove is RFC 6902 remove: the value at path, which must exist, is taken out (array
// items after it shift down) and returned.
func (a *applier) remove(path []string, what string) (*jnode, error) {
	if len(path) == 0 {
		return nil, notApplied("the whole document cannot be removed")
	}
	v, err := a.get(path, what)
	if err != nil {
		return nil, err
	}
	p, err := a.parent(path, what)
	if err != nil {
		return nil, err
	}
	last := path[len(path)-1]
	if p.kind == kindObject {
		i, err := a.index(p, last)
		if err != nil {
			return nil, err
		}
		if err := a.spend(len(p.keys) - i); err != nil { // the members after i move down
			return nil, err
		}
		p.keys = append(p.keys[:i], p.keys[i+1:]...)
		p.vals = append(p.vals[:i], p.vals[i+1:]...)
	} else {
		i, _ := arrayIndex(last, len(p.vals)-1)
		if err := a.spend(len(p.vals) - i); err != nil { // the items after i move down
			return nil, err
		}
		p.vals = append(p.vals[:i], p.vals[i+1:]...)
	}
	return v, nil
}

// arrayIndex parses an array index token (RFC 6901: "0", or digits without a leading
// zero) no greater than maxIdx. "-" and anything else is not an index.
func arrayIndex(t string, maxIdx int) (int, bool) {
	if t == "" || len(t) > 1 && t[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(t)
	if err != nil || i > maxIdx {
		return 0, false
	}
	return i, true
}
