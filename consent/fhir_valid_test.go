package consent_test

import (
	"testing"
	"time"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir"
)

// TestFormatConsentIsValidR4 checks FormatConsent's output against the fhir package's
// strict R4 parser, written independently of this mapping.
func TestFormatConsentIsValidR4(t *testing.T) {
	day := time.Date(2026, 3, 12, 0, 0, 0, 0, time.UTC)
	ds := append(consent.DefaultPolicies(consent.PolicyConfig{Effective: day}), consent.Directive{
		ID: "full", Version: 2, PersonID: "p1", Kind: consent.KindPatient, PolicyRule: consent.OptOut,
		Status: consent.StatusActive, DateTime: day.Add(9 * time.Hour),
		SourceAttachment: &consent.Attachment{ContentType: "application/pdf", Title: "signed form", Data: []byte("%PDF"), Creation: day},
		Provision: consent.Provision{
			Period:  consent.Period{Start: day, End: day.AddDate(1, 0, 0).Add(-time.Nanosecond)},
			Actors:  []consent.Actor{{Role: consent.ParticipationCustodian, Reference: "Organization/org-c"}, {Role: consent.RoleProxy}},
			Actions: []string{"access"}, Purposes: []string{consent.PurposeTreatment},
			Classes:        []consent.Class{{ResourceType: "Condition"}, {Categories: []string{"laboratory"}}},
			SecurityLabels: []string{consent.LabelMentalHealth, consent.LabelVeryRestrict},
			Provisions: []consent.Provision{{Actors: []consent.Actor{{Reference: "Practitioner/pr-1"}},
				Provisions: []consent.Provision{{Type: consent.Deny, Purposes: []string{consent.PurposeBreakGlass}}}}},
		},
	})
	for _, d := range ds {
		b, err := consent.FormatConsent(d)
		if err != nil {
			t.Fatalf("%s: %v", d.ID, err)
		}
		if _, err := fhir.Parse(b); err != nil {
			t.Errorf("%s: not valid R4: %v\n%s", d.ID, err, b)
		}
	}
}
