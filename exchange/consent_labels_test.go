package exchange

import (
	"bytes"
	"testing"
	"time"

	"github.com/concord-hie/concord/consent"
)

// TestDenyETHCoversETHUD: end to end, member B sends a Condition labelled ETHUD (kept as
// sent); the patient has released substance-use records to A, then denied them to
// everyone. The explicit deny wins for the ETHUD item as it does for an ETH one (consent
// review: the deny matched the raw codes only, and A read the item).
func TestDenyETHCoversETHUD(t *testing.T) {
	env := newConsentEnv(t)
	ta, tb, pa, pb := env.sharedPerson(t)
	post := func(label string) string {
		t.Helper()
		body := conditionJSON(pb, consent.SystemICD10CM, "J45.909", "")
		body = bytes.Replace(body, []byte(`{"resourceType":"Condition",`), []byte(`{"resourceType":"Condition","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"`+label+`"}]},`), 1)
		st, resp, _ := do(t, "POST", env.base+"/Condition", tb, body)
		if st != 201 {
			t.Fatalf("B creates Condition: %d %s", st, resp)
		}
		return idOf(t, resp)
	}
	eth, ethud := post("ETH"), post("ETHUD")
	file := func(d consent.Directive) {
		t.Helper()
		d.ID, d.Version, d.Kind, d.PersonID, d.Status = "x", 1, consent.KindPatient, pa, consent.StatusActive
		d.DateTime = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		cj, err := consent.FormatConsent(d)
		if err != nil {
			t.Fatal(err)
		}
		if st, body, _ := do(t, "POST", env.base+"/Consent", ta, cj); st != 201 {
			t.Fatalf("POST Consent: %d %s", st, body)
		}
	}
	file(consent.Directive{PolicyRule: consent.OptIn, SourceReference: "DocumentReference/signed-form", Provision: consent.Provision{Type: consent.Permit,
		Actors:   []consent.Actor{{Role: consent.ParticipationRecipient, Reference: "Organization/" + env.a.ID}},
		Purposes: []string{consent.PurposeTreatment}, SecurityLabels: []string{consent.LabelSubstanceUse}}})
	if st, _, _ := do(t, "GET", env.base+"/Condition/"+ethud, ta, nil); st != 200 {
		t.Fatalf("A reads the ETHUD Condition under the release: %d; want 200", st)
	}
	file(consent.Directive{PolicyRule: consent.OptOut, Provision: consent.Provision{Type: consent.Deny,
		SecurityLabels: []string{consent.LabelSubstanceUse}}})
	if st, _, _ := do(t, "GET", env.base+"/Condition/"+eth, ta, nil); st != 404 {
		t.Fatalf("A reads the ETH Condition after the deny: %d; want 404", st)
	}
	if st, _, _ := do(t, "GET", env.base+"/Condition/"+ethud, ta, nil); st != 404 {
		t.Fatalf("A reads the ETHUD Condition after the patient denied substance-use records to everyone: %d; want 404", st)
	}
}
