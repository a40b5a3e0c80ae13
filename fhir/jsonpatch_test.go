package fhir

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
)

// patchOutcome is what applying a patch should give: a document, or an error of a kind.
type patchOutcome int

const (
	patchOK         patchOutcome = iota
	patchMalformed               // ParsePatch refuses: errs.Invalid, not ErrPatchNotApplied
	patchNotApplied              // ApplyPatch refuses: errs.Invalid wrapping ErrPatchNotApplied
	patchTooLarge                // ApplyPatch refuses: errs.TooLarge
)

// TestApplyPatch covers the operations of RFC 6902 section 4 and the error cases of its
// appendix A, with documents of our own.
func TestApplyPatch(t *testing.T) {
	tests := []struct {
		name, doc, patch string
		outcome          patchOutcome
		want             string
	}{
		// add
		{"add a member goes last", `{"a":1,"b":2}`, `[{"op":"add","path":"/c","value":3}]`, patchOK, `{"a":1,"b":2,"c":3}`},
		{"add an existing member replaces it in place", `{"a":1,"b":2}`, `[{"op":"add","path":"/a","value":[true]}]`, patchOK, `{"a":[true],"b":2}`},
		{"add inserts before an index", `{"x":["p","q"]}`, `[{"op":"add","path":"/x/1","value":"n"}]`, patchOK, `{"x":["p","n","q"]}`},
		{"add at the length appends", `{"x":["p"]}`, `[{"op":"add","path":"/x/1","value":"n"}]`, patchOK, `{"x":["p","n"]}`},
		{"add with - appends", `{"x":[]}`, `[{"op":"add","path":"/x/-","value":{"k":null}}]`, patchOK, `{"x":[{"k":null}]}`},
		{"add a nested object", `{"o":{}}`, `[{"op":"add","path":"/o/deep","value":{"m":{"n":[1,2]}}}]`, patchOK, `{"o":{"deep":{"m":{"n":[1,2]}}}}`},
		{"add the whole document", `{"a":1}`, `[{"op":"add","path":"","value":{"z":0}}]`, patchOK, `{"z":0}`},
		{"add to the empty-string member", `{"a":1}`, `[{"op":"add","path":"/","value":2}]`, patchOK, `{"a":1,"":2}`},
		{"add past the end", `{"x":["p"]}`, `[{"op":"add","path":"/x/2","value":"n"}]`, patchNotApplied, ""},
		{"add with a leading-zero index", `{"x":["p","q"]}`, `[{"op":"add","path":"/x/01","value":"n"}]`, patchNotApplied, ""},
		{"add with a negative index", `{"x":["p"]}`, `[{"op":"add","path":"/x/-1","value":"n"}]`, patchNotApplied, ""},
		{"add under a missing parent", `{"a":1}`, `[{"op":"add","path":"/nope/b","value":1}]`, patchNotApplied, ""},
		{"add under a scalar", `{"a":1}`, `[{"op":"add","path":"/a/b","value":1}]`, patchNotApplied, ""},

		// remove
		{"remove a member", `{"a":1,"b":{"c":2},"d":3}`, `[{"op":"remove","path":"/b"}]`, patchOK, `{"a":1,"d":3}`},
		{"remove an item shifts the rest", `{"x":[1,2,3]}`, `[{"op":"remove","path":"/x/0"}]`, patchOK, `{"x":[2,3]}`},
		{"remove a missing member", `{"a":1}`, `[{"op":"remove","path":"/b"}]`, patchNotApplied, ""},
		{"remove with -", `{"x":[1]}`, `[{"op":"remove","path":"/x/-"}]`, patchNotApplied, ""},
		{"remove out of range", `{"x":[1]}`, `[{"op":"remove","path":"/x/1"}]`, patchNotApplied, ""},
		{"remove the whole document", `{"a":1}`, `[{"op":"remove","path":""}]`, patchNotApplied, ""},

		// replace
		{"replace keeps the member's place", `{"a":1,"b":2,"c":3}`, `[{"op":"replace","path":"/b","value":"two"}]`, patchOK, `{"a":1,"b":"two","c":3}`},
		{"replace an item", `{"x":[1,2]}`, `[{"op":"replace","path":"/x/1","value":{"v":2}}]`, patchOK, `{"x":[1,{"v":2}]}`},
		{"replace the whole document", `{"a":1}`, `[{"op":"replace","path":"","value":{"b":2}}]`, patchOK, `{"b":2}`},
		{"replace a missing member", `{"a":1}`, `[{"op":"replace","path":"/b","value":2}]`, patchNotApplied, ""},
		{"replace with -", `{"x":[1]}`, `[{"op":"replace","path":"/x/-","value":2}]`, patchNotApplied, ""},

		// move
		{"move a member", `{"a":{"b":1},"c":{}}`, `[{"op":"move","from":"/a/b","path":"/c/d"}]`, patchOK, `{"a":{},"c":{"d":1}}`},
		{"move an item within an array", `{"x":["p","q","r"]}`, `[{"op":"move","from":"/x/0","path":"/x/2"}]`, patchOK, `{"x":["q","r","p"]}`},
		{"move an item to the end", `{"x":["p","q"],"y":["r"]}`, `[{"op":"move","from":"/x/0","path":"/y/-"}]`, patchOK, `{"x":["q"],"y":["r","p"]}`},
		{"move onto itself", `{"a":1,"b":2}`, `[{"op":"move","from":"/a","path":"/a"}]`, patchOK, `{"a":1,"b":2}`},
		{"move from a missing member", `{"a":1}`, `[{"op":"move","from":"/b","path":"/c"}]`, patchNotApplied, ""},
		{"move into its own child", `{"a":{"b":{}}}`, `[{"op":"move","from":"/a","path":"/a/b/c"}]`, patchMalformed, ""},
		{"move to a sibling with a common prefix", `{"a":1}`, `[{"op":"move","from":"/a","path":"/ab"}]`, patchOK, `{"ab":1}`},

		// copy
		{"copy a subtree", `{"a":{"b":[1]}}`, `[{"op":"copy","from":"/a","path":"/c"}]`, patchOK, `{"a":{"b":[1]},"c":{"b":[1]}}`},
		{"copy is deep", `{"a":{"b":[1]}}`, `[{"op":"copy","from":"/a","path":"/c"},{"op":"add","path":"/c/b/-","value":2}]`, patchOK, `{"a":{"b":[1]},"c":{"b":[1,2]}}`},
		{"copy the document into itself", `{"a":1}`, `[{"op":"copy","from":"","path":"/self"}]`, patchOK, `{"a":1,"self":{"a":1}}`},
		{"copy from a missing member", `{"a":1}`, `[{"op":"copy","from":"/z","path":"/c"}]`, patchNotApplied, ""},

		// test
		{"test equal string", `{"s":"caf\u00e9"}`, `[{"op":"test","path":"/s","value":"café"}]`, patchOK, `{"s":"caf\u00e9"}`},
		{"test numbers by value", `{"n":10}`, `[{"op":"test","path":"/n","value":1.0e1},{"op":"test","path":"/n","value":10.000}]`, patchOK, `{"n":10}`},
		{"test zero and minus zero", `{"n":0}`, `[{"op":"test","path":"/n","value":-0.0}]`, patchOK, `{"n":0}`},
		{"test objects in any order", `{"o":{"a":1,"b":[true,null]}}`, `[{"op":"test","path":"/o","value":{"b":[true,null],"a":1}}]`, patchOK, `{"o":{"a":1,"b":[true,null]}}`},
		{"test the whole document", `{"a":[1]}`, `[{"op":"test","path":"","value":{"a":[1]}}]`, patchOK, `{"a":[1]}`},
		{"test different string", `{"s":"a"}`, `[{"op":"test","path":"/s","value":"b"}]`, patchNotApplied, ""},
		{"test string against number", `{"n":1}`, `[{"op":"test","path":"/n","value":"1"}]`, patchNotApplied, ""},
		{"test different number", `{"n":1}`, `[{"op":"test","path":"/n","value":1.5}]`, patchNotApplied, ""},
		{"test arrays in order", `{"x":[1,2]}`, `[{"op":"test","path":"/x","value":[2,1]}]`, patchNotApplied, ""},
		{"test object with an extra member", `{"o":{"a":1}}`, `[{"op":"test","path":"/o","value":{"a":1,"b":2}}]`, patchNotApplied, ""},
		{"test a missing member", `{"a":1}`, `[{"op":"test","path":"/b","value":1}]`, patchNotApplied, ""},
		{"test null against a missing member", `{"a":1}`, `[{"op":"test","path":"/b","value":null}]`, patchNotApplied, ""},
		{"failed test undoes earlier operations", `{"a":1}`, `[{"op":"add","path":"/b","value":2},{"op":"test","path":"/a","value":2}]`, patchNotApplied, ""},

		// JSON Pointer escaping
		{"~1 is a slash", `{"a/b":1}`, `[{"op":"replace","path":"/a~1b","value":2}]`, patchOK, `{"a/b":2}`},
		{"~0 is a tilde", `{"m~n":1}`, `[{"op":"remove","path":"/m~0n"}]`, patchOK, `{}`},
		{"~01 is a tilde and a one", `{"~1":1,"/":2}`, `[{"op":"remove","path":"/~01"}]`, patchOK, `{"/":2}`},
		{"a bare ~ is malformed", `{"a":1}`, `[{"op":"remove","path":"/a~"}]`, patchMalformed, ""},
		{"~2 is malformed", `{"a":1}`, `[{"op":"remove","path":"/a~2"}]`, patchMalformed, ""},
		{"a pointer without the leading slash", `{"a":1}`, `[{"op":"remove","path":"a"}]`, patchMalformed, ""},

		// several operations, in order
		{"operations apply in order", `{"x":[]}`, `[{"op":"add","path":"/x/-","value":1},{"op":"add","path":"/x/0","value":0},{"op":"test","path":"/x","value":[0,1]},{"op":"move","from":"/x","path":"/y"}]`, patchOK, `{"y":[0,1]}`},
		{"the empty patch", `{"a":1}`, `[]`, patchOK, `{"a":1}`},
		{"members of other operations are ignored", `{"a":1}`, `[{"op":"remove","path":"/a","value":5,"from":"/q","note":"x"}]`, patchOK, `{}`},

		// malformed documents
		{"not an array", `{"a":1}`, `{"op":"remove","path":"/a"}`, patchMalformed, ""},
		{"not JSON", `{"a":1}`, `[{"op":"remove",}]`, patchMalformed, ""},
		{"trailing data", `{"a":1}`, `[] []`, patchMalformed, ""},
		{"an operation that is not an object", `{"a":1}`, `["remove /a"]`, patchMalformed, ""},
		{"unknown op", `{"a":1}`, `[{"op":"delete","path":"/a"}]`, patchMalformed, ""},
		{"op in the wrong case", `{"a":1}`, `[{"op":"Remove","path":"/a"}]`, patchMalformed, ""},
		{"no op", `{"a":1}`, `[{"path":"/a"}]`, patchMalformed, ""},
		{"op not a string", `{"a":1}`, `[{"op":1,"path":"/a"}]`, patchMalformed, ""},
		{"no path", `{"a":1}`, `[{"op":"remove"}]`, patchMalformed, ""},
		{"path not a string", `{"a":1}`, `[{"op":"remove","path":["a"]}]`, patchMalformed, ""},
		{"add without value", `{"a":1}`, `[{"op":"add","path":"/b"}]`, patchMalformed, ""},
		{"replace without value", `{"a":1}`, `[{"op":"replace","path":"/a"}]`, patchMalformed, ""},
		{"test without value", `{"a":1}`, `[{"op":"test","path":"/a"}]`, patchMalformed, ""},
		{"copy without from", `{"a":1}`, `[{"op":"copy","path":"/b"}]`, patchMalformed, ""},
		{"move with a malformed from", `{"a":1}`, `[{"op":"move","from":"a","path":"/b"}]`, patchMalformed, ""},
		{"duplicate op", `{"a":1}`, `[{"op":"add","path":"/b","op":"remove","value":1}]`, patchMalformed, ""},
		{"duplicate path", `{"a":1}`, `[{"op":"remove","path":"/a","path":"/b"}]`, patchMalformed, ""},
		{"path and Path", `{"a":1}`, `[{"op":"remove","path":"/a","Path":"/b"}]`, patchMalformed, ""},
		{"Value only", `{"a":1}`, `[{"op":"add","path":"/b","Value":1}]`, patchMalformed, ""},
		{"duplicate member inside a value", `{"a":1}`, `[{"op":"add","path":"/b","value":{"k":1,"k":2}}]`, patchMalformed, ""},
		{"case-variant members inside a value", `{"a":1}`, `[{"op":"add","path":"/b","value":{"status":"a","Status":"b"}}]`, patchMalformed, ""},
		{"invalid UTF-8", `{"a":1}`, "[{\"op\":\"add\",\"path\":\"/b\",\"value\":\"\xff\"}]", patchMalformed, ""},
		{"lone surrogate", `{"a":1}`, `[{"op":"add","path":"/b","value":"\ud800"}]`, patchMalformed, ""},
		{"empty body", `{"a":1}`, ``, patchMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePatch([]byte(tt.patch))
			if tt.outcome == patchMalformed {
				if errs.CodeOf(err) != errs.Invalid || errors.Is(err, ErrPatchNotApplied) || errs.MessageOf(err) == "" {
					t.Fatalf("ParsePatch = %v, want a malformed-patch error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePatch: %v", err)
			}
			applyChecked(t, tt.doc, p, tt.outcome, tt.want)
		})
	}
}

