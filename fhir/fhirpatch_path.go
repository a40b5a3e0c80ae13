package fhir

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// The FHIRPath subset of FHIRPath Patch paths (fhirpatch.go):
//
//	path      = Type { "." name | "." "first()" | "." "last()" | "." "where(" criterion ")" | "[" index "]" }
//	criterion = ( "$this" | name { "." name } ) "=" literal
//	literal   = 'string' | true | false | number
//
// Type is the resource type; names are element names (a choice element by its base name:
// Observation.value, not valueQuantity); index is a 0-based integer; a number may have a
// sign and a fraction. White space may stand between tokens. Anything else (other
// functions, operators, environment variables, delimited identifiers, date and quantity
// literals) is refused with a message naming it. A path has at most maxPathSteps steps
// after Type, and a criterion at most maxPathSteps names.

// maxPathLen bounds the length of a FHIRPath Patch path.
const maxPathLen = 4096

// maxPathSteps bounds the steps after the root of a path, and the names of a where()
// criterion: paths in real patches are short, and each step is charged per element it
// visits, so a path of thousands of names would spend the work bound on one operation.
const maxPathSteps = 32

// fhirPath is a parsed path.
type fhirPath struct {
	root  string // the resource type it starts with
	steps []fhirPathStep
	text  string // the path with its literals left out ('…'), for messages and logs
}

type fhirPathStepKind uint8

const (
	stepName fhirPathStepKind = iota
	stepIndex
	stepFirst
	stepLast
	stepWhere
)

// fhirPathStep is one step after the root.
type fhirPathStep struct {
	kind  fhirPathStepKind
	name  string   // stepName
	index int      // stepIndex
	where []string // stepWhere: element names from the item to the compared value; empty for $this
	lit   *jnode   // stepWhere: the literal, as a JSON string, number or boolean
}

// lastName returns the element name of p's last step, or "" when p has no steps or its
// last step is not an element name.
func (p *fhirPath) lastName() string {
	if len(p.steps) == 0 || p.steps[len(p.steps)-1].kind != stepName {
		return ""
	}
	return p.steps[len(p.steps)-1].name
}

// pathParser reads a path; its errors are safe to show: they name R4 element names,
// FHIRPath functions and operators, never a literal or other text the client wrote.
type pathParser struct {
	s   string
	pos int
}

// parseFHIRPath parses s as a path of the subset above. Its error's message names the
// unsupported or malformed part when that is an R4 element name, a FHIRPath function or
// an operator, never a literal or other text (which could be a value). The path's text
// keeps R4 element names and replaces literals and any other name with "…".
func parseFHIRPath(s string) (fhirPath, error) {
	if len(s) > maxPathLen {
		return fhirPath{}, fmt.Errorf("longer than %d characters", maxPathLen)
	}
	if s == "" {
		return fhirPath{}, errors.New("empty")
	}
	p := pathParser{s: s}
	p.ws()
	root, err := p.name("the path must start with the resource type")
	if err != nil {
		return fhirPath{}, err
	}
	if !IsResourceType(root) {
		return fhirPath{}, errors.New("a path must start with the resource type")
	}
	fp := fhirPath{root: root}
	var text strings.Builder
	text.WriteString(root)
	for {
		p.ws()
		if p.pos == len(p.s) {
			break
		}
		if len(fp.steps) == maxPathSteps {
			return fhirPath{}, fmt.Errorf("a path may have at most %d steps after the resource type", maxPathSteps)
		}
		switch p.s[p.pos] {
		case '.':
			p.pos++
			p.ws()
			name, err := p.name("a name must follow \".\"")
			if err != nil {
				return fhirPath{}, err
			}
			p.ws()
			if !p.eat('(') {
				fp.steps = append(fp.steps, fhirPathStep{kind: stepName, name: name})
				text.WriteString("." + shownName(name))
				continue
			}
			switch name {
			case "first", "last":
				p.ws()
				if !p.eat(')') {
					return fhirPath{}, fmt.Errorf("%s() takes no arguments", name)
				}
				k := stepFirst
				if name == "last" {
					k = stepLast
				}
				fp.steps = append(fp.steps, fhirPathStep{kind: k})
				text.WriteString("." + name + "()")
			case "where":
				st, err := p.criterion()
				if err != nil {
					return fhirPath{}, err
				}
				fp.steps = append(fp.steps, st)
				crit := "$this"
				if len(st.where) > 0 {
					names := make([]string, len(st.where))
					for i, n := range st.where {
						names[i] = shownName(n)
					}
					crit = strings.Join(names, ".")
				}
				lit := "…"
				if st.lit.kind == kindString {
					lit = "'…'"
				}
				text.WriteString(".where(" + crit + " = " + lit + ")")
			default:
				return fhirPath{}, fmt.Errorf("unsupported FHIRPath function%s (supported: first(), last(), where())", shownFunction(name))
			}
		case '[':
			p.pos++
			p.ws()
			start := p.pos
			for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
				p.pos++
			}
			i, err := strconv.Atoi(p.s[start:p.pos])
			if err != nil || p.pos-start > 9 || p.pos-start > 1 && p.s[start] == '0' {
				return fhirPath{}, errors.New("an indexer takes a non-negative integer, as in [0]")
			}
			p.ws()
			if !p.eat(']') {
				return fhirPath{}, errors.New("an indexer takes a non-negative integer, as in [0]")
			}
			fp.steps = append(fp.steps, fhirPathStep{kind: stepIndex, index: i})
			text.WriteString("[" + strconv.Itoa(i) + "]")
		default:
			return fhirPath{}, p.unexpected()
		}
	}
	fp.text = text.String()
	return fp, nil
}

