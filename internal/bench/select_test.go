package bench

import (
	"slices"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
)

func TestSelection(t *testing.T) {
	known := []string{"thin-slice-read", "thin-slice-read-off", "regional-read", "s2-family-birthdate", "s2-match", "s5-binary-4k", "s5-binary-1m"}
	for _, c := range []struct {
		spec string
		want []string
	}{
		{"", known},
		{"all", known},
		{"s2", []string{"s2-family-birthdate", "s2-match"}},
		{"s5-binary-1m", []string{"s5-binary-1m"}},
		{" regional-read , s2-match", []string{"regional-read", "s2-match"}},
		{"thin-slice-read", []string{"thin-slice-read", "thin-slice-read-off"}}, // a name is also a prefix
		{"thin-slice-read$", []string{"thin-slice-read"}},
		{"s2-match$,s5-binary-1m$", []string{"s2-match", "s5-binary-1m"}},
	} {
		sel, err := ParseSelection(c.spec, known)
		if err != nil {
			t.Fatalf("%q: %v", c.spec, err)
		}
		var got []string
		for _, k := range known {
			if sel.Has(k) {
				got = append(got, k)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%q selects %v, want %v", c.spec, got, c.want)
		}
		var ss []Scenario
		for _, k := range known {
			ss = append(ss, FuncScenario{Name: k})
		}
		var filtered []string
		for _, s := range sel.Filter(ss) {
			filtered = append(filtered, s.ScenarioName())
		}
		if !slices.Equal(filtered, c.want) {
			t.Errorf("%q filters to %v, want %v", c.spec, filtered, c.want)
		}
	}
	for _, bad := range []string{"s9", "s2,nope", ",", "2", "s2$", "thin-slice$"} {
		if _, err := ParseSelection(bad, known); errs.CodeOf(err) != errs.Invalid {
			t.Errorf("%q: err %v, want Invalid", bad, err)
		}
	}
	sel, _ := ParseSelection("s5", known)
	if sel.All() || !sel.Any("s2-match", "s5-binary-4k") || sel.Any("s2-match", "regional-read") {
		t.Error("Any/All disagree with Has")
	}
}
