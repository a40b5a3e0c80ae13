package fhir

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/concord-hie/concord/internal/errs"
)

// MediaTypeFHIRPathPatch is the media type of a FHIRPath Patch (FHIR R4 fhirpatch.html):
// a Parameters resource in FHIR JSON.
const MediaTypeFHIRPathPatch = "application/fhir+json"

// fhirPathOp is one operation of a FHIRPath Patch.
type fhirPathOp struct {
	typ      string // add, insert, delete, replace, move
	path     fhirPath
	name     string         // add: the element to add
	value    fhirPatchValue // add, insert, replace
	index    int            // insert
	src, dst int            // move
}

// fhirPatchValue is the value of an add, insert or replace: a value[x], a resource, or an
// anonymous element given as parts.
type fhirPatchValue struct {
	typ   string // value[x]: its type (HumanName, date); a resource: its resourceType
	res   bool   // a resource (the part's resource)
	node  *jnode // value[x] or the resource; nil for parts
	parts []fhirPatchPart
}

// fhirPatchPart is a part of an anonymous value: an element of it, by name.
type fhirPatchPart struct {
	name  string
	value fhirPatchValue
}

// fhirPatchParts are the parts an operation may have, and the value[x] each takes
// ("" for value, which takes any).
var fhirPatchParts = map[string]string{"type": "valueCode", "path": "valueString", "name": "valueString", "value": "",
	"index": "valueInteger", "source": "valueInteger", "destination": "valueInteger"}

// fhirPatchPartNames are the keys of fhirPatchParts in the specification's order.
var fhirPatchPartNames = []string{"type", "path", "name", "value", "index", "source", "destination"}

// fhirPatchNeeds lists, per operation type, the parts it must have; it may have no others.
var fhirPatchNeeds = map[string][]string{
	"add":     {"type", "path", "name", "value"},
	"insert":  {"type", "path", "value", "index"},
	"delete":  {"type", "path"},
	"replace": {"type", "path", "value"},
	"move":    {"type", "path", "source", "destination"},
}

