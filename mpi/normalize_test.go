package mpi

import (
	"slices"
	"strings"
	"testing"
)

func TestNormalizeNames(t *testing.T) {
	n := NewNormalizer(DefaultNicknames())
	tests := []struct {
		name          string
		in            Input
		given, family string
		parts         []string
		gen           Generation
		placeholder   bool
	}{
		{"accents and case", Input{Given: []string{"José"}, Family: "Núñez"}, "JOSE", "NUNEZ", nil, 0, false},
		{"hyphenated", Input{Given: []string{"Ana", "María"}, Family: "García-López"}, "ANA", "GARCIALOPEZ", []string{"GARCIA", "LOPEZ"}, 0, false},
		{"apostrophe", Input{Given: []string{"Sean"}, Family: "O'Brien"}, "SEAN", "OBRIEN", nil, 0, false},
		{"suffix in family", Input{Given: []string{"John"}, Family: "Smith Jr."}, "JOHN", "SMITH", nil, 1, false},
		{"suffix field", Input{Given: []string{"John"}, Family: "Smith", Suffix: "III"}, "JOHN", "SMITH", nil, 4, false},
		{"baby boy", Input{Given: []string{"Baby", "Boy"}, Family: "Jones"}, "BABY", "JONES", nil, 0, true},
		{"john doe", Input{Given: []string{"John"}, Family: "Doe"}, "JOHN", "DOE", nil, 0, true},
		{"trauma", Input{Given: []string{"Trauma"}, Family: "Alpha"}, "TRAUMA", "ALPHA", nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := n.Normalize(tt.in)
			if r.Given != tt.given || r.Family != tt.family || !slices.Equal(r.FamilyParts, tt.parts) || r.Generation != tt.gen {
				t.Errorf("got %q %q %v gen %d, want %q %q %v gen %d", r.Given, r.Family, r.FamilyParts, r.Generation, tt.given, tt.family, tt.parts, tt.gen)
			}
			if got := r.Flags&FlagPlaceholderName != 0; got != tt.placeholder {
				t.Errorf("placeholder = %v, want %v", got, tt.placeholder)
			}
		})
	}
}

func TestNicknames(t *testing.T) {
	n := NewNormalizer(DefaultNicknames())
	a := n.Normalize(Input{Given: []string{"Elizabeth"}})
	b := n.Normalize(Input{Given: []string{"Liz"}})
	c := n.Normalize(Input{Given: []string{"Mary"}})
	if !sharesGroup(a.GivenGroups, b.GivenGroups) {
		t.Errorf("ELIZABETH and LIZ should share a nickname group: %v %v", a.GivenGroups, b.GivenGroups)
	}
	if sharesGroup(b.GivenGroups, c.GivenGroups) {
		t.Errorf("LIZ and MARY should not share a group")
	}
	if _, err := ParseNicknames(strings.NewReader("name1,relationship,name2\r\na,b\r\n")); err == nil {
		t.Errorf("ParseNicknames accepted a 2-field row")
	}
}

func TestNormalizeFields(t *testing.T) {
	n := NewNormalizer(nil)
	tests := []struct {
		name  string
		in    Input
		check func(Record) bool
	}{
		{"dob iso", Input{BirthDate: "1980-05-12"}, func(r Record) bool { return r.DOB == "19800512" && r.Year == 1980 && r.Flags == 0 }},
		{"dob invalid", Input{BirthDate: "19800231"}, func(r Record) bool { return r.DOB == "19800231" && r.Flags&FlagInvalidDOB != 0 }},
		{"dob placeholder", Input{BirthDate: "1900-01-01"}, func(r Record) bool { return r.Flags&FlagPlaceholderDOB != 0 }},
		{"ssn ok", Input{SSN: "123-45-6780"}, func(r Record) bool { return r.SSN == "123456780" && r.SSNLast == "6780" }},
		{"ssn area 666", Input{SSN: "666-12-3456"}, func(r Record) bool { return r.SSN == "" && r.Flags&FlagInvalidSSN != 0 }},
		{"ssn 9xx", Input{SSN: "912-12-3456"}, func(r Record) bool { return r.SSN == "" }},
		{"ssn group 00", Input{SSN: "123-00-3456"}, func(r Record) bool { return r.SSN == "" }},
		{"ssn serial 0000", Input{SSN: "123-45-0000"}, func(r Record) bool { return r.SSN == "" }},
		{"ssn repeated", Input{SSN: "111111111"}, func(r Record) bool { return r.SSN == "" }},
		{"ssn 123456789", Input{SSN: "123456789"}, func(r Record) bool { return r.SSN == "" }},
		{"ssn last4", Input{SSN: "xxx-xx-1234"}, func(r Record) bool { return r.SSN == "" && r.SSNLast == "1234" }},
		{"phone", Input{Phone: "(555) 234-5678"}, func(r Record) bool { return r.Phone == "+15552345678" }},
		{"phone 1-prefix", Input{Phone: "1-555-234-5678 x12"}, func(r Record) bool { return r.Phone == "+15552345678" }},
		{"phone bad", Input{Phone: "123-4567"}, func(r Record) bool { return r.Phone == "" && r.Flags&FlagInvalidPhone != 0 }},
		{"address", Input{Lines: []string{"123 North Main Street Apt 4B"}, PostalCode: "02139-1234"}, func(r Record) bool {
			return r.House == "123" && r.Street == "N MAIN ST" && r.Unit == "APT 4B" && r.ZIP == "02139" && r.AddrKey == "123|N MAIN ST|02139"
		}},
		{"address suite line", Input{Lines: []string{"500 Elm Avenue", "Suite 100"}, PostalCode: "10001"}, func(r Record) bool {
			return r.Street == "ELM AVE" && r.Unit == "STE 100"
		}},
		{"sex", Input{Sex: "female"}, func(r Record) bool { return r.Sex == 'F' }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := n.Normalize(tt.in); !tt.check(r) {
				t.Errorf("unexpected record %+v", r)
			}
		})
	}
}
