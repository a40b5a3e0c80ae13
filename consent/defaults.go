package consent

import "time"

// IDs of the regional default policies built by DefaultPolicies.
const (
	PolicyTreatmentID     DirectiveID = "policy-treatment"
	PolicyPatientAccessID DirectiveID = "policy-patient-access"
)

// PolicyConfig configures the regional default policies. The zero value gives the
// region's documented defaults (standards.md §5).
type PolicyConfig struct {
	// TreatmentPurposes are permitted unless the patient opts out; default TREAT and ETREAT.
	TreatmentPurposes []string
	// TreatmentRoles may use them; default RoleClinician and RoleSystem.
	TreatmentRoles []string
	// TreatmentLabels are gating labels the opt-out policy releases; default none, so
	// sensitive items need the patient's own permit.
	TreatmentLabels []string
	// Effective is when the policies took effect (their DateTime); Version their version.
	Effective time.Time
	Version   int
}

// DefaultPolicies returns the regional default policies as directives, so Decide treats
// them like the patient's own and explanations can name them:
//
//   - PolicyTreatmentID (OPTOUT): treatment purposes are permitted to clinicians and
//     member systems unless the patient denies them; labelled items are not released;
//   - PolicyPatientAccessID: PATRQT is permitted to the patient, their proxy and the
//     holder of a share link the patient made (RoleShare), for every label (the right of
//     access, including directing a copy to someone; a proxy or share link still needs an
//     explicit consent for 42 CFR Part 2 records).
//
// Every other purpose is denied because nothing permits it.
func DefaultPolicies(cfg PolicyConfig) []Directive {
	purposes := cfg.TreatmentPurposes
	if len(purposes) == 0 {
		purposes = []string{PurposeTreatment, PurposeEmergencyTreatment}
	}
	roles := cfg.TreatmentRoles
	if len(roles) == 0 {
		roles = []string{RoleClinician, RoleSystem}
	}
	version := cfg.Version
	if version == 0 {
		version = 1
	}
	actors := make([]Actor, len(roles))
	for i, r := range roles {
		actors[i] = Actor{Role: r}
	}
	return []Directive{
		{
			ID: PolicyTreatmentID, Version: version, Kind: KindDefault,
			Title: "regional treatment policy", PolicyRule: OptOut, Status: StatusActive,
			DateTime: cfg.Effective,
			Provision: Provision{
				Type: Permit, Actors: actors, Purposes: append([]string(nil), purposes...),
				SecurityLabels: append([]string(nil), cfg.TreatmentLabels...),
			},
		},
		{
			ID: PolicyPatientAccessID, Version: version, Kind: KindDefault,
			Title: "right-of-access policy", PolicyRule: OptIn, Status: StatusActive,
			DateTime: cfg.Effective,
			Provision: Provision{
				Type:           Permit,
				Actors:         []Actor{{Role: RolePatient}, {Role: RoleProxy}, {Role: RoleShare}},
				Purposes:       []string{PurposePatientRequest},
				SecurityLabels: append([]string(nil), gatingLabels[:]...),
			},
		},
	}
}
