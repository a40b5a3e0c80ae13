package consent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

func TestConsentRoundTrip(t *testing.T) {
	full := patient("full", OptOut, Provision{
		Type:   Deny,
		Period: Period{Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		Actors: []Actor{orgActor("org-b"), {Role: ParticipationPrimaryRecipient, Reference: "Practitioner/pr-1"},
			{Role: ParticipationCustodian, Reference: "Organization/org-c"}, {Role: RoleClinician}},
		Actions:        []string{"access", "disclose"},
		Purposes:       []string{PurposeTreatment, PurposeBreakGlass},
		Classes:        []Class{{ResourceType: "Observation"}, {Categories: []string{"laboratory"}}, {Categories: []string{"clinical-note"}}},
		SecurityLabels: []string{LabelMentalHealth, LabelRestricted, LabelPart2},
		Provisions: []Provision{
			{Actors: []Actor{orgActor("org-a")}, Period: Period{Start: time.Date(2026, 2, 3, 4, 5, 6, 7, time.UTC)}},
			{Type: Deny, Purposes: []string{PurposePayment}, Provisions: []Provision{{Type: Permit, SecurityLabels: []string{LabelHIV}}}},
		},
	})
	full.Version = 3
	full.DateTime = time.Date(2026, 3, 12, 9, 30, 0, 0, time.UTC)
	full.SourceAttachment = &Attachment{ContentType: "application/pdf", Title: "signed form", Hash: "2jmj7l5rSw0yVb/vlWAYkK/YBwk=", Data: []byte("%PDF-1.7"), Creation: full.DateTime}
	withRef := patient("by-ref", OptIn, Provision{Type: Permit, Purposes: []string{PurposePayment}})
	withRef.SourceReference = "DocumentReference/form-9"
	withRef.Status = StatusInactive
	policy := defaults[0]
	policy.Title, policy.DateTime = "", time.Time{} // FHIR Consent has no title; zero dateTime stays zero
	for _, d := range []Directive{full, withRef, optOutExcept, optInNoConditions, denyPSYExceptB, policy} {
		t.Run(string(d.ID), func(t *testing.T) {
			b, err := FormatConsent(d)
			if err != nil {
				t.Fatalf("FormatConsent: %v", err)
			}
			got, err := ParseConsent(b, time.UTC)
			if err != nil {
				t.Fatalf("ParseConsent: %v\n%s", err, b)
			}
			if !reflect.DeepEqual(got, d) {
				t.Errorf("round trip changed the directive:\n got %+v\nwant %+v\njson %s", got, d, b)
			}
			b2, _ := FormatConsent(got)
			if string(b2) != string(b) {
				t.Errorf("second format differs:\n%s\n%s", b, b2)
			}
		})
	}
}

func TestParseConsentRejects(t *testing.T) {
	base := `{"resourceType":"Consent","id":"c1","status":"active",
	"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
	"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
	"patient":{"reference":"Patient/p1"},
	"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
	"provision":PROV}`
	with := func(prov string) string { return strings.Replace(base, "PROV", prov, 1) }
	if _, err := ParseConsent([]byte(with(`{"type":"permit"}`)), nil); err != nil {
		t.Fatalf("base consent rejected: %v", err)
	}
	tests := []struct {
		name, json, path string
	}{
		{"unknown purpose", with(`{"purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"},{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HMARKT"}]}`), "Consent.provision.purpose[1]"},
		{"purpose wrong system", with(`{"purpose":[{"system":"http://example.org","code":"TREAT"}]}`), "Consent.provision.purpose[0]"},
		{"unknown label", with(`{"provision":[{"securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"}]}]}`), "Consent.provision.provision[0].securityLabel[0]"},
		{"label wrong system", with(`{"securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"R"}]}`), "Consent.provision.securityLabel[0]"},
		{"unknown class", with(`{"class":[{"system":"urn:ietf:bcp:13","code":"application/hl7-cda+xml"}]}`), "Consent.provision.class[0]"},
		{"unknown resource type", with(`{"class":[{"system":"http://hl7.org/fhir/resource-types","code":"Spaceship"}]}`), "Consent.provision.class[0]"},
		{"author actor", with(`{"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"AUT"}]},"reference":{"reference":"Practitioner/x"}}]}`), "Consent.provision.actor[0].role"},
		{"custodian practitioner", with(`{"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"CST"}]},"reference":{"reference":"Practitioner/x"}}]}`), "Consent.provision.actor[0].reference"},
		{"unknown role", with(`{"actor":[{"role":{"coding":[{"system":"` + SystemActorRole + `","code":"janitor"}]}}]}`), "Consent.provision.actor[0].role"},
		{"group actor", with(`{"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP"}]},"reference":{"reference":"Group/g"}}]}`), "Consent.provision.actor[0].reference"},
		{"unknown action", with(`{"action":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentaction","code":"sell"}]}]}`), "Consent.provision.action[0]"},
		{"bad type", with(`{"type":"maybe"}`), "Consent.provision.type"},
		{"bad date", with(`{"period":{"start":"12/03/2026"}}`), "Consent.provision.period.start"},
		{"period backwards", with(`{"period":{"start":"2026-03-02","end":"2026-03-01"}}`), "Consent.provision.period"},
		{"data", with(`{"data":[{"meaning":"related","reference":{"reference":"Task/t"}}]}`), "Consent.provision.data"},
		{"modifier extension", with(`{"modifierExtension":[{"url":"http://x"}]}`), "Consent.provision.modifierExtension"},
		{"unknown element", with(`{"typo":"permit"}`), "Consent"},
		{"duplicate member", with(`{"type":"deny","type":"permit"}`), "Consent"},
		{"case-variant member", with(`{"type":"deny","Type":"permit"}`), "Consent"},
		{"duplicate deep member", with(`{"provision":[{"purpose":[{"code":"TREAT","code":"HPAYMT","system":"http://terminology.hl7.org/CodeSystem/v3-ActReason"}]}]}`), "Consent"},
		{"wrong-case member alone", with(`{"Type":"permit"}`), "Consent"},
		{"case-variant top member", strings.Replace(with(`{}`), `"status":"active"`, `"status":"active","Status":"inactive"`, 1), "Consent"},
		{"wrong scope", strings.Replace(with(`{}`), "patient-privacy", "research", 1), "Consent.scope"},
		{"wrong category", strings.Replace(with(`{}`), "59284-0", "57016-8", 1), "Consent.category"},
		{"wrong policy rule", strings.Replace(with(`{}`), `"OPTIN"`, `"OPTINR"`, 1), "Consent.policyRule"},
		{"not a consent", strings.Replace(with(`{}`), `"Consent"`, `"Patient"`, 1), "Consent.resourceType"},
		{"bad status", strings.Replace(with(`{}`), `"active"`, `"sort-of"`, 1), "Consent.status"},
		{"patient not a Patient", strings.Replace(with(`{}`), `Patient/p1`, `Group/p1`, 1), "Consent.patient"},
		{"too deep", with(strings.Repeat(`{"provision":[`, MaxDepth) + `{}` + strings.Repeat(`]}`, MaxDepth)), "Consent.provision" + strings.Repeat(".provision[0]", MaxDepth)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConsent([]byte(tt.json), nil)
			if !errs.Is(err, errs.Invalid) {
				t.Fatalf("err = %v, want Invalid", err)
			}
			if got := errs.PathOf(err); got != tt.path {
				t.Errorf("path = %q, want %q (err %v)", got, tt.path, err)
			}
		})
	}
}

