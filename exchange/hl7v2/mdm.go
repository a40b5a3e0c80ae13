package hl7v2

import (
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"strings"
)

// KindDocumentReference is the Kind of an MDM message's DocumentReference.
const KindDocumentReference = "DocumentReference"

// Attachment is an R4 Attachment with its bytes inline (Data is base64 in JSON, as R4's
// base64Binary).
type Attachment struct {
	ContentType string `json:"contentType,omitempty"`
	Data        []byte `json:"data,omitempty"`
}

// DocumentContent is an R4 DocumentReference.content.
type DocumentContent struct {
	Attachment Attachment `json:"attachment"`
}

// DocumentRelatesTo is an R4 DocumentReference.relatesTo.
type DocumentRelatesTo struct {
	Code   string    `json:"code"`
	Target Reference `json:"target"`
}

// DocumentContext is an R4 DocumentReference.context.
type DocumentContext struct {
	Encounter []Reference `json:"encounter,omitempty"`
	Period    *Period     `json:"period,omitempty"`
}

// Meta is the part of an R4 Meta a mapped resource may carry: the sender's security labels.
type Meta struct {
	Security []Coding `json:"security,omitempty"`
}

// DocumentReference is an R4 DocumentReference.
type DocumentReference struct {
	ResourceType  string              `json:"resourceType"`
	Meta          *Meta               `json:"meta,omitempty"`
	Identifier    []Identifier        `json:"identifier,omitempty"`
	Status        string              `json:"status"`
	DocStatus     string              `json:"docStatus,omitempty"`
	Type          *CodeableConcept    `json:"type,omitempty"`
	Category      []CodeableConcept   `json:"category,omitempty"`
	Subject       *Reference          `json:"subject,omitempty"`
	Date          string              `json:"date,omitempty"`
	Author        []Reference         `json:"author,omitempty"`
	Authenticator *Reference          `json:"authenticator,omitempty"`
	RelatesTo     []DocumentRelatesTo `json:"relatesTo,omitempty"`
	Content       []DocumentContent   `json:"content"`
	Context       *DocumentContext    `json:"context,omitempty"`
}

// LogValue redacts.
func (DocumentReference) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// DocumentAction is what an MDM message asks for.
type DocumentAction int

// The MDM events Concord accepts.
const (
	// DocumentNew is T02: a new document, with its content.
	DocumentNew DocumentAction = iota + 1
	// DocumentReplace is T10: a new document (TXA-12) that replaces an earlier one (TXA-13).
	// Without a TXA-18 it keeps the earlier one's confidentiality (Document.KeepConfidentiality).
	DocumentReplace
	// DocumentCancel is T11: the document named by TXA-12 was sent in error.
	DocumentCancel
	// DocumentAddendum is T06: a new document (TXA-12) that is an addendum to an earlier
	// one (TXA-13), which stays as it is. Without a TXA-18 it has the earlier one's
	// confidentiality (Document.KeepConfidentiality).
	DocumentAddendum
	// DocumentStatusChange is T04: the document named by TXA-12 has a new completion
	// status (TXA-17), authenticator (TXA-22) or confidentiality (TXA-18); the message
	// carries its content again. Its TXA-18 and TXA-22 change the stored values only when
	// sent (Document.KeepConfidentiality, KeepAuthenticator).
	DocumentStatusChange
)

