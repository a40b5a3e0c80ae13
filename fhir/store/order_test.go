package store

import (
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"

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

// TestStringSearchesArePlannedForTheirValues: a statement with a string prefix or contains
// clause goes unprepared (planned for its values each time); token, date and exact string
// clauses keep the cached prepared plan.
func TestStringSearchesArePlannedForTheirValues(t *testing.T) {
	for _, tt := range []struct {
		q      string
		custom bool
	}{
		{"family=riv&gender=female", true},
		{"name:contains=ana", true},
		{"family:exact=Rivera", false},
		{"identifier=urn:oid:1.2|A-1", false},
		{"gender=female&birthdate=1984-03-12", false},
	} {
		vs, err := url.ParseQuery(tt.q)
		if err != nil {
			t.Fatal(err)
		}
		s, err := fhir.ParseSearch("Patient", vs)
		if err != nil {
			t.Fatalf("%s: %v", tt.q, err)
		}
		_, args, err := buildSelect(Query{Type: "Patient", Clauses: s.Clauses, Sort: s.Sort, Limit: 20})
		if err != nil {
			t.Fatalf("%s: %v", tt.q, err)
		}
		custom := len(args) > 0 && args[0] == pgx.QueryExecModeExec
		if custom != tt.custom {
			t.Errorf("%s: planned for its values = %v, want %v", tt.q, custom, tt.custom)
		}
	}
}