// ws skips white space.
func (p *pathParser) ws() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t' || p.s[p.pos] == '\r' || p.s[p.pos] == '\n') {
		p.pos++
	}
}

// eat consumes c when it comes next.
func (p *pathParser) eat(c byte) bool {
	if p.pos < len(p.s) && p.s[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

// ident reads an identifier ([A-Za-z_][A-Za-z0-9_]*), or "" when none comes next.
func (p *pathParser) ident() string {
	start := p.pos
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || p.pos > start && c >= '0' && c <= '9' {
			p.pos++
			continue
		}
		break
	}
	return p.s[start:p.pos]
}

// name reads an element or type name; without one, the error is want, or names what
// comes instead when it is an unsupported construct.
func (p *pathParser) name(want string) (string, error) {
	if n := p.ident(); n != "" {
		return n, nil
	}
	if p.pos < len(p.s) {
		switch p.s[p.pos] {
		case '`':
			return "", errors.New("delimited identifiers (`...`) are not supported")
		case '%':
			return "", errors.New("FHIRPath environment variables (%...) are not supported")
		case '$':
			return "", errors.New("$this is supported inside where() only")
		}
	}
	return "", errors.New(want)
}

// fhirPathOperators are the FHIRPath operators the subset refuses by name (longest first).
var fhirPathOperators = []string{"!=", "!~", "<=", ">=", "=", "~", "<", ">", "|", "+", "-", "*", "/", "&"}

// fhirPathKeywords are FHIRPath's word operators.
var fhirPathKeywords = map[string]bool{"and": true, "or": true, "xor": true, "implies": true, "is": true, "as": true,
	"in": true, "contains": true, "div": true, "mod": true}

// unexpected is the error for what comes at p.pos: an operator or keyword by name, else
// the character's position.
func (p *pathParser) unexpected() error {
	rest := p.s[p.pos:]
	for _, op := range fhirPathOperators {
		if strings.HasPrefix(rest, op) {
			return fmt.Errorf("unsupported FHIRPath operator %q", op)
		}
	}
	save := p.pos
	if w := p.ident(); fhirPathKeywords[w] {
		return fmt.Errorf("unsupported FHIRPath operator %q", w)
	}
	p.pos = save
	if rest[0] == '\'' {
		return fmt.Errorf("unexpected string literal at offset %d", p.pos)
	}
	return fmt.Errorf("unexpected character at offset %d", p.pos)
}

// criterion reads the argument of where( up to and including its ")".
func (p *pathParser) criterion() (fhirPathStep, error) {
	st := fhirPathStep{kind: stepWhere}
	const form = "where() takes one comparison of an element with a literal, as in where(system = 'phone')"
	p.ws()
	if strings.HasPrefix(p.s[p.pos:], "$this") {
		p.pos += len("$this")
		if p.pos < len(p.s) && p.s[p.pos] == '.' {
			return st, errors.New("$this is supported alone only, as in where($this = 'x')")
		}
	} else {
		for {
			n, err := p.name(form)
			if err != nil {
				return st, err
			}
			p.ws()
			if p.pos < len(p.s) && p.s[p.pos] == '(' {
				return st, fmt.Errorf("unsupported FHIRPath function%s inside where()", shownFunction(n))
			}
			st.where = append(st.where, n)
			if len(st.where) > maxPathSteps {
				return st, fmt.Errorf("a where() criterion may have at most %d names", maxPathSteps)
			}
			if !p.eat('.') {
				break
			}
			p.ws()
		}
	}
	p.ws()
	if !strings.HasPrefix(p.s[p.pos:], "=") {
		if p.pos < len(p.s) {
			if err := p.unexpected(); strings.HasPrefix(err.Error(), "unsupported") {
				return st, err
			}
		}
		return st, errors.New(form)
	}
	p.pos++
	p.ws()
	lit, err := p.literal()
	if err != nil {
		return st, err
	}
	st.lit = lit
	p.ws()
	if !p.eat(')') {
		if p.pos < len(p.s) {
			if err := p.unexpected(); strings.HasPrefix(err.Error(), "unsupported") {
				return st, err
			}
		}
		return st, errors.New(form)
	}
	return st, nil
}

// literalWanted is the error for a criterion that compares with no literal: it names
// none of what came instead, which may be a value written without quotes.
const literalWanted = "where() must compare an element with a quoted string, a boolean or a number literal"

// literal reads a string, boolean or number literal as a JSON value.
func (p *pathParser) literal() (*jnode, error) {
	if p.pos >= len(p.s) {
		return nil, errors.New(literalWanted)
	}
	switch c := p.s[p.pos]; {
	case c == '\'':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return &jnode{kind: kindString, str: s, raw: jsonString(s)}, nil
	case c == '-' || c >= '0' && c <= '9':
		start := p.pos
		p.eat('-')
		digits := p.pos
		for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
			p.pos++
		}
		if p.pos == digits {
			return nil, errors.New("malformed number literal")
		}
		if p.eat('.') {
			frac := p.pos
			for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
				p.pos++
			}
			if p.pos == frac {
				return nil, errors.New("malformed number literal")
			}
		}
		if p.pos-start > 64 {
			return nil, errors.New("number literal too long")
		}
		return &jnode{kind: kindNumber, raw: []byte(p.s[start:p.pos])}, nil
	case c == '@':
		return nil, errors.New("date and time literals (@...) are not supported")
	}
	switch w := p.ident(); w {
	case "true", "false":
		return &jnode{kind: kindBool, raw: []byte(w)}, nil
	case "":
		return nil, errors.New(literalWanted)
	default:
		return nil, errors.New(literalWanted)
	}
}

