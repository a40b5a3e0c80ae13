package hl7v2

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

const sampleORU = "MSH|^~\\&|LAB|LAB_A^1.2.3^ISO|CONCORD|HIE|20240301101500-0500||ORU^R01^ORU_R01|ORU1|P|2.5.1\r" +
	"PID|1||555^^^LAB_A&1.2.3&ISO^MR||Smith^Ann||19700101|F\r" +
	"OBR|1|P1^EHR|F1^LAB^1.2.3^ISO|24323-8^Comprehensive metabolic panel^LN|||20240301080000-0500|||||||||||||||20240301100000-0500|||F\r" +
	"OBX|1|NM|2823-3^Potassium^LN||5.6|mmol/L^mmol/L^UCUM|3.5-5.0|H|||F\r" +
	"NTE|1||hemolyzed\r" +
	"OBX|2|SN|2160-0^Creatinine^LN||<^10|mg/dL^^UCUM|<10|N|||C|||20240301090000-0500\r" +
	"OBX|3|SN|5778-6^Color^LN||^1^:^2||>1||||P\r" +
	"OBX|4|SN|X^Range^LN||^1^-^5||||||X\r" +
	"OBX|5|CWE|600-7^Culture^LN||3092008^Staphylococcus aureus^SCT||||A|||F\r" +
	"OBX|6|ST|8251-1^Comment^LN||see \\T\\ note||||||F\r" +
	"OBX|7|TX|8251-1^Comment^LN||line1~line2||||||F\r"

