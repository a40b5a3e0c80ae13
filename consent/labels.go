package consent

import (
	"bufio"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/concord-hie/concord/internal/errs"
)

// valueSets are the curated value-set files, read-only data (see valuesets/README.md).
//
//go:embed valuesets/*.tsv
var valueSets embed.FS

// Code systems the value sets use.
const (
	SystemICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
	SystemSNOMED  = "http://snomed.info/sct"
	SystemRxNorm  = "http://www.nlm.nih.gov/research/umls/rxnorm"
)

var shortSystems = map[string]string{
	"icd10cm": SystemICD10CM,
	"snomed":  SystemSNOMED,
	"loinc":   SystemLOINC,
	"rxnorm":  SystemRxNorm,
}

// ValueSet is one loaded value-set file.
type ValueSet struct {
	Label   string   // ETH, PSY, HIV, SDV or SEX
	Title   string   // "Mental health"
	Sources []string // the file's "# source:" lines
	Codes   int      // number of entries
}

// Labeler adds sensitivity labels to resources by code, from value-set files. It is
// immutable after NewLabeler and safe for concurrent use.
type Labeler struct {
	exact  map[string]uint16 // system + "|" + code -> label bits
	prefix []prefixRule      // ICD-10-CM prefixes, undotted
	sets   []ValueSet
}

type prefixRule struct {
	prefix string
	bits   uint16
}

// DefaultLabeler returns a Labeler over the value sets embedded from consent/valuesets.
func DefaultLabeler() (*Labeler, error) {
	sub, err := fs.Sub(valueSets, "valuesets")
	if err != nil {
		return nil, errs.E("consent.DefaultLabeler", errs.Internal, err)
	}
	return NewLabeler(sub)
}

// NewLabeler reads every *.tsv file at the root of fsys (format in
// valuesets/README.md). It returns errs.Invalid naming the file and line for a
// malformed file, an unknown system or label, or a prefix rule outside ICD-10-CM.
func NewLabeler(fsys fs.FS) (*Labeler, error) {
	const op = "consent.NewLabeler"
	names, err := fs.Glob(fsys, "*.tsv")
	if err != nil {
		return nil, errs.E(op, errs.Internal, err)
	}
	if len(names) == 0 {
		return nil, errs.E(op, errs.Invalid, "no value-set files")
	}
	l := &Labeler{exact: map[string]uint16{}}
	for _, name := range names {
		if err := l.load(fsys, name); err != nil {
			return nil, errs.E(op, err)
		}
	}
	// Longest prefix first is not needed (all matching rules apply), but keep a stable order.
	slices.SortFunc(l.prefix, func(a, b prefixRule) int { return strings.Compare(a.prefix, b.prefix) })
	return l, nil
}

func (l *Labeler) load(fsys fs.FS, name string) error {
	const op = "consent.NewLabeler"
	f, err := fsys.Open(name)
	if err != nil {
		return errs.E(op, errs.Internal, err)
	}
	defer f.Close()
	bad := func(line int, msg string) error {
		e := errs.E(op, errs.Invalid, msg)
		e.Path = fmt.Sprintf("%s:%d", path.Base(name), line)
		return e
	}
	vs := ValueSet{}
	var bit uint16
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if c, ok := strings.CutPrefix(line, "#"); ok {
			k, v, ok := strings.Cut(strings.TrimSpace(c), ":")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch strings.TrimSpace(k) {
			case "label":
				switch v {
				case LabelSubstanceUse, LabelMentalHealth, LabelHIV, LabelViolence, LabelSexualHealth:
				default:
					return bad(n, "value-set label must be ETH, PSY, HIV, SDV or SEX")
				}
				vs.Label, bit = v, labelBit(v)
			case "title":
				vs.Title = v
			case "source":
				vs.Sources = append(vs.Sources, v)
			}
			continue
		}
		if bit == 0 {
			return bad(n, "codes before the label header")
		}
		fields := strings.Split(line, "\t")
		if len(fields) < 3 {
			return bad(n, "want system, code, match and display separated by tabs")
		}
		system, ok := shortSystems[fields[0]]
		if !ok {
			return bad(n, "unknown code system")
		}
		code := strings.TrimSpace(fields[1])
		if code == "" {
			return bad(n, "empty code")
		}
		switch fields[2] {
		case "exact":
			key := system + "|" + code
			if system == SystemICD10CM {
				key = system + "|" + undot(code)
			}
			l.exact[key] |= bit
		case "prefix":
			if system != SystemICD10CM {
				return bad(n, "prefix rules are for ICD-10-CM only")
			}
			l.prefix = append(l.prefix, prefixRule{prefix: undot(code), bits: bit})
		default:
			return bad(n, "match must be exact or prefix")
		}
		vs.Codes++
	}
	if err := sc.Err(); err != nil {
		return errs.E(op, errs.Internal, err)
	}
	if bit == 0 || vs.Title == "" || len(vs.Sources) == 0 {
		return bad(0, "value-set file needs label, title and source headers")
	}
	l.sets = append(l.sets, vs)
	return nil
}