// str reads a FHIRPath string literal: single quotes, with the escapes \' \" \` \\ \/ \f
// \n \r \t and \uXXXX.
func (p *pathParser) str() (string, error) {
	p.pos++ // the opening quote
	var b strings.Builder
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == '\'':
			p.pos++
			if !utf8.ValidString(b.String()) {
				return "", errors.New("string literal is not valid UTF-8")
			}
			return b.String(), nil
		case c == '\\':
			if p.pos+1 >= len(p.s) {
				return "", errors.New("unterminated string literal")
			}
			e := p.s[p.pos+1]
			p.pos += 2
			switch e {
			case '\'', '"', '`', '\\', '/':
				b.WriteByte(e)
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if p.pos+4 > len(p.s) {
					return "", errors.New("malformed \\u escape in a string literal")
				}
				r, err := strconv.ParseUint(p.s[p.pos:p.pos+4], 16, 32)
				if err != nil || r >= 0xD800 && r <= 0xDFFF {
					return "", errors.New("malformed \\u escape in a string literal")
				}
				b.WriteRune(rune(r))
				p.pos += 4
			default:
				return "", errors.New("unknown escape in a string literal")
			}
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return "", errors.New("unterminated string literal")
}

// fhirPathLoc is an element a path selected: a JSON value in the tree, where it sits and
// what its definition is.
type fhirPathLoc struct {
	node   *jnode
	typ    string           // its FHIR type: a resource, complex or primitive type, a backbone path or "Resource"
	parent *jnode           // the object that holds it; nil for the resource itself
	ptyp   string           // the parent's type (a concrete one)
	fields map[string]field // the parent's elements
	key    string           // its member name in parent (a choice element's variant: valueQuantity)
	f      field            // its definition: fields[key]
	idx    int              // its index in the array parent[key]; -1 when the element does not repeat
	depth  int              // the JSON levels above it
}

// name is the element's FHIRPath name: a choice element's base name (value), else its key.
func (l *fhirPathLoc) name() string {
	if l.f.Choice != "" {
		return l.f.Choice
	}
	return l.key
}