func mustMap(t *testing.T, s string) *Mapped {
	t.Helper()
	m, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Map(m, MapOptions{Location: time.FixedZone("", 3600)})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func jsonOf(t *testing.T, r Resource) map[string]any {
	t.Helper()
	b, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMapADT(t *testing.T) {
	out := mustMap(t, sampleADT)
	if out.Type != "ADT" || out.Event != "A01" || len(out.Resources) != 2 {
		t.Fatalf("mapped %s^%s with %d resources", out.Type, out.Event, len(out.Resources))
	}
	if out.Key != (DedupeKey{"EHR", "CLINIC_A", "MSG0001"}) {
		t.Errorf("key %+v", out.Key)
	}
	p := out.Resources[0].Patient
	if out.Resources[0].Kind != KindPatient || p == nil {
		t.Fatal("first resource is not the patient")
	}
	if len(p.Identifier) != 3 || p.Identifier[0].System != "urn:oid:1.2.3.4" || p.Identifier[0].Value != "12345" ||
		p.Identifier[1].System != "SSA" || p.Identifier[2].System != "http://hl7.org/fhir/sid/us-ssn" {
		t.Errorf("identifiers %+v", p.Identifier)
	}
	if len(p.Name) != 2 || p.Name[0].Use != "official" || p.Name[0].Family != "Doe" ||
		strings.Join(p.Name[0].Given, " ") != "Jane Q" || p.Name[0].Prefix[0] != "Dr" || p.Name[1].Use != "maiden" {
		t.Errorf("names %+v", p.Name)
	}
	if p.BirthDate != "1980-02-14" || p.Gender != "female" {
		t.Errorf("birth %q gender %q", p.BirthDate, p.Gender)
	}
	if len(p.Address) != 1 || p.Address[0].City != "Springfield" || p.Address[0].Use != "home" || len(p.Address[0].Line) != 2 {
		t.Errorf("address %+v", p.Address)
	}
	want := []ContactPoint{{"phone", "(217) 5551234", "home"}, {"email", "jane@example.org", "home"}, {"phone", "(217) 5559999", "work"}}
	if len(p.Telecom) != 3 {
		t.Fatalf("telecom %+v", p.Telecom)
	}
	for i := range want {
		if p.Telecom[i] != want[i] {
			t.Errorf("telecom[%d] = %+v, want %+v", i, p.Telecom[i], want[i])
		}
	}
	e := out.Resources[1].Encounter
	if e == nil || e.Status != "in-progress" || e.Class.Code != "IMP" ||
		e.Period == nil || e.Period.Start != "2024-01-02T03:00:00+01:00" || e.Period.End != "2024-01-05T12:00:00+01:00" ||
		len(e.Identifier) != 1 || e.Identifier[0].Value != "V123" {
		t.Errorf("encounter %+v", e)
	}
	if e.Subject.Reference != out.Resources[0].FullURL || e.Subject.Identifier.Value != "12345" {
		t.Errorf("encounter subject %+v", e.Subject)
	}
	// Same message, same FullURLs: a resend maps identically.
	if again := mustMap(t, sampleADT); again.Resources[1].FullURL != out.Resources[1].FullURL {
		t.Error("FullURL not deterministic")
	}
	a03 := mustMap(t, strings.Replace(sampleADT, "ADT^A01^ADT_A01", "ADT^A03", 1))
	if a03.Resources[1].Encounter.Status != "finished" {
		t.Errorf("A03 status %q", a03.Resources[1].Encounter.Status)
	}
	a28 := mustMap(t, strings.Replace(sampleADT, "ADT^A01^ADT_A01", "ADT^A28", 1))
	if len(a28.Resources) != 1 {
		t.Errorf("A28 gave %d resources", len(a28.Resources))
	}
}

func TestMapMerge(t *testing.T) {
	msg := "MSH|^~\\&|EHR|CLINIC_A|CONCORD|HIE|20240102030405||ADT^A40^ADT_A39|M1|P|2.5.1\r" +
		"PID|1||100^^^CLINIC_A^MR||Doe^Jane\r" +
		"MRG|200^^^CLINIC_A^MR~201^^^CLINIC_A^MR\r"
	out := mustMap(t, msg)
	if out.Merge == nil || len(out.Merge.Retired) != 2 || out.Merge.Retired[0].Value != "200" ||
		out.Subjects[out.Merge.Survivor].IDs[0].Value != "100" {
		t.Fatalf("merge %+v", out.Merge)
	}
	_, err := Map(mustParse(t, strings.Replace(msg, "MRG|200^^^CLINIC_A^MR~201^^^CLINIC_A^MR", "MRG|", 1)), MapOptions{})
	if p := ProblemOf(err); p == nil || p.Code != RequiredFieldMissing || p.Loc != "MRG-1" {
		t.Errorf("empty MRG-1: %v", err)
	}
}

func mustParse(t *testing.T, s string) *Message {
	t.Helper()
	m, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMapORU(t *testing.T) {
	out := mustMap(t, sampleORU)
	kinds := []string{}
	for _, r := range out.Resources {
		kinds = append(kinds, r.Kind)
	}
	if got := strings.Join(kinds, ","); got != "Patient,DiagnosticReport,Observation,Observation,Observation,Observation,Observation,Observation,Observation" {
		t.Fatalf("kinds %s", got)
	}
	dr := out.Resources[1].Report
	if dr.Status != "final" || dr.Code.Coding[0].System != "http://loinc.org" || dr.Code.Coding[0].Code != "24323-8" ||
		dr.EffectiveDateTime != "2024-03-01T08:00:00-05:00" || dr.Issued != "2024-03-01T10:00:00-05:00" ||
		dr.Category[0].Coding[0].Code != "LAB" || len(dr.Result) != 7 || dr.Result[0].Reference != out.Resources[2].FullURL {
		t.Errorf("report %+v", dr)
	}
	if dr.Identifier[0].System != "urn:oid:1.2.3" || dr.Identifier[0].Value != "F1" {
		t.Errorf("report identifier %+v", dr.Identifier)
	}
	obs := func(i int) map[string]any { return jsonOf(t, out.Resources[2+i]) }
	checks := []struct {
		i    int
		path string
		want string
	}{
		{0, "valueQuantity", `{"code":"mmol/L","system":"http://unitsofmeasure.org","unit":"mmol/L","value":5.6}`},
		{0, "referenceRange", `[{"high":{"code":"mmol/L","system":"http://unitsofmeasure.org","unit":"mmol/L","value":5},"low":{"code":"mmol/L","system":"http://unitsofmeasure.org","unit":"mmol/L","value":3.5}}]`},
		{0, "interpretation", `[{"coding":[{"code":"H","system":"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"}]}]`},
		{0, "status", `"final"`},
		{0, "note", `[{"text":"hemolyzed"}]`},
		{0, "effectiveDateTime", `"2024-03-01T08:00:00-05:00"`},
		{0, "category", `[{"coding":[{"code":"laboratory","display":"Laboratory","system":"http://terminology.hl7.org/CodeSystem/observation-category"}]}]`},
		{1, "valueQuantity", `{"code":"mg/dL","comparator":"\u003c","system":"http://unitsofmeasure.org","unit":"mg/dL","value":10}`},
		{1, "status", `"corrected"`},
		{1, "effectiveDateTime", `"2024-03-01T09:00:00-05:00"`},
		{1, "referenceRange", `[{"high":{"code":"mg/dL","system":"http://unitsofmeasure.org","unit":"mg/dL","value":10},"text":"\u003c10"}]`},
		{2, "valueRatio", `{"denominator":{"value":2},"numerator":{"value":1}}`},
		{2, "status", `"preliminary"`},
		{2, "referenceRange", `[{"low":{"value":1},"text":"\u003e1"}]`},
		{3, "valueRange", `{"high":{"value":5},"low":{"value":1}}`},
		{3, "status", `"cancelled"`},
		{4, "valueCodeableConcept", `{"coding":[{"code":"3092008","display":"Staphylococcus aureus","system":"http://snomed.info/sct"}],"text":"Staphylococcus aureus"}`},
		{5, "valueString", `"see \u0026 note"`},
		{6, "valueString", `"line1\nline2"`},
	}
	if raw, _ := out.Resources[2].JSON(); !strings.Contains(string(raw), `"value":5.0,`) {
		t.Errorf("decimal precision lost: %s", raw)
	}
	for _, c := range checks {
		got, _ := json.Marshal(obs(c.i)[c.path])
		if string(got) != c.want {
			t.Errorf("obs %d %s = %s, want %s", c.i, c.path, got, c.want)
		}
	}
}

func TestMapErrors(t *testing.T) {
	tests := []struct {
		name     string
		from, to string
		base     string
		ack      AckCode
		code     ErrCode
		loc      string
	}{
		{"no PID-3", "12345^^^&1.2.3.4&ISO^MR~999-88-7777^^^SSA^SS", "", sampleADT, AE, RequiredFieldMissing, "PID-3"},
		{"bad birth date", "19800214", "19800231", sampleADT, AE, DataTypeError, "PID-7"},
		{"bad gender", "|F|", "|Q|", sampleADT, AE, TableValueNotFound, "PID-8"},
		{"bad admit", "20240102030000", "2024010203xx", sampleADT, AE, DataTypeError, "PV1-44"},
		{"no PV1", "PV1|", "ZV1|", sampleADT, AE, SegmentSequenceError, "PV1"},
		{"version 2.2", "|2.5.1", "|2.2", sampleADT, AR, UnsupportedVersion, "MSH-12"},
		{"version 2.9", "|2.5.1", "|2.9", sampleADT, AR, UnsupportedVersion, "MSH-12"},
		{"event", "ADT^A01^ADT_A01", "ADT^A05", sampleADT, AR, UnsupportedEventCode, "MSH-9"},
		{"type", "ADT^A01^ADT_A01", "ORM^O01", sampleADT, AR, UnsupportedMessageType, "MSH-9"},
		{"unknown OBX-2", "OBX|6|ST|", "OBX|6|ZZ|", sampleORU, AE, TableValueNotFound, "OBX[6]-2"},
		{"bad NM", "||5.6|", "||five|", sampleORU, AE, DataTypeError, "OBX-5"},
		{"bad status", "|||C|||", "|||Q|||", sampleORU, AE, TableValueNotFound, "OBX[2]-11"},
		{"bad OBX date", "20240301090000-0500", "20241301", sampleORU, AE, DataTypeError, "OBX[2]-14"},
		{"OBX before OBR", "OBR|1|", "ZBR|1|", sampleORU, AE, SegmentSequenceError, "OBX"},
		{"bad SN", "<^10", "~^10", sampleORU, AE, DataTypeError, "OBX[2]-5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(tt.base, tt.from, tt.to, 1)
			if in == tt.base {
				t.Fatal("replacement did not apply")
			}
			_, err := Map(mustParse(t, in), MapOptions{})
			a := AckFromError(err)
			if a.Code != tt.ack || a.Err != tt.code || a.Loc != tt.loc {
				t.Fatalf("ack %+v, want %s %d %s (err %v)", a, tt.ack, tt.code, tt.loc, err)
			}
			wantCode := errs.Invalid
			if tt.ack == AR {
				wantCode = errs.Unsupported
			}
			if !errs.Is(err, wantCode) {
				t.Errorf("errs code %v", errs.CodeOf(err))
			}
			if strings.Contains(err.Error(), "Doe") || strings.Contains(err.Error(), "Smith") {
				t.Errorf("error text leaks a value: %v", err)
			}
		})
	}
}

func TestDates(t *testing.T) {
	loc := time.FixedZone("", -5*3600)
	tests := []struct{ in, want string }{
		{"2024", "2024"},
		{"202403", "2024-03"},
		{"20240301", "2024-03-01"},
		{"2024030110", "2024-03-01T10:00:00-05:00"},
		{"202403011015", "2024-03-01T10:15:00-05:00"},
		{"20240301101530.25+0100", "2024-03-01T10:15:30.25+01:00"},
		{"20240301101530-0000", "2024-03-01T10:15:30Z"},
	}
	for _, tt := range tests {
		got, err := fhirDateTime(tt.in, loc)
		if err != nil || got != tt.want {
			t.Errorf("fhirDateTime(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "20240230", "2024-03-01", "202403011", "20241301", "20240301+01", "20240301101530.12345", "DOB"} {
		if got, err := fhirDateTime(bad, loc); err == nil {
			t.Errorf("fhirDateTime(%q) = %q, want error", bad, got)
		}
	}
	for in, want := range map[string]string{"+05.": "5", ".5": "0.5", "-0.50": "-0.50", "007": "7", "0": "0"} {
		if got, ok := decimal(in); !ok || got != want {
			t.Errorf("decimal(%q) = %q %v", in, got, ok)
		}
	}
	for _, bad := range []string{"", ".", "1e5", "1.2.3", "abc", "-"} {
		if _, ok := decimal(bad); ok {
			t.Errorf("decimal(%q) ok", bad)
		}
	}
}

func TestMapLargeInputIsLinear(t *testing.T) {
	// 2 MiB of repetitions in PID-3, PID-5 and an OBX: quadratic scanning would take minutes.
	reps := strings.Repeat("1^^^A^MR~", 1<<17)
	msg := strings.Replace(sampleORU, "555^^^LAB_A&1.2.3&ISO^MR", reps+"555^^^LAB_A^MR", 1)
	msg = strings.Replace(msg, "Smith^Ann", strings.Repeat("S^A~", 1<<17), 1)
	msg = strings.Replace(msg, "line1~line2", strings.Repeat("x~", 1<<17), 1)
	start := time.Now()
	out := mustMap(t, msg)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Map took %v", d)
	}
	if n := len(out.Subjects[0].IDs); n != 1<<17+1 {
		t.Errorf("%d identifiers", n)
	}
}

func TestMapPatientDetails(t *testing.T) {
	msg := "MSH|^~\\&|EHR|CLINIC_A|CONCORD|HIE|20240102030405||ADT^A04|R1|P|2.3\r" +
		"PID|1||77^^^^MR~88^^^HOSP&2.16.840.1&ISO~99^^^X&urn:x:y&URI||Roe^Rick^^Jr^^MD^D||197001|M|||^^Town^^^^M||555-1234^PRN^CP~^NET^Internet^r@example.org||||||||||||||||20231231235959|Y\r" +
		"PV1|1|E\r"
	out := mustMap(t, msg)
	p := out.Resources[0].Patient
	sys := []string{p.Identifier[0].System, p.Identifier[1].System, p.Identifier[2].System}
	if sys[0] != "" || sys[1] != "urn:oid:2.16.840.1" || sys[2] != "urn:x:y" {
		t.Errorf("systems %q", sys)
	}
	if p.BirthDate != "1970-01" || p.Gender != "male" {
		t.Errorf("birth %q gender %q", p.BirthDate, p.Gender)
	}
	if p.DeceasedDateTime != "2023-12-31T23:59:59+01:00" || p.DeceasedBoolean != nil {
		t.Errorf("deceased %q %v", p.DeceasedDateTime, p.DeceasedBoolean)
	}
	if n := p.Name[0]; n.Use != "usual" || strings.Join(n.Suffix, ",") != "Jr,MD" {
		t.Errorf("name %+v", n)
	}
	if a := p.Address[0]; a.Type != "postal" || a.City != "Town" {
		t.Errorf("address %+v", a)
	}
	if len(p.Telecom) != 2 || p.Telecom[0] != (ContactPoint{"phone", "555-1234", "mobile"}) || p.Telecom[1].System != "email" {
		t.Errorf("telecom %+v", p.Telecom)
	}
	e := out.Resources[1].Encounter
	if e.Status != "arrived" || e.Class.Code != "EMER" || e.Period != nil {
		t.Errorf("encounter %+v", e)
	}
	b, err := out.Resources[1].JSON()
	if err != nil || !strings.HasPrefix(string(b), `{"resourceType":"Encounter"`) {
		t.Errorf("json %s %v", b, err)
	}
}

// TestMapExplicitNull: the HL7 explicit null `""` never becomes a value, code or
// identifier; the element is left out, which clears it when the snapshot is stored.
func TestMapExplicitNull(t *testing.T) {
	a08 := strings.Replace(sampleADT, "ADT^A01^ADT_A01", "ADT^A08^ADT_A01", 1)
	const pid5 = "Doe^Jane^Q^^Dr^^L~Roe^Jane^^^^^M"
	const pid11 = "1 Main St^Apt 2^Springfield^IL^62701^USA^H"
	const pid13 = "^PRN^PH^^^217^5551234~^NET^Internet^jane@example.org"
	const pv1_19 = "V123^^^CLINIC_A^VN"
	tests := []struct {
		name     string
		base     string
		from, to string
		res      int    // index in Resources
		path     string // top-level element of the resource's JSON
		want     string // its JSON; "" for absent
	}{
		{"gender", a08, "|F|", `|""|`, 0, "gender", ""},
		{"gender component", a08, "|F|", `|""^^HL70001|`, 0, "gender", ""},
		{"names", a08, pid5, `""`, 0, "name", ""},
		{"family name", a08, pid5, `""^Jane`, 0, "name", `[{"given":["Jane"]}]`},
		{"given name", a08, pid5, `Doe^""^""^""^""^""^L`, 0, "name", `[{"use":"official","family":"Doe"}]`},
		{"address", a08, pid11, `""`, 0, "address", ""},
		{"address parts", a08, pid11, `""^^""^IL^""^""^H`, 0, "address", `[{"use":"home","state":"IL"}]`},
		{"telecom", a08, pid13, `""`, 0, "telecom", `[{"system":"phone","value":"(217) 5559999","use":"work"}]`},
		{"telecom parts", a08, pid13, `""^PRN^PH^^^""^""~^NET^Internet^""`, 0, "telecom", `[{"system":"phone","value":"(217) 5559999","use":"work"}]`},
		{"birth date", a08, "|19800214|", `|""|`, 0, "birthDate", ""},
		{"SSN", a08, "|123-45-6789", `|""`, 0, "identifier", `[{"use":"usual","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:oid:1.2.3.4","value":"12345"},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"SS"}]},"system":"SSA","value":"999-88-7777"}]`},
		{"PID-3 repetition", a08, "~999-88-7777^^^SSA^SS", `~""^^^SSA^SS`, 0, "identifier", `[{"use":"usual","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:oid:1.2.3.4","value":"12345"},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"SS"}]},"system":"http://hl7.org/fhir/sid/us-ssn","value":"123-45-6789"}]`},
		{"visit number", a08, pv1_19, `""^^^CLINIC_A^VN`, 1, "identifier", ""},
		{"visit number field", a08, pv1_19, `""`, 1, "identifier", ""},
		{"patient class", a08, "PV1|1|I|", `PV1|1|""|`, 1, "class", `{"system":"http://terminology.hl7.org/CodeSystem/v3-NullFlavor","code":"UNK","display":"unknown"}`},
		{"discharge", a08, "|20240105120000", `|""`, 1, "period", `{"start":"2024-01-02T03:00:00+01:00"}`},
		{"location", a08, "|W1^101^A^CLINIC_A|", `|""^""^""^""|`, 1, "location", ""},
		{"result status", sampleORU, "5.6|mmol/L^mmol/L^UCUM|3.5-5.0|H|||F", `5.6|mmol/L^mmol/L^UCUM|3.5-5.0|H|||""`, 2, "status", `"unknown"`},
		{"abnormal flag", sampleORU, "3.5-5.0|H|", `3.5-5.0|""|`, 2, "interpretation", ""},
		{"units", sampleORU, "|mmol/L^mmol/L^UCUM|", `|""|`, 2, "valueQuantity", `{"value":5.6}`},
		{"reference range", sampleORU, "|3.5-5.0|", `|""|`, 2, "referenceRange", ""},
		{"value type", sampleORU, "OBX|1|NM|", `OBX|1|""|`, 2, "valueQuantity", `{"value":5.6,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}`},
		{"report status", sampleORU, "20240301100000-0500|||F", `20240301100000-0500|||""`, 1, "status", `"unknown"`},
		{"observation time", sampleORU, "|20240301080000-0500|", `|""|`, 1, "effectiveDateTime", ""},
		{"code", sampleORU, "2823-3^Potassium^LN", `""^Potassium^LN`, 2, "code", `{"text":"Potassium"}`},
		{"filler number", sampleORU, "|F1^LAB^1.2.3^ISO|", `|""^LAB^1.2.3^ISO|`, 1, "identifier", `[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"PLAC"}]},"system":"EHR","value":"P1"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(tt.base, tt.from, tt.to, 1)
			if in == tt.base {
				t.Fatal("replacement did not apply")
			}
			out := mustMap(t, in)
			v := jsonOf(t, out.Resources[tt.res])
			got := ""
			if x, ok := v[tt.path]; ok {
				b, _ := json.Marshal(x)
				got = string(b)
			}
			want := tt.want
			if want != "" { // the same JSON, keys in the order json.Marshal gives a map
				var w any
				if err := json.Unmarshal([]byte(want), &w); err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(w)
				want = string(b)
			}
			if got != want {
				t.Errorf("%s = %s, want %s", tt.path, got, want)
			}
			b, _ := out.Resources[tt.res].JSON()
			if strings.Contains(string(b), `\"\"`) {
				t.Errorf("the explicit null became a value: %s", b)
			}
		})
	}
}