// ParseFHIRPathPatch parses data as a FHIRPath Patch (FHIR R4 fhirpatch.html): a
// Parameters resource, valid under Parse's strict rules, whose parameters are each named
// operation and carry parts (never a value or resource of their own): type (valueCode:
// add, insert, delete, replace or move), path (valueString), name (valueString), value (any
// value[x]; a resource; or, for an element no value[x] can carry, such as an Extension or
// a backbone element, parts named after its elements, each a value[x], a resource or parts
// again), index, source and destination (valueInteger, not negative). Each type takes
// exactly the parts the specification gives it: add path, name and value; insert path,
// value and index; delete path; replace path and value; move path, source and destination.
//
// A path is FHIRPath of a subset: the resource type, then element names (a choice
// element by its base name), indexers [n], first(), last() and where(e = literal) with e an
// element name, a dotted path of them or $this and a string, boolean or number literal.
// The path of an insert or move ends with the name of the repeating element whose list it
// changes; delete and replace need at least one step after the resource type.
//
// Applied (ApplyPatch), operations take effect in order: add puts value as element name of
// the one element path selects (appended when name repeats; a single element must be
// absent); insert puts value at index (0 to the list's length) of the list, which may be
// absent only for index 0; delete removes the element path selects, or nothing when it
// selects none; replace puts value in place of the one element path selects; move moves
// the item at source to destination (both within the list). A path that selects no element
// (but for delete) or more than one, an index beyond its list and an add of a single
// element present are ErrPatchNotApplied (422); where an element's type is left open (a
// value[x], a contained resource), an item that is a primitive or lacks the element named
// selects nothing, as in FHIRPath. A path or name that names no element of its type, a value whose type is not the element's (or a specialization of it), and an insert
// or move of an element that does not repeat are errs.Invalid (400). Taking out a
// primitive takes its "_name" extensions with it; an array emptied is removed.
//
// A document of more than MaxPatchValues JSON values is errs.TooLarge. Every other refusal
// is an *errs.Error with code errs.Invalid whose message names the operation (1-based) and
// the part at fault, never a value: not a Parameters resource, a parameter not named
// operation or with a value, an unknown, duplicate or missing part, a part not allowed for
// the type, a part's value of the wrong type or absent, extensions on a part's primitive
// value, a modifierExtension, implicitRules, and a path outside the subset (naming the
// unsupported function, operator or construct).
func ParseFHIRPathPatch(data []byte) (*Patch, error) {
	const op = "fhir.ParseFHIRPathPatch"
	bad := func(msg string) error { return errs.E(op, errs.Invalid, "FHIRPath Patch: "+msg) }
	res, err := Parse(data)
	if err != nil {
		e := errs.E(op, errs.Invalid, "FHIRPath Patch: "+errs.MessageOf(err), err)
		e.Path = errs.PathOf(err)
		return nil, e
	}
	if res.ResourceType != "Parameters" {
		return nil, bad("the body must be a Parameters resource")
	}
	d := jdecoder{s: scanner{data: data}}
	root, err := d.value(0)
	if errors.Is(err, errTooManyValues) {
		return nil, errs.E(op, errs.TooLarge, fmt.Sprintf("FHIRPath Patch: more than %d JSON values", MaxPatchValues))
	}
	if err != nil {
		return nil, bad(err.Error()) // Parse accepted it: not reached
	}
	if root.member("implicitRules") != nil || root.member("_implicitRules") != nil {
		return nil, bad("implicitRules is not supported")
	}
	params := root.member("parameter")
	if params == nil {
		return &Patch{fops: []fhirPathOp{}}, nil
	}
	if len(params.vals) > MaxPatchOps {
		return nil, bad(fmt.Sprintf("more than %d operations", MaxPatchOps))
	}
	p := &Patch{fops: make([]fhirPathOp, 0, len(params.vals))}
	for i, prm := range params.vals {
		n := i + 1
		if name := prm.member("name"); name == nil || name.str != "operation" {
			return nil, bad(fmt.Sprintf("parameter %d is not named operation (a FHIRPath Patch holds operations only)", n))
		}
		if prm.member("modifierExtension") != nil {
			return nil, bad(fmt.Sprintf("operation %d: modifierExtension is not supported", n))
		}
		for _, k := range prm.keys {
			if k == "resource" || strings.HasPrefix(k, "value") || strings.HasPrefix(k, "_value") {
				return nil, bad(fmt.Sprintf("operation %d carries a value of its own; its content goes in parts", n))
			}
		}
		o, err := parseFHIRPathOp(n, prm.member("part"))
		if err != nil {
			return nil, bad(err.Error())
		}
		p.fops = append(p.fops, o)
	}
	return p, nil
}