// Document is the document side of an MDM message: which document it names and what to do
// with it. The exchange resolves the numbers' authorities (as it does PID-3's), finds the
// documents they name among the sender's, and stores Resources[Resource].
type Document struct {
	Action  DocumentAction
	Subject int // index in Mapped.Subjects of the patient the document is about
	// Number is TXA-12, the unique document number, with its assigning authority: TXA-12's
	// own (EI-2 to EI-4) or, when it names none, the sending facility's (MSH-4).
	Number CX
	// NumberLoc is where Number's authority came from: "TXA-12" or "MSH-4".
	NumberLoc string
	// Parent is TXA-13, the document a T10 replaces or a T06 is an addendum to (nil
	// otherwise), its authority found the same way; ParentLoc is "TXA-13" or "MSH-4".
	Parent    *CX
	ParentLoc string
	// NumberSystem and ParentSystem are the identifier systems of Number and Parent: the
	// mapping sets their authorities' systems as sent (CX.System); the receiver rewrites
	// them once it has resolved the authorities, and the DocumentReference's identifier
	// with NumberSystem.
	NumberSystem, ParentSystem string
	// Visit is PV1-19, the visit number, when PV1 gives one: the document's encounter is
	// the sender's Encounter with that visit number, if there is one.
	Visit *CX
	// Resource is the index in Mapped.Resources of the DocumentReference to store; -1 for
	// a cancel (T11), which carries no content, and for a status change (T04), which
	// stores no new document.
	Resource int
	// Change is, for a T04, the document as the message describes it now (TXA and the
	// content, with no subject or identifier systems resolved): the receiver compares it
	// with the stored document and takes the completion status, authenticator and
	// confidentiality from it. It is nil for the other events.
	Change *DocumentReference
	// KeepConfidentiality and KeepAuthenticator are, for a T04, whether the stored
	// confidentiality label (TXA-18) and authenticator (TXA-22) stay as they are. A T04 is
	// not a snapshot. A field that is empty says nothing about the stored value (HL7 v2
	// chapter 2), nor does one the mapping reads nothing from (TXA-18 without a code,
	// TXA-22 without a name): Keep… is true. A field holding the HL7 null `""` deletes the
	// stored value and one with a value sets it (TXA-18 U: no label): Keep… is false and
	// Change has what to store. So a T04 that sends only TXA-17 never lowers a document's
	// confidentiality.
	//
	// For a T06 or T10, KeepConfidentiality is whether TXA-18 says nothing in the same
	// sense (empty, or without a code): the new document keeps the confidentiality of the
	// document it adds to or replaces, whose labels the receiver gives it (many EHRs fill
	// TXA-18 on the original note only, and an addendum to a restricted note is no less
	// restricted). `""` or a value (U included) decides for the new document as on a T02,
	// and the resource has what it says. KeepAuthenticator is false for them, and both are
	// false for T02 and T11: there an empty field means there is none.
	KeepConfidentiality, KeepAuthenticator bool
	// ContentLoc names where each content came from ("OBX" for the text of the TX, FT and
	// ST values, "OBX[n]-5" for an encapsulated document), for errors about it.
	ContentLoc []string
}

// LogValue redacts: the numbers are identifiers.
func (Document) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Systems of the codes the MDM mapping writes.
const (
	systemDocumentType     = "http://terminology.hl7.org/CodeSystem/v2-0270"
	systemUSCoreDocCat     = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
	systemConfidentiality  = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	systemLOINC            = "http://loinc.org"
	textPlainUTF8          = "text/plain; charset=utf-8"
	mdmUnsupportedEventMsg = "Only MDM^T02, MDM^T04, MDM^T06, MDM^T10 and MDM^T11 are supported"
	mdmMixedContentMsg     = "Document text and an encapsulated document in one message"
	mdmManyDocumentsMsg    = "More than one encapsulated document in one message"
)

var clinicalNote = CodeableConcept{Coding: []Coding{{System: systemUSCoreDocCat, Code: "clinical-note", Display: "Clinical Note"}}}

// documentTypes is HL7 table 0270 (document type) with its displays.
var documentTypes = map[string]string{
	"AR": "Autopsy report", "CD": "Cardiodiagnostics", "CN": "Consultation", "DI": "Diagnostic imaging",
	"DS": "Discharge summary", "ED": "Emergency department report", "HP": "History and physical examination",
	"OP": "Operative report", "PC": "Psychiatric consultation", "PH": "Psychiatric history and physical examination",
	"PN": "Procedure note", "PR": "Progress note", "SP": "Surgical pathology", "TS": "Transfer summary",
}

// documentLOINC maps the table 0270 codes whose LOINC document type is certain (the
// C-CDA document codes of the same kind of note) to it. Note that in table 0270 PN is a
// procedure note and PR a progress note. The other codes (AR, CD, DI, ED, PC, PH, SP)
// keep their v2 code only: no single LOINC code means the same.
var documentLOINC = map[string]Coding{
	"PR": {System: systemLOINC, Code: "11506-3", Display: "Progress note"},
	"PN": {System: systemLOINC, Code: "28570-0", Display: "Procedure note"},
	"DS": {System: systemLOINC, Code: "18842-5", Display: "Discharge summary"},
	"HP": {System: systemLOINC, Code: "34117-2", Display: "History and physical note"},
	"CN": {System: systemLOINC, Code: "11488-4", Display: "Consult note"},
	"OP": {System: systemLOINC, Code: "11504-8", Display: "Surgical operation note"},
	"TS": {System: systemLOINC, Code: "18761-7", Display: "Transfer summary note"},
}