// applyChecked applies p to doc, checks that doc was left as it was and that the outcome is
// the one expected (for patchOK, the result want), and returns what ApplyPatch returned.
func applyChecked(t *testing.T, doc string, p *Patch, outcome patchOutcome, want string) ([]byte, error) {
	t.Helper()
	in := []byte(doc)
	got, err := ApplyPatch(in, p, 1<<20)
	if string(in) != doc {
		t.Errorf("ApplyPatch modified its input: %s", in)
	}
	switch outcome {
	case patchOK:
		if err != nil {
			t.Fatalf("ApplyPatch: %v", err)
		}
		if string(got) != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
	case patchNotApplied:
		if errs.CodeOf(err) != errs.Invalid || !errors.Is(err, ErrPatchNotApplied) {
			t.Fatalf("ApplyPatch = %s, %v; want ErrPatchNotApplied", got, err)
		}
	case patchMalformed:
		if errs.CodeOf(err) != errs.Invalid || errors.Is(err, ErrPatchNotApplied) {
			t.Fatalf("ApplyPatch = %s, %v; want Invalid, not ErrPatchNotApplied", got, err)
		}
	}
	return got, err
}

// TestApplyPatchAgain: a Patch is not changed by applying it, so a retried transaction
// applies the same operations to the document it reads then.
func TestApplyPatchAgain(t *testing.T) {
	p, err := ParsePatch([]byte(`[{"op":"add","path":"/x","value":{"list":[1]}},{"op":"add","path":"/x/list/-","value":2}]`))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := ApplyPatch([]byte(`{"a":1}`), p, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"a":1,"x":{"list":[1,2]}}`; string(got) != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
}

// TestApplyPatchBounds: copies that double the document stop at the size bound (413),
// not at the memory limit; a result nested deeper than Parse allows is refused; a patch
// with too many operations is refused before any is applied.
func TestApplyPatchBounds(t *testing.T) {
	var ops []string
	for i := range 64 {
		ops = append(ops, `{"op":"copy","from":"","path":"/d`+strconv.Itoa(i)+`"}`)
	}
	p, err := ParsePatch([]byte("[" + strings.Join(ops, ",") + "]"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyPatch([]byte(`{"a":"0123456789"}`), p, 64<<10); errs.CodeOf(err) != errs.TooLarge {
		t.Errorf("doubling copies: err = %v, want TooLarge", err)
	}

	deep := strings.Repeat(`{"a":`, 90) + "1" + strings.Repeat("}", 90)
	p, err = ParsePatch([]byte(`[{"op":"add","path":"/a/a/a/a/a/a/a/a/a/a","value":` + deep + `}]`))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Repeat(`{"a":`, 10) + "1" + strings.Repeat("}", 10)
	if _, err := ApplyPatch([]byte(doc), p, 1<<20); errs.CodeOf(err) != errs.Invalid || errors.Is(err, ErrPatchNotApplied) {
		t.Errorf("too deep: err = %v, want Invalid (not ErrPatchNotApplied)", err)
	}

	many := "[" + strings.Repeat(`{"op":"test","path":"","value":1},`, MaxPatchOps) + `{"op":"test","path":"","value":1}]`
	if _, err := ParsePatch([]byte(many)); errs.CodeOf(err) != errs.Invalid {
		t.Errorf("%d operations: err = %v, want Invalid", MaxPatchOps+1, err)
	}
}

// TestApplyPatchWork: a patch whose operations each walk or shift a large object or array
// (a member lookup scans the object's names; an array insert or remove moves the items
// after it; a test compares objects name by name) is refused with TooLarge once its work
// passes what the size bound warrants, instead of holding a CPU for minutes within the body
// limit; ordinary patches of many operations still apply.
func TestApplyPatchWork(t *testing.T) {
	const maxBytes = 1 << 20
	bigObject := func(n int) string {
		var b strings.Builder
		b.WriteByte('{')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`"k` + strconv.Itoa(i) + `":0`)
		}
		b.WriteByte('}')
		return b.String()
	}
	repeat := func(first, op string, n int) string {
		return "[" + first + strings.Repeat(","+op, n) + "]"
	}
	obj := bigObject(20000)
	arr := "[" + strings.Repeat("0,", 150000) + "0]"
	for _, tt := range []struct{ name, patch string }{
		{"test of a large object against itself", `[{"op":"add","path":"/x","value":` + obj + `},{"op":"test","path":"/x","value":` + obj + `}]`},
		{"removes at the front of a large array", repeat(`{"op":"add","path":"/x","value":`+arr+`}`, `{"op":"remove","path":"/x/0"}`, 3000)},
		{"inserts at the front of a large array", repeat(`{"op":"add","path":"/x","value":`+arr+`}`, `{"op":"add","path":"/x/0","value":1}`, 3000)},
		{"lookups of the last member of a large object", repeat(`{"op":"add","path":"/x","value":`+obj+`}`, `{"op":"test","path":"/x/k19999","value":0}`, 3000)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePatch([]byte(tt.patch))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ApplyPatch([]byte(`{"a":1}`), p, maxBytes); errs.CodeOf(err) != errs.TooLarge || errors.Is(err, ErrPatchNotApplied) {
				t.Fatalf("err = %v, want TooLarge", err)
			}
		})
	}
	// MaxPatchOps ordinary operations on a resource-sized document apply.
	p, err := ParsePatch([]byte(repeat(`{"op":"add","path":"/list","value":[]}`, `{"op":"add","path":"/list/-","value":{"a":[1]}}`, MaxPatchOps-1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyPatch([]byte(bigObject(60)), p, maxBytes); err != nil {
		t.Fatalf("ordinary patch: %v", err)
	}
}

// TestApplyPatchValues: a tree of the patch engine costs about a hundred bytes of memory
// per JSON value, far more than the two bytes a value like 0 takes in the body, so the
// values are bounded, not only the bytes: a patch document, or a document that copies make
// grow, of more than MaxPatchValues values is refused with TooLarge before it takes
// gigabytes.
func TestApplyPatchValues(t *testing.T) {
	items := "[" + strings.Repeat("0,", MaxPatchValues) + "0]"
	_, err := ParsePatch([]byte(`[{"op":"add","path":"/x","value":` + items + `}]`))
	if errs.CodeOf(err) != errs.TooLarge {
		t.Errorf("a patch of more than MaxPatchValues values: err = %v, want TooLarge", err)
	}
	doc := `{"a":[` + strings.Repeat("0,", MaxPatchValues/8) + `0]}`
	var ops []string
	for i := range 12 {
		ops = append(ops, `{"op":"copy","from":"/a","path":"/b`+strconv.Itoa(i)+`"}`)
	}
	p, err := ParsePatch([]byte("[" + strings.Join(ops, ",") + "]"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyPatch([]byte(doc), p, 32<<20); errs.CodeOf(err) != errs.TooLarge {
		t.Errorf("copies past MaxPatchValues values within the size bound: err = %v, want TooLarge", err)
	}
	if _, err := ApplyPatch([]byte(`{"a":`+items+`}`), &Patch{}, 32<<20); errs.CodeOf(err) != errs.TooLarge {
		t.Errorf("a document of more than MaxPatchValues values: err = %v, want TooLarge", err)
	}
	// Up to the bound, the copies apply.
	if _, err := ApplyPatch([]byte(doc), &Patch{ops: p.ops[:6]}, 32<<20); err != nil {
		t.Errorf("copies within MaxPatchValues: %v", err)
	}
}

// TestApplyPatchMessages: messages name the operation and a path made of element names,
// never a value or a path that could carry one.
func TestApplyPatchMessages(t *testing.T) {
	doc := []byte(`{"resourceType":"Patient","name":[{"family":"Secret"}]}`)
	for _, tt := range []struct{ patch, want, notWant string }{
		{`[{"op":"test","path":"/name/0/family","value":"Guess"}]`, `operation 1 (test "/name/0/family"): test failed`, "Guess"},
		{`[{"op":"add","path":"/gender","value":"x"},{"op":"remove","path":"/name/3"}]`, `operation 2 (remove "/name/3")`, ""},
		{`[{"op":"remove","path":"/Jane Doe 1970-01-01"}]`, `operation 1 (remove): the path does not exist`, "Jane"},
	} {
		p, err := ParsePatch([]byte(tt.patch))
		if err != nil {
			t.Fatal(err)
		}
		_, err = ApplyPatch(doc, p, 1<<20)
		msg := errs.MessageOf(err)
		if !strings.Contains(msg, tt.want) || tt.notWant != "" && strings.Contains(msg, tt.notWant) {
			t.Errorf("%s: message %q, want it to contain %q and not %q", tt.patch, msg, tt.want, tt.notWant)
		}
	}
	_, err := ParsePatch([]byte(`[{"op":"add","path":"/a"}]`))
	if msg := errs.MessageOf(err); msg != `JSON Patch: operation 1 (add) has no "value"` {
		t.Errorf("message %q", msg)
	}
}

// TestResourceApplyPatch: the patched resource is validated like any resource (Parse),
// and a patch may not change what the resource is (resourceType, id).
func TestResourceApplyPatch(t *testing.T) {
	r := MustParse([]byte(`{"resourceType":"Observation","id":"o1","meta":{"versionId":"3"},"status":"preliminary","code":{"text":"x"},"valueString":"a"}`))
	for _, tt := range []struct {
		name, patch string
		ok          bool
		path        string
	}{
		{"status and value", `[{"op":"test","path":"/status","value":"preliminary"},{"op":"replace","path":"/status","value":"final"},{"op":"remove","path":"/valueString"},{"op":"add","path":"/valueBoolean","value":true}]`, true, ""},
		{"unknown element", `[{"op":"add","path":"/colour","value":"red"}]`, false, "Observation.colour"},
		{"two choice variants", `[{"op":"add","path":"/valueBoolean","value":true}]`, false, "Observation.valueBoolean"},
		{"required element removed", `[{"op":"remove","path":"/status"}]`, false, "Observation.status"},
		{"case variant of a member", `[{"op":"add","path":"/Status","value":"final"}]`, false, ""},
		{"id changed", `[{"op":"replace","path":"/id","value":"o2"}]`, false, "Observation.id"},
		{"id removed", `[{"op":"remove","path":"/id"}]`, false, "Observation.id"},
		{"resourceType changed", `[{"op":"replace","path":"","value":{"resourceType":"Basic","id":"o1","code":{"text":"x"}}}]`, false, "Observation.resourceType"},
		{"resourceType removed", `[{"op":"remove","path":"/resourceType"}]`, false, ""},
		{"resourceType unknown", `[{"op":"replace","path":"/resourceType","value":"Nope"}]`, false, ""},
		{"resourceType of other elements", `[{"op":"replace","path":"/resourceType","value":"Basic"}]`, false, "Basic.status"},
		{"not an object any more", `[{"op":"replace","path":"","value":[]}]`, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePatch([]byte(tt.patch))
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.ApplyPatch(p, 1<<20)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if want := `{"resourceType":"Observation","id":"o1","meta":{"versionId":"3"},"status":"final","code":{"text":"x"},"valueBoolean":true}`; string(got.Bytes()) != want {
					t.Errorf("got  %s\nwant %s", got.Bytes(), want)
				}
				return
			}
			if errs.CodeOf(err) != errs.Invalid || errors.Is(err, ErrPatchNotApplied) {
				t.Fatalf("err = %v, want Invalid", err)
			}
			if tt.path != "" && errs.PathOf(err) != tt.path {
				t.Errorf("path %q, want %q", errs.PathOf(err), tt.path)
			}
		})
	}
	// Parse's errors as the doc describes them: a removed or unknown resourceType is named
	// by the message, with no path.
	for patch, msg := range map[string]string{
		`[{"op":"remove","path":"/resourceType"}]`:                 "missing resourceType",
		`[{"op":"replace","path":"/resourceType","value":"Nope"}]`: "unknown resourceType",
	} {
		p, err := ParsePatch([]byte(patch))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.ApplyPatch(p, 1<<20); errs.CodeOf(err) != errs.Invalid || errs.MessageOf(err) != msg || errs.PathOf(err) != "" {
			t.Errorf("%s: %v (message %q, path %q); want %q without a path", patch, err, errs.MessageOf(err), errs.PathOf(err), msg)
		}
	}
}

func FuzzApplyPatch(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":"c"}]}`), []byte(`[{"op":"copy","from":"/a/1","path":"/a/-"},{"op":"test","path":"/a/2/b","value":"c"}]`))
	f.Add([]byte(`{"x~y":{"/":[]}}`), []byte(`[{"op":"move","from":"/x~0y/~1","path":"/z"},{"op":"remove","path":"/x~0y"}]`))
	f.Add([]byte(`{"a":1}`), []byte(`[{"op":"add","path":"/A","value":2}]`)) // a name that differs from one only in case
	f.Fuzz(func(t *testing.T, doc, patch []byte) {
		p, err := ParsePatch(patch)
		if err != nil {
			if c := errs.CodeOf(err); c != errs.Invalid && c != errs.TooLarge {
				t.Fatalf("ParsePatch: code %v", c)
			}
			return
		}
		out, err := ApplyPatch(doc, p, 1<<16)
		if err != nil {
			return
		}
		if len(out) > 1<<16 {
			t.Fatalf("result of %d bytes over the bound", len(out))
		}
		// The result is JSON again and, unless a patch added a member name that differs
		// from another only in case (which Parse, not ApplyPatch, refuses), strict JSON
		// that the empty patch leaves unchanged.
		if !json.Valid(out) {
			t.Fatalf("result %q is not JSON", out)
		}
		again, err := ApplyPatch(out, &Patch{}, 1<<16)
		if err == nil && string(again) != string(out) || err != nil && errs.CodeOf(err) != errs.Invalid {
			t.Fatalf("result %q does not round-trip: %q, %v", out, again, err)
		}
	})
}

