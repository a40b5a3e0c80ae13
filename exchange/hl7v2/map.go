package hl7v2

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"
)

// Resource kinds in Mapped.Resources.
const (
	KindPatient          = "Patient"
	KindEncounter        = "Encounter"
	KindDiagnosticReport = "DiagnosticReport"
	KindObservation      = "Observation"
)

// CX is one patient identifier as sent in PID-3 (or MRG-1), decoded, with its assigning
// authority kept apart so the exchange can check it is registered to the sender.
type CX struct {
	Value           string // CX-1
	Namespace       string // CX-4.1 assigning authority namespace ID
	UniversalID     string // CX-4.2
	UniversalIDType string // CX-4.3 (ISO, UUID, DNS, ...)
	TypeCode        string // CX-5 (MR, SS, ...)
}

// LogValue redacts.
func (CX) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// System returns the FHIR identifier system of the authority: "urn:oid:<oid>" for an ISO
// universal ID, "urn:uuid:<uuid>" for a UUID, the universal ID when it is a URI, else the
// namespace ID (spaces percent-encoded so it stays a valid FHIR uri); "" when none.
func (c CX) System() string {
	switch {
	case c.UniversalID != "" && (strings.EqualFold(c.UniversalIDType, "ISO") || isOID(c.UniversalID)):
		return "urn:oid:" + c.UniversalID
	case c.UniversalID != "" && strings.EqualFold(c.UniversalIDType, "UUID"):
		return "urn:uuid:" + strings.ToLower(c.UniversalID)
	case c.UniversalID != "" && (strings.EqualFold(c.UniversalIDType, "URI") || strings.Contains(c.UniversalID, "://")):
		return uriSafe(c.UniversalID)
	case c.Namespace != "":
		return uriSafe(c.Namespace)
	case c.UniversalID != "":
		return uriSafe(c.UniversalID)
	}
	return ""
}

func uriSafe(s string) string {
	return strings.Join(strings.Fields(s), "%20")
}

func isOID(s string) bool {
	if s == "" || s[0] < '0' || s[0] > '2' {
		return false
	}
	dots := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if i == 0 || i == len(s)-1 || s[i-1] == '.' {
				return false
			}
			dots++
		case c < '0' || c > '9':
			return false
		}
	}
	return dots > 0
}

