package consent

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// The FHIR R4 shapes the mapping reads and writes. Unknown elements are rejected when
// parsing; elements Concord does not model but that cannot change a decision (text,
// identifier, performer, organization, policy, verification, extension) are accepted
// and dropped.
type (
	fhirCoding struct {
		System       string `json:"system,omitempty"`
		Version      string `json:"version,omitempty"`
		Code         string `json:"code,omitempty"`
		Display      string `json:"display,omitempty"`
		UserSelected *bool  `json:"userSelected,omitempty"`
	}
	fhirCodeableConcept struct {
		Coding []fhirCoding `json:"coding,omitempty"`
		Text   string       `json:"text,omitempty"`
	}
	fhirReference struct {
		Reference  string          `json:"reference,omitempty"`
		Type       string          `json:"type,omitempty"`
		Identifier json.RawMessage `json:"identifier,omitempty"`
		Display    string          `json:"display,omitempty"`
	}
	fhirPeriod struct {
		Start string `json:"start,omitempty"`
		End   string `json:"end,omitempty"`
	}
	fhirAttachment struct {
		ContentType string `json:"contentType,omitempty"`
		Language    string `json:"language,omitempty"`
		Data        []byte `json:"data,omitempty"`
		URL         string `json:"url,omitempty"`
		Size        *int64 `json:"size,omitempty"`
		Hash        string `json:"hash,omitempty"`
		Title       string `json:"title,omitempty"`
		Creation    string `json:"creation,omitempty"`
	}
	fhirMeta struct {
		VersionID   string          `json:"versionId,omitempty"`
		LastUpdated string          `json:"lastUpdated,omitempty"`
		Source      string          `json:"source,omitempty"`
		Profile     json.RawMessage `json:"profile,omitempty"`
		Security    json.RawMessage `json:"security,omitempty"`
		Tag         json.RawMessage `json:"tag,omitempty"`
	}
	fhirActor struct {
		Role      *fhirCodeableConcept `json:"role,omitempty"`
		Reference *fhirReference       `json:"reference,omitempty"`
	}
	fhirProvision struct {
		ID                string                `json:"id,omitempty"`
		Extension         json.RawMessage       `json:"extension,omitempty"`
		ModifierExtension json.RawMessage       `json:"modifierExtension,omitempty"`
		Type              string                `json:"type,omitempty"`
		Period            *fhirPeriod           `json:"period,omitempty"`
		Actor             []fhirActor           `json:"actor,omitempty"`
		Action            []fhirCodeableConcept `json:"action,omitempty"`
		SecurityLabel     []fhirCoding          `json:"securityLabel,omitempty"`
		Purpose           []fhirCoding          `json:"purpose,omitempty"`
		Class             []fhirCoding          `json:"class,omitempty"`
		Code              json.RawMessage       `json:"code,omitempty"`
		DataPeriod        json.RawMessage       `json:"dataPeriod,omitempty"`
		Data              json.RawMessage       `json:"data,omitempty"`
		Provision         []fhirProvision       `json:"provision,omitempty"`
	}
	fhirConsent struct {
		ResourceType      string                `json:"resourceType"`
		ID                string                `json:"id,omitempty"`
		Meta              *fhirMeta             `json:"meta,omitempty"`
		ImplicitRules     string                `json:"implicitRules,omitempty"`
		Language          string                `json:"language,omitempty"`
		Text              json.RawMessage       `json:"text,omitempty"`
		Contained         json.RawMessage       `json:"contained,omitempty"`
		Extension         json.RawMessage       `json:"extension,omitempty"`
		ModifierExtension json.RawMessage       `json:"modifierExtension,omitempty"`
		Identifier        json.RawMessage       `json:"identifier,omitempty"`
		Status            string                `json:"status"`
		Scope             *fhirCodeableConcept  `json:"scope,omitempty"`
		Category          []fhirCodeableConcept `json:"category,omitempty"`
		Patient           *fhirReference        `json:"patient,omitempty"`
		DateTime          string                `json:"dateTime,omitempty"`
		Performer         json.RawMessage       `json:"performer,omitempty"`
		Organization      json.RawMessage       `json:"organization,omitempty"`
		SourceAttachment  *fhirAttachment       `json:"sourceAttachment,omitempty"`
		SourceReference   *fhirReference        `json:"sourceReference,omitempty"`
		Policy            json.RawMessage       `json:"policy,omitempty"`
		PolicyRule        *fhirCodeableConcept  `json:"policyRule,omitempty"`
		Verification      json.RawMessage       `json:"verification,omitempty"`
		Provision         *fhirProvision        `json:"provision,omitempty"`
	}
)