// documentWords are, for each code of documentLOINC, the words (lower case, any one of
// them) a sender's text for it (CWE-2) must contain to agree with table 0270's meaning.
// Table 0270 is user-defined and feeds differ: many US feeds send PN for a progress
// note. A text without them ("PN^Progress Note") may mean another kind of note, so the
// code gets no LOINC; an empty text trusts the table.
var documentWords = map[string][]string{
	"PR": {"progress"},
	"PN": {"procedure"},
	"DS": {"discharge"},
	"HP": {"history", "h&p", "h and p"},
	"CN": {"consult"},
	"OP": {"operat", "surg"},
	"TS": {"transfer"},
}

// documentTextAgrees reports whether text, the sender's CWE-2 for the table 0270 code,
// is empty or names the kind of note the table means (documentWords).
func documentTextAgrees(code, text string) bool {
	t := strings.ToLower(strings.TrimSpace(text))
	if t == "" {
		return true
	}
	for _, w := range documentWords[code] {
		if strings.Contains(t, w) {
			return true
		}
	}
	return false
}

// docStatuses maps HL7 table 0271 (document completion status) to the R4 docStatus
// (composition-status): a documented, authenticated or legally authenticated document is
// final; one dictated, in progress, incomplete or pre-authenticated is preliminary.
// Canceled (CA, added to the table after v2.5) is not a completion status a document is
// stored with: a document sent in error is cancelled with T11 (AE 103 at TXA-17).
var docStatuses = map[string]string{
	"DO": "final", "AU": "final", "LA": "final",
	"DI": "preliminary", "IP": "preliminary", "IN": "preliminary", "PA": "preliminary",
}

// confidentialities maps HL7 table 0272 (document confidentiality status) to the security
// label the document carries; U (usual control) adds none.
var confidentialities = map[string]string{"R": "R", "V": "V", "U": ""}

// mdm maps an MDM T02, T04, T06, T10 or T11: PID to the Patient (as ADT does), TXA and
// the OBX values to a DocumentReference (a resource for T02, T06 and T10, for T06 and T10
// with whether it takes its parent's confidentiality; Document.Change for T04, with which
// of TXA-18 and TXA-22 it leaves as stored; none for T11), and the Document that says
// what to do. The HL7 null `""` is never read as a value: no number,
// type, status, label code or name comes from it. T06 and T10 need a parent (TXA-13)
// other than their own number, T04 a completion status (TXA-17); every event but T11
// needs content. The other MDM events (T01, T03, T05, T07, T08, T09) are unsupported
// (AR 201): they carry no content, or (T08) edit a document in place.
func (mp *mapper) mdm() error {
	const op = "hl7v2.Map"
	var action DocumentAction
	switch mp.out.Event {
	case "T02":
		action = DocumentNew
	case "T04":
		action = DocumentStatusChange
	case "T06":
		action = DocumentAddendum
	case "T10":
		action = DocumentReplace
	case "T11":
		action = DocumentCancel
	default:
		return problem(op, UnsupportedEventCode, "MSH-9", mdmUnsupportedEventMsg)
	}
	subj, err := mp.firstPatient()
	if err != nil {
		return err
	}
	txa, ok := mp.m.Segment("TXA")
	if !ok {
		return problem(op, SegmentSequenceError, "TXA", "TXA segment missing")
	}
	doc := &Document{Action: action, Subject: subj, Resource: -1}
	num, loc, ok := mp.documentNumber(txa.Field(12), "TXA-12")
	if !ok {
		return problem(op, RequiredFieldMissing, "TXA-12", "Unique document number missing")
	}
	doc.Number, doc.NumberLoc, doc.NumberSystem = num, loc, num.System()
	if action == DocumentReplace || action == DocumentAddendum {
		parent, loc, ok := mp.documentNumber(txa.Field(13), "TXA-13")
		if !ok {
			return problem(op, RequiredFieldMissing, "TXA-13", "Parent document number missing")
		}
		if parent == num {
			if action == DocumentAddendum {
				return problem(op, DataTypeError, "TXA-13", "An addendum needs its own unique document number")
			}
			return problem(op, DataTypeError, "TXA-13", "A replacement needs a new unique document number")
		}
		doc.Parent, doc.ParentLoc, doc.ParentSystem = &parent, loc, parent.System()
	}
	if pv1, ok := mp.m.Segment("PV1"); ok {
		if vn := cxList(pv1.Field(19)); len(vn) > 0 && vn[0].System() != "" {
			doc.Visit = &vn[0]
		}
	}
	mp.out.Document = doc
	if action == DocumentCancel {
		return nil
	}
	d, err := mp.documentReference(txa, subj, num)
	if err != nil {
		return err
	}
	if action == DocumentStatusChange && d.DocStatus == "" {
		return problem(op, RequiredFieldMissing, "TXA-17", "Document completion status missing")
	}
	contents, locs, err := mp.documentContents()
	if err != nil {
		return err
	}
	d.Content, doc.ContentLoc = contents, locs
	conf := txa.Field(18)
	keepConf := conf.Comp(1).Value() == "" && !conf.IsNull()
	if action == DocumentStatusChange {
		doc.Change = d
		doc.KeepConfidentiality = keepConf
		doc.KeepAuthenticator = d.Authenticator == nil && !txa.Field(22).IsNull()
		return nil
	}
	doc.KeepConfidentiality = keepConf && doc.Parent != nil // T06, T10: the parent's
	doc.Resource = mp.add(Resource{Kind: KindDocumentReference, Subject: subj, DocumentReference: d})
	return nil
}

