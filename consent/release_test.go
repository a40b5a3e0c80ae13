package consent

import (
	"reflect"
	"testing"
)

// TestReleases: the provisions that release gating labels are the effective permits whose
// path names one, wherever the label and the recipient are named on that path.
func TestReleases(t *testing.T) {
	orgB := Actor{Role: ParticipationRecipient, Reference: "Organization/b"}
	custodian := Actor{Role: ParticipationCustodian, Reference: "Organization/p"}
	active := func(rule PolicyRule, p Provision) Directive {
		return Directive{ID: "d", Version: 1, Kind: KindPatient, PersonID: "p1", PolicyRule: rule, Status: StatusActive, Provision: p}
	}
	tests := []struct {
		name string
		d    Directive
		want []Release
	}{
		{"deny of labels releases nothing", active(OptOut, Provision{Type: Deny, SecurityLabels: []string{LabelHIV}}), nil},
		{"permit without labels releases nothing", active(OptIn, Provision{Type: Permit, Actors: []Actor{orgB}}), nil},
		{"root permit", active(OptIn, Provision{Type: Permit, Actors: []Actor{orgB, custodian}, SecurityLabels: []string{LabelPart2, LabelSubstanceUse}}),
			[]Release{{Path: "Consent.provision", Labels: []string{LabelSubstanceUse, LabelPart2},
				LabelPaths: []string{"Consent.provision.securityLabel[1]", "Consent.provision.securityLabel[0]"}, Recipients: []string{"Organization/b"}}}},
		{"unset root follows OPTIN", active(OptIn, Provision{SecurityLabels: []string{LabelHIV}}),
			[]Release{{Path: "Consent.provision", Labels: []string{LabelHIV}, LabelPaths: []string{"Consent.provision.securityLabel[0]"}}}},
		{"permit nested in a deny inherits its labels", active(OptOut, Provision{Type: Deny, SecurityLabels: []string{LabelPart2},
			Provisions: []Provision{{Actors: []Actor{orgB}}}}),
			[]Release{{Path: "Consent.provision.provision[0]", Labels: []string{LabelPart2},
				LabelPaths: []string{"Consent.provision.securityLabel[0]"}, Recipients: []string{"Organization/b"}}}},
		{"inactive releases nothing", Directive{ID: "d", Version: 1, Kind: KindPatient, PersonID: "p1", PolicyRule: OptIn, Status: StatusInactive,
			Provision: Provision{Type: Permit, SecurityLabels: []string{LabelHIV}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.Releases(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Releases() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestNamesOrg: a directive names an organization through any actor, recipient or
// custodian, at any depth; an id that merely starts the same does not count.
func TestNamesOrg(t *testing.T) {
	d := Directive{Provision: Provision{Type: Deny, Provisions: []Provision{{Actors: []Actor{{Role: ParticipationCustodian, Reference: "Organization/p"}}}}}}
	for org, want := range map[string]bool{"p": true, "pp": false, "": false, "b": false} {
		if got := d.NamesOrg(org); got != want {
			t.Errorf("NamesOrg(%q) = %v, want %v", org, got, want)
		}
	}
}

// TestGeneral: a directive is general when none of its provisions names anyone (an actor
// reference of any type) or a security label; actors by role alone name no one. A
// restriction naming one clinician is not general: serving it to every member would tell
// them about that clinician (session review).
func TestGeneral(t *testing.T) {
	for _, tt := range []struct {
		name string
		p    Provision
		want bool
	}{
		{"plain opt-out", Provision{Type: Deny}, true},
		{"deny for payment", Provision{Type: Deny, Purposes: []string{PurposePayment}}, true},
		{"deny to caregivers by role", Provision{Type: Deny, Actors: []Actor{{Role: RoleProxy}}}, true},
		{"names an organization", Provision{Type: Deny, Actors: []Actor{{Role: ParticipationRecipient, Reference: "Organization/b"}}}, false},
		{"names a clinician, nested", Provision{Type: Deny, Provisions: []Provision{{Actors: []Actor{{Role: ParticipationRecipient, Reference: "Practitioner/dr-7"}}}}}, false},
		{"names a label", Provision{Type: Deny, SecurityLabels: []string{LabelMentalHealth}}, false},
	} {
		d := Directive{Provision: tt.p}
		if got := d.General(); got != tt.want {
			t.Errorf("%s: General() = %v, want %v", tt.name, got, tt.want)
		}
	}
}
