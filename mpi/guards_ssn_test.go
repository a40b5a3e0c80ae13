package mpi

import "testing"

// TestGuardsSharedSSN checks what an agreeing SSN may and may not silence. Twins are often
// both registered under a parent's SSN, so neither the full SSN nor its last 4 silence the
// twin guard: twins with the same DOB, surname, home and phone but two names or two sexes
// go to review (mpi.md: "however high the score"), never into one person. Nor does it
// silence the DOB-gap (generation) guard for a parent and child of the same name and home
// whose birth dates are decades apart: the child registered under the parent's SSN. The
// last 4 alone silence no guard; the full SSN still silences the namesake guard, and the
// DOB-gap guard when one birth date is a typo of the other (a digit changed, two digits
// swapped, the century slipped), and the same person under a nickname or a misspelt name
// still links.
func TestGuardsSharedSSN(t *testing.T) {
	m := testModel(t)
	n := NewNormalizer(DefaultNicknames())
	emma := Input{Source: Identifier{"urn:a", "1"}, Given: []string{"Emma"}, Family: "Okafor", Sex: "female",
		BirthDate: "2020-03-17", SSN: "123-45-6780", Phone: "617-555-2368", Lines: []string{"12 Oak Street"}, City: "Boston", PostalCode: "02134"}
	with := func(f func(*Input)) Input {
		in := emma
		in.Source = Identifier{"urn:b", "9"}
		f(&in)
		return in
	}
	tests := []struct {
		name  string
		other Input
		want  Guard // guards that must fire (0: none may)
		// link requires Assign to auto-link; otherwise it must not.
		link bool
	}{
		{"twin brother, parent's full SSN", with(func(p *Input) { p.Given, p.Sex = []string{"Liam"}, "male" }), GuardTwin, false},
		{"twin brother, last 4 of parent's SSN", with(func(p *Input) { p.Given, p.Sex, p.SSN = []string{"Liam"}, "male", "6780" }), GuardTwin, false},
		{"twin sister, parent's full SSN", with(func(p *Input) { p.Given = []string{"Olivia"} }), GuardTwin, false},
		{"twin sister one letter apart, parent's full SSN", with(func(p *Input) { p.Given = []string{"Emmy"} }), GuardTwin, false},
		{"same name, other sex, parent's full SSN", with(func(p *Input) { p.Sex = "male" }), GuardTwin, false},
		{"same person, misspelt name, full SSN", with(func(p *Input) { p.Given = []string{"Emmaa"} }), 0, true},
		{"same person, last 4 only", with(func(p *Input) { p.SSN = "6780" }), 0, true},
		{"namesake elsewhere, last 4 only", with(func(p *Input) {
			p.SSN, p.Phone, p.Lines, p.PostalCode = "6780", "", []string{"9 Elm Road"}, "02139"
		}), GuardNamesake, false},
		{"moved, full SSN", with(func(p *Input) { p.Phone, p.Lines, p.PostalCode = "", []string{"9 Elm Road"}, "02139" }), 0, true},
		{"DOB decades apart, last 4 only", with(func(p *Input) { p.BirthDate, p.SSN = "1984-03-17", "6780" }), GuardGeneration, false},
		{"DOB typo of the century digit, full SSN", with(func(p *Input) { p.BirthDate = "1920-03-17" }), 0, true},
		{"DOB typo of one year digit, full SSN", with(func(p *Input) { p.BirthDate = "2000-03-17" }), 0, true},
		{"DOB typo with year digits swapped, full SSN", with(func(p *Input) { p.BirthDate = "2002-03-17" }), 0, true},
		{"mother of the same name, her full SSN", with(func(p *Input) { p.BirthDate = "1992-08-05" }), GuardGeneration, false},
		{"mother of the same name and birthday, her full SSN", with(func(p *Input) { p.BirthDate = "1990-03-17" }), GuardGeneration, false},
		{"mother of the same name, last 4 of her SSN", with(func(p *Input) { p.BirthDate, p.SSN = "1992-08-05", "6780" }), GuardGeneration, false},
	}
	a := rec(n, m, emma)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := rec(n, m, tt.other)
			g := Guards(a, b, Compare(a, b))
			if tt.want == 0 && g != 0 || g&tt.want != tt.want {
				t.Errorf("guards %q, want %q", g.String(), tt.want.String())
			}
			got := m.Assign(b, []Candidate{{"P-emma", []*Record{a}}})
			if (got.Outcome == AutoLink) != tt.link {
				t.Errorf("outcome %v (score %.1f, guards %q), want auto-link %v", got.Outcome, got.Score, got.Guards.String(), tt.link)
			}
		})
	}
}
