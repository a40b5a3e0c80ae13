package store

import (
	"net/url"
	"testing"

	"github.com/concord-hie/concord/fhir"
)

// TestTokenDriver: of a patient's token clauses, a code drives the walk rather than a
// category, status or intent, which match much of the patient's resources, even when
// only the broad one names a system; among equally broad ones a system wins, then the
// first; a broad clause drives when it is the only one, a low-cardinality one never.
func TestTokenDriver(t *testing.T) {
	for _, tt := range []struct {
		name, typ string
		params    url.Values
		want      string // the driving parameter, "" for none
	}{
		{"code alone", "Observation", url.Values{"code": {"http://loinc.org|2345-7"}}, "code"},
		{"code over a category with a system", "Observation", url.Values{"category": {"http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}, "code": {"2345-7"}}, "code"},
		{"code over a status", "Observation", url.Values{"status": {"final"}, "code": {"|2345-7"}}, "code"},
		{"code over clinical and verification status", "Condition", url.Values{"clinical-status": {"http://terminology.hl7.org/CodeSystem/condition-clinical|active"}, "verification-status": {"http://terminology.hl7.org/CodeSystem/condition-ver-status|confirmed"}, "code": {"44054006"}}, "code"},
		{"code over an intent", "MedicationRequest", url.Values{"intent": {"order"}, "code": {"http://www.nlm.nih.gov/research/umls/rxnorm|197361"}}, "code"},
		{"a system among specific ones", "DocumentReference", url.Values{"type": {"34111-5"}, "identifier": {"urn:x|1"}}, "identifier"},
		{"a system among broad ones", "Observation", url.Values{"status": {"final"}, "category": {"http://terminology.hl7.org/CodeSystem/observation-category|laboratory"}}, "category"},
		{"a broad one alone", "Observation", url.Values{"category": {"laboratory"}, "date": {"ge2020"}}, "category"},
		{"never low cardinality", "Patient", url.Values{"gender": {"female"}}, ""},
		{"never several values", "Observation", url.Values{"code": {"a,b"}, "status": {"final"}}, "status"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sq, err := fhir.ParseSearch(tt.typ, tt.params)
			if err != nil {
				t.Fatal(err)
			}
			q := Query{Type: tt.typ, Clauses: sq.Clauses, Patients: []string{"p1"}, Limit: 10}
			got := ""
			if d := tokenDriver(q, sortKeys(q)); d >= 0 {
				got = q.Clauses[d].Param
			}
			if got != tt.want {
				t.Fatalf("driver %q, want %q", got, tt.want)
			}
		})
	}
}
