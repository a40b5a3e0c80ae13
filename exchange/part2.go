package exchange

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sync"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/jsonobj"
	"github.com/concord-hie/concord/records"
)

// part2Labels returns consent.Part2ProgramLabels as codings for store.Write.Security,
// leaving out those already in have (the rule-derived labels; the store's stamp also
// skips labels the member sent).
func part2Labels(have []fhir.Coding) []fhir.Coding {
	var out []fhir.Coding
	for _, c := range consent.Part2ProgramLabels() {
		if hasCode(have, c) {
			continue
		}
		out = append(out, labelCoding(c))
	}
	return out
}

func hasCode(cs []fhir.Coding, code string) bool {
	for _, c := range cs {
		if c.Code == code {
			return true
		}
	}
	return false
}

// labelCoding is the meta.security coding of a consent label: confidentiality codes in
// v3-Confidentiality, the rest in v3-ActCode.
func labelCoding(code string) fhir.Coding {
	if code == consent.LabelRestricted || code == consent.LabelVeryRestrict {
		return fhir.Coding{System: systemConfidentiality, Code: code}
	}
	return fhir.Coding{System: systemActCode, Code: code}
}

// How a released 42 CFR Part 2 record carries the §2.32 notice and the consent that
// permitted its disclosure (README, "42 CFR Part 2"):
//
//   - the resource's meta.security has NORDSCLCD (v3-ActCode: no redisclosure without
//     consent) besides ETH, R and 42CFRPart2, and meta.extension one extension
//     extPart2Disclosure with sub-extensions notice (valueString: consent.Part2Notice),
//     regulation (valueUri: consent.Part2NoticeURL), basis (valueCode: consent, or
//     emergency for break-the-glass), summary (valueString: the decision's plain-language
//     explanation) and, when a patient's consent permitted it, consent (valueReference:
//     Consent/{id}, readable by the recipient like any of its patient's directives) and
//     consentVersion (valueInteger);
//   - a search or $everything Bundle with any such entry also carries, once, an
//     OperationOutcome entry (search.mode outcome) whose issue holds the notice;
//   - GET Binary of a Part 2 document answers with a Concord-Part2-Notice header (the
//     notice) and Link headers to the regulation and the Consent.
//
// A member reading its own records and a patient reading their own get none of this.
const (
	extPart2Disclosure = "https://concord.example/fhir/StructureDefinition/part2-disclosure"
	relPart2Notice     = "https://concord.example/fhir/rel/part2-notice"
	relPart2Consent    = "https://concord.example/fhir/rel/part2-consent"
	headerPart2Notice  = "Concord-Part2-Notice"
)

type (
	subExtension struct {
		URL            string     `json:"url"`
		ValueString    string     `json:"valueString,omitempty"`
		ValueURI       string     `json:"valueUri,omitempty"`
		ValueCode      string     `json:"valueCode,omitempty"`
		ValueInteger   *int       `json:"valueInteger,omitempty"`
		ValueReference *reference `json:"valueReference,omitempty"`
	}
	reference struct {
		Reference string `json:"reference"`
		Display   string `json:"display,omitempty"`
	}
	extension struct {
		URL       string         `json:"url"`
		Extension []subExtension `json:"extension"`
	}
)

// part2ExtensionHead is the constant start of every disclosure extension (the notice and
// the regulation), encoded once: the notice is long, and escaping it per entry would cost
// more than everything else the decoration does.
var part2ExtensionHead = sync.OnceValue(func() []byte {
	b, _ := json.Marshal(extension{URL: extPart2Disclosure, Extension: []subExtension{
		{URL: "notice", ValueString: consent.Part2Notice},
		{URL: "regulation", ValueURI: consent.Part2NoticeURL},
	}})
	return b[:len(b)-2] // without the closing "]}"
})

// part2Extension is the meta extension for a release, as JSON.
func part2Extension(r records.Part2Release) []byte {
	basis := "consent"
	if r.Reason == consent.BreakGlassOverride {
		basis = "emergency"
	}
	rest := []subExtension{{URL: "basis", ValueCode: basis}, {URL: "summary", ValueString: r.Summary}}
	if r.Reason == consent.Permitted && r.Consent != "" {
		v := r.Version
		rest = append(rest,
			subExtension{URL: "consent", ValueReference: &reference{Reference: "Consent/" + string(r.Consent), Display: r.Summary}},
			subExtension{URL: "consentVersion", ValueInteger: &v})
	}
	tail, _ := json.Marshal(rest) // plain structs of strings and ints: cannot fail
	head := part2ExtensionHead()
	out := make([]byte, 0, len(head)+len(tail)+2)
	out = append(out, head...)
	out = append(out, ',')
	out = append(out, tail[1:]...) // tail's elements and its closing "]"
	return append(out, '}')
}