// Identifier returns c as an R4 Identifier.
func (c CX) Identifier() Identifier {
	id := Identifier{System: c.System(), Value: c.Value}
	if c.TypeCode != "" {
		id.Type = &CodeableConcept{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v2-0203", Code: c.TypeCode}}}
	}
	if c.TypeCode == "MR" {
		id.Use = "usual"
	}
	return id
}

// Subject is one patient a message is about: the identifiers of its PID-3.
type Subject struct {
	IDs     []CX
	Patient int // index in Mapped.Resources of this subject's Patient
}

// Resource is one mapped FHIR resource. Exactly one of the typed pointers is set, the one
// Kind names. FullURL is a urn:uuid derived from the message's dedupe key and the
// resource's position, so a resent message maps to the same FullURLs; references
// between the resources of one message use it.
type Resource struct {
	Kind        string
	FullURL     string
	Subject     int // index in Mapped.Subjects of the patient this resource is about
	Patient     *Patient
	Encounter   *Encounter
	Report      *DiagnosticReport
	Observation *Observation
	// DocumentReference is an MDM message's document (with its content inline).
	DocumentReference *DocumentReference
}

// JSON returns the resource's R4 JSON.
func (r Resource) JSON() ([]byte, error) {
	switch r.Kind {
	case KindPatient:
		return json.Marshal(r.Patient)
	case KindEncounter:
		return json.Marshal(r.Encounter)
	case KindDiagnosticReport:
		return json.Marshal(r.Report)
	case KindObservation:
		return json.Marshal(r.Observation)
	case KindDocumentReference:
		return json.Marshal(r.DocumentReference)
	}
	return nil, problem("hl7v2.Resource.JSON", ApplicationInternal, "", "unknown resource kind")
}

// Merge is an A40/A34 patient merge inside the sender's namespace: the record named by
// Retired (MRG-1) is merged into the survivor Subjects[Survivor] (PID-3).
type Merge struct {
	Survivor int
	Retired  []CX
}

// Mapped is the FHIR content of one message, in message order.
type Mapped struct {
	Key       DedupeKey
	Type      string // MSH-9.1, e.g. "ADT"
	Event     string // MSH-9.2 (EVN-1 when MSH-9.2 is empty), e.g. "A01"
	Version   string // MSH-12.1
	Subjects  []Subject
	Resources []Resource
	Merge     *Merge    // set for A40/A34
	Document  *Document // set for MDM T02, T04, T06, T10 and T11
}

// MapOptions tunes the mapping.
type MapOptions struct {
	// Location is the time zone of timestamps sent without an offset (UTC when nil).
	Location *time.Location
}

// Map maps a parsed message to FHIR R4: ADT A01/A03/A04/A08/A28/A31 to Patient (and
// Encounter from PV1 for A01/A03/A04/A08), A40/A34 to Patient and a Merge, ORU^R01 to
// Patient, DiagnosticReport (per OBR) and Observations (per OBX), MDM T02, T06 and T10 to
// Patient, a DocumentReference (TXA, with the OBX values as its content) and a Document,
// MDM T04 and T11 to Patient and a Document (see mdm.go). Errors carry a Problem:
// an unsupported MSH-9 type or event is errs.Unsupported with 200/201, a version outside
// 2.3–2.8 203 (all AR); content errors are errs.Invalid: 101 for a missing PID-3 or other
// required field, 102 for a bad date or number, 103 for a code outside its table, 100
// for segments out of order, 102 for text that is not valid in the message's character
// set or holds a control character (see Parse; checked again here for messages built in
// code) (all AE). Locations name the segment occurrence and field, e.g. "OBX[3]-2";
// messages never include values.
//
// The explicit null `""` (in a field, component or subcomponent) maps to an absent
// element, exactly like an empty one: it is never taken for a value, code or identifier
// (a PV1-19 of `""^^^FAC` gives the Encounter no visit number, so it cannot be matched to
// another visit). Each Patient and Encounter is a complete snapshot of its segments, to
// replace the stored resource rather than be merged into it, so on an update (A08, A31,
// a later A03) a `""` deletes the stored value (gender, name, address, telecom, birth
// date, ...); in a snapshot an empty field does too. An MDM T04's TXA-18 and TXA-22 are
// not a snapshot: there only `""` deletes, and an empty field keeps the stored value
// (Document.KeepConfidentiality, KeepAuthenticator).
func Map(m *Message, opts MapOptions) (*Mapped, error) {
	const op = "hl7v2.Map"
	if err := m.checkText(op); err != nil {
		return nil, err
	}
	loc := opts.Location
	if loc == nil {
		loc = time.UTC
	}
	msh := m.MSH()
	out := &Mapped{
		Key:     KeyOf(m),
		Type:    msh.Field(9).Comp(1).Value(),
		Event:   msh.Field(9).Comp(2).Value(),
		Version: msh.Field(12).Comp(1).Value(),
	}
	if out.Event == "" {
		if evn, ok := m.Segment("EVN"); ok {
			out.Event = evn.Field(1).Value()
		}
	}
	if out.Version == "" {
		return nil, problem(op, RequiredFieldMissing, "MSH-12", "")
	}
	if ma, mi, ok := parseVersion(out.Version); !ok || ma != 2 || mi < 3 || mi > 8 {
		return nil, problem(op, UnsupportedVersion, "MSH-12", "")
	}
	mp := &mapper{m: m, out: out, loc: loc}
	switch out.Type {
	case "ADT":
		switch out.Event {
		case "A01", "A03", "A04", "A08", "A28", "A31", "A40", "A34":
		default:
			return nil, problem(op, UnsupportedEventCode, "MSH-9", "")
		}
		if err := mp.adt(); err != nil {
			return nil, err
		}
	case "ORU":
		if out.Event != "R01" {
			return nil, problem(op, UnsupportedEventCode, "MSH-9", "")
		}
		if err := mp.oru(); err != nil {
			return nil, err
		}
	case "MDM":
		if err := mp.mdm(); err != nil {
			return nil, err
		}
	default:
		return nil, problem(op, UnsupportedMessageType, "MSH-9", "")
	}
	return out, nil
}

type mapper struct {
	m   *Message
	out *Mapped
	loc *time.Location
}

// segLoc names segment occurrence n (1-based) of name and field f, e.g. "OBX[2]-5".
func segLoc(name string, n, f int) string {
	s := name
	if n > 1 {
		s += "[" + itoa(n) + "]"
	}
	if f > 0 {
		s += "-" + itoa(f)
	}
	return s
}

func (mp *mapper) add(r Resource) int {
	k := mp.out.Key
	h := sha256.Sum256([]byte(k.SendingApp + "\x00" + k.SendingFacility + "\x00" + k.ControlID + "\x00" + itoa(len(mp.out.Resources))))
	h[6] = h[6]&0x0f | 0x80 // version 8 (custom)
	h[8] = h[8]&0x3f | 0x80 // RFC 4122 variant
	x := hex.EncodeToString(h[:16])
	r.FullURL = "urn:uuid:" + x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
	mp.out.Resources = append(mp.out.Resources, r)
	return len(mp.out.Resources) - 1
}

// subjectRef returns the reference to subject i's Patient.
func (mp *mapper) subjectRef(i int) *Reference {
	s := mp.out.Subjects[i]
	id := s.IDs[0].Identifier()
	return &Reference{Reference: mp.out.Resources[s.Patient].FullURL, Identifier: &Identifier{System: id.System, Value: id.Value}}
}

func (mp *mapper) adt() error {
	const op = "hl7v2.Map"
	subj, err := mp.firstPatient()
	if err != nil {
		return err
	}
	switch ev := mp.out.Event; ev {
	case "A40", "A34":
		mrg, ok := mp.m.Segment("MRG")
		if !ok {
			return problem(op, SegmentSequenceError, "MRG", "")
		}
		retired := cxList(mrg.Field(1))
		if len(retired) == 0 {
			return problem(op, RequiredFieldMissing, "MRG-1", "")
		}
		mp.out.Merge = &Merge{Survivor: subj, Retired: retired}
	case "A01", "A03", "A04", "A08":
		pv1, ok := mp.m.Segment("PV1")
		if !ok {
			if ev == "A08" {
				return nil
			}
			return problem(op, SegmentSequenceError, "PV1", "")
		}
		return mp.encounter(pv1, subj)
	}
	return nil
}

func cxList(f Field) []CX {
	var out []CX
	for r := range f.All() {
		c := CX{
			Value:           r.Comp(1).Value(),
			Namespace:       r.Comp(4).Sub(1).Value(),
			UniversalID:     r.Comp(4).Sub(2).Value(),
			UniversalIDType: r.Comp(4).Sub(3).Value(),
			TypeCode:        r.Comp(5).Value(),
		}
		if c.Value != "" {
			out = append(out, c)
		}
	}
	return out
}

// firstPatient maps the message's first PID (a segment sequence error without one), adds
// the Patient and returns its subject index.
func (mp *mapper) firstPatient() (int, error) {
	pid, ok := mp.m.Segment("PID")
	if !ok {
		return 0, problem("hl7v2.Map", SegmentSequenceError, "PID", "")
	}
	return mp.patient(pid, 1)
}

// patient maps PID occurrence n, adds the Patient and returns its subject index.
func (mp *mapper) patient(pid Segment, n int) (int, error) {
	const op = "hl7v2.Map"
	ids := cxList(pid.Field(3))
	if len(ids) == 0 {
		return 0, problem(op, RequiredFieldMissing, segLoc("PID", n, 3), "")
	}
	p := &Patient{ResourceType: "Patient"}
	for _, c := range ids {
		p.Identifier = append(p.Identifier, c.Identifier())
	}
	if ssn := pid.Field(19).Value(); ssn != "" {
		p.Identifier = append(p.Identifier, Identifier{
			Type:   &CodeableConcept{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v2-0203", Code: "SS"}}},
			System: "http://hl7.org/fhir/sid/us-ssn", Value: ssn,
		})
	}
	for r := range pid.Field(5).All() {
		if hn, ok := humanName(r); ok {
			p.Name = append(p.Name, hn)
		}
	}
	if v := pid.Field(7).Comp(1).Value(); v != "" {
		d, err := fhirDate(v)
		if err != nil {
			return 0, problem(op, DataTypeError, segLoc("PID", n, 7), "")
		}
		p.BirthDate = d
	}
	if g := pid.Field(8).Comp(1).Value(); g != "" {
		gender, ok := genders[strings.ToUpper(g)]
		if !ok {
			return 0, problem(op, TableValueNotFound, segLoc("PID", n, 8), "")
		}
		p.Gender = gender
	}
	for r := range pid.Field(11).All() {
		if a, ok := address(r); ok {
			p.Address = append(p.Address, a)
		}
	}
	for _, fn := range []int{13, 14} {
		for r := range pid.Field(fn).All() {
			if cp, ok := contactPoint(r, fn == 14); ok {
				p.Telecom = append(p.Telecom, cp)
			}
		}
	}
	if v := pid.Field(29).Comp(1).Value(); v != "" {
		dt, err := fhirDateTime(v, mp.loc)
		if err != nil {
			return 0, problem(op, DataTypeError, segLoc("PID", n, 29), "")
		}
		p.DeceasedDateTime = dt
	} else {
		switch pid.Field(30).Value() {
		case "Y":
			t := true
			p.DeceasedBoolean = &t
		case "N":
			f := false
			p.DeceasedBoolean = &f
		}
	}
	idx := mp.add(Resource{Kind: KindPatient, Subject: len(mp.out.Subjects), Patient: p})
	mp.out.Subjects = append(mp.out.Subjects, Subject{IDs: ids, Patient: idx})
	return len(mp.out.Subjects) - 1, nil
}

var genders = map[string]string{"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}

var nameUses = map[string]string{"L": "official", "D": "usual", "M": "maiden", "N": "nickname",
	"A": "usual", "S": "anonymous", "B": "old", "C": "official", "T": "usual"}

func humanName(r Field) (HumanName, bool) {
	hn := HumanName{
		Family: r.Comp(1).Sub(1).Value(),
		Use:    nameUses[r.Comp(7).Value()],
	}
	for _, j := range []int{2, 3} {
		if g := r.Comp(j).Value(); g != "" {
			hn.Given = append(hn.Given, g)
		}
	}
	if s := r.Comp(5).Value(); s != "" {
		hn.Prefix = []string{s}
	}
	for _, j := range []int{4, 6} {
		if s := r.Comp(j).Value(); s != "" {
			hn.Suffix = append(hn.Suffix, s)
		}
	}
	return hn, hn.Family != "" || len(hn.Given) > 0
}

var addressUses = map[string]string{"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "old", "BDL": "old", "F": "old"}

func address(r Field) (Address, bool) {
	a := Address{
		City:       r.Comp(3).Value(),
		State:      r.Comp(4).Value(),
		PostalCode: r.Comp(5).Value(),
		Country:    r.Comp(6).Value(),
		District:   r.Comp(9).Value(),
	}
	for _, j := range []int{1, 2} {
		if l := r.Comp(j).Sub(1).Value(); l != "" {
			a.Line = append(a.Line, l)
		}
	}
	t := r.Comp(7).Value()
	a.Use = addressUses[t]
	if t == "M" {
		a.Type = "postal"
	}
	ok := len(a.Line) > 0 || a.City != "" || a.State != "" || a.PostalCode != "" || a.Country != ""
	return a, ok
}

func contactPoint(r Field, business bool) (ContactPoint, bool) {
	cp := ContactPoint{System: "phone", Use: "home"}
	if business {
		cp.Use = "work"
	}
	switch r.Comp(2).Value() {
	case "WPN":
		cp.Use = "work"
	case "PRN", "ORN", "VHN":
		cp.Use = "home"
	}
	switch r.Comp(3).Value() {
	case "FX":
		cp.System = "fax"
	case "BP":
		cp.System = "pager"
	case "CP":
		cp.Use = "mobile"
	case "Internet", "X.400":
		cp.System = "email"
	case "MD", "TDD", "TTY":
		cp.System = "other"
	}
	if r.Comp(2).Value() == "NET" {
		cp.System = "email"
	}
	if email := r.Comp(4).Value(); email != "" {
		cp.System, cp.Value = "email", email
		return cp, true
	}
	cp.Value = strings.TrimSpace(r.Comp(1).Value())
	if cp.Value == "" {
		parts := []string{}
		if c := r.Comp(5).Value(); c != "" {
			parts = append(parts, "+"+c)
		}
		if a := r.Comp(6).Value(); a != "" {
			parts = append(parts, "("+a+")")
		}
		if l := r.Comp(7).Value(); l != "" {
			parts = append(parts, l)
		}
		if len(parts) > 0 && r.Comp(7).Value() != "" {
			cp.Value = strings.Join(parts, " ")
		}
		if x := r.Comp(8).Value(); x != "" && cp.Value != "" {
			cp.Value += " x" + x
		}
	}
	return cp, cp.Value != ""
}

var encounterClasses = map[string]Coding{
	"I": {Code: "IMP", Display: "inpatient encounter"},
	"O": {Code: "AMB", Display: "ambulatory"},
	"E": {Code: "EMER", Display: "emergency"},
	"P": {Code: "PRENC", Display: "pre-admission"},
	"R": {Code: "AMB", Display: "ambulatory"},
	"B": {Code: "AMB", Display: "ambulatory"},
	"C": {Code: "AMB", Display: "ambulatory"},
	"N": {Code: "AMB", Display: "ambulatory"},
}

func (mp *mapper) encounter(pv1 Segment, subj int) error {
	const op = "hl7v2.Map"
	e := &Encounter{ResourceType: "Encounter", Subject: mp.subjectRef(subj)}
	cls := pv1.Field(2).Comp(1).Value()
	if c, ok := encounterClasses[cls]; ok {
		c.System = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
		e.Class = c
	} else if cls == "" || cls == "U" {
		e.Class = Coding{System: "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", Code: "UNK", Display: "unknown"}
	} else {
		return problem(op, TableValueNotFound, "PV1-2", "")
	}
	if vn := cxList(pv1.Field(19)); len(vn) > 0 {
		id := vn[0].Identifier()
		id.Type = &CodeableConcept{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v2-0203", Code: "VN"}}}
		e.Identifier = append(e.Identifier, id)
	}
	var per Period
	for _, f := range []int{44, 45} {
		v := pv1.Field(f).Comp(1).Value()
		if v == "" {
			continue
		}
		dt, err := fhirDateTime(v, mp.loc)
		if err != nil {
			return problem(op, DataTypeError, segLoc("PV1", 1, f), "")
		}
		if f == 44 {
			per.Start = dt
		} else {
			per.End = dt
		}
	}
	if per.Start != "" || per.End != "" {
		e.Period = &per
	}
	if pl := pv1.Field(3); !pl.Empty() {
		var parts []string
		for _, j := range []int{4, 1, 2, 3} { // facility, point of care, room, bed
			if s := pl.Comp(j).Sub(1).Value(); s != "" {
				parts = append(parts, s)
			}
		}
		if len(parts) > 0 {
			e.Location = []EncounterLocation{{Location: Reference{Display: strings.Join(parts, " ")}}}
		}
	}
	switch mp.out.Event {
	case "A01":
		e.Status = "in-progress"
	case "A04":
		e.Status = "arrived"
	case "A03":
		e.Status = "finished"
	default: // A08
		e.Status = "in-progress"
		if per.End != "" {
			e.Status = "finished"
		}
	}
	mp.add(Resource{Kind: KindEncounter, Subject: subj, Encounter: e})
	return nil
}

var reportStatus = map[string]string{"F": "final", "C": "corrected", "P": "preliminary", "X": "cancelled",
	"R": "partial", "S": "partial", "A": "partial", "I": "registered", "O": "registered", "M": "corrected",
	"Y": "unknown", "Z": "unknown"}

var obsStatus = map[string]string{"F": "final", "C": "corrected", "P": "preliminary", "X": "cancelled",
	"R": "preliminary", "S": "preliminary", "I": "registered", "O": "registered", "D": "entered-in-error",
	"W": "entered-in-error", "U": "final", "A": "amended", "N": "cancelled"}

func (mp *mapper) oru() error {
	const op = "hl7v2.Map"
	subj := -1
	var report *DiagnosticReport
	var lastObs *Observation
	var reportEff string
	nPID, nOBR, nOBX := 0, 0, 0
	for _, seg := range mp.m.Segments {
		switch seg.Name {
		case "PID":
			nPID++
			s, err := mp.patient(seg, nPID)
			if err != nil {
				return err
			}
			subj, report, lastObs = s, nil, nil
		case "OBR":
			nOBR++
			if subj < 0 {
				return problem(op, SegmentSequenceError, segLoc("OBR", nOBR, 0), "")
			}
			r, eff, err := mp.report(seg, nOBR, subj)
			if err != nil {
				return err
			}
			report, reportEff, lastObs = r, eff, nil
		case "OBX":
			nOBX++
			if report == nil {
				return problem(op, SegmentSequenceError, segLoc("OBX", nOBX, 0), "")
			}
			o, err := mp.observation(seg, nOBX, subj, reportEff)
			if err != nil {
				return err
			}
			lastObs = o
			i := mp.add(Resource{Kind: KindObservation, Subject: subj, Observation: o})
			report.Result = append(report.Result, Reference{Reference: mp.out.Resources[i].FullURL})
		case "NTE":
			// Notes after an OBX annotate it.
			if lastObs != nil {
				if t := strings.TrimSpace(seg.Field(3).Value()); t != "" {
					lastObs.Note = append(lastObs.Note, Annotation{Text: t})
				}
			}
		}
	}
	if subj < 0 {
		return problem(op, SegmentSequenceError, "PID", "")
	}
	if nOBR == 0 {
		return problem(op, SegmentSequenceError, "OBR", "")
	}
	return nil
}

var labCategory = CodeableConcept{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v2-0074", Code: "LAB", Display: "Laboratory"}}}
var obsLabCategory = CodeableConcept{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "laboratory", Display: "Laboratory"}}}

func (mp *mapper) report(obr Segment, n, subj int) (*DiagnosticReport, string, error) {
	const op = "hl7v2.Map"
	code, ok := codeable(obr.Field(4))
	if !ok {
		return nil, "", problem(op, RequiredFieldMissing, segLoc("OBR", n, 4), "")
	}
	r := &DiagnosticReport{ResourceType: "DiagnosticReport", Category: []CodeableConcept{labCategory},
		Code: code, Subject: mp.subjectRef(subj), Status: "unknown"}
	for _, f := range []struct {
		n    int
		code string
	}{{3, "FILL"}, {2, "PLAC"}} {
		ei := obr.Field(f.n)
		if v := ei.Comp(1).Value(); v != "" {
			sys := ""
			if uid := ei.Comp(3).Value(); uid != "" && isOID(uid) {
				sys = "urn:oid:" + uid
			} else if ns := ei.Comp(2).Value(); ns != "" {
				sys = uriSafe(ns)
			}
			r.Identifier = append(r.Identifier, Identifier{System: sys, Value: v,
				Type: &CodeableConcept{Coding: []Coding{{System: "http://terminology.hl7.org/CodeSystem/v2-0203", Code: f.code}}}})
		}
	}
	if v := obr.Field(7).Comp(1).Value(); v != "" {
		dt, err := fhirDateTime(v, mp.loc)
		if err != nil {
			return nil, "", problem(op, DataTypeError, segLoc("OBR", n, 7), "")
		}
		r.EffectiveDateTime = dt
	}
	if v := obr.Field(22).Comp(1).Value(); v != "" {
		dt, err := fhirDateTime(v, mp.loc)
		if err != nil {
			return nil, "", problem(op, DataTypeError, segLoc("OBR", n, 22), "")
		}
		if strings.Contains(dt, "T") { // instant needs a time
			r.Issued = dt
		}
	}
	if s := obr.Field(25).Comp(1).Value(); s != "" {
		st, ok := reportStatus[s]
		if !ok {
			return nil, "", problem(op, TableValueNotFound, segLoc("OBR", n, 25), "")
		}
		r.Status = st
	}
	mp.add(Resource{Kind: KindDiagnosticReport, Subject: subj, Report: r})
	return r, r.EffectiveDateTime, nil
}

// codingSystems maps table 0396 coding system names to FHIR systems.
var codingSystems = map[string]string{
	"LN": "http://loinc.org", "LOINC": "http://loinc.org",
	"SCT": "http://snomed.info/sct", "SNM": "http://snomed.info/sct", "SNOMED": "http://snomed.info/sct", "SNM3": "http://snomed.info/sct",
	"UCUM": "http://unitsofmeasure.org",
	"I10":  "http://hl7.org/fhir/sid/icd-10", "I10C": "http://hl7.org/fhir/sid/icd-10-cm", "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
	"CVX": "http://hl7.org/fhir/sid/cvx", "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
}

// codingSystem maps a CWE coding system name to a FHIR system; "" for local ones.
func codingSystem(s string) string {
	if u, ok := codingSystems[strings.ToUpper(s)]; ok {
		return u
	}
	if len(s) == 8 && strings.HasPrefix(s, "HL7") && isDigits(s[3:]) {
		return "http://terminology.hl7.org/CodeSystem/v2-" + s[4:]
	}
	if isOID(s) {
		return "urn:oid:" + s
	}
	return ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// codeable maps a CE/CWE (first repetition) with its alternate coding.
func codeable(f Field) (CodeableConcept, bool) {
	r := f.Rep(1)
	var cc CodeableConcept
	for _, base := range []int{1, 4} {
		code, text, sys := r.Comp(base).Value(), r.Comp(base+1).Value(), r.Comp(base+2).Value()
		if code == "" && text == "" {
			continue
		}
		if code != "" {
			cc.Coding = append(cc.Coding, Coding{System: codingSystem(sys), Code: code, Display: text})
		}
		if cc.Text == "" {
			cc.Text = text
		}
	}
	if orig := r.Comp(9).Value(); orig != "" {
		cc.Text = orig
	}
	return cc, len(cc.Coding) > 0 || cc.Text != ""
}

var interpretations = map[string]bool{"L": true, "H": true, "LL": true, "HH": true, "N": true, "A": true,
	"AA": true, "<": true, ">": true, "S": true, "R": true, "I": true, "NEG": true, "POS": true, "IND": true,
	"DET": true, "ND": true, "U": true, "D": true, "B": true, "W": true, "MS": true, "VS": true, "HU": true,
	"LU": true, "NR": true, "RR": true, "EX": true, "IE": true, "SDD": true, "NCL": true, "QCF": true,
	"TOX": true, "CAR": true, "HX": true, "LX": true, "H>": true, "L<": true, "E": true, "EXP": true}

func (mp *mapper) observation(obx Segment, n, subj int, reportEff string) (*Observation, error) {
	const op = "hl7v2.Map"
	code, ok := codeable(obx.Field(3))
	if !ok {
		return nil, problem(op, RequiredFieldMissing, segLoc("OBX", n, 3), "")
	}
	o := &Observation{ResourceType: "Observation", Category: []CodeableConcept{obsLabCategory},
		Code: code, Subject: mp.subjectRef(subj), Status: "unknown"}
	if s := obx.Field(11).Comp(1).Value(); s != "" {
		st, ok := obsStatus[s]
		if !ok {
			return nil, problem(op, TableValueNotFound, segLoc("OBX", n, 11), "")
		}
		o.Status = st
	}
	o.EffectiveDateTime = reportEff
	if v := obx.Field(14).Comp(1).Value(); v != "" {
		dt, err := fhirDateTime(v, mp.loc)
		if err != nil {
			return nil, problem(op, DataTypeError, segLoc("OBX", n, 14), "")
		}
		o.EffectiveDateTime = dt
	}
	unit := obx.Field(6)
	if err := mp.value(o, obx, n, unit); err != nil {
		return nil, err
	}
	if rr := strings.TrimSpace(obx.Field(7).Value()); rr != "" {
		o.ReferenceRange = []ReferenceRange{referenceRange(rr, unit)}
	}
	for flag := range obx.Field(8).All() {
		c := flag.Comp(1).Value()
		if c == "" {
			continue
		}
		if interpretations[c] {
			o.Interpretation = append(o.Interpretation, CodeableConcept{Coding: []Coding{{
				System: "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", Code: c}}})
		} else if cc, ok := codeable(flag); ok {
			// Not a table 0078 code: keep what was sent as text only.
			o.Interpretation = append(o.Interpretation, CodeableConcept{Text: firstNonEmpty(cc.Text, c)})
		}
	}
	return o, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// value sets o's value[x] from OBX-2 and OBX-5.
func (mp *mapper) value(o *Observation, obx Segment, n int, unit Field) error {
	const op = "hl7v2.Map"
	typ := obx.Field(2).Comp(1).Value()
	v := obx.Field(5)
	if v.Empty() || v.IsNull() {
		if typ != "" {
			if _, ok := knownTypes[typ]; !ok {
				return problem(op, TableValueNotFound, segLoc("OBX", n, 2), "")
			}
		}
		return nil
	}
	if typ == "" {
		// OBX-2 is required when OBX-5 is valued, but feeds (Simulated Hospital, Natus)
		// leave it empty: a number (optionally with a comparator) is NM, the rest ST.
		typ = "ST"
		if _, _, ok := comparedDecimal(v.Rep(1).Value()); ok {
			typ = "NM"
		}
	}
	switch typ {
	case "NM":
		// A comparator ("<15") in an NM is common enough to accept as a bound.
		cmp, num, ok := comparedDecimal(v.Rep(1).Value())
		if !ok {
			return problem(op, DataTypeError, segLoc("OBX", n, 5), "")
		}
		q := quantity(num, unit)
		q.Comparator = cmp
		o.ValueQuantity = &q
	case "SN":
		return mp.structuredNumeric(o, v.Rep(1), n, unit)
	case "ST", "TX", "FT":
		var parts []string
		for r := range v.All() {
			parts = append(parts, r.Value())
		}
		s := strings.Join(parts, "\n")
		o.ValueString = &s
	case "CE", "CWE", "CNE", "CF", "CD":
		cc, ok := codeable(v)
		if !ok {
			return problem(op, DataTypeError, segLoc("OBX", n, 5), "")
		}
		o.ValueCodeableConcept = &cc
	case "DT", "DTM", "TS":
		dt, err := fhirDateTime(v.Rep(1).Comp(1).Value(), mp.loc)
		if err != nil {
			return problem(op, DataTypeError, segLoc("OBX", n, 5), "")
		}
		o.ValueDateTime = dt
	case "TM":
		t, ok := fhirTime(v.Rep(1).Value())
		if !ok {
			return problem(op, DataTypeError, segLoc("OBX", n, 5), "")
		}
		o.ValueTime = t
	case "ED", "RP", "EI", "MO":
		// Encapsulated data, references and money have no R4 Observation value type.
		o.DataAbsentReason = &CodeableConcept{Coding: []Coding{{
			System: "http://terminology.hl7.org/CodeSystem/data-absent-reason", Code: "unsupported", Display: "Unsupported"}}}
	default:
		if _, ok := knownTypes[typ]; !ok {
			return problem(op, TableValueNotFound, segLoc("OBX", n, 2), "")
		}
		// Composite types (addresses, phone numbers, identifiers): readable text.
		var parts []string
		for r := range v.All() {
			var comps []string
			for j := 1; j <= 12; j++ {
				if s := strings.TrimSpace(r.Comp(j).Sub(1).Value()); s != "" {
					comps = append(comps, s)
				}
			}
			if len(comps) > 0 {
				parts = append(parts, strings.Join(comps, " "))
			}
		}
		s := strings.Join(parts, "\n")
		o.ValueString = &s
	}
	return nil
}

// knownTypes are the OBX-2 value types (table 0125) accepted.
var knownTypes = map[string]struct{}{"NM": {}, "SN": {}, "ST": {}, "TX": {}, "FT": {}, "CE": {}, "CWE": {},
	"CNE": {}, "CF": {}, "CD": {}, "DT": {}, "DTM": {}, "TS": {}, "TM": {}, "ED": {}, "RP": {}, "EI": {}, "MO": {},
	"XAD": {}, "XTN": {}, "XPN": {}, "XCN": {}, "XON": {}, "CX": {}, "TN": {}, "ID": {}, "IS": {}, "AD": {}, "PN": {}, "CP": {}}

func quantity(num string, unit Field) Quantity {
	q := Quantity{Value: json.Number(num)}
	code, text, sys := unit.Comp(1).Value(), unit.Comp(2).Value(), unit.Comp(3).Value()
	if strings.EqualFold(sys, "UCUM") {
		q.System, q.Code = "http://unitsofmeasure.org", code
		q.Unit = firstNonEmpty(text, code)
		return q
	}
	if alt := unit.Comp(4).Value(); alt != "" && strings.EqualFold(unit.Comp(6).Value(), "UCUM") {
		q.System, q.Code = "http://unitsofmeasure.org", alt
	}
	q.Unit = firstNonEmpty(text, code)
	if code != "" && sys == "" && text == "" {
		q.Unit = code
	}
	return q
}

var comparators = map[string]string{"<": "<", ">": ">", "<=": "<=", ">=": ">="}

func (mp *mapper) structuredNumeric(o *Observation, r Field, n int, unit Field) error {
	const op = "hl7v2.Map"
	cmp, n1, sep, n2 := r.Comp(1).Value(), r.Comp(2).Value(), r.Comp(3).Value(), r.Comp(4).Value()
	bad := problem(op, DataTypeError, segLoc("OBX", n, 5), "")
	v1, ok := decimal(n1)
	if !ok {
		return bad
	}
	if sep == "" && n2 == "" {
		q := quantity(v1, unit)
		switch {
		case cmp == "" || cmp == "=":
		case comparators[cmp] != "":
			q.Comparator = comparators[cmp]
		default:
			return bad
		}
		o.ValueQuantity = &q
		return nil
	}
	if cmp != "" && cmp != "=" {
		return bad
	}
	switch sep {
	case "-":
		v2, ok := decimal(n2)
		if !ok {
			return bad
		}
		lo, hi := quantity(v1, unit), quantity(v2, unit)
		o.ValueRange = &Range{Low: &lo, High: &hi}
	case ":", "/":
		v2, ok := decimal(n2)
		if !ok {
			return bad
		}
		num, den := quantity(v1, unit), Quantity{Value: json.Number(v2)}
		o.ValueRatio = &Ratio{Numerator: &num, Denominator: &den}
	case "+", ".":
		s := v1 + sep + n2
		o.ValueString = &s
	default:
		return bad
	}
	return nil
}

// comparedDecimal reads "12.5", "<15", ">=2" as an optional Quantity comparator and a
// FHIR decimal.
func comparedDecimal(s string) (cmp, num string, ok bool) {
	s = strings.TrimSpace(s)
	for _, p := range []string{"<=", ">=", "<", ">"} {
		if strings.HasPrefix(s, p) {
			cmp, s = p, strings.TrimSpace(s[len(p):])
			break
		}
	}
	num, ok = decimal(s)
	return cmp, num, ok
}

// referenceRange parses OBX-7: "3.5-5.0", "49 - 92", "<10", "<=10", ">1", ">=1"; anything
// else is kept as text.
func referenceRange(s string, unit Field) ReferenceRange {
	rr := ReferenceRange{}
	t := strings.TrimSpace(s)
	for _, p := range []string{"<=", ">=", "<", ">"} {
		if strings.HasPrefix(t, p) {
			if v, ok := decimal(strings.TrimSpace(t[len(p):])); ok {
				q := quantity(v, unit)
				if p[0] == '<' {
					rr.High = &q
				} else {
					rr.Low = &q
				}
				if len(p) == 1 {
					rr.Text = s // exclusive bound: keep the text so nothing is lost
				}
				return rr
			}
			rr.Text = s
			return rr
		}
	}
	// Split on a '-' that is not a leading sign.
	for i := 1; i < len(t); i++ {
		if t[i] == '-' {
			lo, ok1 := decimal(strings.TrimSpace(t[:i]))
			hi, ok2 := decimal(strings.TrimSpace(t[i+1:]))
			if ok1 && ok2 {
				l, h := quantity(lo, unit), quantity(hi, unit)
				rr.Low, rr.High = &l, &h
				return rr
			}
			break
		}
	}
	rr.Text = s
	return rr
}

// decimal normalizes an HL7 NM ("+05.", ".5", "-0.50") to a FHIR decimal ("5", "0.5",
// "-0.50"); ok is false when s is not a number.
func decimal(s string) (string, bool) {
	s = strings.TrimSpace(s)
	neg := false
	switch {
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if (intPart == "" && frac == "") || (intPart != "" && !isDigits(intPart)) || (frac != "" && !isDigits(frac)) {
		return "", false
	}
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	out := intPart
	if hasDot && frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out, true
}

// fhirDate converts an HL7 DT/DTM to a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD).
func fhirDate(s string) (string, error) {
	p, err := parseDTM(s)
	if err != nil {
		return "", err
	}
	switch {
	case p.prec >= 3:
		return s[0:4] + "-" + s[4:6] + "-" + s[6:8], nil
	case p.prec == 2:
		return s[0:4] + "-" + s[4:6], nil
	}
	return s[0:4], nil
}

// fhirDateTime converts an HL7 DTM to a FHIR dateTime; a time without an offset is read in
// loc. A time is rendered with seconds, as R4 requires.
func fhirDateTime(s string, loc *time.Location) (string, error) {
	p, err := parseDTM(s)
	if err != nil {
		return "", err
	}
	if p.prec <= 3 {
		return fhirDate(s)
	}
	t := p.t
	if !p.hasZone {
		t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), loc)
	}
	layout := "2006-01-02T15:04:05"
	if p.frac > 0 {
		layout += "." + strings.Repeat("0", p.frac)
	}
	out := t.Format(layout + "Z07:00")
	return out, nil
}

type dtm struct {
	t       time.Time
	prec    int // 1 year, 2 month, 3 day, 4 hour, 5 minute, 6 second
	frac    int // digits of fractional seconds
	hasZone bool
}

var errBadDate = errors.New("hl7v2: bad date")

// parseDTM parses YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ].
func parseDTM(s string) (dtm, error) {
	var p dtm
	body, zone := s, ""
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		body, zone = s[:i], s[i:]
	}
	digits, frac, hasFrac := strings.Cut(body, ".")
	if !isDigits(digits) || (hasFrac && (len(digits) != 14 || !isDigits(frac) || len(frac) > 4)) {
		return p, errBadDate
	}
	switch len(digits) {
	case 4, 6, 8, 10, 12, 14:
	default:
		return p, errBadDate
	}
	p.prec = map[int]int{4: 1, 6: 2, 8: 3, 10: 4, 12: 5, 14: 6}[len(digits)]
	padded := digits + "0101000000"[len(digits)-4:]
	if len(digits) == 4 {
		padded = digits + "0101000000"
	}
	num := func(a, b int) int {
		n := 0
		for _, c := range padded[a:b] {
			n = n*10 + int(c-'0')
		}
		return n
	}
	y, mo, d, h, mi, sec := num(0, 4), num(4, 6), num(6, 8), num(8, 10), num(10, 12), num(12, 14)
	ns := 0
	if hasFrac {
		p.frac = len(frac)
		f := frac + strings.Repeat("0", 9-len(frac))
		for _, c := range f {
			ns = ns*10 + int(c-'0')
		}
	}
	loc := time.UTC
	if zone != "" {
		if len(zone) != 5 || !isDigits(zone[1:]) {
			return p, errBadDate
		}
		zh, zm := int(zone[1]-'0')*10+int(zone[2]-'0'), int(zone[3]-'0')*10+int(zone[4]-'0')
		if zh > 14 || zm > 59 {
			return p, errBadDate
		}
		off := zh*3600 + zm*60
		if zone[0] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
		p.hasZone = true
	}
	if y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59 {
		return p, errBadDate
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, ns, loc)
	if t.Day() != d || t.Month() != time.Month(mo) {
		return p, errBadDate // 31 April, 29 February of a common year
	}
	p.t = t
	return p, nil
}

// fhirTime converts an HL7 TM (HH[MM[SS[.S+]]][+/-ZZZZ]) to a FHIR time (hh:mm:ss).
func fhirTime(s string) (string, bool) {
	if i := strings.IndexAny(s, "+-"); i >= 0 {
		s = s[:i]
	}
	digits, frac, hasFrac := strings.Cut(s, ".")
	if !isDigits(digits) || len(digits)%2 != 0 || len(digits) < 2 || len(digits) > 6 {
		return "", false
	}
	digits += "0000"[:6-len(digits)]
	h, m, sec := digits[0:2], digits[2:4], digits[4:6]
	if h > "23" || m > "59" || sec > "59" {
		return "", false
	}
	out := h + ":" + m + ":" + sec
	if hasFrac {
		if !isDigits(frac) {
			return "", false
		}
		out += "." + frac
	}
	return out, true
}