// rootLoc is the resource itself, which p must start with: errs.Invalid otherwise.
func (a *applier) rootLoc(p *fhirPath) (fhirPathLoc, error) {
	rt := a.root.member("resourceType")
	if a.root.kind != kindObject || rt == nil || rt.kind != kindString {
		return fhirPathLoc{}, invalidPatch("the document patched is not a resource")
	}
	if rt.str != p.root {
		return fhirPathLoc{}, invalidPatch("the path starts with " + p.root + ", but the resource is a " + rt.str)
	}
	return fhirPathLoc{node: a.root, typ: rt.str, idx: -1}, nil
}

// eval returns the elements steps select from the collection in, in document order.
func (a *applier) eval(in []fhirPathLoc, steps []fhirPathStep) ([]fhirPathLoc, error) {
	for _, st := range steps {
		if err := a.spend(len(in)); err != nil {
			return nil, err
		}
		var out []fhirPathLoc
		switch st.kind {
		case stepName:
			for _, l := range in {
				var err error
				if out, err = a.children(l, st.name, out); err != nil {
					return nil, err
				}
			}
		case stepIndex:
			if st.index < len(in) {
				out = in[st.index : st.index+1]
			}
		case stepFirst:
			if len(in) > 0 {
				out = in[:1]
			}
		case stepLast:
			if len(in) > 0 {
				out = in[len(in)-1:]
			}
		case stepWhere:
			for _, l := range in {
				ok, err := a.matches(l, &st)
				if err != nil {
					return nil, err
				}
				if ok {
					out = append(out, l)
				}
			}
		}
		in = out
	}
	return in, nil
}

// matches reports whether l meets st's criterion, as FHIRPath's = does: the element the
// criterion names (l itself for $this) is exactly one value, equal to the literal (strings
// by their characters, numbers by value, booleans); more than one value or none is false.
//
// Each item tried counts one unit of work per name of the criterion, whether or not its
// walk gets that far, and the walk counts what children counts; so the work bound holds
// however long the criterion and however many items it is tried on.
func (a *applier) matches(l fhirPathLoc, st *fhirPathStep) (bool, error) {
	if err := a.spend(len(st.where)); err != nil {
		return false, err
	}
	vals := []fhirPathLoc{l}
	for _, n := range st.where {
		if len(vals) == 0 {
			break
		}
		var next []fhirPathLoc
		for _, v := range vals {
			var err error
			if next, err = a.children(v, n, next); err != nil {
				return false, err
			}
		}
		vals = next
	}
	if len(vals) != 1 || vals[0].node.kind != st.lit.kind {
		return false, nil
	}
	v := vals[0].node
	switch v.kind {
	case kindString:
		return v.str == st.lit.str, nil
	case kindNumber:
		return numbersEqual(v.raw, st.lit.raw), nil
	}
	return string(v.raw) == string(st.lit.raw), nil
}

// elementsOf returns the concrete type of the element at l and its elements: a
// contained resource's type is its resourceType. A primitive (or a JSON null standing for
// one) has none the subset can reach: errs.Invalid.
func (a *applier) elementsOf(l fhirPathLoc) (string, map[string]field, error) {
	typ := l.typ
	if isPrimitive(typ) || l.node.kind != kindObject {
		return "", nil, invalidPatch("the elements of a primitive value (its id and extensions) cannot be reached by a FHIRPath Patch path")
	}
	if typ == "Resource" {
		if rt := l.node.member("resourceType"); rt != nil && rt.kind == kindString && IsResourceType(rt.str) {
			typ = rt.str
		}
	}
	fields, ok := r4Types[typ]
	if !ok {
		return "", nil, invalidPatch("the element's type " + typ + " is not known")
	}
	return typ, fields, nil
}

