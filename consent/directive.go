package consent

import (
	"time"
)

// DirectiveID identifies a directive (the FHIR Consent id). Versions of one directive
// share the ID.
type DirectiveID string

// Kind says whose directive it is.
type Kind uint8

const (
	// KindPatient is a patient's (or their representative's) own directive.
	KindPatient Kind = iota
	// KindDefault is a regional default policy that the privacy officer edits; it applies
	// to every person and has no PersonID.
	KindDefault
)

func (k Kind) String() string {
	if k == KindDefault {
		return "default"
	}
	return "patient"
}

// PolicyRule is the directive's base rule (v3-ActCode ActConsentDirective).
type PolicyRule string

const (
	OptIn  PolicyRule = "OPTIN"  // nothing is shared unless a provision permits it
	OptOut PolicyRule = "OPTOUT" // sharing happens unless a provision denies it
)

// Status is the FHIR Consent status. Only StatusActive directives take part in decisions.
type Status string

const (
	StatusActive         Status = "active"
	StatusInactive       Status = "inactive"
	StatusDraft          Status = "draft"
	StatusProposed       Status = "proposed"
	StatusRejected       Status = "rejected"
	StatusEnteredInError Status = "entered-in-error"
)

// ProvisionType is permit or deny. The zero value, TypeUnset, means "inherit": a
// nested provision is the opposite of its parent, and a root provision follows the
// policy rule (OPTIN: permit, OPTOUT: deny).
type ProvisionType uint8

const (
	TypeUnset ProvisionType = iota
	Permit
	Deny
)

func (t ProvisionType) String() string {
	switch t {
	case Permit:
		return "permit"
	case Deny:
		return "deny"
	}
	return ""
}

func (t ProvisionType) opposite() ProvisionType {
	if t == Permit {
		return Deny
	}
	return Permit
}

// Roles a requester can act in; also usable as role-only provision actors ("any
// clinician").
const (
	RolePatient   = "patient"   // the person the record is about
	RoleProxy     = "proxy"     // a parent, guardian or caregiver acting for the patient
	RoleClinician = "clinician" // a clinician at a member organization
	RoleOfficer   = "officer"   // a privacy officer
	RoleSystem    = "system"    // a member system using SMART Backend Services
	// RoleShare is whoever holds a share link the patient made: unauthenticated, acting
	// for the patient (PurposePatientRequest) on the patient's own instruction, within what
	// the link names. Like a proxy it needs the patient's explicit consent for 42 CFR
	// Part 2 records, and a patient's deny naming it stops every link.
	RoleShare = "share"
)

// Participation types (v3-ParticipationType) an actor with a reference may have.
const (
	// ParticipationRecipient (IRCP) and ParticipationPrimaryRecipient (PRCP) name who
	// receives the data: they are matched against the requester.
	ParticipationRecipient        = "IRCP"
	ParticipationPrimaryRecipient = "PRCP"
	// ParticipationCustodian (CST) names the organization holding the data; it is
	// matched against Request.Custodian (where the data came from).
	ParticipationCustodian = "CST"
)

// Purposes of use (v3-ActReason) that Concord knows.
const (
	PurposeTreatment          = "TREAT"
	PurposeEmergencyTreatment = "ETREAT"
	PurposePayment            = "HPAYMT"
	PurposeOperations         = "HOPERAT"
	PurposePublicHealth       = "PUBHLTH"
	PurposePatientRequest     = "PATRQT"
	PurposeBreakGlass         = "BTG"
)

