package bench

import (
	"strings"

	"github.com/concord-hie/concord/internal/errs"
)

// Selection is the set of scenarios a run was asked for (--scenarios): comma-separated
// names or name prefixes; an item ending in "$" selects only the scenario of exactly that
// name (thin-slice-read$ without thin-slice-read-off). The zero Selection, an empty spec or
// "all" selects everything.
type Selection struct {
	items []string
}

// ParseSelection parses spec against the known scenario names. Every item must select at
// least one known name (an exact name or a prefix of one), so a typo fails before any
// data is loaded. It returns errs.Invalid otherwise.
func ParseSelection(spec string, known []string) (Selection, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "all" {
		return Selection{}, nil
	}
	var s Selection
	for _, it := range strings.Split(spec, ",") {
		it = strings.TrimSpace(it)
		if it == "" {
			continue
		}
		hit := false
		for _, k := range known {
			if selects(it, k) {
				hit = true
				break
			}
		}
		if !hit {
			return Selection{}, errs.E("bench.ParseSelection", errs.Invalid, "no scenario is named or starts with "+it+" (known: "+strings.Join(known, ", ")+")")
		}
		s.items = append(s.items, it)
	}
	if len(s.items) == 0 {
		return Selection{}, errs.E("bench.ParseSelection", errs.Invalid, "empty scenario list")
	}
	return s, nil
}

// All reports whether s selects every scenario.
func (s Selection) All() bool { return len(s.items) == 0 }

// Has reports whether s selects the scenario named name.
func (s Selection) Has(name string) bool {
	if len(s.items) == 0 {
		return true
	}
	for _, it := range s.items {
		if selects(it, name) {
			return true
		}
	}
	return false
}

// Any reports whether s selects at least one of names.
func (s Selection) Any(names ...string) bool {
	for _, n := range names {
		if s.Has(n) {
			return true
		}
	}
	return false
}

// Filter returns the scenarios of ss that s selects, in their order.
func (s Selection) Filter(ss []Scenario) []Scenario {
	var out []Scenario
	for _, x := range ss {
		if s.Has(x.ScenarioName()) {
			out = append(out, x)
		}
	}
	return out
}

// selects reports whether item (a prefix, or an exact name followed by "$") selects name.
func selects(item, name string) bool {
	if exact, ok := strings.CutSuffix(item, "$"); ok {
		return name == exact
	}
	return strings.HasPrefix(name, item)
}