// documentNumber reads an EI (TXA-12, TXA-13) as a CX: its value and assigning authority,
// or the sending facility (MSH-4) as the authority when the EI names none. It returns
// where the authority came from, and false when the EI has no value.
func (mp *mapper) documentNumber(f Field, loc string) (CX, string, bool) {
	c := CX{
		Value:           f.Comp(1).Value(),
		Namespace:       f.Comp(2).Value(),
		UniversalID:     f.Comp(3).Value(),
		UniversalIDType: f.Comp(4).Value(),
	}
	if c.Value == "" {
		return CX{}, "", false
	}
	if c.System() == "" {
		msh4 := mp.m.MSH().Field(4)
		c.Namespace, c.UniversalID, c.UniversalIDType = msh4.Comp(1).Value(), msh4.Comp(2).Value(), msh4.Comp(3).Value()
		loc = "MSH-4"
	}
	return c, loc, true
}

// documentReference maps TXA to a DocumentReference without content.
func (mp *mapper) documentReference(txa Segment, subj int, num CX) (*DocumentReference, error) {
	const op = "hl7v2.Map"
	d := &DocumentReference{ResourceType: "DocumentReference", Status: "current", Subject: mp.subjectRef(subj),
		Category: []CodeableConcept{clinicalNote}, Identifier: []Identifier{{System: num.System(), Value: num.Value}}}
	t := txa.Field(2)
	code, text, sys := t.Comp(1).Value(), t.Comp(2).Value(), t.Comp(3).Value()
	if code == "" {
		return nil, problem(op, RequiredFieldMissing, "TXA-2", "Document type missing")
	}
	cc := &CodeableConcept{Text: text}
	table := sys == "" || strings.EqualFold(sys, "HL70270") || codingSystem(sys) == systemDocumentType
	switch {
	case !table:
		// A CWE naming another system (v2.7+), a known one or a local one ("99LOCAL"):
		// kept as sent, never read as table 0270 and never given LOINC.
		cc.Coding = append(cc.Coding, Coding{System: codingSystem(sys), Code: code, Display: text})
	case documentTypes[code] != "":
		if l, ok := documentLOINC[code]; ok && documentTextAgrees(code, text) {
			cc.Coding = append(cc.Coding, l)
		}
		cc.Coding = append(cc.Coding, Coding{System: systemDocumentType, Code: code, Display: documentTypes[code]})
	default:
		// Table 0270 is user-defined: a local code stays a code of no known system.
		cc.Coding = append(cc.Coding, Coding{Code: code, Display: text})
	}
	d.Type = cc
	if s := txa.Field(17).Comp(1).Value(); s != "" {
		if s == "CA" {
			return nil, problem(op, TableValueNotFound, "TXA-17", "Send MDM^T11 to cancel a document")
		}
		st, ok := docStatuses[s]
		if !ok {
			return nil, problem(op, TableValueNotFound, "TXA-17", "")
		}
		d.DocStatus = st
	}
	if s := txa.Field(18).Comp(1).Value(); s != "" {
		label, ok := confidentialities[s]
		if !ok {
			return nil, problem(op, TableValueNotFound, "TXA-18", "")
		}
		if label != "" {
			d.Meta = &Meta{Security: []Coding{{System: systemConfidentiality, Code: label}}}
		}
	}
	// TXA-6 (origination) is when the document was made, TXA-4 (activity) when what it
	// documents happened: date is the former, else the latter, and only as an instant
	// (R4 date is one); the activity time is the context period's start.
	times := map[int]string{}
	for _, f := range []int{4, 6} {
		if v := txa.Field(f).Comp(1).Value(); v != "" {
			dt, err := fhirDateTime(v, mp.loc)
			if err != nil {
				return nil, problem(op, DataTypeError, segLoc("TXA", 1, f), "")
			}
			times[f] = dt
		}
	}
	for _, f := range []int{6, 4} {
		if dt := times[f]; strings.Contains(dt, "T") {
			d.Date = dt
			break
		}
	}
	if dt := times[4]; dt != "" {
		d.Context = &DocumentContext{Period: &Period{Start: dt}}
	}
	for _, f := range []int{9, 5} { // the originator is the author; else the primary activity provider
		if name := xcnDisplay(txa.Field(f)); name != "" {
			d.Author = []Reference{{Display: name}}
			break
		}
	}
	if name := xcnDisplay(txa.Field(22)); name != "" {
		d.Authenticator = &Reference{Display: name}
	}
	return d, nil
}