// Security labels that gate release. The more specific sensitivity codes members send are
// read as the one of these they are a kind of (labelParents); every other label on an item
// is carried but does not gate release.
const (
	LabelSubstanceUse = "ETH"        // v3-ActCode: substance use information
	LabelMentalHealth = "PSY"        // v3-ActCode: psychiatry
	LabelHIV          = "HIV"        // v3-ActCode: HIV/AIDS
	LabelViolence     = "SDV"        // v3-ActCode: sexual assault, abuse, domestic violence
	LabelSexualHealth = "SEX"        // v3-ActCode: sexual and reproductive health
	LabelRestricted   = "R"          // v3-Confidentiality: restricted
	LabelVeryRestrict = "V"          // v3-Confidentiality: very restricted
	LabelPart2        = "42CFRPart2" // v3-ActCode: 42 CFR Part 2 program record
	RefrainRedisclose = "NORDSCLCD"  // v3-ActCode: no redisclosure without consent (not gating)
	labelCount        = 8
)

// labelBits gives each gating label a bit; labelMask turns a label list into a set.
func labelBit(l string) uint16 {
	switch l {
	case LabelSubstanceUse:
		return 1 << 0
	case LabelMentalHealth:
		return 1 << 1
	case LabelHIV:
		return 1 << 2
	case LabelViolence:
		return 1 << 3
	case LabelSexualHealth:
		return 1 << 4
	case LabelRestricted:
		return 1 << 5
	case LabelVeryRestrict:
		return 1 << 6
	case LabelPart2:
		return 1 << 7
	}
	return 0
}

const allLabelBits = 1<<labelCount - 1

// gatingLabels lists the gating labels in bit order.
var gatingLabels = [labelCount]string{LabelSubstanceUse, LabelMentalHealth, LabelHIV,
	LabelViolence, LabelSexualHealth, LabelRestricted, LabelVeryRestrict, LabelPart2}

// Sensitive reports whether labels hold a gating label: a sensitivity (ETH, PSY, HIV, SDV,
// SEX, or a more specific code read as one of them or as R: labelParents), a
// confidentiality of R or V, or 42CFRPart2.
func Sensitive(labels []string) bool { return labelMask(labels) != 0 }

func labelMask(ls []string) uint16 {
	var m uint16
	for _, l := range ls {
		m |= labelBit(l) | labelBit(labelParents[l])
	}
	return m
}

// labelParents maps the more specific sensitivity codes members send (v3-ActCode
// _ActInformationSensitivityPolicy and two US privacy-law codes) onto the gating label
// they are a kind of, so that an item labelled ETHUD or PSYTHPN is gated as ETH or PSY.
// Sensitivities Concord has no category for (genetic disease, sickle cell, taboo, the
// VA's Title 38 §7332) gate as R, restricted. An item keeps the codes it was sent with;
// only the decision reads them this way. Provisions never carry these codes
// (IsGatingLabel refuses them), so the mapping can only withhold more, never release more.
var labelParents = map[string]string{
	"ETHUD": LabelSubstanceUse, "OPIOIDUD": LabelSubstanceUse, "SUD": LabelSubstanceUse,
	"PSYTHPN": LabelMentalHealth, "MH": LabelMentalHealth, "BH": LabelMentalHealth, "HIPAAPsyNotes": LabelMentalHealth,
	"STD":  LabelSexualHealth,
	"MST":  LabelViolence,
	"GDIS": LabelRestricted, "SCA": LabelRestricted, "SICKLE": LabelRestricted, "TBOO": LabelRestricted,
	"Title38Section7332": LabelRestricted,
}

// IsGatingLabel reports whether l is one of the labels that gate release.
func IsGatingLabel(l string) bool { return labelBit(l) != 0 }

// Period is a time range. A zero Start or End is open. Both ends are inclusive.
type Period struct {
	Start time.Time
	End   time.Time
}

// Contains reports whether t lies in p.
func (p Period) Contains(t time.Time) bool {
	return (p.Start.IsZero() || !t.Before(p.Start)) && (p.End.IsZero() || !t.After(p.End))
}

// Actor names who a provision is about. Exactly one of two shapes:
//   - Reference set ("Organization/ID", "Practitioner/ID", "PractitionerRole/ID",
//     "RelatedPerson/ID", "Patient/ID") with Role a participation type: IRCP/PRCP (or
//     empty) for the recipient, CST for the custodian (Organization only);
//   - Reference empty and Role one of RolePatient, RoleProxy, RoleClinician,
//     RoleOfficer, RoleSystem: anyone acting in that role.
type Actor struct {
	Role      string
	Reference string
}