// maxConsentBytes bounds a Consent resource.
const maxConsentBytes = 1 << 20

// ParseConsent maps an R4 Consent (JSON) to a Directive, strictly. Duplicate members,
// and members whose names differ only in case (encoding/json would match them to the
// same field), are rejected before decoding. The consent must be
// scope patient-privacy with category LOINC 59284-0 and policyRule OPTIN or OPTOUT;
// unknown elements, unknown codes or systems, modifier extensions, instance-level
// provisions (provision.data, provision.code, provision.dataPeriod) and actors Concord
// cannot match are rejected with errs.Invalid whose Path names the element
// ("Consent.provision.provision[0].purpose[1]"). A Consent without a patient is a
// default policy. Dates without a time are read in loc (nil: UTC): a start at the
// beginning of its day, month or year, an end at the last instant of it.
// meta.versionId, when present, must be a positive integer and becomes Version
// (default 1).
func ParseConsent(data []byte, loc *time.Location) (Directive, error) {
	const op = "consent.ParseConsent"
	if loc == nil {
		loc = time.UTC
	}
	if len(data) > maxConsentBytes {
		return Directive{}, errs.E(op, errs.TooLarge, "consent resource too large")
	}
	if err := checkMembers(data); err != nil {
		e := errs.E(op, errs.Invalid, "duplicate or case-variant JSON member", err)
		e.Path = "Consent"
		return Directive{}, e
	}
	var c fhirConsent
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		e := errs.E(op, errs.Invalid, "malformed or unknown element in Consent", err)
		e.Path = "Consent"
		return Directive{}, e
	}
	if dec.More() {
		return Directive{}, invalid(op, "Consent", "trailing data after Consent")
	}
	p := parser{op: op, loc: loc}
	d := p.consent(&c)
	if p.err != nil {
		return Directive{}, p.err
	}
	if err := d.Validate(); err != nil {
		return Directive{}, errs.E(op, err)
	}
	return d, nil
}

// parser carries the first error, so conversion code reads straight through.
type parser struct {
	op  string
	loc *time.Location
	err error
}

func (p *parser) fail(path, msg string) {
	if p.err == nil {
		p.err = invalid(p.op, path, msg)
	}
}

func (p *parser) consent(c *fhirConsent) Directive {
	var d Directive
	if c.ResourceType != "Consent" {
		p.fail("Consent.resourceType", "resource is not a Consent")
		return d
	}
	if len(c.ModifierExtension) > 0 {
		p.fail("Consent.modifierExtension", "modifier extensions are not supported")
	}
	if c.ImplicitRules != "" {
		p.fail("Consent.implicitRules", "implicit rules are not supported")
	}
	if len(c.Contained) > 0 {
		p.fail("Consent.contained", "contained resources are not supported")
	}
	d.ID = DirectiveID(c.ID)
	d.Version = 1
	if c.Meta != nil && c.Meta.VersionID != "" {
		v, err := strconv.Atoi(c.Meta.VersionID)
		if err != nil || v < 1 {
			p.fail("Consent.meta.versionId", "version must be a positive integer")
		}
		d.Version = v
	}
	d.Status = Status(c.Status)
	if c.Scope == nil || !hasCoding(c.Scope.Coding, SystemConsentScope, ScopePatientPrivacy) {
		p.fail("Consent.scope", "scope must be patient-privacy")
	}
	cat := false
	for _, cc := range c.Category {
		cat = cat || hasCoding(cc.Coding, SystemLOINC, CategoryPrivacyConsent)
	}
	if !cat {
		p.fail("Consent.category", "category must include LOINC 59284-0")
	}
	if c.Patient != nil {
		id, ok := strings.CutPrefix(c.Patient.Reference, "Patient/")
		if !ok {
			p.fail("Consent.patient", "patient must be a Patient reference")
		}
		d.Kind, d.PersonID = KindPatient, id
	} else {
		d.Kind = KindDefault
	}
	if c.DateTime != "" {
		d.DateTime = p.dateTime("Consent.dateTime", c.DateTime, false)
	}
	if a := c.SourceAttachment; a != nil {
		d.SourceAttachment = &Attachment{ContentType: a.ContentType, URL: a.URL, Title: a.Title, Hash: a.Hash, Data: a.Data}
		if a.Creation != "" {
			d.SourceAttachment.Creation = p.dateTime("Consent.sourceAttachment.creation", a.Creation, false)
		}
	}
	if c.SourceReference != nil {
		d.SourceReference = c.SourceReference.Reference
		if d.SourceReference == "" {
			p.fail("Consent.sourceReference", "source reference needs a reference")
		}
	}
	switch {
	case c.PolicyRule == nil:
		p.fail("Consent.policyRule", "policy rule is required")
	case hasCoding(c.PolicyRule.Coding, SystemActCode, string(OptIn)):
		d.PolicyRule = OptIn
	case hasCoding(c.PolicyRule.Coding, SystemActCode, string(OptOut)):
		d.PolicyRule = OptOut
	default:
		p.fail("Consent.policyRule", "policy rule must be OPTIN or OPTOUT")
	}
	if c.Provision != nil {
		d.Provision = p.provision(c.Provision, "Consent.provision", 0)
	}
	return d
}