func TestParseHL7Examples(t *testing.T) {
	dir := filepath.Join("testdata", "fhir-r4-examples")
	want := map[string]string{ // file -> "" (parses) or the rejected element
		"Consent-consent-example-Out.json":         "",
		"Consent-consent-example-basic.json":       "",
		"Consent-consent-example-notOrg.json":      "",
		"Consent-consent-example-notThem.json":     "",
		"Consent-consent-example-notTime.json":     "",
		"Consent-consent-example-smartonfhir.json": "",
		"Consent-consent-example-notThis.json":     "Consent.provision.data",
		"Consent-consent-example-pkb.json":         "Consent.provision.securityLabel[0]",
		"Consent-consent-example-Emergency.json":   "Consent.category",
	}
	parsed := map[string]Directive{}
	for file, path := range want {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		d, err := ParseConsent(b, time.UTC)
		if path == "" {
			if err != nil {
				t.Errorf("%s: %v", file, err)
			}
			parsed[file] = d
			continue
		}
		if !errs.Is(err, errs.Invalid) || errs.PathOf(err) != path {
			t.Errorf("%s: err %v (path %q), want Invalid at %s", file, err, errs.PathOf(err), path)
		}
	}
	// Decide on what the examples say.
	f001 := func(org, purpose string, at time.Time) Request {
		return Request{Actor: "Practitioner/f204", ActorRole: RoleClinician, Org: org, Purpose: purpose, PersonID: "f001",
			Class: Class{ResourceType: "Observation"}, Custodian: "f001", At: at}
	}
	now := time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC)
	checks := []struct {
		file  string
		req   Request
		allow bool
	}{
		// notOrg: OPTIN, deny access by Organization/f001.
		{"Consent-consent-example-notOrg.json", f001("f001", PurposeTreatment, now), false},
		{"Consent-consent-example-notOrg.json", f001("f002", PurposeTreatment, now), true},
		// Out: OPTOUT of everything held by custodian f001.
		{"Consent-consent-example-Out.json", f001("f002", PurposeTreatment, now), false},
		// basic: OPTIN permit everything between 1964 and 2016 (end inclusive of 1 Jan 2016).
		{"Consent-consent-example-basic.json", f001("f002", PurposePayment, time.Date(2016, 1, 1, 23, 0, 0, 0, time.UTC)), true},
		{"Consent-consent-example-basic.json", f001("f002", PurposePayment, time.Date(2016, 1, 2, 0, 0, 0, 0, time.UTC)), false},
		// notThem: OPTIN permit to Practitioner/f204 only.
		{"Consent-consent-example-notThem.json", f001("f002", PurposePayment, now), true},
		{"Consent-consent-example-notThem.json", with(f001("f002", PurposePayment, now), func(r *Request) { r.Actor = "Practitioner/other" }), false},
	}
	for _, c := range checks {
		d := parsed[c.file]
		got := Decide(append([]Directive{d}, defaults...), c.req)
		if got.Allow != c.allow {
			t.Errorf("%s for %s/%s at %v: %v (%s), want allow=%v", c.file, c.req.Org, c.req.Purpose, c.req.At, got.Reason, got.By, c.allow)
		}
	}
}
