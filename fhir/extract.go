package fhir

import (
	"encoding/json"
	"slices"
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
	top, ok := members(r.raw)
	if !ok { // r was validated by Parse; cannot happen
		return nil
	}
	root := node{typ: r.ResourceType, raw: r.raw, ms: top}
	var out []IndexValue
	for _, p := range Params(r.ResourceType) {
		for _, path := range p.Paths {
			for _, n := range evalPath(root, path) {
				out = appendValues(out, p, n)
			}
		}
	}
	return out
}

// node is a JSON value found by a path, with its FHIR type. ms caches its members.
type node struct {
	typ string
	raw []byte
	ms  []member
}

func (n *node) members() []member {
	if n.ms == nil {
		n.ms, _ = members(n.raw)
	}
	return n.ms
}

// evalPath evaluates a ParamDef path over validated JSON, guided by the R4 table.
func evalPath(root node, path string) []node {
	cur := []node{root}
	for _, step := range splitPath(path) {
		var next []node
		if cond, ok := strings.CutPrefix(step, "where("); ok {
			k, v, _ := strings.Cut(strings.TrimSuffix(cond, ")"), "=")
			v = strings.Trim(v, "'")
			for _, n := range cur {
				for _, m := range n.members() {
					if m.Key == k && jsonStringValue(m.Value) == v {
						next = append(next, n)
						break
					}
				}
			}
			cur = next
			continue
		}
		base, choice := strings.CutSuffix(step, "[x]")
		for i := range cur {
			fields := r4Types[cur[i].typ]
			for _, m := range cur[i].members() {
				f, ok := fields[m.Key]
				if !ok || choice && f.Choice != base || !choice && m.Key != step {
					continue
				}
				if !f.Array {
					next = append(next, node{typ: f.Type, raw: m.Value})
					continue
				}
				for _, item := range arrayItems(m.Value) {
					if string(item) != "null" {
						next = append(next, node{typ: f.Type, raw: item})
					}
				}
			}
		}
		cur = next
	}
	return cur
}

// arrayItems splits a validated JSON array into its items.
func arrayItems(raw []byte) [][]byte {
	s := scanner{data: raw}
	if !s.consume('[') || s.consume(']') {
		return nil
	}
	var out [][]byte
	for {
		s.skipWS()
		start := s.pos
		if !s.skip(maxDepth) {
			return out
		}
		out = append(out, raw[start:s.pos])
		if !s.consume(',') {
			return out
		}
	}
}