func hasCoding(cs []fhirCoding, system, code string) bool {
	for _, c := range cs {
		if c.System == system && c.Code == code {
			return true
		}
	}
	return false
}

func (p *parser) provision(fp *fhirProvision, path string, depth int) Provision {
	var out Provision
	if depth >= MaxDepth {
		p.fail(path, "provisions nest too deeply")
		return out
	}
	if len(fp.ModifierExtension) > 0 {
		p.fail(path+".modifierExtension", "modifier extensions are not supported")
	}
	for _, el := range []struct {
		name string
		v    json.RawMessage
	}{{"code", fp.Code}, {"dataPeriod", fp.DataPeriod}, {"data", fp.Data}} {
		if len(el.v) > 0 {
			p.fail(path+"."+el.name, "provision."+el.name+" is not supported")
		}
	}
	switch fp.Type {
	case "":
	case "permit":
		out.Type = Permit
	case "deny":
		out.Type = Deny
	default:
		p.fail(path+".type", "provision type must be permit or deny")
	}
	if fp.Period != nil {
		if fp.Period.Start != "" {
			out.Period.Start = p.dateTime(path+".period.start", fp.Period.Start, false)
		}
		if fp.Period.End != "" {
			out.Period.End = p.dateTime(path+".period.end", fp.Period.End, true)
		}
	}
	for i, a := range fp.Actor {
		out.Actors = append(out.Actors, p.actor(&a, path+".actor["+strconv.Itoa(i)+"]"))
	}
	for i, a := range fp.Action {
		ap := path + ".action[" + strconv.Itoa(i) + "]"
		if len(a.Coding) != 1 || a.Coding[0].System != SystemConsentAction || !knownAction(a.Coding[0].Code) {
			p.fail(ap, "action must be one consentaction code")
			continue
		}
		out.Actions = append(out.Actions, a.Coding[0].Code)
	}
	for i, c := range fp.SecurityLabel {
		lp := path + ".securityLabel[" + strconv.Itoa(i) + "]"
		if !IsGatingLabel(c.Code) || c.System != labelSystem(c.Code) {
			p.fail(lp, "unsupported security label")
			continue
		}
		out.SecurityLabels = append(out.SecurityLabels, c.Code)
	}
	for i, c := range fp.Purpose {
		pp := path + ".purpose[" + strconv.Itoa(i) + "]"
		if (c.System != SystemActReason && c.System != SystemActReasonOID) || !KnownPurpose(c.Code) {
			p.fail(pp, "unknown purpose of use")
			continue
		}
		out.Purposes = append(out.Purposes, c.Code)
	}
	for i, c := range fp.Class {
		cp := path + ".class[" + strconv.Itoa(i) + "]"
		switch {
		case c.System == SystemResourceTypes && KnownResourceType(c.Code):
			out.Classes = append(out.Classes, Class{ResourceType: c.Code})
		case KnownCategory(c.Code) && categorySystems[c.Code] == c.System:
			out.Classes = append(out.Classes, Class{Categories: []string{c.Code}})
		default:
			p.fail(cp, "unknown class")
		}
	}
	for i := range fp.Provision {
		out.Provisions = append(out.Provisions, p.provision(&fp.Provision[i], path+".provision["+strconv.Itoa(i)+"]", depth+1))
	}
	return out
}