// xcnDisplay renders the first repetition of an XCN (or PPN) as a person's name: prefix,
// given names, family name, suffix and degree. It returns "" when the XCN has no name.
func xcnDisplay(f Field) string {
	r := f.Rep(1)
	var parts []string
	for _, j := range []int{6, 3, 4} {
		if s := strings.TrimSpace(r.Comp(j).Value()); s != "" {
			parts = append(parts, s)
		}
	}
	family := strings.TrimSpace(r.Comp(2).Sub(1).Value())
	if family == "" && len(parts) == 0 {
		return ""
	}
	if family != "" {
		parts = append(parts, family)
	}
	for _, j := range []int{5, 7} {
		if s := strings.TrimSpace(r.Comp(j).Value()); s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " ")
}

// documentContents reads the document's content from the OBX segments: either one
// encapsulated document (OBX-2 ED, one value), or the text of the TX, FT and ST values
// (and of values sent without OBX-2), in order, one line per value repetition, escape
// sequences decoded, as one text/plain UTF-8 content. Nothing is dropped: text next to an
// encapsulated document, and more than one encapsulated value (OBX segments or
// repetitions), are refused (AE 102 at that OBX), since which of them is the document,
// or whether they are parts of one, cannot be told. A blank text value next to an
// encapsulated document is allowed.
func (mp *mapper) documentContents() ([]DocumentContent, []string, error) {
	const op = "hl7v2.Map"
	var lines []string
	var encapsulated []DocumentContent
	var locs []string
	textAt := "" // the first OBX with text, for the error when an ED joins it
	n := 0
	for _, seg := range mp.m.Segments {
		if seg.Name != "OBX" {
			continue
		}
		n++
		v := seg.Field(5)
		switch typ := seg.Field(2).Comp(1).Value(); typ {
		case "", "TX", "FT", "ST":
			if v.Empty() || v.IsNull() {
				lines = append(lines, "") // a blank line of the document
				continue
			}
			if len(encapsulated) > 0 {
				return nil, nil, problem(op, DataTypeError, segLoc("OBX", n, 5), mdmMixedContentMsg)
			}
			if textAt == "" {
				textAt = segLoc("OBX", n, 5)
			}
			for r := range v.All() {
				lines = append(lines, r.Value())
			}
		case "ED":
			loc := segLoc("OBX", n, 5)
			switch {
			case textAt != "":
				return nil, nil, problem(op, DataTypeError, loc, mdmMixedContentMsg)
			case len(encapsulated) > 0 || nonEmptyReps(v) > 1:
				return nil, nil, problem(op, DataTypeError, loc, mdmManyDocumentsMsg)
			}
			c, err := encapsulatedData(v.Rep(1), loc)
			if err != nil {
				return nil, nil, err
			}
			encapsulated = append(encapsulated, c)
			locs = append(locs, loc)
		default:
			return nil, nil, problem(op, TableValueNotFound, segLoc("OBX", n, 2), "Document content must be TX, FT, ST or ED")
		}
	}
	if len(encapsulated) > 0 {
		return encapsulated, locs, nil
	}
	text := strings.Join(lines, "\n")
	if strings.TrimSpace(text) == "" {
		return nil, nil, problem(op, RequiredFieldMissing, "OBX", "No document content")
	}
	return []DocumentContent{{Attachment: Attachment{ContentType: textPlainUTF8, Data: []byte(text + "\n")}}}, []string{"OBX"}, nil
}

