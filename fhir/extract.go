package fhir

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// IndexValue is one search index row extracted from a resource. Which fields are set
// depends on Type.
type IndexValue struct {
	Param string
	Type  ParamType

	// Token: System and Code. For an Identifier, Code is its value; for a ContactPoint, Code
	// is its value and System is empty; for a code, boolean, id or string element, System is
	// empty. A CodeableConcept gives one row per coding.
	System, Code string

	// Reference: the target's type and id for relative and absolute references (RefURL keeps
	// absolute, urn and contained references verbatim; RefType/RefID are empty for urn and
	// contained ones).
	RefType, RefID, RefURL string

	// Date: the value covers [Low, High) in UTC. A zero Low means open at the start (a Period
	// without start) and a zero High open at the end (a Period without end).
	Low, High time.Time

	// String: Norm is Exact lower-cased with accents removed (for the default starts-with and
	// :contains searches); Exact is the value as written (for :exact).
	Norm, Exact string

	// Quantity and number: Number is the value; for a Quantity, System and Code are its unit
	// system and code (Code falls back to unit when code is absent). Decimal keeps the value
	// as written.
	Number  float64
	Decimal string
}

// Extract returns the index rows of r for every search parameter supported for its type,
// including _id and _lastUpdated. Values that cannot be indexed (a malformed reference, a
// date in a string element) are skipped. The order is stable: by parameter, then document
// order.
func Extract(r *Resource) []IndexValue {
	var doc any
	d := json.NewDecoder(bytes.NewReader(r.raw))
	d.UseNumber()
	if err := d.Decode(&doc); err != nil { // r was validated by Parse; cannot happen
		return nil
	}
	var out []IndexValue
	for _, p := range Params(r.ResourceType) {
		for _, path := range p.Paths {
			for _, n := range evalPath(r.ResourceType, doc, path) {
				out = appendValues(out, p, n)
			}
		}
	}
	return out
}

// node is a value found by a path with its FHIR type.
type node struct {
	typ string
	v   any
}

// evalPath evaluates a ParamDef path against the decoded resource.
func evalPath(rt string, doc any, path string) []node {
	cur := []node{{typ: rt, v: doc}}
	for _, step := range splitPath(path) {
		var next []node
		if strings.HasPrefix(step, "where(") {
			k, v, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(step, "where("), ")"), "=")
			v = strings.Trim(v, "'")
			for _, n := range cur {
				if m, ok := n.v.(map[string]any); ok && m[k] == v {
					next = append(next, n)
				}
			}
			cur = next
			continue
		}
		for _, n := range cur {
			m, ok := n.v.(map[string]any)
			if !ok {
				continue
			}
			fields := r4Types[n.typ]
			if base, ok := strings.CutSuffix(step, "[x]"); ok {
				for name, f := range fields {
					if len(name) > len(base) && strings.HasPrefix(name, base) && unicode.IsUpper(rune(name[len(base)])) {
						next = appendNode(next, f.Type, m[name])
					}
				}
				continue
			}
			if f, ok := fields[step]; ok {
				next = appendNode(next, f.Type, m[step])
			}
		}
		cur = next
	}
	return cur
}

func appendNode(out []node, typ string, v any) []node {
	switch x := v.(type) {
	case nil:
	case []any:
		for _, e := range x {
			if e != nil {
				out = append(out, node{typ, e})
			}
		}
	default:
		out = append(out, node{typ, x})
	}
	return out
}

func splitPath(p string) []string {
	var out []string
	for p != "" {
		if strings.HasPrefix(p, "where(") {
			i := strings.IndexByte(p, ')')
			out = append(out, p[:i+1])
			p = strings.TrimPrefix(p[i+1:], ".")
			continue
		}
		step, rest, _ := strings.Cut(p, ".")
		out = append(out, step)
		p = rest
	}
	return out
}