// TestApplyPatchWithin: patches that share a PatchBudget take their work from it, a
// failed patch's work included, and once it is spent the next patch is refused before it
// is applied; ApplyPatch gives each patch a budget of its own.
func TestApplyPatchWithin(t *testing.T) {
	ids := strings.TrimSuffix(strings.Repeat(`{"value":"v"},`, 2000), ",")
	doc := []byte(`{"resourceType":"Patient","identifier":[` + ids + `]}`)
	scan, err := ParseFHIRPathPatch([]byte(`{"resourceType":"Parameters","parameter":[{"name":"operation","part":[` +
		`{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.identifier.where(value = 'none')"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b := NewPatchBudget(1 << 20)
	before := b.left
	if _, err := ApplyPatchWithin(doc, scan, 1<<20, &b); err != nil {
		t.Fatal(err)
	}
	used := before - b.left
	if used < 2000 {
		t.Fatalf("a scan of 2000 items used %d units of work", used)
	}

	b = PatchBudget{left: used * 3 / 2, bounded: true}
	if _, err := ApplyPatchWithin(doc, scan, 1<<20, &b); err != nil {
		t.Fatalf("first patch within the budget: %v", err)
	}
	if _, err := ApplyPatchWithin(doc, scan, 1<<20, &b); errs.CodeOf(err) != errs.TooLarge {
		t.Fatalf("second patch beyond the shared budget: %v, want TooLarge", err)
	}
	if !b.Spent() {
		t.Fatalf("budget has %d left after a patch it refused", b.left)
	}
	if _, err := ApplyPatchWithin([]byte(`{}`), &Patch{ops: []patchOp{}}, 1<<20, &b); errs.CodeOf(err) != errs.TooLarge {
		t.Errorf("a patch within a spent budget: %v, want TooLarge", err)
	}
	// Each ApplyPatch has its own budget.
	for range 3 {
		if _, err := ApplyPatch(doc, scan, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	var none PatchBudget
	if _, err := ApplyPatchWithin(doc, scan, 0, &none); err != nil {
		t.Errorf("the zero budget bounds nothing: %v", err)
	}
}