func (a Actor) isCustodian() bool { return a.Role == ParticipationCustodian }

// Class is a kind of data. In a request it describes the item: its resource type and
// its category codes. In a provision it selects items: ResourceType "" matches any type
// and empty Categories match any category; otherwise the type must be equal and at least
// one category shared. In FHIR a provision class is one coding, so a provision Class
// that is to be written as FHIR holds either a ResourceType or exactly one Category.
type Class struct {
	ResourceType string
	Categories   []string
}

// Provision is a permit or deny rule with its exceptions. Empty criteria match
// everything. Actions (consentaction codes) limit the provision to those actions;
// Concord's requests are access/use/disclose, so a provision whose Actions name none of
// these never applies.
type Provision struct {
	Type           ProvisionType
	Period         Period
	Actors         []Actor
	Actions        []string
	Purposes       []string
	Classes        []Class
	SecurityLabels []string
	Provisions     []Provision
}

// Attachment is the signed form a directive was captured from (IHE PCF/BPPC).
type Attachment struct {
	ContentType string
	URL         string
	Title       string
	Hash        string // base64 SHA-1 as in FHIR Attachment.hash
	Data        []byte // the form itself, when inline
	Creation    time.Time
}

// Directive is one version of a consent directive: a patient's own or a regional
// default policy. The root provision's period is the directive's period (R4 Consent
// has no other).
type Directive struct {
	ID         DirectiveID
	Version    int
	PersonID   string // the patient (Kind patient); empty for a default policy
	Kind       Kind
	Title      string // default policies: a short name for explanations ("regional treatment policy")
	PolicyRule PolicyRule
	Status     Status
	DateTime   time.Time // when the choice was made (Consent.dateTime)
	// Source is the captured form: an attachment or a reference to a DocumentReference.
	SourceAttachment *Attachment
	SourceReference  string
	Provision        Provision
	// AppliesTo is set by Store (Load, LoadAt, History) on a directive of a patient filed
	// for another person of the merge family of the person it was loaded for (an MPI merge
	// joined the two): that person, whose decisions it then governs as Decide would their
	// own. It is never stored; FormatConsent ignores it.
	AppliesTo string `json:",omitempty"`
}

// rootType is the effective type of d's root provision.
func (d *Directive) rootType() ProvisionType {
	if d.Provision.Type != TypeUnset {
		return d.Provision.Type
	}
	if d.PolicyRule == OptOut {
		return Deny
	}
	return Permit
}

// BreakGlass is a declared emergency access. Build it with DeclareBreakGlass.
type BreakGlass struct {
	ReasonCode string
	Text       string // the clinician's free-text reason; never shown in logs
	Start      time.Time
	Expires    time.Time
}

// Request is one question to Decide: may Actor, in ActorRole at organization Org, see an
// item of class Class carrying Labels in PersonID's record, for Purpose, at time At?
type Request struct {
	// Actor is the user's FHIR reference ("Practitioner/123", "RelatedPerson/9").
	Actor string
	// ActorRole is the role the actor acts in (RolePatient, RoleProxy, ...). RolePatient
	// asserts that the actor is PersonID; RoleProxy that the caller verified the actor's
	// relationship to PersonID. Decide trusts these assertions.
	ActorRole string
	// Org is the requesting organization's ID; provisions name it "Organization/{Org}".
	Org      string
	Purpose  string
	PersonID string
	// Class is the item's resource type and categories. An empty ResourceType means
	// unknown: deny provisions with classes match it, permit provisions with classes don't.
	Class Class
	// Custodian is the ID of the organization the item came from, matched by CST actors;
	// "" means unknown (matched by denies, not by permits).
	Custodian string
	// Labels are the item's security labels (meta.security codes).
	Labels     []string
	At         time.Time
	BreakGlass *BreakGlass
}
