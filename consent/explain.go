package consent

import (
	"strings"
	"time"
)

// dateLayout renders dates in explanations: "12 March 2026".
const dateLayout = "2 January 2006"

// Names returns the display name for a FHIR reference such as "Organization/org-b", or
// "" when it has none. Explain uses it; it must not return PHI.
type Names func(ref string) string

// explainParams holds what an explanation needs: codes and dates, no names, so a
// Decision can be rendered again with display names.
type explainParams struct {
	reason  Reason
	kind    Kind
	title   string    // default policy title
	date    time.Time // when the patient made the choice
	end     time.Time // when the lapsed directive ended
	role    string
	org     string
	purpose string
	what    string
}

func newExplainParams(r Reason, d *Directive, req *Request, missing uint16) explainParams {
	p := explainParams{reason: r, role: req.ActorRole, purpose: purposePhrase(req.Purpose)}
	p.org = req.Org
	if d != nil {
		p.kind, p.title = d.Kind, d.Title
		if p.title == "" && d.Kind == KindDefault {
			p.title = "regional policy"
		}
		p.date = d.DateTime
		if r == Expired {
			p.end = d.Provision.Period.End
		}
	}
	if r == LabelNotPermitted && missing != 0 {
		p.what = labelPhrase(missing)
	} else {
		p.what = itemPhrase(req)
	}
	return p
}

// Explain renders d's explanation with display names from names (nil: generic words).
func (d Decision) Explain(names Names) string { return d.why.render(names) }

func (p *explainParams) who(names Names) string {
	switch p.role {
	case RolePatient:
		return "you"
	case RoleProxy:
		return "your representative"
	case RoleShare:
		return "someone using your share link"
	}
	if names != nil && p.org != "" {
		if n := names("Organization/" + p.org); n != "" {
			return n
		}
	}
	return "this organization"
}

func (p *explainParams) choice() string {
	if p.kind == KindDefault {
		return "the " + p.title
	}
	if p.date.IsZero() {
		return "your choice"
	}
	return "your choice of " + p.date.Format(dateLayout)
}

func (p *explainParams) render(names Names) string {
	who := p.who(names)
	switch p.reason {
	case Permitted:
		return "Allowed: " + p.choice() + " lets " + who + " see " + p.what + " for " + p.purpose + "."
	case BreakGlassOverride:
		return "Allowed in an emergency: " + who + " declared break-the-glass to see " + p.what +
			"; a privacy officer reviews every such access and you will be told."
	case Denied, DeniedByPolicy:
		return "Denied: " + p.choice() + " blocks " + who + " from seeing " + p.what + " for " + p.purpose + "."
	case LabelNotPermitted:
		return "Denied: " + p.what + " need your specific permission, and none of your choices gives it to " + who + "."
	case Part2ConsentRequired:
		return "Denied: substance-use treatment records protected by federal law (42 CFR Part 2) are shared only with your written consent naming " + who + "."
	case Expired:
		return "Denied: " + p.choice() + " that let " + who + " see " + p.what + " ended on " + p.end.Format(dateLayout) + "."
	case Inactive:
		return "Denied: " + p.choice() + " that let " + who + " see " + p.what + " is no longer in effect."
	case BreakGlassInvalid:
		return "Denied: emergency access was asked for without a valid, unexpired break-the-glass declaration."
	case InvalidRequest:
		return "Denied: the request did not state a valid purpose, patient and time."
	case ConsentUnavailable:
		return "Denied: your consent choices could not be checked just now, so nothing was shared."
	case ItemUnreadable:
		return "Denied: this record could not be read to check how it may be shared, so it was not shared."
	}
	return "Denied: no choice of yours and no regional policy lets " + who + " see " + p.what + " for " + p.purpose + "."
}

func purposePhrase(p string) string {
	switch p {
	case PurposeTreatment:
		return "treatment"
	case PurposeEmergencyTreatment:
		return "emergency treatment"
	case PurposePayment:
		return "payment"
	case PurposeOperations:
		return "health care operations"
	case PurposePublicHealth:
		return "public health"
	case PurposePatientRequest:
		return "your own access"
	case PurposeBreakGlass:
		return "an emergency override"
	}
	return "an unstated purpose"
}

// labelPhrases describes each gating label, most specific first.
var labelPhrases = [...]struct {
	label  string
	phrase string
}{
	{LabelPart2, "substance-use treatment records"},
	{LabelSubstanceUse, "substance-use records"},
	{LabelMentalHealth, "mental-health records"},
	{LabelHIV, "HIV records"},
	{LabelViolence, "records about sexual or domestic violence"},
	{LabelSexualHealth, "sexual and reproductive health records"},
	{LabelVeryRestrict, "very restricted records"},
	{LabelRestricted, "restricted records"},
}

func labelPhrase(mask uint16) string {
	for _, lp := range labelPhrases {
		if mask&labelBit(lp.label) != 0 {
			return lp.phrase
		}
	}
	return "these records"
}

func itemPhrase(req *Request) string {
	if m := labelMask(req.Labels); m != 0 {
		return labelPhrase(m)
	}
	return classPhrase(req.Class)
}

func classPhrase(c Class) string {
	for _, cat := range c.Categories {
		switch cat {
		case "laboratory":
			return "lab results"
		case "vital-signs":
			return "vital signs"
		case "imaging":
			return "imaging results"
		case "clinical-note":
			return "clinical notes"
		case "social-history":
			return "social history"
		}
	}
	switch c.ResourceType {
	case "":
		return "your records"
	case "Observation":
		return "observations"
	case "Condition":
		return "problems and diagnoses"
	case "MedicationRequest", "MedicationStatement", "MedicationDispense", "MedicationAdministration":
		return "medications"
	case "AllergyIntolerance":
		return "allergies"
	case "Immunization":
		return "immunizations"
	case "DocumentReference", "Composition":
		return "documents and notes"
	case "DiagnosticReport":
		return "test reports"
	case "Encounter":
		return "visits"
	case "Procedure":
		return "procedures"
	case "Patient":
		return "your demographic details"
	}
	return strings.ToLower(c.ResourceType) + " records"
}
