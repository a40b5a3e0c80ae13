// Package fhir is Concord's FHIR R4 (4.0.1) model: strict JSON parsing and validation
// against the R4 element definitions, byte-level edits of server-owned elements,
// references, Bundles, OperationOutcome, and the search parameters Concord supports.
//
// The package is pure: no I/O, no clock, no globals other than generated, read-only
// tables of R4 definitions.
package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/concord-hie/concord/internal/errs"
)

// field is one element of a complex type in the generated R4 table.
type field struct {
	Type   string // primitive, complex type, backbone path, "Resource" or a resource type
	Array  bool   // max cardinality above 1: the JSON value is an array
	Choice string // for a choice variant (valueQuantity), the base name (value); else ""
}

// maxDepth bounds JSON nesting (objects and arrays) so hostile input cannot exhaust the stack.
const maxDepth = 96

// maxResourceDepth bounds resources nested in resources (Bundle in Bundle, contained). A
// resource whose resourceType is not its first member is scanned twice, so this also
// bounds the extra work hostile nesting can cause.
const maxResourceDepth = 6

// Resource is a validated FHIR resource: its JSON exactly as received, plus the facts that
// the server needs without decoding it again. A Resource is immutable; the editing helpers
// return new ones.
type Resource struct {
	ResourceType string
	ID           string // "" when the resource has none (e.g. on create)
	Meta         Meta
	raw          []byte
}

// Meta holds Resource.meta.
type Meta struct {
	VersionID   string   `json:"versionId,omitempty"`
	LastUpdated string   `json:"lastUpdated,omitempty"`
	Source      string   `json:"source,omitempty"`
	Profile     []string `json:"profile,omitempty"`
	Security    []Coding `json:"security,omitempty"`
	Tag         []Coding `json:"tag,omitempty"`
}

// Coding is a FHIR Coding.
type Coding struct {
	System       string `json:"system,omitempty"`
	Version      string `json:"version,omitempty"`
	Code         string `json:"code,omitempty"`
	Display      string `json:"display,omitempty"`
	UserSelected *bool  `json:"userSelected,omitempty"`
}

// Bytes returns the resource's JSON as received (or as last edited by this package).
// The caller must not modify it.
func (r *Resource) Bytes() []byte { return r.raw }

// LogValue keeps resource content (PHI) out of logs: only the type and id are logged.
func (r *Resource) LogValue() slog.Value {
	return slog.GroupValue(slog.String("type", r.ResourceType), slog.String("id", r.ID))
}

// IsResourceType reports whether name is a concrete FHIR R4 resource type.
func IsResourceType(name string) bool {
	_, ok := r4Types[name]
	return ok && isResourceName(name)
}