// parseFHIRPathOp parses operation n from its parts (nil when it has none); the error's
// message starts with "operation n".
func parseFHIRPathOp(n int, parts *jnode) (fhirPathOp, error) {
	var o fhirPathOp
	if parts == nil {
		return o, fmt.Errorf("operation %d has no parts", n)
	}
	seen := map[string]*jnode{}
	for _, pt := range parts.vals {
		nm := pt.member("name")
		if nm == nil {
			return o, fmt.Errorf("operation %d: a part has no name", n)
		}
		want, known := fhirPatchParts[nm.str]
		if !known {
			return o, fmt.Errorf("operation %d: unknown part (want type, path, name, value, index, source or destination)", n)
		}
		if seen[nm.str] != nil {
			return o, fmt.Errorf("operation %d: part %s given twice", n, nm.str)
		}
		seen[nm.str] = pt
		if pt.member("modifierExtension") != nil {
			return o, fmt.Errorf("operation %d: part %s: modifierExtension is not supported", n, nm.str)
		}
		if want == "" {
			continue // value: parsePatchValue
		}
		key, v := partValue(pt)
		switch {
		case key == "" && pt.member("part") == nil && pt.member("resource") == nil:
			return o, fmt.Errorf("operation %d: part %s has no value (want %s)", n, nm.str, want)
		case key != want || pt.member("part") != nil || pt.member("resource") != nil:
			return o, fmt.Errorf("operation %d: part %s must be a %s", n, nm.str, want)
		case pt.member("_"+key) != nil:
			return o, fmt.Errorf("operation %d: part %s: extensions on its value are not supported", n, nm.str)
		}
		switch nm.str {
		case "type":
			o.typ = v.str
		case "path", "name":
			if v.str == "" { // Parse refuses empty strings: not reached
				return o, fmt.Errorf("operation %d: part %s is empty", n, nm.str)
			}
		default:
			if len(v.raw) > 0 && v.raw[0] == '-' {
				return o, fmt.Errorf("operation %d: part %s must not be negative", n, nm.str)
			}
		}
	}
	if seen["type"] == nil {
		return o, fmt.Errorf("operation %d has no part type", n)
	}
	needs, ok := fhirPatchNeeds[o.typ]
	if !ok {
		return o, fmt.Errorf("operation %d: unknown type (want add, insert, delete, replace or move)", n)
	}
	for _, k := range needs {
		if seen[k] == nil {
			return o, fmt.Errorf("operation %d (%s) has no part %s", n, o.typ, k)
		}
	}
	if len(seen) != len(needs) {
		for _, k := range fhirPatchPartNames {
			if seen[k] != nil && !slices.Contains(needs, k) {
				return o, fmt.Errorf("operation %d (%s): part %s is not allowed for %s", n, o.typ, k, o.typ)
			}
		}
	}
	var err error
	_, pathVal := partValue(seen["path"])
	if o.path, err = parseFHIRPath(pathVal.str); err != nil {
		return o, fmt.Errorf("operation %d (%s): path: %w", n, o.typ, err)
	}
	switch o.typ {
	case "insert", "move":
		if o.path.lastName() == "" {
			return o, fmt.Errorf("operation %d (%s): the path must end with the name of the repeating element to change, as in Patient.identifier", n, o.typ)
		}
	case "delete", "replace":
		if len(o.path.steps) == 0 {
			return o, fmt.Errorf("operation %d (%s): the resource itself cannot be the path", n, o.typ)
		}
	}
	if pt := seen["name"]; pt != nil {
		_, v := partValue(pt)
		if !validElementName(v.str) {
			return o, fmt.Errorf("operation %d (%s): part name must be an element name", n, o.typ)
		}
		o.name = v.str
	}
	if pt := seen["value"]; pt != nil {
		if o.value, err = parsePatchValue(pt); err != nil {
			return o, fmt.Errorf("operation %d (%s): part value%s", n, o.typ, err.Error())
		}
	}
	intPart := func(name string) int {
		_, v := partValue(seen[name])
		i, _ := strconv.Atoi(string(v.raw)) // Parse checked an R4 integer, and it is not negative
		return i
	}
	switch o.typ {
	case "insert":
		o.index = intPart("index")
	case "move":
		o.src, o.dst = intPart("source"), intPart("destination")
	}
	return o, nil
}

// parsePatchValue parses the value of part pt (an operation's value part, or a part of an
// anonymous value): exactly one of a value[x], a resource or parts.
// Its error's message continues "part value…".
func parsePatchValue(pt *jnode) (fhirPatchValue, error) {
	var v fhirPatchValue
	key, node := partValue(pt)
	res, parts := pt.member("resource"), pt.member("part")
	given := 0
	for _, x := range []bool{node != nil, res != nil, parts != nil} {
		if x {
			given++
		}
	}
	switch {
	case given == 0:
		return v, errors.New(" has no value (want a value[x], a resource or parts)")
	case given > 1:
		return v, errors.New(" has more than one of a value[x], a resource and parts")
	case key != "" && pt.member("_"+key) != nil:
		return v, errors.New(": extensions on a primitive value are not supported")
	case node != nil:
		v.typ, v.node = r4Types["Parameters.parameter"][key].Type, node
	case res != nil:
		rt := res.member("resourceType")
		v.typ, v.res, v.node = rt.str, true, res // Parse checked the resource
	default:
		for i, sub := range parts.vals {
			nm := sub.member("name")
			if nm == nil {
				return v, fmt.Errorf(" part %d has no name", i+1)
			}
			if !validElementName(nm.str) {
				return v, fmt.Errorf(" part %d: its name must be an element name", i+1)
			}
			if sub.member("modifierExtension") != nil {
				return v, fmt.Errorf(" part %s: modifierExtension is not supported", shownName(nm.str))
			}
			sv, err := parsePatchValue(sub)
			if err != nil {
				return v, fmt.Errorf(" part %s%s", shownName(nm.str), err.Error())
			}
			v.parts = append(v.parts, fhirPatchPart{name: nm.str, value: sv})
		}
	}
	return v, nil
}

