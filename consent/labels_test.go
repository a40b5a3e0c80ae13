package consent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/concord-hie/concord/internal/errs"
)

func mustLabeler(tb testing.TB) *Labeler {
	tb.Helper()
	l, err := DefaultLabeler()
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func TestLabels(t *testing.T) {
	l := mustLabeler(t)
	tests := []struct {
		name, json string
		want       []string
	}{
		{"icd10 alcohol dependence, dotted", `{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F10.20"}]}}`, []string{"ETH", "R"}},
		{"icd10 undotted", `{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F1120"}]}}`, []string{"ETH", "R"}},
		{"nicotine is not ETH", `{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F17.210"}]}}`, nil},
		{"icd10 PTSD", `{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F43.10"}]}}`, []string{"PSY", "R"}},
		{"prefix does not match a longer category", `{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F01.50"}]}}`, nil},
		{"HIV status", `{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"Z21"}]}}`, []string{"HIV", "R"}},
		{"HIV lab by LOINC", `{"resourceType":"Observation","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"7918-6"}]}}`, []string{"HIV", "R"}},
		{"PHQ-9 in a component", `{"resourceType":"Observation","code":{"coding":[{"system":"http://loinc.org","code":"55757-9"}]},"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]}}]}`, []string{"PSY", "R"}},
		{"medication", `{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"1819"}]}}`, []string{"ETH", "R"}},
		{"reason code array", `{"resourceType":"Encounter","reasonCode":[{"coding":[{"system":"http://snomed.info/sct","code":"706893006"}]}]}`, []string{"SDV", "R"}},
		{"two categories", `{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"86406008"},{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F32.9"}]}}`, []string{"PSY", "HIV", "R"}},
		{"already labelled keeps only new", `{"resourceType":"Condition","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"F32.9"}]}}`, []string{"R"}},
		{"same code, other system", `{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"F10.20"}]}}`, nil},
		{"ordinary", `{"resourceType":"Condition","code":{"coding":[{"system":"http://snomed.info/sct","code":"444814009"}]}}`, nil},
		{"malformed fails closed", `{"resourceType":"Condition","code":`, []string{"R"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := l.Labels([]byte(tt.json)); !slices.Equal(got, tt.want) {
				t.Errorf("Labels = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValueSetFiles(t *testing.T) {
	l := mustLabeler(t)
	got := map[string]int{}
	for _, vs := range l.ValueSets() {
		got[vs.Label] = vs.Codes
		if vs.Title == "" || len(vs.Sources) == 0 {
			t.Errorf("%s: missing title or source", vs.Label)
		}
	}
	for _, label := range []string{"ETH", "PSY", "HIV", "SEX", "SDV"} {
		if got[label] < 5 {
			t.Errorf("value set %s has %d codes", label, got[label])
		}
	}
	bad := []struct {
		name, file, path string
	}{
		{"unknown label", "# label: XYZ\n", "x.tsv:1"},
		{"codes before label", "snomed\t1\texact\tx\n", "x.tsv:1"},
		{"unknown system", "# label: PSY\n# title: t\n# source: s\nicd9\t1\texact\tx\n", "x.tsv:4"},
		{"snomed prefix", "# label: PSY\n# title: t\n# source: s\nsnomed\t1\tprefix\tx\n", "x.tsv:4"},
		{"no source", "# label: PSY\n# title: t\nsnomed\t1\texact\tx\n", "x.tsv:0"},
	}
	for _, tt := range bad {
		_, err := NewLabeler(fstest.MapFS{"x.tsv": {Data: []byte(tt.file)}})
		if !errs.Is(err, errs.Invalid) || errs.PathOf(err) != tt.path {
			t.Errorf("%s: err %v path %q, want Invalid at %s", tt.name, err, errs.PathOf(err), tt.path)
		}
	}
}

// moduleRoot walks up from the package directory to the directory holding go.mod.
func moduleRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// TestLabelsSyntheaConditions labels the Synthea bulk sample and checks the expected
// sensitive conditions are found, and that common ones are not labelled.
func TestLabelsSyntheaConditions(t *testing.T) {
	path := filepath.Join(moduleRoot(t), "..", "shared", "data", "synthea", "bulk-10", "Condition.000.ndjson")
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("shared Synthea data not available (%v); see /work/shared/data/README.md", err)
	}
	defer f.Close()
	l := mustLabeler(t)
	byCode := map[string][]string{}
	total, labelled := 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var c struct {
			Code labelConcept `json:"code"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		total++
		got := l.Labels(sc.Bytes())
		if len(got) > 0 {
			labelled++
		}
		if len(c.Code.Coding) > 0 {
			byCode[c.Code.Coding[0].Code] = got
		}
	}
	want := map[string]string{
		"706893006":         "SDV", // victim of intimate partner abuse
		"10939881000119105": "ETH", // unhealthy alcohol drinking behavior
		"361055000":         "ETH", // misuses drugs
		"80583007":          "PSY", // severe anxiety (panic)
		"19169002":          "SEX", // miscarriage in first trimester
		"444814009":         "",    // viral sinusitis
		"73595000":          "",    // stress (finding), deliberately not labelled
		"72892002":          "",    // normal pregnancy, deliberately not labelled
	}
	for code, label := range want {
		got, seen := byCode[code]
		if !seen {
			t.Errorf("code %s not in the sample", code)
			continue
		}
		if label == "" && len(got) != 0 || label != "" && !slices.Contains(got, label) {
			t.Errorf("code %s labelled %v, want %q", code, got, label)
		}
	}
	t.Logf("labelled %d of %d Synthea conditions", labelled, total)
	if labelled == 0 || labelled*2 > total {
		t.Errorf("labelled %d of %d: implausible", labelled, total)
	}
}

func TestPart2Notice(t *testing.T) {
	if !strings.Contains(Part2Notice, "42 CFR part 2") || !strings.Contains(Part2Notice, "2.31") {
		t.Error("notice text incomplete")
	}
	req := read("org-b", PurposeTreatment)
	if !NeedsPart2Notice(Part2ProgramLabels(), req) {
		t.Error("Part 2 record to another organization needs the notice")
	}
	if NeedsPart2Notice([]string{LabelSubstanceUse, LabelRestricted}, req) {
		t.Error("ETH alone (not from a Part 2 program) does not need the notice")
	}
	if NeedsPart2Notice(Part2ProgramLabels(), with(req, func(r *Request) { r.ActorRole = RolePatient })) {
		t.Error("the patient's own access does not need the notice")
	}
}

func BenchmarkLabels(b *testing.B) {
	l := mustLabeler(b)
	res := []byte(`{"resourceType":"Condition","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}]}],"code":{"coding":[{"system":"http://snomed.info/sct","code":"444814009"},{"system":"http://hl7.org/fhir/sid/icd-10-cm","code":"J01.90"}]}}`)
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Labels(res)
	}
}

// TestLabelsSyntheaMedications: contraceptives in the Synthea sample are SEX, common
// analgesics are not.
func TestLabelsSyntheaMedications(t *testing.T) {
	path := filepath.Join(moduleRoot(t), "..", "shared", "data", "synthea", "bulk-10", "MedicationRequest.000.ndjson")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("shared Synthea data not available (%v); see /work/shared/data/README.md", err)
	}
	l := mustLabeler(t)
	found := map[string][]string{}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m struct {
			Med labelConcept `json:"medicationCodeableConcept"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		if len(m.Med.Coding) > 0 {
			found[m.Med.Coding[0].Code] = l.Labels(line)
		}
	}
	if got, ok := found["389221"]; !ok || !slices.Contains(got, LabelSexualHealth) {
		t.Errorf("etonogestrel implant (389221): %v (present %v), want SEX", got, ok)
	}
	labelled := 0
	for _, got := range found {
		if len(got) > 0 {
			labelled++
		}
	}
	if labelled == len(found) {
		t.Errorf("every one of %d medications labelled", len(found))
	}
}