// children appends to out the elements named name of the element at l (a repeating
// element's items in order; a choice element's one variant present). A name that is no
// element of l's type, or a choice variant named in place of its base name, is
// errs.Invalid; but where the definition leaves l's type open (the value of a choice
// element, a contained resource), items of different types may stand side by side, and,
// as FHIRPath navigation does, one that is a primitive or lacks the element contributes
// nothing, unless no R4 type has an element of that name.
func (a *applier) children(l fhirPathLoc, name string, out []fhirPathLoc) ([]fhirPathLoc, error) {
	open := l.typ == "Resource" || l.f.Choice != ""
	if open && (isPrimitive(l.typ) || l.node.kind != kindObject) {
		if !r4Names()[name] {
			return nil, invalidPatch(noElement(l.typ, name))
		}
		return out, nil
	}
	typ, fields, err := a.elementsOf(l)
	if err != nil {
		return nil, err
	}
	if _, ok := fields[name]; open && !ok && !isChoice(typ, name) {
		if !r4Names()[name] {
			return nil, invalidPatch(noElement(typ, name))
		}
		return out, nil
	}
	key, f, err := a.lookup(typ, fields, l.node, name)
	if err != nil || key == "" {
		return out, err
	}
	i, err := a.index(l.node, key)
	if err != nil || i < 0 {
		return out, err
	}
	v := l.node.vals[i]
	child := fhirPathLoc{typ: f.Type, parent: l.node, ptyp: typ, fields: fields, key: key, f: f, idx: -1, depth: l.depth + 1}
	if !f.Array || v.kind != kindArray {
		child.node = v
		return append(out, child), nil
	}
	if err := a.spend(len(v.vals)); err != nil {
		return nil, err
	}
	child.depth++
	for j, it := range v.vals {
		child.node, child.idx = it, j
		out = append(out, child)
	}
	return out, nil
}

// lookup finds the element name of typ (whose elements are fields) in the object node:
// its member name and definition; for a choice element, the variant node holds ("" when
// it holds none).
func (a *applier) lookup(typ string, fields map[string]field, node *jnode, name string) (string, field, error) {
	if f, ok := fields[name]; ok {
		if f.Choice != "" {
			return "", field{}, invalidPatch(typ + " has no element " + name + " (the choice element is named " + f.Choice + ")") // a key of fields: an R4 name
		}
		return name, f, nil
	}
	if !isChoice(typ, name) {
		return "", field{}, invalidPatch(noElement(typ, name))
	}
	for i, k := range node.keys {
		if f, ok := fields[k]; ok && f.Choice == name {
			return k, f, a.spend(i + 1)
		}
	}
	return "", field{}, a.spend(len(node.keys))
}

// isChoice reports whether name is the base name of a choice element of typ (a key of
// r4Types), in constant time.
func isChoice(typ, name string) bool {
	return r4Choices()[typ][name]
}

// r4Choices maps each type of r4Types to the base names of its choice elements.
var r4Choices = sync.OnceValue(func() map[string]map[string]bool {
	m := make(map[string]map[string]bool, len(r4Types))
	for typ, fields := range r4Types {
		for _, f := range fields {
			if f.Choice != "" {
				if m[typ] == nil {
					m[typ] = map[string]bool{}
				}
				m[typ][f.Choice] = true
			}
		}
	}
	return m
})

// r4Names is the set of every element name of r4Types (choice variants and their base
// names included).
var r4Names = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, fields := range r4Types {
		for k, f := range fields {
			m[k] = true
			if f.Choice != "" {
				m[f.Choice] = true
			}
		}
	}
	return m
})

// shownName returns n, a name a client wrote, for a message or a log when it is an R4
// element name; anything else may be a value (a patient's name sent as a path) and
// becomes "…".
func shownName(n string) string {
	if r4Names()[n] {
		return n
	}
	return "…"
}

// noElement is the message for a name that is no element of typ: it names the name only
// when it is an R4 element name (shownName).
func noElement(typ, name string) string {
	if r4Names()[name] {
		return typ + " has no element " + name
	}
	return typ + " has no element of the name given (no R4 type has one of that name)"
}

// fhirPathFunctions are the functions of FHIRPath and its FHIR extensions, which a
// message may name when the subset refuses them.
var fhirPathFunctions = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`empty exists all allTrue anyTrue allFalse anyFalse subsetOf supersetOf count
		distinct isDistinct where select repeat ofType single first last tail skip take intersect exclude union
		combine iif toBoolean convertsToBoolean toInteger convertsToInteger toDate convertsToDate toDateTime
		convertsToDateTime toDecimal convertsToDecimal toQuantity convertsToQuantity toString convertsToString
		toTime convertsToTime indexOf substring startsWith endsWith contains upper lower replace matches
		replaceMatches length toChars children descendants trace now timeOfDay today not as is resolve
		extension hasValue getValue conformsTo memberOf subsumes subsumedBy htmlChecks elementDefinition
		slice checkModifiers aggregate encode decode escape unescape trim split join`) {
		fhirPathFunctions[f] = true
	}
}

// shownFunction is " name()" when name is a FHIRPath function, else "" (the name a
// client wrote before "(" may be anything).
func shownFunction(name string) string {
	if fhirPathFunctions[name] {
		return " " + name + "()"
	}
	return ""
}
