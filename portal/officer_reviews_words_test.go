package portal

import (
	"strconv"
	"testing"

	"github.com/concord-hie/concord/mpi"
)

// TestMPIEvidenceWords: every field the model compares has a label for the officer, and
// every level it can reach has words, so the identity review never shows a model name or a
// bare number.
func TestMPIEvidenceWords(t *testing.T) {
	t.Parallel()
	for i, name := range mpi.FieldNames {
		if l := mpiFieldLabel(name); l == "" || l == name {
			t.Errorf("field %q has no label", name)
		}
		for level := 0; level < mpi.Levels[i]; level++ {
			if w := mpiLevelWords(name, level); w == "" || w == "Level "+strconv.Itoa(level) {
				t.Errorf("%s level %d has no words", name, level)
			}
		}
	}
	tests := []struct {
		name  string
		field MPIField
		want  mpiEvidence
	}{
		{"family name, exact", MPIField{Name: "family", Level: mpi.NameExact, Weight: 3.1},
			mpiEvidence{Label: "Family name", Level: "Same", Code: "family level 1", Weight: 3.1}},
		{"given names swapped", MPIField{Name: "given", Level: mpi.NameSwapped},
			mpiEvidence{Label: "Given name", Level: "Given and family names swapped", Code: "given level 8"}},
		{"date of birth, day and month swapped", MPIField{Name: "birthDate", Level: mpi.DOBDayMonthSwapped, Weight: 1.75},
			mpiEvidence{Label: "Date of birth", Level: "Day and month swapped", Code: "birthDate level 2", Weight: 1.75}},
		{"SSN missing", MPIField{Name: "ssn"},
			mpiEvidence{Label: "Social Security number", Level: "Missing on one side", Code: "ssn level 0"}},
		{"address, same ZIP", MPIField{Name: "address", Level: mpi.AddrZIP, Weight: 0.4},
			mpiEvidence{Label: "Address", Level: "Same ZIP code only", Code: "address level 3", Weight: 0.4}},
		{"sex differs", MPIField{Name: "sex", Level: 2, Weight: -1.5},
			mpiEvidence{Label: "Sex", Level: "Different", Code: "sex level 2", Weight: -1.5}},
		{"a level the portal does not know", MPIField{Name: "phone", Level: 9},
			mpiEvidence{Label: "Phone number", Level: "Level 9", Code: "phone level 9"}},
		{"a field the portal does not know", MPIField{Name: "email", Level: 1},
			mpiEvidence{Label: "email", Level: "Level 1", Code: "email level 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mpiEvidenceOf([]MPIField{tt.field})
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("mpiEvidenceOf(%+v) = %+v, want %+v", tt.field, got, tt.want)
			}
		})
	}
}
