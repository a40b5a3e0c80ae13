package consent

import (
	"strings"
	"testing"
	"time"
)

var (
	at       = time.Date(2026, 3, 20, 10, 0, 0, 0, time.UTC)
	madeOn   = time.Date(2026, 3, 12, 9, 30, 0, 0, time.UTC)
	defaults = DefaultPolicies(PolicyConfig{Effective: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	// releaseAll is a region whose treatment policy releases every label, to isolate the
	// Part 2 rule from the label rule.
	releaseAll = DefaultPolicies(PolicyConfig{TreatmentLabels: gatingLabels[:]})
)

// patient builds an active directive for person p1.
func patient(id string, rule PolicyRule, p Provision) Directive {
	return Directive{ID: DirectiveID(id), Version: 1, PersonID: "p1", Kind: KindPatient,
		PolicyRule: rule, Status: StatusActive, DateTime: madeOn, Provision: p}
}

func orgActor(org string) Actor {
	return Actor{Role: ParticipationRecipient, Reference: "Organization/" + org}
}

var (
	optOutAll    = patient("optout", OptOut, Provision{Type: Deny})
	denyOrgB     = patient("deny-b", OptOut, Provision{Type: Deny, Actors: []Actor{orgActor("org-b")}})
	permitBPSY   = patient("permit-b-psy", OptIn, Provision{Type: Permit, Actors: []Actor{orgActor("org-b")}, Purposes: []string{PurposeTreatment}, SecurityLabels: []string{LabelMentalHealth}})
	part2ForB    = patient("part2-b", OptIn, Provision{Type: Permit, Actors: []Actor{orgActor("org-b")}, Purposes: []string{PurposeTreatment}, SecurityLabels: []string{LabelSubstanceUse, LabelRestricted, LabelPart2}})
	part2ByRole  = patient("part2-role", OptIn, Provision{Type: Permit, Actors: []Actor{{Role: RoleClinician}}, Purposes: []string{PurposeTreatment}, SecurityLabels: []string{LabelSubstanceUse, LabelRestricted, LabelPart2}})
	denyProxy    = patient("deny-proxy", OptOut, Provision{Type: Deny, Actors: []Actor{{Role: RoleProxy}}, Purposes: []string{PurposePatientRequest}})
	denyShare    = patient("deny-share", OptOut, Provision{Type: Deny, Actors: []Actor{{Role: RoleShare}}, Purposes: []string{PurposePatientRequest}})
	denyBTG      = patient("deny-btg", OptOut, Provision{Type: Deny, Purposes: []string{PurposeBreakGlass}})
	denyPSY      = patient("deny-psy", OptOut, Provision{Type: Deny, SecurityLabels: []string{LabelMentalHealth}})
	denyCustC    = patient("deny-cust-c", OptOut, Provision{Type: Deny, Actors: []Actor{{Role: ParticipationCustodian, Reference: "Organization/org-c"}}})
	denyCorrect  = patient("deny-correct", OptOut, Provision{Type: Deny, Actions: []string{"correct"}})
	permitPay    = patient("permit-pay", OptIn, Provision{Type: Permit, Purposes: []string{PurposePayment}, Actors: []Actor{orgActor("org-b")}})
	otherPerson  = Directive{ID: "other", Version: 1, PersonID: "p2", Kind: KindPatient, PolicyRule: OptIn, Status: StatusActive, Provision: Provision{Type: Permit}}
	optOutExcept = patient("optout-except-a", OptOut, Provision{ // root deny (from OPTOUT), nested permit for org-a
		Provisions: []Provision{{Actors: []Actor{orgActor("org-a")}}}})
	optInNoConditions = patient("optin-no-conditions", OptIn, Provision{ // root permit (from OPTIN), nested deny for Condition
		Provisions: []Provision{{Classes: []Class{{ResourceType: "Condition"}}}}})
	denyPSYExceptB = patient("deny-psy-except-b", OptOut, Provision{Type: Deny, SecurityLabels: []string{LabelMentalHealth},
		Provisions: []Provision{{Actors: []Actor{orgActor("org-b")}}}})
	pastNestedDeny = patient("past-nested-deny", OptIn, Provision{Type: Permit, Purposes: []string{PurposePayment},
		Provisions: []Provision{{Period: Period{End: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}}})
)

// otherDeny is p2's opt-out.
var otherDeny = Directive{ID: "other-deny", Version: 1, PersonID: "p2", Kind: KindPatient, PolicyRule: OptOut, Status: StatusActive, DateTime: madeOn, Provision: Provision{Type: Deny}}

// mergedIn returns d as Store loads it for p1 after an MPI merge joined d's person to p1.
func mergedIn(d Directive) Directive { return mergedInto(d, "p1") }

func mergedInto(d Directive, person string) Directive { d.AppliesTo = person; return d }

func expiredPermitPay() Directive {
	d := patient("expired-pay", OptIn, Provision{Type: Permit, Purposes: []string{PurposePayment}, Period: Period{End: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}})
	return d
}

func inactivePermitPay() Directive {
	d := patient("inactive-pay", OptIn, Provision{Type: Permit, Purposes: []string{PurposePayment}})
	d.Status = StatusInactive
	return d
}

func deepDirective() Directive {
	p := Provision{Type: Permit}
	for i := 0; i < MaxDepth+1; i++ {
		p = Provision{Type: Permit, Provisions: []Provision{p}}
	}
	return patient("deep", OptIn, p)
}

// read builds a request by a clinician at org for a lab result of p1.
func read(org, purpose string, labels ...string) Request {
	return Request{Actor: "Practitioner/dr-" + org, ActorRole: RoleClinician, Org: org, Purpose: purpose, PersonID: "p1",
		Class: Class{ResourceType: "Observation", Categories: []string{"laboratory"}}, Labels: labels, At: at}
}

func with(r Request, f func(*Request)) Request { f(&r); return r }

func btg(valid bool) *BreakGlass {
	b, _ := BreakGlassPolicy{}.Declare(true, BTGUnresponsive, "unconscious in ED", at.Add(-10*time.Minute), 0)
	if !valid {
		b.Expires = at.Add(-time.Minute)
	}
	return &b
}

func dirs(ds ...Directive) []Directive { return append(append([]Directive(nil), defaults...), ds...) }

func TestDecideTable(t *testing.T) {
	self := func(r *Request) {
		r.ActorRole, r.Actor, r.Org, r.Purpose = RolePatient, "Patient/p1", "", PurposePatientRequest
	}
	proxy := func(r *Request) {
		r.ActorRole, r.Actor, r.Org, r.Purpose = RoleProxy, "RelatedPerson/rp1", "", PurposePatientRequest
	}
	share := func(r *Request) {
		r.ActorRole, r.Actor, r.Org, r.Purpose = RoleShare, "", "", PurposePatientRequest
	}
	condition := func(r *Request) {
		r.Class = Class{ResourceType: "Condition", Categories: []string{"problem-list-item"}}
	}
	part2 := []string{LabelSubstanceUse, LabelRestricted, LabelPart2, RefrainRedisclose}
	tests := []struct {
		name string
		dirs []Directive
		req  Request
		want Decision
	}{
		{"no directives denies", nil, read("org-a", PurposeTreatment), Decision{Reason: NoDirective}},
		{"regional opt-out permits treatment", dirs(), read("org-a", PurposeTreatment), Decision{Allow: true, Reason: Permitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"emergency treatment is a treatment purpose", dirs(), read("org-a", PurposeEmergencyTreatment), Decision{Allow: true, Reason: Permitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"payment needs a policy", dirs(), read("org-b", PurposePayment), Decision{Reason: NoDirective}},
		{"public health needs a policy", dirs(), read("org-b", PurposePublicHealth), Decision{Reason: NoDirective}},
		{"patient opt-out denies treatment", dirs(optOutAll), read("org-a", PurposeTreatment), Decision{Reason: Denied, By: "optout", Provision: "provision"}},
		{"deny beats permit", dirs(permitBPSY, denyOrgB), read("org-b", PurposeTreatment), Decision{Reason: Denied, By: "deny-b", Provision: "provision"}},
		{"deny for one org leaves others", dirs(denyOrgB), read("org-a", PurposeTreatment), Decision{Allow: true, Reason: Permitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"patient permit for payment", dirs(permitPay), read("org-b", PurposePayment), Decision{Allow: true, Reason: Permitted, By: "permit-pay", Provision: "provision"}},
		{"patient permit names its org", dirs(permitPay), read("org-c", PurposePayment), Decision{Reason: NoDirective}},
		{"directive of another person is ignored", []Directive{otherPerson}, read("org-a", PurposeTreatment), Decision{Reason: NoDirective}},
		{"merged-in person's permit applies", []Directive{mergedIn(otherPerson)}, read("org-a", PurposeTreatment), Decision{Allow: true, Reason: Permitted, By: "other", Provision: "provision"}},
		{"merged-in person's deny beats own permit", []Directive{permitPay, mergedIn(otherDeny)}, read("org-b", PurposePayment), Decision{Reason: Denied, By: "other-deny", Provision: "provision"}},
		{"directive merged into someone else is ignored", []Directive{mergedInto(otherDeny, "p3")}, read("org-b", PurposeTreatment), Decision{Reason: NoDirective}},
		{"patient reads own record", dirs(), with(read("", ""), self), Decision{Allow: true, Reason: Permitted, By: PolicyPatientAccessID, Provision: "provision"}},
		{"patient reads own labelled record", dirs(), with(read("", "", LabelMentalHealth, LabelHIV, LabelRestricted), self), Decision{Allow: true, Reason: Permitted, By: PolicyPatientAccessID, Provision: "provision"}},
		{"opt-out without purpose keeps right of access", dirs(optOutAll), with(read("", ""), self), Decision{Allow: true, Reason: Permitted, By: PolicyPatientAccessID, Provision: "provision"}},
		{"proxy reads record", dirs(), with(read("", ""), proxy), Decision{Allow: true, Reason: Permitted, By: PolicyPatientAccessID, Provision: "provision"}},
		{"deny naming PATRQT stops proxy", dirs(denyProxy), with(read("", ""), proxy), Decision{Reason: Denied, By: "deny-proxy", Provision: "provision"}},
		{"deny naming PATRQT for proxy leaves patient", dirs(denyProxy), with(read("", ""), self), Decision{Allow: true, Reason: Permitted, By: PolicyPatientAccessID, Provision: "provision"}},
		{"clinician cannot use PATRQT", dirs(), read("org-a", PurposePatientRequest), Decision{Reason: NoDirective}},
		{"default does not release labels", dirs(), read("org-a", PurposeTreatment, LabelMentalHealth), Decision{Reason: LabelNotPermitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"restricted confidentiality gates too", dirs(), read("org-a", PurposeTreatment, LabelRestricted), Decision{Reason: LabelNotPermitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"non-gating labels do not gate", dirs(), read("org-a", PurposeTreatment, "N", RefrainRedisclose), Decision{Allow: true, Reason: Permitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"a specific substance-use code gates as ETH", dirs(), read("org-a", PurposeTreatment, "OPIOIDUD"), Decision{Reason: LabelNotPermitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"a psychotherapy note gates as PSY", dirs(), read("org-a", PurposeTreatment, "PSYTHPN"), Decision{Reason: LabelNotPermitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"a permit for PSY releases a psychotherapy note", dirs(permitBPSY), read("org-b", PurposeTreatment, "PSYTHPN"), Decision{Allow: true, Reason: Permitted, By: "permit-b-psy", Provision: "provision"}},
		{"an uncategorised sensitivity gates as R", dirs(permitBPSY), read("org-b", PurposeTreatment, "GDIS"), Decision{Reason: LabelNotPermitted, By: "permit-b-psy", Provision: "provision"}},
		{"permit naming the label releases it", dirs(permitBPSY), read("org-b", PurposeTreatment, LabelMentalHealth), Decision{Allow: true, Reason: Permitted, By: "permit-b-psy", Provision: "provision"}},
		{"permit must name every label", dirs(permitBPSY), read("org-b", PurposeTreatment, LabelMentalHealth, LabelHIV), Decision{Reason: LabelNotPermitted, By: "permit-b-psy", Provision: "provision"}},
		{"label permit is per org", dirs(permitBPSY), read("org-c", PurposeTreatment, LabelMentalHealth), Decision{Reason: LabelNotPermitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"label-scoped deny hits labelled item", dirs(permitBPSY, denyPSY), read("org-b", PurposeTreatment, LabelMentalHealth), Decision{Reason: Denied, By: "deny-psy", Provision: "provision"}},
		{"label-scoped deny spares unlabelled item", dirs(denyPSY), read("org-b", PurposeTreatment), Decision{Allow: true, Reason: Permitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"nested permit inherits parent's labels", dirs(denyPSYExceptB), read("org-b", PurposeTreatment, LabelMentalHealth), Decision{Allow: true, Reason: Permitted, By: "deny-psy-except-b", Provision: "provision.provision[0]"}},
		{"nested permit is only for its org", dirs(denyPSYExceptB), read("org-c", PurposeTreatment, LabelMentalHealth), Decision{Reason: Denied, By: "deny-psy-except-b", Provision: "provision"}},
		{"part 2 never under a default policy", releaseAll, read("org-b", PurposeTreatment, part2...), Decision{Reason: Part2ConsentRequired, By: PolicyTreatmentID, Provision: "provision"}},
		{"part 2 needs labels named", dirs(), read("org-b", PurposeTreatment, part2...), Decision{Reason: LabelNotPermitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"part 2 consent naming recipient", dirs(part2ForB), read("org-b", PurposeTreatment, part2...), Decision{Allow: true, Reason: Permitted, By: "part2-b", Provision: "provision"}},
		{"part 2 consent for another recipient", append(releaseAll, part2ForB), read("org-c", PurposeTreatment, part2...), Decision{Reason: Part2ConsentRequired, By: PolicyTreatmentID, Provision: "provision"}},
		{"part 2 consent by role only is not enough", dirs(part2ByRole), read("org-b", PurposeTreatment, part2...), Decision{Reason: Part2ConsentRequired, By: "part2-role", Provision: "provision"}},
		{"patient sees own part 2 record", dirs(), with(read("", "", part2...), self), Decision{Allow: true, Reason: Permitted, By: PolicyPatientAccessID, Provision: "provision"}},
		{"proxy needs consent for part 2", dirs(), with(read("", "", part2...), proxy), Decision{Reason: Part2ConsentRequired, By: PolicyPatientAccessID, Provision: "provision"}},
		{"share link holder reads record", dirs(), with(read("", ""), share), Decision{Allow: true, Reason: Permitted, By: PolicyPatientAccessID, Provision: "provision"}},
		{"share link needs consent for part 2", dirs(), with(read("", "", part2...), share), Decision{Reason: Part2ConsentRequired, By: PolicyPatientAccessID, Provision: "provision"}},
		{"deny naming share stops share links", dirs(denyShare), with(read("", ""), share), Decision{Reason: Denied, By: "deny-share", Provision: "provision"}},
		{"share link cannot treat", dirs(), with(with(read("", ""), share), func(r *Request) { r.Purpose = PurposeTreatment }), Decision{Reason: NoDirective}},
		{"expired permit", []Directive{expiredPermitPay()}, read("org-b", PurposePayment), Decision{Reason: Expired, By: "expired-pay", Provision: "provision"}},
		{"inactive permit", []Directive{inactivePermitPay()}, read("org-b", PurposePayment), Decision{Reason: Inactive, By: "inactive-pay", Provision: "provision"}},
		{"inactive deny does not deny", dirs(func() Directive { d := optOutAll; d.Status = StatusInactive; return d }()), read("org-a", PurposeTreatment), Decision{Allow: true, Reason: Permitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"nested exception to opt-out permits", []Directive{optOutExcept}, read("org-a", PurposeTreatment), Decision{Allow: true, Reason: Permitted, By: "optout-except-a", Provision: "provision.provision[0]"}},
		{"opt-out root denies others", dirs(optOutExcept), read("org-b", PurposeTreatment), Decision{Reason: Denied, By: "optout-except-a", Provision: "provision"}},
		{"nested exception to opt-in denies", []Directive{optInNoConditions}, with(read("org-b", PurposePayment), condition), Decision{Reason: Denied, By: "optin-no-conditions", Provision: "provision.provision[0]"}},
		{"opt-in root permits the rest", []Directive{optInNoConditions}, read("org-b", PurposePayment), Decision{Allow: true, Reason: Permitted, By: "optin-no-conditions", Provision: "provision"}},
		{"nested provision outside its period", []Directive{pastNestedDeny}, read("org-b", PurposePayment), Decision{Allow: true, Reason: Permitted, By: "past-nested-deny", Provision: "provision"}},
		{"custodian deny hits its data", dirs(denyCustC), with(read("org-a", PurposeTreatment), func(r *Request) { r.Custodian = "org-c" }), Decision{Reason: Denied, By: "deny-cust-c", Provision: "provision"}},
		{"custodian deny spares other data", dirs(denyCustC), with(read("org-a", PurposeTreatment), func(r *Request) { r.Custodian = "org-d" }), Decision{Allow: true, Reason: Permitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"custodian deny hits unknown source", dirs(denyCustC), read("org-a", PurposeTreatment), Decision{Reason: Denied, By: "deny-cust-c", Provision: "provision"}},
		{"deny for other action does not apply", dirs(denyCorrect), read("org-a", PurposeTreatment), Decision{Allow: true, Reason: Permitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"too deep nesting fails closed", []Directive{deepDirective()}, read("org-a", PurposePayment), Decision{Reason: Denied, By: "deep", Provision: "provision.provision[0].provision[0].provision[0].provision[0].provision[0].provision[0].provision[0]"}},
		{"break-glass overrides opt-out", dirs(optOutAll), with(read("org-a", PurposeBreakGlass, LabelMentalHealth), func(r *Request) { r.BreakGlass = btg(true) }), Decision{Allow: true, Reason: BreakGlassOverride, By: "optout", Provision: "provision"}},
		{"break-glass is reviewed even where permitted", dirs(patient("permit-btg", OptIn, Provision{Type: Permit, Purposes: []string{PurposeBreakGlass}})), with(read("org-a", PurposeBreakGlass), func(r *Request) { r.BreakGlass = btg(true) }), Decision{Allow: true, Reason: BreakGlassOverride, By: "permit-btg", Provision: "provision"}},
		{"break-glass with nothing on file", nil, with(read("org-a", PurposeBreakGlass), func(r *Request) { r.BreakGlass = btg(true) }), Decision{Allow: true, Reason: BreakGlassOverride}},
		{"break-glass releases part 2 (2.51 emergency)", dirs(), with(read("org-a", PurposeBreakGlass, part2...), func(r *Request) { r.BreakGlass = btg(true) }), Decision{Allow: true, Reason: BreakGlassOverride}},
		{"dissent excluding break-glass wins", dirs(denyBTG), with(read("org-a", PurposeBreakGlass), func(r *Request) { r.BreakGlass = btg(true) }), Decision{Reason: Denied, By: "deny-btg", Provision: "provision"}},
		{"deny for BTG does not touch treatment", dirs(denyBTG), read("org-a", PurposeTreatment), Decision{Allow: true, Reason: Permitted, By: PolicyTreatmentID, Provision: "provision"}},
		{"expired break-glass", dirs(optOutAll), with(read("org-a", PurposeBreakGlass), func(r *Request) { r.BreakGlass = btg(false) }), Decision{Reason: BreakGlassInvalid}},
		{"break-glass purpose without declaration", dirs(), read("org-a", PurposeBreakGlass), Decision{Reason: BreakGlassInvalid}},
		{"declaration without BTG purpose is ignored", dirs(optOutAll), with(read("org-a", PurposeTreatment), func(r *Request) { r.BreakGlass = btg(true) }), Decision{Reason: Denied, By: "optout", Provision: "provision"}},
		{"unknown purpose", dirs(), read("org-a", "HMARKT"), Decision{Reason: InvalidRequest}},
		{"no person", dirs(), with(read("org-a", PurposeTreatment), func(r *Request) { r.PersonID = "" }), Decision{Reason: InvalidRequest}},
		{"no time", dirs(), with(read("org-a", PurposeTreatment), func(r *Request) { r.At = time.Time{} }), Decision{Reason: InvalidRequest}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.dirs, tt.req)
			if got.Allow != tt.want.Allow || got.Reason != tt.want.Reason || got.By != tt.want.By || got.Provision != tt.want.Provision {
				t.Errorf("Decide = {Allow:%v Reason:%v By:%q Provision:%q}, want {Allow:%v Reason:%v By:%q Provision:%q}",
					got.Allow, got.Reason, got.By, got.Provision, tt.want.Allow, tt.want.Reason, tt.want.By, tt.want.Provision)
			}
			if got.Allow != got.Reason.Allows() {
				t.Errorf("Allow %v disagrees with reason %v", got.Allow, got.Reason)
			}
			if !got.Allow && got.Exception == "" {
				t.Errorf("denial %v has no information-blocking exception", got.Reason)
			}
			if got.Allow && got.Exception != "" {
				t.Errorf("permit carries exception %q", got.Exception)
			}
			if got.Explanation == "" {
				t.Error("no explanation")
			}
		})
	}
}

func TestZeroDecisionDenies(t *testing.T) {
	var d Decision
	if d.Allow || d.Reason != NoDirective || d.Reason.Allows() {
		t.Fatalf("zero Decision = %+v, want a denial", d)
	}
}

func TestEveryDenialReasonHasException(t *testing.T) {
	for r := Reason(0); r < reasonCount; r++ {
		ex := r.Exception()
		if r.Allows() != (ex == "") {
			t.Errorf("%v: allows=%v exception=%q", r, r.Allows(), ex)
		}
		if !r.Allows() && !strings.HasPrefix(ex, "45 CFR 171.20") {
			t.Errorf("%v: exception %q is not a 45 CFR 171.20x citation", r, ex)
		}
		if r.String() == "" || r.String() == "unknown" {
			t.Errorf("reason %d has no name", r)
		}
	}
}

func TestExplanation(t *testing.T) {
	names := func(ref string) string {
		if ref == "Organization/org-b" {
			return "Riverside Clinic"
		}
		return ""
	}
	tests := []struct {
		name string
		dirs []Directive
		req  Request
		want string
	}{
		{"patient dissent", dirs(denyPSY), read("org-b", PurposeTreatment, LabelMentalHealth),
			"Denied: your choice of 12 March 2026 blocks Riverside Clinic from seeing mental-health records for treatment."},
		{"default permit", dirs(), read("org-b", PurposeTreatment),
			"Allowed: the regional treatment policy lets Riverside Clinic see lab results for treatment."},
		{"missing label named", dirs(permitBPSY), read("org-b", PurposeTreatment, LabelMentalHealth, LabelHIV),
			"Denied: HIV records need your specific permission, and none of your choices gives it to Riverside Clinic."},
		{"expired", []Directive{expiredPermitPay()}, read("org-b", PurposePayment),
			"Denied: your choice of 12 March 2026 that let Riverside Clinic see lab results ended on 1 March 2026."},
		{"own access", dirs(), read("", PurposePatientRequest), // a clinician cannot use PATRQT
			"Denied: no choice of yours and no regional policy lets this organization see lab results for your own access."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.dirs, tt.req)
			if got := d.Explain(names); got != tt.want {
				t.Errorf("Explain =\n  %q\nwant\n  %q", got, tt.want)
			}
			if strings.Contains(d.Explanation, "Riverside") {
				t.Errorf("Explanation without names mentions a name: %q", d.Explanation)
			}
		})
	}
}