// partValue returns the member name (valueString) and value of the value[x] of part pt,
// or "" and nil when it has none.
func partValue(pt *jnode) (string, *jnode) {
	for i, k := range pt.keys {
		if len(k) > len("value") && strings.HasPrefix(k, "value") {
			return k, pt.vals[i]
		}
	}
	return "", nil
}

// validElementName reports whether s has the form of an element name.
func validElementName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// applyFHIRPath applies one FHIRPath Patch operation to the tree.
func (a *applier) applyFHIRPath(o *fhirPathOp) error {
	root, err := a.rootLoc(&o.path)
	if err != nil {
		return err
	}
	steps := o.path.steps
	if o.typ == "insert" || o.typ == "move" {
		steps = steps[:len(steps)-1] // the list's owner; its last step names the list
	}
	locs, err := a.eval([]fhirPathLoc{root}, steps)
	if err != nil {
		return err
	}
	if o.typ == "delete" && len(locs) == 0 {
		return nil // "Path of the element to delete (if found)"
	}
	switch {
	case len(locs) == 0:
		return notApplied("no element matches the path")
	case len(locs) > 1:
		return notApplied(fmt.Sprintf("the path matches %d elements; it must match one", len(locs)))
	}
	l := locs[0]
	switch o.typ {
	case "add":
		return a.fhirAdd(l, o.name, &o.value)
	case "insert":
		return a.fhirInsert(l, o.path.lastName(), o.index, &o.value)
	case "delete":
		return a.fhirDelete(l)
	case "replace":
		return a.fhirReplace(l, &o.value)
	case "move":
		return a.fhirMove(l, o.path.lastName(), o.src, o.dst)
	}
	return fmt.Errorf("fhir: unknown FHIRPath Patch type %q", o.typ) // ParseFHIRPathPatch lets none through
}

// fhirAdd is add: v becomes element name of the object at l, appended to its list when
// the element repeats; a single element must be absent (any variant, for a choice).
func (a *applier) fhirAdd(l fhirPathLoc, name string, v *fhirPatchValue) error {
	typ, fields, err := a.elementsOf(l)
	if err != nil {
		return err
	}
	key, f, node, err := a.valueFor(typ, fields, name, v)
	if err != nil {
		return err
	}
	i, err := a.index(l.node, key)
	if err != nil {
		return err
	}
	if !f.Array {
		present := i >= 0
		if f.Choice != "" && !present {
			if k, _, err := a.lookup(typ, fields, l.node, f.Choice); err != nil {
				return err
			} else if k != "" {
				present = true
			}
		}
		if present {
			return notApplied("element " + name + " is present already (add is for absent or repeating elements: use replace)")
		}
		return a.addMember(l, key, node)
	}
	if i < 0 {
		return a.addMember(l, key, &jnode{kind: kindArray, vals: []*jnode{node}})
	}
	list := l.node.vals[i]
	if err := a.growAt(l.depth+2, "", node); err != nil {
		return err
	}
	list.vals = append(list.vals, node)
	return a.extInsert(l.node, key, len(list.vals)-1, l.depth)
}