// nonEmptyReps counts the repetitions of f that are not empty.
func nonEmptyReps(f Field) int {
	n := 0
	for r := range f.All() {
		if !r.Empty() {
			n++
		}
	}
	return n
}

// encapsulatedData decodes an ED value (source application, type of data, data subtype,
// encoding, data) to its media type and bytes. The media type comes from the type and
// subtype: a MIME type ("application^pdf") or table 0191/0291 codes ("AP^PDF",
// "IM^JPEG", "TEXT^XML"); whether the document service accepts it is its own decision.
func encapsulatedData(r Field, loc string) (DocumentContent, error) {
	const op = "hl7v2.Map"
	ct := edMediaType(r.Comp(2).Value(), r.Comp(3).Value())
	if ct == "" {
		return DocumentContent{}, problem(op, TableValueNotFound, loc, "Encapsulated data of an unknown type")
	}
	raw := r.Comp(5).Value()
	var data []byte
	var err error
	switch enc := strings.ToUpper(r.Comp(4).Value()); enc {
	case "BASE64":
		s := strings.Join(strings.Fields(raw), "")
		data, err = base64.StdEncoding.DecodeString(s)
		if err != nil {
			data, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
		}
	case "HEX":
		data, err = hex.DecodeString(strings.Join(strings.Fields(raw), ""))
	case "A":
		data = []byte(raw)
	case "":
		return DocumentContent{}, problem(op, RequiredFieldMissing, loc, "Encapsulated data without its encoding")
	default:
		return DocumentContent{}, problem(op, TableValueNotFound, loc, "Encapsulated data in an unknown encoding")
	}
	if err != nil {
		return DocumentContent{}, problem(op, DataTypeError, loc, "Encapsulated data does not decode")
	}
	if len(data) == 0 {
		return DocumentContent{}, problem(op, RequiredFieldMissing, loc, "No document content")
	}
	return DocumentContent{Attachment: Attachment{ContentType: ct, Data: data}}, nil
}

// edSubtypes maps table 0291 data subtypes (and common variants) to media types.
var edSubtypes = map[string]string{
	"PDF": "application/pdf", "JPEG": "image/jpeg", "JPG": "image/jpeg", "TIFF": "image/tiff", "PNG": "image/png",
	"GIF": "image/gif", "XML": "text/xml", "RTF": "application/rtf", "HTML": "text/html", "DICOM": "application/dicom",
	"PLAIN": "text/plain",
}

// edMediaType returns the media type an ED's type of data and subtype name, "" when
// they name none.
func edMediaType(typ, sub string) string {
	t, s := strings.ToLower(strings.TrimSpace(typ)), strings.ToLower(strings.TrimSpace(sub))
	switch t {
	case "application", "image", "text", "audio", "video":
		if s != "" && !strings.ContainsAny(s, " /;") {
			return t + "/" + s
		}
	}
	if mt, ok := edSubtypes[strings.ToUpper(s)]; ok {
		return mt
	}
	if t == "text" || t == "tx" {
		return "text/plain"
	}
	return ""
}
