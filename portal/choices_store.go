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

// part2Purposes are what a Part 2 consent covers: treatment, payment and health care
// operations (one TPO consent, 42 CFR 2.33(b)), and emergency treatment.
var part2Purposes = []string{consent.PurposeTreatment, consent.PurposeEmergencyTreatment, consent.PurposePayment, consent.PurposeOperations}

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
	case choicePart2:
		d.Title = "Share substance use treatment records (42 CFR Part 2) with this organization"
		d.PolicyRule = consent.OptIn
		d.Provision = consent.Provision{Type: consent.Permit, Actors: actor, Purposes: part2Purposes,
			SecurityLabels: []string{consent.LabelSubstanceUse, consent.LabelRestricted, consent.LabelPart2}}
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
	if kind == choicePart2 {
		return errs.E(op, errs.Invalid, "a Part 2 consent is signed on its form and recorded by a privacy officer")
	}
	d, err := p.choice(op, v.PersonID, kind, org, at)
	if err != nil {
		return err
	}
	if !on {
		d.Status = consent.StatusInactive
	}
	reason := "choice-on"
	if !on {
		reason = "choice-off"
	}
	_, err = p.saveChoice(ctx, op, v, d, reason, false, at)
	return err
}

// choicePart2 is a 42 CFR Part 2 consent: one organization may see the patient's substance
// use treatment records for treatment, payment and health care operations (§2.33(b), the
// 2024 single TPO consent). Only a privacy officer records it, from the signed form.
const choicePart2 = "part2"

// PaperConsent is a consent form the patient signed outside the portal (at a front desk,
// by mail) as a privacy officer records it. The form itself stays where the organization
// files signed forms; FormRef is the officer's reference to it (a filing number), never
// the form's content.
type PaperConsent struct {
	Person  string    // the person (MPI ID) who signed
	Kind    string    // optout, deny-org, sensitive or part2
	Org     string    // the organization the form names; required except for optout
	On      bool      // true: the form makes the choice; false: the form withdraws it
	Signed  time.Time // the date on the form
	FormRef string    // 1–64 printable characters
}

// RecordPaperConsent implements Privacy.
func (p *PrivacyStore) RecordPaperConsent(ctx context.Context, v Viewer, f PaperConsent, at time.Time) (consent.Directive, error) {
	const op = "portal.PrivacyStore.RecordPaperConsent"
	if v.Role != RoleOfficer {
		return consent.Directive{}, errs.E(op, errs.Forbidden, "only a privacy officer records a signed form")
	}
	switch {
	case f.FormRef == "" || len(f.FormRef) > 64 || !printable(f.FormRef):
		return consent.Directive{}, errs.E(op, errs.Invalid, "the form reference must be 1 to 64 printable characters")
	case f.Signed.IsZero() || f.Signed.After(at) || f.Signed.Year() < 1900:
		return consent.Directive{}, errs.E(op, errs.Invalid, "the date signed must be a real date, not in the future")
	}
	var live bool
	if err := p.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mpi_persons WHERE id::text = $1 AND retired_into IS NULL)`, f.Person).Scan(&live); err != nil {
		return consent.Directive{}, db.Map(op, err)
	}
	if !live {
		return consent.Directive{}, errs.E(op, errs.NotFound, "no such person")
	}
	d, err := p.choice(op, f.Person, f.Kind, f.Org, f.Signed)
	if err != nil {
		return consent.Directive{}, err
	}
	d.SourceAttachment = &consent.Attachment{Title: "Signed form " + f.FormRef, Creation: f.Signed}
	reason := "paper-form-on"
	if !f.On {
		d.Status, reason = consent.StatusInactive, "paper-form-off"
	}
	return p.saveChoice(ctx, op, v, d, reason, true, at)
}

// printable reports whether s is printable ASCII: a reference shown in pages and exports.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// choice checks kind and org and returns the directive that makes the choice for person.
func (p *PrivacyStore) choice(op, person, kind, org string, at time.Time) (consent.Directive, error) {
	switch {
	case kind == choiceOptOut && org == "":
	case (kind == choiceDenyOrg || kind == choiceSensitive || kind == choicePart2) && org != "":
	default:
		return consent.Directive{}, errs.E(op, errs.Invalid, "unknown sharing choice")
	}
	if p.consents == nil || p.audit == nil {
		return consent.Directive{}, errs.E(op, errs.Unavailable, "sharing choices need the consent store and the audit log")
	}
	return choiceDirective(person, kind, org, at), nil
}

// saveChoice saves d as a new version of its choice, by v at at, audited (action consent-change,
// reason) in the same transaction, and returns the version saved. A patient's click that
// changes nothing saves nothing; a signed form (always) is a new version, so the history
// shows it. Withdrawing a choice that was never made is errs.Conflict.
func (p *PrivacyStore) saveChoice(ctx context.Context, op string, v Viewer, d consent.Directive, reason string, always bool, at time.Time) (consent.Directive, error) {
	dirs, _, err := p.dirs.Current(ctx, d.PersonID)
	if err != nil {
		return consent.Directive{}, err
	}
	on := d.Status == consent.StatusActive
	exists := false
	for _, cur := range dirs {
		if cur.ID == d.ID {
			exists = true
			if (cur.Status == consent.StatusActive) == on && !always {
				return cur, nil // already so
			}
		}
	}
	if !exists && !on {
		if always {
			return consent.Directive{}, errs.E(op, errs.Conflict, "that choice is not on record, so there is nothing to withdraw")
		}
		return consent.Directive{}, nil
	}
	var saved consent.Directive
	err = auditedTx(ctx, p.db, p.audit, func(tx db.Querier) (audit.Event, error) {
		if saved, _, err = p.consents.Save(ctx, tx, d, v.Actor); err != nil {
			return audit.Event{}, err
		}
		return audit.Event{Time: at, Action: audit.ConsentChange, Outcome: audit.Permit, Reason: reason, Actor: v.Actor,
			Org: v.Org, Role: string(v.Role), Purpose: consent.PurposePatientRequest, Patient: d.PersonID, Consent: string(saved.ID),
			ConsentVersion: int64(saved.Version), RequestID: v.RequestID, SourceIP: v.SourceIP}, nil
	})
	return saved, err
}