// fhirInsert is insert: v goes in at index of the list name of the object at l (index 0
// creates an absent list).
func (a *applier) fhirInsert(l fhirPathLoc, name string, index int, v *fhirPatchValue) error {
	typ, fields, err := a.elementsOf(l)
	if err != nil {
		return err
	}
	key, f, node, err := a.valueFor(typ, fields, name, v)
	if err != nil {
		return err
	}
	i, n, err := a.listIn(l, typ, name, key, f, "insert needs a list (use add or replace)")
	if err != nil {
		return err
	}
	if index > n {
		return notApplied(fmt.Sprintf("index %d is beyond the %d items of %s", index, n, name))
	}
	if i < 0 {
		return a.addMember(l, key, &jnode{kind: kindArray, vals: []*jnode{node}})
	}
	list := l.node.vals[i]
	if err := a.growAt(l.depth+2, "", node); err != nil {
		return err
	}
	if err := a.spend(n - index); err != nil {
		return err
	}
	list.vals = append(list.vals, nil)
	copy(list.vals[index+1:], list.vals[index:])
	list.vals[index] = node
	return a.extInsert(l.node, key, index, l.depth)
}

// fhirDelete is delete: the element at l is taken out (an item of a list: the items after
// it shift down, and a list emptied is removed), with its primitive extensions.
func (a *applier) fhirDelete(l fhirPathLoc) error {
	if l.parent == nil {
		return invalidPatch("the resource itself cannot be deleted")
	}
	i, err := a.index(l.parent, l.key)
	if err != nil {
		return err
	}
	if l.idx >= 0 {
		list := l.parent.vals[i]
		if err := a.spend(len(list.vals) - l.idx); err != nil {
			return err
		}
		list.vals = append(list.vals[:l.idx], list.vals[l.idx+1:]...)
		if len(list.vals) > 0 {
			return a.extRemove(l.parent, l.key, l.idx)
		}
	}
	if err := a.removeMember(l.parent, i); err != nil {
		return err
	}
	return a.removeKey(l.parent, "_"+l.key)
}

// fhirReplace is replace: v takes the place of the element at l (an object member keeps
// its position; a choice element may change variant), which loses its primitive
// extensions.
func (a *applier) fhirReplace(l fhirPathLoc, v *fhirPatchValue) error {
	if l.parent == nil {
		return invalidPatch("the resource itself cannot be replaced")
	}
	key, _, node, err := a.valueFor(l.ptyp, l.fields, l.name(), v)
	if err != nil {
		return err
	}
	i, err := a.index(l.parent, l.key)
	if err != nil {
		return err
	}
	if l.idx >= 0 {
		if err := a.growAt(l.depth, "", node); err != nil {
			return err
		}
		l.parent.vals[i].vals[l.idx] = node
		return a.extClear(l.parent, l.key, l.idx)
	}
	if err := a.growAt(l.depth, key, node); err != nil {
		return err
	}
	l.parent.keys[i], l.parent.vals[i] = key, node
	return a.removeKey(l.parent, "_"+l.key)
}

// fhirMove is move: the item at src of the list name of the object at l goes to dst
// (positions in the list before and after the move: it is taken out, then put in at dst).
func (a *applier) fhirMove(l fhirPathLoc, name string, src, dst int) error {
	typ, fields, err := a.elementsOf(l)
	if err != nil {
		return err
	}
	key, f, err := a.lookup(typ, fields, l.node, name)
	if err != nil {
		return err
	}
	i, n, err := a.listIn(l, typ, name, key, f, "move needs a list")
	if err != nil {
		return err
	}
	if src >= n || dst >= n {
		return notApplied(fmt.Sprintf("source %d or destination %d is beyond the %d items of %s", src, dst, n, name))
	}
	if err := a.spend(n); err != nil {
		return err
	}
	moveItem(l.node.vals[i].vals, src, dst)
	if j, err := a.index(l.node, "_"+key); err != nil {
		return err
	} else if j >= 0 && l.node.vals[j].kind == kindArray && len(l.node.vals[j].vals) == n {
		moveItem(l.node.vals[j].vals, src, dst)
	}
	return nil
}

// addMember adds member key with value node to the object at l, charged to the growth
// bound at l's depth.
func (a *applier) addMember(l fhirPathLoc, key string, node *jnode) error {
	if err := a.growAt(l.depth+1, key, node); err != nil {
		return err
	}
	l.node.keys, l.node.vals = append(l.node.keys, key), append(l.node.vals, node)
	return nil
}