// jsonStringValue returns the JSON string in raw, or "" if raw is not a string.
func jsonStringValue(raw []byte) string {
	s := scanner{data: raw}
	v, ok := s.str()
	if !ok {
		return ""
	}
	return string(v)
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

// Typed views of the datatypes Extract reads. The input has passed Parse, so it holds no
// duplicate or case-variant names and encoding/json sees exactly what was validated.
type (
	codingJSON struct {
		System string `json:"system"`
		Code   string `json:"code"`
	}
	codeableConceptJSON struct {
		Coding []codingJSON `json:"coding"`
	}
	identifierJSON struct {
		System string `json:"system"`
		Value  string `json:"value"`
	}
	referenceJSON struct {
		Reference string `json:"reference"`
	}
	periodJSON struct {
		Start string `json:"start"`
		End   string `json:"end"`
	}
	quantityJSON struct {
		Value  json.Number `json:"value"`
		System string      `json:"system"`
		Code   string      `json:"code"`
		Unit   string      `json:"unit"`
	}
	humanNameJSON struct {
		Text   string   `json:"text"`
		Family string   `json:"family"`
		Given  []string `json:"given"`
		Prefix []string `json:"prefix"`
		Suffix []string `json:"suffix"`
	}
	addressJSON struct {
		Text       string   `json:"text"`
		Line       []string `json:"line"`
		City       string   `json:"city"`
		District   string   `json:"district"`
		State      string   `json:"state"`
		PostalCode string   `json:"postalCode"`
		Country    string   `json:"country"`
	}
)

func decode(raw []byte, v any) bool { return json.Unmarshal(raw, v) == nil }

func appendValues(out []IndexValue, p ParamDef, n node) []IndexValue {
	iv := IndexValue{Param: p.Name, Type: p.Type}
	switch p.Type {
	case ParamToken:
		switch n.typ {
		case "Coding":
			var c codingJSON
			if decode(n.raw, &c) && c.Code != "" {
				iv.System, iv.Code = c.System, c.Code
				out = append(out, iv)
			}
		case "CodeableConcept":
			var cc codeableConceptJSON
			if decode(n.raw, &cc) {
				for _, c := range cc.Coding {
					if c.Code != "" {
						iv.System, iv.Code = c.System, c.Code
						out = append(out, iv)
					}
				}
			}
		case "Identifier":
			var id identifierJSON
			if decode(n.raw, &id) && id.Value != "" {
				iv.System, iv.Code = id.System, id.Value
				out = append(out, iv)
			}
		case "ContactPoint":
			var cp identifierJSON // ContactPoint also has system and value
			if decode(n.raw, &cp) && cp.Value != "" {
				iv.Code = cp.Value
				out = append(out, iv)
			}
		case "boolean":
			if v := string(n.raw); v == "true" || v == "false" {
				iv.Code = v
				out = append(out, iv)
			}
		default:
			if isPrimitive(n.typ) && primitiveKinds[n.typ] == kindString {
				if iv.Code = jsonStringValue(n.raw); iv.Code != "" {
					out = append(out, iv)
				}
			}
		}
	case ParamReference:
		var rj referenceJSON
		if n.typ != "Reference" || !decode(n.raw, &rj) {
			return out
		}
		r, err := ParseReference(rj.Reference)
		if err != nil {
			return out
		}
		switch r.Kind {
		case RefRelative:
			iv.RefType, iv.RefID = r.Type, r.ID
		case RefAbsolute:
			iv.RefType, iv.RefID, iv.RefURL = r.Type, r.ID, rj.Reference
		case RefURN, RefContained:
			iv.RefURL = rj.Reference
		default:
			return out
		}
		if len(p.Targets) > 0 && !slices.Contains(p.Targets, iv.RefType) {
			return out
		}
		out = append(out, iv)
	case ParamDate:
		switch n.typ {
		case "date", "dateTime", "instant":
			if dv, ok := parseDate(jsonStringValue(n.raw), kindDateTime); ok {
				iv.Low, iv.High = dv.Low, dv.High
				out = append(out, iv)
			}
		case "Period":
			var pj periodJSON
			if !decode(n.raw, &pj) {
				return out
			}
			start, okS := parseDate(pj.Start, kindDateTime)
			end, okE := parseDate(pj.End, kindDateTime)
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
			var h humanNameJSON
			if decode(n.raw, &h) {
				parts = append(append(append([]string{h.Text, h.Family}, h.Given...), h.Prefix...), h.Suffix...)
			}
		case "Address":
			var a addressJSON
			if decode(n.raw, &a) {
				parts = append(append([]string{a.Text}, a.Line...), a.City, a.District, a.State, a.PostalCode, a.Country)
			}
		default:
			if isPrimitive(n.typ) && primitiveKinds[n.typ] == kindString {
				parts = []string{jsonStringValue(n.raw)}
			}
		}
		for _, s := range parts {
			if s != "" {
				iv.Exact, iv.Norm = s, NormalizeString(s)
				out = append(out, iv)
			}
		}
	case ParamQuantity, ParamNumber:
		var num json.Number
		switch n.typ {
		case "Quantity", "Age", "Duration", "Distance", "Count", "Money":
			var q quantityJSON
			if !decode(n.raw, &q) {
				return out
			}
			num, iv.System, iv.Code = q.Value, q.System, q.Code
			if iv.Code == "" {
				iv.Code = q.Unit
			}
		case "decimal", "integer", "positiveInt", "unsignedInt":
			num = json.Number(n.raw)
		}
		f, err := num.Float64()
		if num == "" || err != nil {
			return out
		}
		iv.Number, iv.Decimal = f, string(num)
		out = append(out, iv)
	case ParamURI:
		if iv.Exact = jsonStringValue(n.raw); iv.Exact != "" {
			out = append(out, iv)
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