func strOf(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func appendValues(out []IndexValue, p ParamDef, n node) []IndexValue {
	iv := IndexValue{Param: p.Name, Type: p.Type}
	m, _ := n.v.(map[string]any)
	switch p.Type {
	case ParamToken:
		switch n.typ {
		case "Coding":
			iv.System, iv.Code = strOf(m, "system"), strOf(m, "code")
			if iv.Code != "" {
				out = append(out, iv)
			}
		case "CodeableConcept":
			codings, _ := m["coding"].([]any)
			for _, c := range codings {
				if cm, ok := c.(map[string]any); ok && strOf(cm, "code") != "" {
					iv.System, iv.Code = strOf(cm, "system"), strOf(cm, "code")
					out = append(out, iv)
				}
			}
		case "Identifier":
			iv.System, iv.Code = strOf(m, "system"), strOf(m, "value")
			if iv.Code != "" {
				out = append(out, iv)
			}
		case "ContactPoint":
			if iv.Code = strOf(m, "value"); iv.Code != "" {
				out = append(out, iv)
			}
		case "boolean":
			if b, ok := n.v.(bool); ok {
				iv.Code = "false"
				if b {
					iv.Code = "true"
				}
				out = append(out, iv)
			}
		default:
			if s, ok := n.v.(string); ok {
				iv.Code = s
				out = append(out, iv)
			}
		}
	case ParamReference:
		if n.typ != "Reference" {
			return out
		}
		s := strOf(m, "reference")
		r, err := ParseReference(s)
		if err != nil {
			return out
		}
		switch r.Kind {
		case RefRelative:
			iv.RefType, iv.RefID = r.Type, r.ID
		case RefAbsolute:
			iv.RefType, iv.RefID, iv.RefURL = r.Type, r.ID, s
		case RefURN, RefContained:
			iv.RefURL = s
		default:
			return out
		}
		if len(p.Targets) > 0 {
			ok := false
			for _, t := range p.Targets {
				ok = ok || t == iv.RefType
			}
			if !ok {
				return out
			}
		}
		out = append(out, iv)
	case ParamDate:
		switch n.typ {
		case "date", "dateTime", "instant":
			s, _ := n.v.(string)
			if dv, ok := parseDate(s, kindDateTime); ok {
				iv.Low, iv.High = dv.Low, dv.High
				out = append(out, iv)
			}
		case "Period":
			start, okS := parseDate(strOf(m, "start"), kindDateTime)
			end, okE := parseDate(strOf(m, "end"), kindDateTime)
			if okS {
				iv.Low = start.Low
			}
			if okE {
				iv.High = end.High
			}
			if okS || okE {
				out = append(out, iv)
			}
		}
	case ParamString:
		var parts []string
		switch n.typ {
		case "HumanName":
			parts = stringsOf(m, "text", "family", "given", "prefix", "suffix")
		case "Address":
			parts = stringsOf(m, "text", "line", "city", "district", "state", "postalCode", "country")
		default:
			if s, ok := n.v.(string); ok {
				parts = []string{s}
			}
		}
		for _, s := range parts {
			iv.Exact, iv.Norm = s, NormalizeString(s)
			out = append(out, iv)
		}
	case ParamQuantity, ParamNumber:
		var num json.Number
		switch n.typ {
		case "Quantity", "Age", "Duration", "Distance", "Count", "Money":
			num, _ = m["value"].(json.Number)
			iv.System, iv.Code = strOf(m, "system"), strOf(m, "code")
			if iv.Code == "" {
				iv.Code = strOf(m, "unit")
			}
		case "decimal", "integer", "positiveInt", "unsignedInt":
			num, _ = n.v.(json.Number)
		}
		f, err := num.Float64()
		if num == "" || err != nil {
			return out
		}
		iv.Number, iv.Decimal = f, string(num)
		out = append(out, iv)
	case ParamURI:
		if s, ok := n.v.(string); ok {
			iv.Exact = s
			out = append(out, iv)
		}
	}
	return out
}

func stringsOf(m map[string]any, keys ...string) []string {
	var out []string
	for _, k := range keys {
		switch v := m[k].(type) {
		case string:
			out = append(out, v)
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// NormalizeString folds s for string search: Unicode NFD, combining marks removed, lower
// case, runs of white space collapsed to one space, trimmed. "Ángela  Müller" → "angela muller".
func NormalizeString(s string) string {
	var b strings.Builder
	space := false
	for _, r := range norm.NFD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return norm.NFC.String(b.String())
}