func (p *parser) actor(a *fhirActor, path string) Actor {
	var out Actor
	if a.Role == nil || len(a.Role.Coding) != 1 {
		p.fail(path+".role", "actor role must be one coding")
		return out
	}
	role := a.Role.Coding[0]
	ref := ""
	if a.Reference != nil {
		ref = a.Reference.Reference
	}
	switch role.System {
	case SystemParticipationType:
		switch role.Code {
		case ParticipationRecipient, ParticipationPrimaryRecipient, ParticipationCustodian:
		default:
			p.fail(path+".role", "unsupported participation type")
		}
		if ref == "" {
			p.fail(path+".reference", "actor needs a reference")
		}
		return Actor{Role: role.Code, Reference: ref}
	case SystemActorRole:
		if ref != "" {
			p.fail(path+".reference", "a role-only actor has no reference")
		}
		return Actor{Role: role.Code}
	}
	p.fail(path+".role", "unsupported actor role system")
	return out
}

// dateTime parses a FHIR date or dateTime. A partial date (YYYY, YYYY-MM, YYYY-MM-DD) is
// read in p.loc; end selects its last instant instead of its first.
func (p *parser) dateTime(path, s string, end bool) time.Time {
	for _, l := range []struct {
		layout string
		add    func(time.Time) time.Time
	}{
		{"2006", func(t time.Time) time.Time { return t.AddDate(1, 0, 0) }},
		{"2006-01", func(t time.Time) time.Time { return t.AddDate(0, 1, 0) }},
		{"2006-01-02", func(t time.Time) time.Time { return t.AddDate(0, 0, 1) }},
	} {
		if len(s) != len(l.layout) {
			continue
		}
		t, err := time.ParseInLocation(l.layout, s, p.loc)
		if err != nil {
			break
		}
		if end {
			t = l.add(t).Add(-time.Nanosecond)
		}
		return t
	}
	if strings.Contains(s, "T") {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t
		}
	}
	p.fail(path, "not a FHIR date or dateTime")
	return time.Time{}
}

// FormatConsent maps d to R4 Consent JSON. It returns errs.Invalid (with Path) when d
// breaks a rule of Validate. UTC start instants at midnight and UTC end instants at the
// last nanosecond of a day are written as dates, which ParseConsent with loc UTC reads
// back identically; every other instant is written in full with its offset.
func FormatConsent(d Directive) ([]byte, error) {
	const op = "consent.FormatConsent"
	if err := d.Validate(); err != nil {
		return nil, errs.E(op, err)
	}
	c := fhirConsent{
		ResourceType: "Consent",
		ID:           string(d.ID),
		Meta:         &fhirMeta{VersionID: strconv.Itoa(d.Version)},
		Status:       string(d.Status),
		Scope:        &fhirCodeableConcept{Coding: []fhirCoding{{System: SystemConsentScope, Code: ScopePatientPrivacy}}},
		Category:     []fhirCodeableConcept{{Coding: []fhirCoding{{System: SystemLOINC, Code: CategoryPrivacyConsent}}}},
		PolicyRule:   &fhirCodeableConcept{Coding: []fhirCoding{{System: SystemActCode, Code: string(d.PolicyRule)}}},
	}
	if d.Kind == KindPatient {
		c.Patient = &fhirReference{Reference: "Patient/" + d.PersonID}
	}
	if !d.DateTime.IsZero() {
		c.DateTime = formatTime(d.DateTime, false)
	}
	if a := d.SourceAttachment; a != nil {
		c.SourceAttachment = &fhirAttachment{ContentType: a.ContentType, URL: a.URL, Title: a.Title, Hash: a.Hash, Data: a.Data}
		if !a.Creation.IsZero() {
			c.SourceAttachment.Creation = formatTime(a.Creation, false)
		}
	}
	if d.SourceReference != "" {
		c.SourceReference = &fhirReference{Reference: d.SourceReference}
	}
	c.Provision = formatProvision(&d.Provision)
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, errs.E(op, errs.Internal, err)
	}
	return b, nil
}

