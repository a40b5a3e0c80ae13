package portal

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// Sharing choices a patient makes in the portal are ordinary versioned consent directives
// with ids derived from (person, choice, organization), so each choice is one directive
// whose versions are its history: saving a choice writes a new version (active or
// withdrawn), and the decision point applies it to the next request.
const (
	choiceOptOut    = "optout"    // deny treatment to everyone
	choiceDenyOrg   = "deny-org"  // deny treatment to one organization
	choiceSensitive = "sensitive" // let one organization see sensitive information for treatment
)

// treatmentPurposes are what the portal's sharing choices govern.
var treatmentPurposes = []string{consent.PurposeTreatment, consent.PurposeEmergencyTreatment}

// sensitiveLabels are what "include sensitive information" releases: every gating label
// but 42CFRPart2, which needs the specific consent of 42 CFR Part 2.
var sensitiveLabels = []string{consent.LabelSubstanceUse, consent.LabelMentalHealth, consent.LabelHIV, consent.LabelViolence,
	consent.LabelSexualHealth, consent.LabelRestricted}

// choiceID is the directive id of choice kind for person (and org).
func choiceID(person, kind, org string) consent.DirectiveID {
	sum := sha256.Sum256([]byte(person + "|" + kind + "|" + org))
	return consent.DirectiveID("pc-" + hex.EncodeToString(sum[:12]))
}

// choiceDirective is the directive that makes choice kind for person (and org).
func choiceDirective(person, kind, org string, at time.Time) consent.Directive {
	d := consent.Directive{ID: choiceID(person, kind, org), PersonID: person, Kind: consent.KindPatient, Status: consent.StatusActive,
		DateTime: at, PolicyRule: consent.OptOut}
	actor := []consent.Actor{{Role: consent.ParticipationRecipient, Reference: "Organization/" + org}}
	switch kind {
	case choiceOptOut:
		d.Title = "Do not share my record for treatment"
		d.Provision = consent.Provision{Type: consent.Deny, Purposes: treatmentPurposes}
	case choiceDenyOrg:
		d.Title = "Do not share my record with this organization"
		d.Provision = consent.Provision{Type: consent.Deny, Actors: actor, Purposes: treatmentPurposes}
	case choiceSensitive:
		d.Title = "Share sensitive information with this organization"
		d.PolicyRule = consent.OptIn
		d.Provision = consent.Provision{Type: consent.Permit, Actors: actor, Purposes: treatmentPurposes, SecurityLabels: sensitiveLabels}
	}
	return d
}

// choiceActive reports whether dirs hold choice kind for person (and org), active.
func choiceActive(dirs []consent.Directive, person, kind, org string) bool {
	id := choiceID(person, kind, org)
	for _, d := range dirs {
		if d.ID == id {
			return d.Status == consent.StatusActive
		}
	}
	return false
}

// WithConsentStore lets patients save their sharing choices (SetChoice) through cs. It
// returns p.
func (p *PrivacyStore) WithConsentStore(cs *consent.Store) *PrivacyStore {
	p.consents = cs
	return p
}

// SetChoice implements Privacy.
func (p *PrivacyStore) SetChoice(ctx context.Context, v Viewer, kind, org string, on bool, at time.Time) error {
	const op = "portal.PrivacyStore.SetChoice"
	if v.Role != RolePatient || v.PersonID == "" {
		return errs.E(op, errs.Invalid, "only the patient makes their sharing choices")
	}
	switch {
	case kind == choiceOptOut && org == "":
	case (kind == choiceDenyOrg || kind == choiceSensitive) && org != "":
	default:
		return errs.E(op, errs.Invalid, "unknown sharing choice")
	}
	if p.consents == nil || p.audit == nil {
		return errs.E(op, errs.Unavailable, "sharing choices need the consent store and the audit log")
	}
	dirs, _, err := p.dirs.Current(ctx, v.PersonID)
	if err != nil {
		return err
	}
	id := choiceID(v.PersonID, kind, org)
	exists := false
	for _, d := range dirs {
		if d.ID == id {
			exists = true
			if (d.Status == consent.StatusActive) == on {
				return nil // already so
			}
		}
	}
	if !exists && !on {
		return nil
	}
	d := choiceDirective(v.PersonID, kind, org, at)
	if !on {
		d.Status = consent.StatusInactive
	}
	return auditedTx(ctx, p.db, p.audit, func(tx db.Querier) (audit.Event, error) {
		saved, _, err := p.consents.Save(ctx, tx, d, v.Actor)
		if err != nil {
			return audit.Event{}, err
		}
		reason := "choice-on"
		if !on {
			reason = "choice-off"
		}
		return audit.Event{Time: at, Action: audit.ConsentChange, Outcome: audit.Permit, Reason: reason, Actor: v.Actor,
			Role: string(v.Role), Purpose: consent.PurposePatientRequest, Patient: v.PersonID, Consent: string(saved.ID),
			ConsentVersion: int64(saved.Version), RequestID: v.RequestID, SourceIP: v.SourceIP}, nil
	})
}