func undot(code string) string { return strings.ToUpper(strings.ReplaceAll(code, ".", "")) }

// ValueSets describes the loaded value sets, e.g. for an officer's "where do labels come
// from" page.
func (l *Labeler) ValueSets() []ValueSet { return slices.Clone(l.sets) }

// CodeLabels returns the sensitivity labels for one coding (nil when none).
func (l *Labeler) CodeLabels(system, code string) []string {
	return maskLabels(l.codeBits(system, code))
}

func (l *Labeler) codeBits(system, code string) uint16 {
	if system == SystemICD10CM {
		code = undot(code)
		bits := l.exact[system+"|"+code]
		for _, r := range l.prefix {
			if strings.HasPrefix(code, r.prefix) {
				bits |= r.bits
			}
		}
		return bits
	}
	return l.exact[system+"|"+code]
}

// Only the elements that carry clinical codes are decoded.
type (
	labelCoding struct {
		System string `json:"system"`
		Code   string `json:"code"`
	}
	labelConcept struct {
		Coding []labelCoding `json:"coding"`
	}
	// concepts decodes a CodeableConcept or an array of them (FHIR uses both shapes for
	// category, type, reasonCode across resource types).
	concepts      []labelConcept
	labelResource struct {
		ResourceType string `json:"resourceType"`
		Meta         struct {
			Security []labelCoding `json:"security"`
		} `json:"meta"`
		Code                      concepts `json:"code"`
		ValueCodeableConcept      concepts `json:"valueCodeableConcept"`
		MedicationCodeableConcept concepts `json:"medicationCodeableConcept"`
		VaccineCode               concepts `json:"vaccineCode"`
		Category                  concepts `json:"category"`
		Type                      concepts `json:"type"`
		ReasonCode                concepts `json:"reasonCode"`
		ConclusionCode            concepts `json:"conclusionCode"`
		Component                 []struct {
			Code                 concepts `json:"code"`
			ValueCodeableConcept concepts `json:"valueCodeableConcept"`
		} `json:"component"`
	}
)

func (c *concepts) UnmarshalJSON(b []byte) error {
	b = []byte(strings.TrimSpace(string(b)))
	if len(b) > 0 && b[0] == '[' {
		var xs []labelConcept
		if err := json.Unmarshal(b, &xs); err != nil {
			return err
		}
		*c = xs
		return nil
	}
	var x labelConcept
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	*c = concepts{x}
	return nil
}

// Labels returns the security labels ingest should add to a FHIR resource (JSON): the
// sensitivity labels whose value sets contain a code in the resource's code,
// valueCodeableConcept, medicationCodeableConcept, vaccineCode, category, type,
// reasonCode, conclusionCode or component codes, plus confidentiality R when any
// sensitivity label applies. Labels already in meta.security are left out. The result
// is sorted in a fixed order and nil when nothing is to be added.
//
// A resource that cannot be decoded is labelled R (fail closed: it cannot be shown to
// be unrestricted); the caller should reject it anyway.
func (l *Labeler) Labels(resourceJSON []byte) []string {
	var r labelResource
	if err := json.Unmarshal(resourceJSON, &r); err != nil {
		return []string{LabelRestricted}
	}
	var bits uint16
	add := func(cs concepts) {
		for _, c := range cs {
			for _, cd := range c.Coding {
				bits |= l.codeBits(cd.System, cd.Code)
			}
		}
	}
	add(r.Code)
	add(r.ValueCodeableConcept)
	add(r.MedicationCodeableConcept)
	add(r.VaccineCode)
	add(r.Category)
	add(r.Type)
	add(r.ReasonCode)
	add(r.ConclusionCode)
	for _, c := range r.Component {
		add(c.Code)
		add(c.ValueCodeableConcept)
	}
	if bits != 0 {
		bits |= labelBit(LabelRestricted)
	}
	for _, s := range r.Meta.Security {
		bits &^= labelBit(s.Code)
	}
	return maskLabels(bits)
}

func maskLabels(bits uint16) []string {
	var out []string
	for _, l := range gatingLabels {
		if bits&labelBit(l) != 0 {
			out = append(out, l)
		}
	}
	return out
}

// Part2ProgramLabels returns the labels every record from a member's 42 CFR Part 2
// program carries (standards.md §5), whatever its codes: ETH, R, 42CFRPart2 and the
// refrain code NORDSCLCD.
func Part2ProgramLabels() []string {
	return []string{LabelSubstanceUse, LabelRestricted, LabelPart2, RefrainRedisclose}
}