func formatProvision(p *Provision) *fhirProvision {
	fp := &fhirProvision{Type: p.Type.String()}
	if !p.Period.Start.IsZero() || !p.Period.End.IsZero() {
		fp.Period = &fhirPeriod{}
		if !p.Period.Start.IsZero() {
			fp.Period.Start = formatTime(p.Period.Start, false)
		}
		if !p.Period.End.IsZero() {
			fp.Period.End = formatTime(p.Period.End, true)
		}
	}
	for _, a := range p.Actors {
		fa := fhirActor{}
		if a.Reference == "" {
			fa.Role = &fhirCodeableConcept{Coding: []fhirCoding{{System: SystemActorRole, Code: a.Role}}}
			fa.Reference = &fhirReference{Display: "any " + a.Role}
		} else {
			role := a.Role
			if role == "" {
				role = ParticipationRecipient
			}
			fa.Role = &fhirCodeableConcept{Coding: []fhirCoding{{System: SystemParticipationType, Code: role}}}
			fa.Reference = &fhirReference{Reference: a.Reference}
		}
		fp.Actor = append(fp.Actor, fa)
	}
	for _, a := range p.Actions {
		fp.Action = append(fp.Action, fhirCodeableConcept{Coding: []fhirCoding{{System: SystemConsentAction, Code: a}}})
	}
	for _, l := range p.SecurityLabels {
		fp.SecurityLabel = append(fp.SecurityLabel, fhirCoding{System: labelSystem(l), Code: l})
	}
	for _, pu := range p.Purposes {
		fp.Purpose = append(fp.Purpose, fhirCoding{System: SystemActReason, Code: pu})
	}
	for _, c := range p.Classes {
		if c.ResourceType != "" {
			fp.Class = append(fp.Class, fhirCoding{System: SystemResourceTypes, Code: c.ResourceType})
		} else {
			fp.Class = append(fp.Class, fhirCoding{System: categorySystems[c.Categories[0]], Code: c.Categories[0]})
		}
	}
	for i := range p.Provisions {
		fp.Provision = append(fp.Provision, *formatProvision(&p.Provisions[i]))
	}
	return fp
}

func formatTime(t time.Time, end bool) string {
	if t.Location() != time.UTC {
		// A date has no zone: write instants outside UTC in full so no reader can shift them.
		return t.Format(time.RFC3339Nano)
	}
	h, m, s := t.Clock()
	switch {
	case !end && h == 0 && m == 0 && s == 0 && t.Nanosecond() == 0:
		return t.Format("2006-01-02")
	case end && h == 23 && m == 59 && s == 59 && t.Nanosecond() == 999999999:
		return t.Format("2006-01-02")
	}
	return t.Format(time.RFC3339Nano)
}

// elementNames are the member names the mapping decodes. encoding/json matches member
// names case-insensitively, so checkMembers rejects any other spelling of these.
var elementNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range strings.Fields(`resourceType id meta versionId lastUpdated source profile
		security tag implicitRules language text contained extension modifierExtension identifier
		status scope category patient dateTime performer organization sourceAttachment
		sourceReference policy policyRule verification provision type period start end actor role
		reference action securityLabel purpose class code dataPeriod data coding system version
		display userSelected contentType url size hash title creation`) {
		m[strings.ToLower(n)] = n
	}
	return m
}()

// checkMembers rejects JSON in which an object has two members with the same name or
// with names equal under case folding, or a member that spells an element name with
// other cases ("Type" for "type").
func checkMembers(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		object bool
		keys   map[string]bool
		expect bool // next string token in this object is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		top := len(stack) - 1
		isKey := top >= 0 && stack[top].object && stack[top].expect
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				if top >= 0 && stack[top].object {
					stack[top].expect = true
				}
				stack = append(stack, frame{object: true, keys: map[string]bool{}, expect: true})
			case '[':
				if top >= 0 && stack[top].object {
					stack[top].expect = true
				}
				stack = append(stack, frame{})
			default:
				stack = stack[:top]
			}
			continue
		case string:
			if isKey {
				k := strings.ToLower(v)
				if want, ok := elementNames[k]; ok && want != v {
					return errors.New("member name in the wrong case")
				}
				if stack[top].keys[k] {
					return errors.New("duplicate member")
				}
				stack[top].keys[k] = true
				stack[top].expect = false
				continue
			}
		}
		if top >= 0 && stack[top].object {
			stack[top].expect = true
		}
	}
}