func isResourceName(name string) bool {
	lo, hi := 0, len(r4Resources)
	for lo < hi {
		m := (lo + hi) / 2
		switch c := strings.Compare(r4Resources[m], name); {
		case c == 0:
			return true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return false
}

// ResourceTypes returns the concrete FHIR R4 resource type names, sorted.
func ResourceTypes() []string { return append([]string(nil), r4Resources[:]...) }

// Parse validates data as one FHIR R4 resource in JSON and returns it. The Resource keeps
// data itself (no copy): the caller must not modify data afterwards.
//
// It returns an *errs.Error with code errs.Invalid, and Path naming the offending element
// (never a value), when data is not exactly one JSON object (invalid JSON, trailing data),
// when any object at any depth has a duplicate member or two members whose names differ only
// in case, when resourceType is missing or not an R4 resource type, when a member is not an
// element of its type (R4 4.0.1 definitions, choice types expanded, "_name" primitive
// extensions allowed), when a value has the wrong JSON type or cardinality (array vs single),
// when an array or object is empty, or when an id, date, dateTime, instant, time or integer
// value is malformed (also code, uri, oid, uuid, base64Binary), when a null in a primitive
// array has no matching "_name" entry, or when resources nest more than 6 deep. Contained
// resources and Bundle entry resources are validated as their own types; a contained resource
// may not contain resources (dom-2) nor carry meta.versionId or meta.lastUpdated (dom-4).
// An element with minimum cardinality 1 must be present (a primitive may be present through
// its "_name" extensions only; a choice element through any variant). Invariants other than
// dom-2 and dom-4, and terminology bindings, are not checked.
func Parse(data []byte) (*Resource, error) {
	p := &parser{s: scanner{data: data}}
	p.push("$")
	if p.s.peek() != kindObject {
		return nil, p.fail("JSON body must be a single object")
	}
	rt, err := p.resource("")
	if err != nil {
		return nil, err
	}
	p.s.skipWS()
	if p.s.pos != len(data) {
		p.path = p.path[:1]
		return nil, p.fail("trailing data after the JSON object")
	}
	r := &Resource{ResourceType: rt, ID: p.topID, raw: data}
	if p.metaEnd > p.metaStart {
		if err := json.Unmarshal(data[p.metaStart:p.metaEnd], &r.Meta); err != nil {
			return nil, errs.E("fhir.Parse", errs.Invalid, "invalid meta", err)
		}
	}
	return r, nil
}

// MustParse is Parse for tests and literals; it panics on error.
func MustParse(data []byte) *Resource {
	r, err := Parse(data)
	if err != nil {
		panic(err)
	}
	return r
}

type parser struct {
	s        scanner
	path     []pathSeg // element path for error reports
	depth    int
	resDepth int // resources being validated, the top-level one included
	// contained is set while validating a contained resource; containedNext tells
	// resource() that the value being read is Resource.contained.
	contained, containedNext bool
	// facts about the top-level resource
	topID              string
	metaStart, metaEnd int
}

// pathSeg is one step of an element path: a literal name, a member name as read (checked by
// safeName only when an error is reported), or an array index (idx >= 0).
type pathSeg struct {
	name string
	raw  []byte
	idx  int
}

func (p *parser) push(name string)   { p.path = append(p.path, pathSeg{name: name, idx: -1}) }
func (p *parser) pushRaw(raw []byte) { p.path = append(p.path, pathSeg{raw: raw, idx: -1}) }
func (p *parser) pushIdx(i int)      { p.path = append(p.path, pathSeg{idx: i}) }
func (p *parser) pop()               { p.path = p.path[:len(p.path)-1] }

func (p *parser) pathString() string {
	var b strings.Builder
	for i, seg := range p.path {
		switch {
		case seg.idx >= 0:
			b.WriteString("[" + strconv.Itoa(seg.idx) + "]")
			continue
		case i == 0 && seg.name == "$":
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		if seg.raw != nil {
			b.WriteString(safeName(seg.raw))
		} else {
			b.WriteString(seg.name)
		}
	}
	return b.String()
}

func (p *parser) fail(msg string) error {
	return &errs.Error{Code: errs.Invalid, Op: "fhir.Parse", Msg: msg, Path: p.pathString(),
		Err: fmt.Errorf("fhir: %s at %s (byte %d)", msg, p.pathString(), p.s.pos)}
}

// safeName returns name for use in a path if it looks like an element name, so that a
// hostile member name (which may carry PHI) never reaches an error message.
func safeName(name []byte) string {
	if len(name) == 0 || len(name) > 64 {
		return "(invalid-name)"
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return "(invalid-name)"
		}
	}
	return string(name)
}

// findResourceType scans the object at the position for its resourceType member without
// consuming it.
func (p *parser) findResourceType() (string, bool) {
	save := p.s.pos
	defer func() { p.s.pos = save }()
	p.s.pos++ // '{'
	if p.s.consume('}') {
		return "", false
	}
	for {
		k, ok := p.s.str()
		if !ok {
			return "", false
		}
		isRT := string(k) == "resourceType"
		if !p.s.consume(':') {
			return "", false
		}
		if isRT {
			v, ok := p.s.str()
			return string(v), ok
		}
		if !p.s.skip(maxDepth) {
			return "", false
		}
		if !p.s.consume(',') {
			return "", false
		}
	}
}

// resource validates a resource object at the position. want is the required type, or "" for
// any resource type.
func (p *parser) resource(want string) (string, error) {
	if p.resDepth >= maxResourceDepth {
		return "", p.fail("resources nested too deeply")
	}
	rt, ok := p.findResourceType()
	if !ok {
		if p.s.skip(maxDepth) {
			return "", p.fail("missing resourceType")
		}
		return "", p.fail("invalid JSON")
	}
	if !isResourceName(rt) {
		return "", p.fail("unknown resourceType")
	}
	if want != "" && rt != want {
		return "", p.fail("resourceType not allowed here")
	}
	p.resDepth++
	outerC, outerN := p.contained, p.containedNext
	p.contained, p.containedNext = outerN, false
	defer func() { p.resDepth--; p.contained, p.containedNext = outerC, outerN }()
	top := len(p.path) == 1
	if top {
		p.path[0].name = rt
	} else {
		p.push("(" + rt + ")")
		defer p.pop()
	}
	return rt, p.object(rt, true, top)
}

// object validates an object of complex type typ at the position.
func (p *parser) object(typ string, isResource, top bool) error {
	fields := r4Types[typ]
	if fields == nil {
		return p.fail("no definition for type")
	}
	if p.depth++; p.depth > maxDepth {
		return p.fail("JSON nested too deeply")
	}
	defer func() { p.depth-- }()
	if !p.s.consume('{') {
		return p.fail("expected a JSON object")
	}
	if p.s.consume('}') {
		return p.fail("empty object")
	}
	var seenBuf [24][]byte
	seen := seenBuf[:0]
	var choiceBuf [4]choiceSeen
	choices := choiceBuf[:0] // choice elements seen: only one variant of each is allowed
	var primBuf [4]primArray
	prims := primBuf[:0] // primitive arrays and their "_name" arrays, to check alignment
	hasExt := false
	for {
		key, ok := p.s.str()
		if !ok {
			return p.fail("invalid JSON")
		}
		if p.s.escaped { // key aliases the scanner's buffer, which the next string reuses
			key = bytes.Clone(key)
		}
		for _, prev := range seen {
			if bytes.Equal(prev, key) {
				p.pushRaw(key)
				return p.fail("duplicate JSON member")
			}
			if bytes.EqualFold(prev, key) {
				p.pushRaw(key)
				return p.fail("JSON member names differ only in case")
			}
		}
		seen = append(seen, key)
		if !p.s.consume(':') {
			return p.fail("invalid JSON")
		}
		p.pushRaw(key)
		variant := key
		if len(variant) > 1 && variant[0] == '_' {
			variant = variant[1:]
		}
		if f, ok := fields[string(variant)]; ok && f.Choice != "" {
			for _, c := range choices {
				if c.base == f.Choice && !bytes.Equal(c.variant, variant) {
					return p.fail("more than one type given for a choice element")
				}
			}
			choices = append(choices, choiceSeen{f.Choice, variant})
		}
		arr, err := p.member(fields, key, isResource, top)
		if err != nil {
			return err
		}
		p.pop()
		if arr.n > 0 {
			arr.name = bytes.TrimPrefix(key, []byte("_"))
			prims = append(prims, arr)
			hasExt = hasExt || arr.ext || len(arr.nulls) > 0
		}
		if p.s.consume('}') {
			if hasExt {
				if err := p.checkAligned(prims); err != nil {
					return err
				}
			}
			return p.checkRequired(typ, fields, seen)
		}
		if !p.s.consume(',') {
			return p.fail("invalid JSON")
		}
	}
}

// checkRequired reports the first element of typ with minimum cardinality 1 that is absent.
// A primitive given only by its "_name" extensions counts as present, and a choice element is
// present when any of its variants is.
func (p *parser) checkRequired(typ string, fields map[string]field, seen [][]byte) error {
	for _, req := range r4Required[typ] {
		found := false
		for _, k := range seen {
			if len(k) > 1 && k[0] == '_' {
				k = k[1:]
			}
			if string(k) == req || fields[string(k)].Choice == req {
				found = true
				break
			}
		}
		if !found {
			if _, ok := fields[req]; ok {
				p.push(req)
			} else {
				p.push(req + "[x]")
			}
			return p.fail("required element missing")
		}
	}
	return nil
}

type choiceSeen struct {
	base    string
	variant []byte
}

// primArray describes an array of a primitive element ("given") or of its extensions
// ("_given"): its length and the indexes that hold null.
type primArray struct {
	name  []byte
	ext   bool
	n     int
	nulls []int
}

// checkAligned enforces the R4 JSON rule for primitive arrays: a null in "name" needs a
// non-null at the same index of "_name", both arrays have the same length, and "_name"
// holds nulls only where "name" has a value.
func (p *parser) checkAligned(prims []primArray) error {
	find := func(name []byte, ext bool) *primArray {
		for i := range prims {
			if bytes.Equal(prims[i].name, name) && prims[i].ext == ext {
				return &prims[i]
			}
		}
		return nil
	}
	for _, a := range prims {
		other := find(a.name, !a.ext)
		if a.ext {
			p.push("_" + string(a.name))
		} else {
			p.pushRaw(a.name)
		}
		switch {
		case other == nil && len(a.nulls) > 0:
			return p.fail("null in a primitive array without a matching value")
		case other != nil && other.n != a.n:
			return p.fail("primitive array and its extensions differ in length")
		case other != nil:
			for _, i := range a.nulls {
				for _, j := range other.nulls {
					if i == j {
						return p.fail("null in a primitive array without a matching value")
					}
				}
			}
		}
		p.pop()
	}
	return nil
}

func (p *parser) member(fields map[string]field, key []byte, isResource, top bool) (primArray, error) {
	if isResource && string(key) == "resourceType" {
		_, ok := p.s.str() // checked by findResourceType
		if !ok {
			return primArray{}, p.fail("invalid JSON")
		}
		return primArray{}, nil
	}
	if len(key) > 1 && key[0] == '_' {
		f, ok := fields[string(key[1:])]
		// Resource.id and Element.id are not FHIR primitives (System.String): no "_id".
		if !ok || !isPrimitive(f.Type) || string(key) == "_id" {
			return primArray{}, p.fail("unknown element")
		}
		arr, err := p.value(field{Type: "Element", Array: f.Array}, true)
		arr.ext = true
		return arr, err
	}
	f, ok := fields[string(key)]
	if !ok {
		return primArray{}, p.fail("unknown element")
	}
	if isResource && p.contained {
		switch string(key) {
		case "contained": // dom-2
			return primArray{}, p.fail("a contained resource must not contain resources")
		case "meta": // dom-4
			p.s.skipWS()
			start := p.s.pos
			arr, err := p.value(f, false)
			if err != nil {
				return arr, err
			}
			ms, _ := members(p.s.data[start:p.s.pos])
			for _, m := range ms {
				if m.Key == "versionId" || m.Key == "lastUpdated" {
					p.push(m.Key)
					return arr, p.fail("a contained resource must not have meta.versionId or meta.lastUpdated")
				}
			}
			return arr, nil
		}
	}
	p.containedNext = isResource && string(key) == "contained"
	defer func() { p.containedNext = false }()
	start := p.s.pos
	if top {
		switch string(key) {
		case "id":
			p.s.skipWS()
			start = p.s.pos
		case "meta":
			p.s.skipWS()
			p.metaStart = p.s.pos
		}
	}
	arr, err := p.value(f, false)
	if err != nil {
		return arr, err
	}
	if top {
		switch string(key) {
		case "id":
			v, _ := (&scanner{data: p.s.data, pos: start}).str()
			p.topID = string(v)
		case "meta":
			p.metaEnd = p.s.pos
		}
	}
	return arr, nil
}

// value validates the value of an element of the given definition. For arrays of a
// primitive (or of a primitive's extensions, primitiveExt) it allows null items and reports
// the array's length and null positions so the caller can check alignment.
func (p *parser) value(f field, primitiveExt bool) (primArray, error) {
	var arr primArray
	if !f.Array {
		if p.s.peek() == kindArray {
			return arr, p.fail("element must not be an array")
		}
		return arr, p.single(f.Type)
	}
	if p.s.peek() != kindArray {
		return arr, p.fail("element must be an array")
	}
	p.s.pos++
	if p.s.consume(']') {
		return arr, p.fail("empty array")
	}
	if p.depth++; p.depth > maxDepth {
		return arr, p.fail("JSON nested too deeply")
	}
	defer func() { p.depth-- }()
	prim := primitiveExt || isPrimitive(f.Type)
	for i := 0; ; i++ {
		p.pushIdx(i)
		if prim && p.s.peek() == kindNull {
			p.s.literal("null") // nulls align primitive arrays with their "_name" extensions
			arr.nulls = append(arr.nulls, i)
		} else if err := p.single(f.Type); err != nil {
			return arr, err
		}
		p.pop()
		if p.s.consume(']') {
			if prim {
				arr.n = i + 1
			}
			return arr, nil
		}
		if !p.s.consume(',') {
			return arr, p.fail("invalid JSON")
		}
	}
}

func isPrimitive(t string) bool {
	_, ok := primitiveKinds[t]
	return ok
}

// primitiveKinds gives the JSON kind of each FHIR primitive type.
var primitiveKinds = map[string]jsonKind{
	"boolean": kindBool, "integer": kindNumber, "positiveInt": kindNumber, "unsignedInt": kindNumber,
	"decimal": kindNumber, "base64Binary": kindString, "canonical": kindString, "code": kindString,
	"date": kindString, "dateTime": kindString, "id": kindString, "instant": kindString,
	"markdown": kindString, "oid": kindString, "string": kindString, "time": kindString,
	"uri": kindString, "url": kindString, "uuid": kindString, "xhtml": kindString,
}

func (p *parser) single(typ string) error {
	kind := p.s.peek()
	if want, ok := primitiveKinds[typ]; ok {
		if kind != want {
			if kind == kindInvalid {
				return p.fail("invalid JSON")
			}
			return p.fail("wrong JSON type for element: want " + want.String() + ", got " + kind.String())
		}
		return p.primitive(typ)
	}
	if kind != kindObject {
		if kind == kindInvalid {
			return p.fail("invalid JSON")
		}
		return p.fail("wrong JSON type for element: want object, got " + kind.String())
	}
	if typ == "Resource" {
		_, err := p.resource("")
		return err
	}
	if isResourceName(typ) {
		_, err := p.resource(typ)
		return err
	}
	return p.object(typ, false, false)
}

func (p *parser) primitive(typ string) error {
	switch primitiveKinds[typ] {
	case kindBool:
		if _, ok := p.s.boolean(); !ok {
			return p.fail("invalid JSON")
		}
		return nil
	case kindNumber:
		num, integral, ok := p.s.number()
		if !ok {
			return p.fail("invalid JSON")
		}
		if typ == "decimal" {
			return nil
		}
		if !integral {
			return p.fail("integer expected")
		}
		n, err := strconv.ParseInt(string(num), 10, 32)
		switch {
		case err != nil:
			return p.fail("integer out of range")
		case typ == "positiveInt" && n < 1, typ == "unsignedInt" && n < 0:
			return p.fail("integer out of range")
		}
		return nil
	}
	v, ok := p.s.str()
	if !ok {
		return p.fail("invalid JSON string")
	}
	if len(v) == 0 {
		return p.fail("empty string")
	}
	// FHIR strings hold no code point below 32 but tab, LF and CR (datatypes.html#string).
	// The scanner refuses such a raw byte; only an escape (\u0000) can decode to one.
	if p.s.escaped && hasControl(v) {
		return p.fail("control character in a string")
	}
	switch typ {
	case "id":
		if !validID(v) {
			return p.fail("invalid id")
		}
	case "date":
		if _, ok := parseDate(string(v), kindDate); !ok {
			return p.fail("invalid date")
		}
	case "dateTime":
		if _, ok := parseDate(string(v), kindDateTime); !ok {
			return p.fail("invalid dateTime")
		}
	case "instant":
		if _, ok := parseDate(string(v), kindInstant); !ok {
			return p.fail("invalid instant")
		}
	case "time":
		if !validTime(string(v)) {
			return p.fail("invalid time")
		}
	case "code":
		if !validCode(v) {
			return p.fail("invalid code")
		}
	case "uri", "url", "canonical":
		if bytes.ContainsAny(v, " \t\r\n") {
			return p.fail("invalid " + typ)
		}
	case "oid":
		if !bytes.HasPrefix(v, []byte("urn:oid:")) || !validOID(string(v[len("urn:oid:"):])) {
			return p.fail("invalid oid")
		}
	case "uuid":
		if !bytes.HasPrefix(v, []byte("urn:uuid:")) || !validUUID(string(v[len("urn:uuid:"):])) {
			return p.fail("invalid uuid")
		}
	case "base64Binary":
		if !validBase64(v) {
			return p.fail("invalid base64Binary")
		}
	}
	return nil
}

// validCode checks the R4 code format: no leading, trailing or repeated white space.
func validCode(v []byte) bool {
	prevSpace := true
	for _, c := range v {
		space := c == ' ' || c == '\t' || c == '\r' || c == '\n'
		if space && prevSpace {
			return false
		}
		prevSpace = space
	}
	return !prevSpace
}

// validBase64 checks for the base64 alphabet, padding and white space only.
func validBase64(v []byte) bool {
	n := 0
	for _, c := range v {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/', c == '=':
			n++
		case c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			return false
		}
	}
	return n%4 == 0
}

// validID checks the R4 id format [A-Za-z0-9\-\.]{1,64}.
func validID[T string | []byte](v T) bool {
	if len(v) == 0 || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// hasControl reports whether v holds a byte below 0x20 other than tab, LF and CR: a C0
// control character, which no FHIR string may contain. (UTF-8 encodes no other code point
// with such a byte.)
func hasControl(v []byte) bool {
	for _, c := range v {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return true
		}
	}
	return false
}