// listIn finds the list that element name (member key, field f of typ) holds in the object
// at l: its index among the object's members (-1 when absent) and its length. An element
// that does not repeat is 400, saying what the operation needs (need).
func (a *applier) listIn(l fhirPathLoc, typ, name, key string, f field, need string) (i, n int, err error) {
	if !f.Array {
		return 0, 0, invalidPatch(typ + "." + name + " does not repeat: " + need)
	}
	if i, err = a.index(l.node, key); err != nil {
		return 0, 0, err
	}
	if i >= 0 {
		n = len(l.node.vals[i].vals)
	}
	return i, n, nil
}

// moveItem moves vals[src] to dst, shifting the items between.
func moveItem(vals []*jnode, src, dst int) {
	v := vals[src]
	if src < dst {
		copy(vals[src:dst], vals[src+1:dst+1])
	} else {
		copy(vals[dst+1:src+1], vals[dst:src])
	}
	vals[dst] = v
}

// valueFor resolves element name of typ (whose elements are fields) for the value v: its
// member name (for a choice element, the variant of v's type), its definition, and v as a
// new tree. name may be a choice element's base name or one of its variants. A name that
// is no element of typ, or a value whose type does not fit the element, is errs.Invalid.
func (a *applier) valueFor(typ string, fields map[string]field, name string, v *fhirPatchValue) (string, field, *jnode, error) {
	key := name
	f, ok := fields[name]
	if !ok {
		if !isChoice(typ, name) {
			return "", field{}, nil, invalidPatch(noElement(typ, name))
		}
		if v.node == nil || v.res {
			return "", field{}, nil, invalidPatch(typ + "." + name + "[x] takes a typed value (value[x]), not " + v.kind())
		}
		key = name + strings.ToUpper(v.typ[:1]) + v.typ[1:]
		if f, ok = fields[key]; !ok || f.Choice != name {
			key = ""
			for k, vf := range fields { // a variant of a type v's specializes (valueAge in value[x]: valueQuantity)
				if vf.Choice == name && assignable(v.typ, vf.Type) {
					if key != "" {
						return "", field{}, nil, invalidPatch(typ + "." + name + "[x] has no variant of type " + v.typ)
					}
					key, f = k, vf
				}
			}
			if key == "" {
				return "", field{}, nil, invalidPatch(typ + "." + name + "[x] has no variant of type " + v.typ)
			}
		}
	}
	switch {
	case v.parts != nil:
		if isPrimitive(f.Type) || f.Type == "Resource" || isResourceName(f.Type) {
			return "", field{}, nil, invalidPatch(typ + "." + name + " is a " + f.Type + ": give it as a value, not as parts")
		}
		node, err := a.build(f.Type, v.parts)
		return key, f, node, err
	case v.res:
		if f.Type != "Resource" && f.Type != v.typ {
			return "", field{}, nil, invalidPatch(typ + "." + name + " is a " + f.Type + ", not a " + v.typ + " resource")
		}
	case !assignable(v.typ, f.Type):
		return "", field{}, nil, invalidPatch(typ + "." + name + " is a " + f.Type + ", not a " + v.typ)
	}
	return key, f, v.node.clone(), nil
}

// kind names what v is, for messages.
func (v *fhirPatchValue) kind() string {
	switch {
	case v.res:
		return "a resource"
	case v.parts != nil:
		return "parts"
	}
	return "a " + v.typ
}

// build returns the element of type typ whose elements the parts give, in their order;
// the parts of a repeating element make its list.
func (a *applier) build(typ string, parts []fhirPatchPart) (*jnode, error) {
	fields, ok := r4Types[typ]
	if !ok {
		return nil, invalidPatch("the type " + typ + " is not known")
	}
	obj := &jnode{kind: kindObject, keys: []string{}, vals: []*jnode{}}
	for i := range parts {
		pt := &parts[i]
		key, f, node, err := a.valueFor(typ, fields, pt.name, &pt.value)
		if err != nil {
			return nil, err
		}
		j, err := a.index(obj, key)
		if err != nil {
			return nil, err
		}
		switch {
		case j >= 0 && f.Array:
			obj.vals[j].vals = append(obj.vals[j].vals, node)
		case j >= 0:
			return nil, invalidPatch(typ + "." + pt.name + " does not repeat but is given twice")
		case f.Array:
			obj.keys, obj.vals = append(obj.keys, key), append(obj.vals, &jnode{kind: kindArray, vals: []*jnode{node}})
		default:
			obj.keys, obj.vals = append(obj.keys, key), append(obj.vals, node)
		}
	}
	return obj, nil
}