// discloseBody returns body as it may leave the exchange: for a Part 2 release (rel not
// nil) with NORDSCLCD in meta.security and the disclosure extension in meta.extension;
// for anything else as stored. Either way a disclosure extension the sender wrote itself is
// removed first, so no record carries a notice or consent reference Concord did not give.
func discloseBody(body []byte, rel *records.Part2Release) ([]byte, error) {
	if rel == nil && !bytes.Contains(body, []byte(extPart2Disclosure)) {
		return body, nil // the common case: not decoded at all
	}
	const op = "exchange.discloseBody"
	top, err := jsonobj.Parse(body)
	if err != nil {
		return nil, errs.E(op, errs.Internal, err)
	}
	var meta jsonobj.Object
	mi := -1
	for i, m := range top {
		if m.Key == "meta" {
			mi = i
			if meta, err = jsonobj.Parse(m.Value); err != nil {
				return nil, errs.E(op, errs.Internal, err)
			}
		}
	}
	var exts []json.RawMessage
	var sec []fhir.Coding
	for _, m := range meta {
		switch m.Key {
		case "extension":
			if err := json.Unmarshal(m.Value, &exts); err != nil {
				return nil, errs.E(op, errs.Internal, err)
			}
		case "security":
			if err := json.Unmarshal(m.Value, &sec); err != nil {
				return nil, errs.E(op, errs.Internal, err)
			}
		}
	}
	exts = slices.DeleteFunc(exts, func(raw json.RawMessage) bool {
		var e struct {
			URL string `json:"url"`
		}
		return json.Unmarshal(raw, &e) == nil && e.URL == extPart2Disclosure
	})
	if rel != nil {
		exts = append(exts, part2Extension(*rel))
		if !hasCode(sec, consent.RefrainRedisclose) {
			b, _ := json.Marshal(append(sec, labelCoding(consent.RefrainRedisclose)))
			meta = meta.Set("security", b)
		}
	}
	if len(exts) > 0 {
		meta = meta.Set("extension", rawArray(exts))
	} else {
		meta = meta.Del("extension")
	}
	mb := meta.Encode()
	if mi >= 0 {
		top[mi].Value = mb
	} else {
		top = top.Set("meta", mb)
	}
	return top.Encode(), nil
}

// rawArray joins JSON values into an array as they are (json.Marshal would re-compact each).
func rawArray(vs []json.RawMessage) json.RawMessage {
	n := 2
	for _, v := range vs {
		n += len(v) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, v := range vs {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, v...)
	}
	return append(out, ']')
}

// part2Outcome is the OperationOutcome entry a Bundle carries, once, when any of its
// entries is a Part 2 release.
func part2Outcome() []byte {
	oo := map[string]any{
		"resourceType": "OperationOutcome",
		"issue": []map[string]any{{
			"severity": "information",
			"code":     "informational",
			"details": map[string]any{
				"coding": []fhir.Coding{labelCoding(consent.RefrainRedisclose), labelCoding(consent.LabelPart2)},
				"text":   consent.Part2Notice,
			},
			"diagnostics": "Entries whose meta.extension carries " + extPart2Disclosure +
				" are 42 CFR Part 2 records disclosed under the consent it references; the notice above applies to each (" + consent.Part2NoticeURL + ").",
		}},
	}
	b, _ := json.Marshal(oo)
	return b
}

// setPart2Headers links the notice and the permitting consent on a response whose body is
// a Part 2 record that cannot carry them itself (Binary content, a PIXm answer naming an
// identifier in a Part 2 program's domain).
func (s *Server) setPart2Headers(h http.Header, r records.Part2Release) {
	h.Set(headerPart2Notice, consent.Part2Notice)
	h.Add("Link", "<"+consent.Part2NoticeURL+`>; rel="`+relPart2Notice+`"`)
	s.addPart2ConsentLink(h, r)
}

// addPart2ConsentLink links the consent that permitted release r, if a patient's consent
// did; setPart2Headers calls it, and a response carrying more releases calls it for the
// others.
func (s *Server) addPart2ConsentLink(h http.Header, r records.Part2Release) {
	if r.Reason == consent.Permitted && r.Consent != "" {
		h.Add("Link", "<"+s.FHIRBase()+"/Consent/"+url.PathEscape(string(r.Consent))+`>; rel="`+relPart2Consent+`"`)
	}
}
