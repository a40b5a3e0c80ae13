package records

import (
	"testing"
	"time"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir/store"
)

// TestDecideReadsLabelsOrDenies: decide reads each item's labels and categories from its
// stored body, in every R4 shape of category, and shares nothing whose body it cannot read.
func TestDecideReadsLabelsOrDenies(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	policies := consent.DefaultPolicies(consent.PolicyConfig{Effective: at.AddDate(-1, 0, 0)})
	noProcedures := consent.Directive{ID: "c-1", Version: 1, Kind: consent.KindPatient, PersonID: "person-1",
		Status: consent.StatusActive, DateTime: at.AddDate(0, -1, 0), PolicyRule: consent.OptOut,
		Provision: consent.Provision{Type: consent.Deny, Classes: []consent.Class{{Categories: []string{"387713003"}}}}}
	v := Viewer{Actor: "https://idp|dr", Org: "org-b", Role: consent.RoleClinician, Purpose: consent.PurposeTreatment}
	item := func(typ, body string) store.Stored {
		return store.Stored{Type: typ, ID: "1", MemberID: "org-a", Body: []byte(body)}
	}
	for _, c := range []struct {
		name  string
		st    store.Stored
		allow bool
		why   consent.Reason
	}{
		{"plain lab", item("Observation", `{"resourceType":"Observation","id":"1","category":[{"coding":[{"code":"laboratory"}]}]}`), true, consent.Permitted},
		{"labelled", item("Observation", `{"resourceType":"Observation","id":"1","meta":{"security":[{"code":"PSY"}]}}`), false, consent.LabelNotPermitted},
		{"category as one concept", item("Procedure", `{"resourceType":"Procedure","id":"1","category":{"coding":[{"code":"387713003"}]}}`), false, consent.Denied},
		{"unreadable body", item("Observation", `{"resourceType":"Observation","id":"1","meta":{"security":[{"code":"R"}`), false, consent.ItemUnreadable},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, _ := (&Service{}).decide(append(policies, noProcedures), v, "person-1", at, c.st)
			if got.Allow != c.allow || got.Reason != c.why {
				t.Errorf("allow %v reason %v, want %v %v", got.Allow, got.Reason, c.allow, c.why)
			}
		})
	}
}
