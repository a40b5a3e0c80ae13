package store

import (
	"testing"

	"github.com/concord-hie/concord/fhir"
)

// TestSpecificFirst: token clauses that name system and code move ahead, everything else
// keeps its order, and nothing is lost.
func TestSpecificFirst(t *testing.T) {
	category := fhir.Clause{Param: "category", Type: fhir.ParamToken, Values: []fhir.Value{{Code: "laboratory"}}}
	code := fhir.Clause{Param: "code", Type: fhir.ParamToken, Values: []fhir.Value{{SystemMode: fhir.ExactSystem, System: "http://loinc.org", Code: "2345-7"}}}
	notCode := code
	notCode.Modifier = fhir.ModNot
	anySystemOf := fhir.Clause{Param: "code", Type: fhir.ParamToken, Values: []fhir.Value{{SystemMode: fhir.ExactSystem, System: "http://loinc.org"}}}
	date := fhir.Clause{Param: "date", Type: fhir.ParamDate}
	got := specificFirst([]fhir.Clause{category, date, notCode, anySystemOf, code})
	want := []string{"code", "category", "date", "code:not", "code:system-only"}
	name := func(c fhir.Clause) string {
		switch {
		case c.Modifier == fhir.ModNot:
			return c.Param + ":not"
		case c.Param == "code" && c.Values[0].Code == "":
			return c.Param + ":system-only"
		}
		return c.Param
	}
	if len(got) != len(want) {
		t.Fatalf("%d clauses, want %d", len(got), len(want))
	}
	for i := range want {
		if name(got[i]) != want[i] {
			t.Errorf("clause %d is %s, want %s", i, name(got[i]), want[i])
		}
	}
}