// specializes maps a type to the type it specializes, for the types a value[x] may have
// where an element of the general type is expected (R4 datatypes.html).
var specializes = map[string]string{
	"Age": "Quantity", "Count": "Quantity", "Distance": "Quantity", "Duration": "Quantity",
	"code": "string", "id": "string", "markdown": "string",
	"url": "uri", "canonical": "uri", "oid": "uri", "uuid": "uri",
	"positiveInt": "integer", "unsignedInt": "integer",
}

// assignable reports whether a value of type vt may be an element of type et: the same
// type, or one that specializes it.
func assignable(vt, et string) bool {
	return vt == et || specializes[vt] == et
}

// removeMember takes member i out of object o.
func (a *applier) removeMember(o *jnode, i int) error {
	if err := a.spend(len(o.keys) - i); err != nil {
		return err
	}
	o.keys = append(o.keys[:i], o.keys[i+1:]...)
	o.vals = append(o.vals[:i], o.vals[i+1:]...)
	return nil
}

// removeKey takes member key out of object o when it is there.
func (a *applier) removeKey(o *jnode, key string) error {
	i, err := a.index(o, key)
	if err != nil || i < 0 {
		return err
	}
	return a.removeMember(o, i)
}

// primitiveExt returns the "_key" list of object o (the extensions of the items of the
// primitive list key), or nil.
func (a *applier) primitiveExt(o *jnode, key string) (*jnode, int, error) {
	j, err := a.index(o, "_"+key)
	if err != nil || j < 0 || o.vals[j].kind != kindArray {
		return nil, -1, err
	}
	return o.vals[j], j, nil
}

// extInsert keeps the "_key" list of object o (depth levels down) aligned with the list
// key after an item was put in at idx: a null goes in at idx.
func (a *applier) extInsert(o *jnode, key string, idx, depth int) error {
	ext, _, err := a.primitiveExt(o, key)
	if err != nil || ext == nil || idx > len(ext.vals) {
		return err
	}
	null := &jnode{kind: kindNull, raw: []byte("null")}
	if err := a.growAt(depth+2, "", null); err != nil {
		return err
	}
	if err := a.spend(len(ext.vals) - idx); err != nil {
		return err
	}
	ext.vals = append(ext.vals, nil)
	copy(ext.vals[idx+1:], ext.vals[idx:])
	ext.vals[idx] = null
	return nil
}

// extRemove keeps the "_key" list of object o aligned with the list key after its item idx
// was taken out; a list of nulls only is removed.
func (a *applier) extRemove(o *jnode, key string, idx int) error {
	ext, j, err := a.primitiveExt(o, key)
	if err != nil || ext == nil || idx >= len(ext.vals) {
		return err
	}
	if err := a.spend(len(ext.vals) - idx); err != nil {
		return err
	}
	ext.vals = append(ext.vals[:idx], ext.vals[idx+1:]...)
	return a.dropNullExt(o, ext, j)
}

// extClear takes the extensions of item idx of the primitive list key of object o (a
// replaced item has none): its "_key" entry becomes null.
func (a *applier) extClear(o *jnode, key string, idx int) error {
	ext, j, err := a.primitiveExt(o, key)
	if err != nil || ext == nil || idx >= len(ext.vals) {
		return err
	}
	ext.vals[idx] = &jnode{kind: kindNull, raw: []byte("null")}
	return a.dropNullExt(o, ext, j)
}

// dropNullExt removes the "_key" list ext (member j of o) when it holds nulls only.
func (a *applier) dropNullExt(o, ext *jnode, j int) error {
	if err := a.spend(len(ext.vals)); err != nil {
		return err
	}
	for _, v := range ext.vals {
		if v.kind != kindNull {
			return nil
		}
	}
	return a.removeMember(o, j)
}
