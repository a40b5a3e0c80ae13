package consent

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/concord-hie/concord/internal/errs"
)

// fhirID is the FHIR id datatype.
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// referenceTypes are the resource types an actor reference may point to.
var referenceTypes = [...]string{"Organization", "Practitioner", "PractitionerRole", "RelatedPerson", "Patient"}

func invalid(op, path, msg string) error {
	e := errs.E(op, errs.Invalid, msg)
	e.Path = path
	return e
}

// Validate checks d against the rules Decide and the FHIR mapping rely on. It returns
// errs.Invalid whose Path names the offending element in FHIR terms
// ("Consent.provision.provision[1].actor[0]"); messages name elements, never values.
func (d *Directive) Validate() error {
	const op = "consent.Directive.Validate"
	if !fhirID.MatchString(string(d.ID)) {
		return invalid(op, "Consent.id", "directive id must be a FHIR id")
	}
	if d.Version < 1 {
		return invalid(op, "Consent.meta.versionId", "directive version must be positive")
	}
	switch d.Kind {
	case KindPatient:
		if !fhirID.MatchString(d.PersonID) {
			return invalid(op, "Consent.patient", "a patient's directive needs the patient")
		}
	case KindDefault:
		if d.PersonID != "" {
			return invalid(op, "Consent.patient", "a default policy names no patient")
		}
	default:
		return invalid(op, "Consent", "unknown directive kind")
	}
	if d.PolicyRule != OptIn && d.PolicyRule != OptOut {
		return invalid(op, "Consent.policyRule", "policy rule must be OPTIN or OPTOUT")
	}
	switch d.Status {
	case StatusActive, StatusInactive, StatusDraft, StatusProposed, StatusRejected, StatusEnteredInError:
	default:
		return invalid(op, "Consent.status", "unknown status")
	}
	if d.SourceAttachment != nil && d.SourceReference != "" {
		return invalid(op, "Consent.source[x]", "a directive has one source: attachment or reference")
	}
	if d.SourceReference != "" && !strings.HasPrefix(d.SourceReference, "DocumentReference/") {
		return invalid(op, "Consent.sourceReference", "source reference must be a DocumentReference")
	}
	return validateProvision(op, &d.Provision, "Consent.provision", 0)
}

func validateProvision(op string, p *Provision, path string, depth int) error {
	if depth >= MaxDepth {
		return invalid(op, path, "provisions nest too deeply")
	}
	if p.Type > Deny {
		return invalid(op, path+".type", "provision type must be permit or deny")
	}
	if !p.Period.Start.IsZero() && !p.Period.End.IsZero() && p.Period.End.Before(p.Period.Start) {
		return invalid(op, path+".period", "period ends before it starts")
	}
	for i, a := range p.Actors {
		ap := path + ".actor[" + strconv.Itoa(i) + "]"
		if err := validateActor(op, a, ap); err != nil {
			return err
		}
	}
	for i, a := range p.Actions {
		if !knownAction(a) {
			return invalid(op, path+".action["+strconv.Itoa(i)+"]", "unknown consent action")
		}
	}
	for i, pu := range p.Purposes {
		if !KnownPurpose(pu) {
			return invalid(op, path+".purpose["+strconv.Itoa(i)+"]", "unknown purpose of use")
		}
	}
	for i, l := range p.SecurityLabels {
		if !IsGatingLabel(l) {
			return invalid(op, path+".securityLabel["+strconv.Itoa(i)+"]", "unsupported security label")
		}
	}
	for i, c := range p.Classes {
		cp := path + ".class[" + strconv.Itoa(i) + "]"
		switch {
		case c.ResourceType != "" && len(c.Categories) == 0:
			if !KnownResourceType(c.ResourceType) {
				return invalid(op, cp, "unknown resource type")
			}
		case c.ResourceType == "" && len(c.Categories) == 1:
			if !KnownCategory(c.Categories[0]) {
				return invalid(op, cp, "unknown category")
			}
		default:
			return invalid(op, cp, "a provision class is one resource type or one category")
		}
	}
	for i := range p.Provisions {
		if err := validateProvision(op, &p.Provisions[i], path+".provision["+strconv.Itoa(i)+"]", depth+1); err != nil {
			return err
		}
	}
	return nil
}

func validateActor(op string, a Actor, path string) error {
	if a.Reference == "" {
		if !knownRole(a.Role) {
			return invalid(op, path+".role", "a role-only actor needs a known role")
		}
		return nil
	}
	typ, id, ok := strings.Cut(a.Reference, "/")
	if !ok || !fhirID.MatchString(id) {
		return invalid(op, path+".reference", "actor reference must be Type/id")
	}
	known := false
	for _, t := range referenceTypes {
		known = known || t == typ
	}
	if !known {
		return invalid(op, path+".reference", "unsupported actor reference type")
	}
	switch a.Role {
	case "", ParticipationRecipient, ParticipationPrimaryRecipient:
	case ParticipationCustodian:
		if typ != "Organization" {
			return invalid(op, path+".reference", "a custodian must be an Organization")
		}
	default:
		return invalid(op, path+".role", "unsupported actor role")
	}
	return nil
}
