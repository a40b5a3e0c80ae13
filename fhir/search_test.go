package fhir

import (
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

func approx(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func rows(ivs []IndexValue, param string) []IndexValue {
	var out []IndexValue
	for _, iv := range ivs {
		if iv.Param == param {
			out = append(out, iv)
		}
	}
	return out
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func TestExtract(t *testing.T) {
	obs := MustParse([]byte(`{"resourceType":"Observation","id":"o1","meta":{"lastUpdated":"2024-05-06T07:08:09.123Z"},"status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"4548-4"},{"system":"urn:local","code":"A1C"}],"text":"HbA1c"},
		"subject":{"reference":"Patient/p1"},"encounter":{"reference":"urn:uuid:6e2bd0d2-6c2c-4f2b-9b1a-2d1e0c7a1f00"},
		"effectiveDateTime":"2024-05","valueQuantity":{"value":6.1,"unit":"%"}}`))
	got := Extract(obs)
	check := func(param string, want []IndexValue) {
		t.Helper()
		if g := rows(got, param); !reflect.DeepEqual(g, want) {
			t.Errorf("%s:\n got  %+v\n want %+v", param, g, want)
		}
	}
	check("_id", []IndexValue{{Param: "_id", Type: ParamToken, Code: "o1"}})
	lu := time.Date(2024, 5, 6, 7, 8, 9, 123e6, time.UTC)
	check("_lastUpdated", []IndexValue{{Param: "_lastUpdated", Type: ParamDate, Low: lu, High: lu.Add(time.Millisecond)}})
	check("code", []IndexValue{{Param: "code", Type: ParamToken, System: "http://loinc.org", Code: "4548-4"}, {Param: "code", Type: ParamToken, System: "urn:local", Code: "A1C"}})
	check("patient", []IndexValue{{Param: "patient", Type: ParamReference, RefType: "Patient", RefID: "p1"}})
	check("subject", []IndexValue{{Param: "subject", Type: ParamReference, RefType: "Patient", RefID: "p1"}})
	check("date", []IndexValue{{Param: "date", Type: ParamDate, Low: day(2024, 5, 1), High: day(2024, 6, 1)}})
	check("status", []IndexValue{{Param: "status", Type: ParamToken, Code: "final"}})
	check("encounter", nil) // urn:uuid is not an Encounter target
	check("value-quantity", []IndexValue{{Param: "value-quantity", Type: ParamQuantity, Code: "%", Number: 6.1, Decimal: "6.1"}})

	// a Group subject is not a patient
	grp := MustParse([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Group/g"},"effectivePeriod":{"start":"2020-01-01T10:00:00+02:00"}}`))
	g := Extract(grp)
	if len(rows(g, "patient")) != 0 || len(rows(g, "subject")) != 1 {
		t.Errorf("Group subject: %+v", g)
	}
	if d := rows(g, "date"); len(d) != 1 || !d[0].Low.Equal(time.Date(2020, 1, 1, 8, 0, 0, 0, time.UTC)) || !d[0].High.IsZero() {
		t.Errorf("open period: %+v", d)
	}

	pat := MustParse([]byte(`{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"42"}],"active":true,
		"name":[{"family":"Müller","given":["Ángela","María"]}],"gender":"female","birthDate":"1970-02-03",
		"telecom":[{"system":"phone","value":"555-1"},{"system":"email","value":"a@b.c"}],"address":[{"line":["1 Main St"],"postalCode":"02134"}]}`))
	p := Extract(pat)
	if f := rows(p, "family"); len(f) != 1 || f[0].Norm != "muller" || f[0].Exact != "Müller" {
		t.Errorf("family: %+v", f)
	}
	if n := rows(p, "name"); len(n) != 3 {
		t.Errorf("name: %+v", n)
	}
	if ph := rows(p, "phone"); len(ph) != 1 || ph[0].Code != "555-1" {
		t.Errorf("phone: %+v", ph)
	}
	if e := rows(p, "email"); len(e) != 1 || e[0].Code != "a@b.c" {
		t.Errorf("email: %+v", e)
	}
	if b := rows(p, "birthdate"); len(b) != 1 || !b[0].Low.Equal(day(1970, 2, 3)) || !b[0].High.Equal(day(1970, 2, 4)) {
		t.Errorf("birthdate: %+v", b)
	}
	if a := rows(p, "active"); len(a) != 1 || a[0].Code != "true" {
		t.Errorf("active: %+v", a)
	}
	if id := rows(p, "identifier"); len(id) != 1 || id[0].System != "urn:mrn" || id[0].Code != "42" {
		t.Errorf("identifier: %+v", id)
	}

	mr := MustParse([]byte(`{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"},"medicationReference":{"reference":"Medication/m1"},"authoredOn":"2021-03-04T05:06:07Z"}`))
	m := Extract(mr)
	if md := rows(m, "medication"); len(md) != 1 || md[0].RefID != "m1" {
		t.Errorf("medication: %+v", md)
	}
	if c := rows(m, "code"); len(c) != 0 {
		t.Errorf("code from a reference: %+v", c)
	}
}

func TestExtractSynthea(t *testing.T) {
	dir := sharedData(t, "synthea", "bundles")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Skip("no bundles")
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	bn, err := ParseBundle(MustParse(b))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, e := range bn.Entries {
		for _, iv := range Extract(e.Resource) {
			counts[e.Resource.ResourceType+"."+iv.Param]++
		}
	}
	// Synthea clinical resources point at the patient by urn:uuid before resolution, so
	// "subject" rows exist only after RewriteReferences; codes and dates must be indexed.
	for _, k := range []string{"Patient.family", "Patient.birthdate", "Observation.code", "Observation.date", "Observation.category", "Encounter.date", "Condition.code", "Immunization.date", "Procedure.date"} {
		if counts[k] == 0 {
			t.Errorf("no %s rows", k)
		}
	}
}

func TestParseSearch(t *testing.T) {
	q := func(s string) url.Values {
		v, err := url.ParseQuery(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	s, err := ParseSearch("Observation", q("patient=p1&category=laboratory&date=ge2025-01-01&date=lt2025-02&code=http://loinc.org|4548-4,|x,sys|&_sort=-date,_lastUpdated&_count=500&_include=Observation:patient&_total=accurate"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Count != DefaultMaxCount || s.Total != TotalAccurate {
		t.Errorf("count %d total %v", s.Count, s.Total)
	}
	if !reflect.DeepEqual(s.Sort, []SortKey{{"date", true}, {"_lastUpdated", false}}) {
		t.Errorf("sort %+v", s.Sort)
	}
	if !reflect.DeepEqual(s.Include, []Include{{SourceType: "Observation", Param: "patient"}}) {
		t.Errorf("include %+v", s.Include)
	}
	want := []Clause{
		{Param: "category", Type: ParamToken, Values: []Value{{Code: "laboratory"}}},
		{Param: "code", Type: ParamToken, Values: []Value{
			{SystemMode: ExactSystem, System: "http://loinc.org", Code: "4548-4"},
			{SystemMode: NoSystem, Code: "x"},
			{SystemMode: ExactSystem, System: "sys"}}},
		{Param: "date", Type: ParamDate, Values: []Value{{Prefix: PrefixGe, Date: DateValue{Low: day(2025, 1, 1), High: day(2025, 1, 2), Precision: PrecisionDay}}}},
		{Param: "date", Type: ParamDate, Values: []Value{{Prefix: PrefixLt, Date: DateValue{Low: day(2025, 2, 1), High: day(2025, 3, 1), Precision: PrecisionMonth}}}},
		{Param: "patient", Type: ParamReference, Values: []Value{{RefType: "Patient", RefID: "p1"}}},
	}
	if !reflect.DeepEqual(s.Clauses, want) {
		t.Errorf("clauses:\n got  %+v\n want %+v", s.Clauses, want)
	}

	s, err = ParseSearch("DocumentReference", q("patient.identifier=urn:oid:1.2|MRN42&status=current&type:not=a&date=sa2020-01-01T10:00&_revinclude=List:item"))
	if err != nil {
		t.Fatal(err)
	}
	if c := s.Clauses[1]; c.Param != "patient" || c.Chain == nil || *c.Chain != (Chain{"Patient", "identifier", ParamToken}) || c.Values[0].System != "urn:oid:1.2" || c.Values[0].Code != "MRN42" {
		t.Errorf("chain clause %+v", c)
	}
	if c := s.Clauses[0]; c.Param != "date" || c.Values[0].Prefix != PrefixSa || c.Values[0].Date.Precision != PrecisionMinute || c.Values[0].Date.High.Sub(c.Values[0].Date.Low) != time.Minute {
		t.Errorf("date clause %+v", c)
	}
	if s.Clauses[3].Modifier != ModNot || len(s.RevInclude) != 1 {
		t.Errorf("not/revinclude: %+v %+v", s.Clauses[3], s.RevInclude)
	}

	s, err = ParseSearch("Patient", q("family:exact=Müller&given:contains=ang&name=Ángela&birthdate=1970&gender=female&address-postalcode=02134&identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|42&telecom:missing=false&_count=0&_summary=count&_elements=name,birthDate,deceased"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Count != 0 || !s.SummaryCount || len(s.Elements) != 3 {
		t.Errorf("patient search %+v", s)
	}
	for _, c := range s.Clauses {
		switch c.Param {
		case "family":
			if c.Modifier != ModExact || c.Values[0].Raw != "Müller" {
				t.Errorf("family %+v", c)
			}
		case "name":
			if c.Values[0].Norm != "angela" {
				t.Errorf("name %+v", c)
			}
		case "identifier":
			if c.Modifier != ModOfType || c.Values[0].TypeCode != "MR" || c.Values[0].Code != "42" {
				t.Errorf("identifier %+v", c)
			}
		case "telecom":
			if c.Modifier != ModMissing || c.Values[0].Missing {
				t.Errorf("telecom %+v", c)
			}
		}
	}
	if s, err := ParseSearch("Observation", q("subject:Patient=1&code=a\\,b")); err != nil || s.Clauses[1].Values[0].RefType != "Patient" || s.Clauses[0].Values[0].Code != "a,b" {
		t.Errorf("type modifier / escaped comma: %+v %v", s, err)
	}
	if s, err := ParseSearch("Observation", q("value-quantity=gt5.40|http://unitsofmeasure.org|mg&value-quantity=1e2||mg,7")); err != nil {
		t.Error(err)
	} else {
		v := s.Clauses[0].Values[0]
		if v.Prefix != PrefixGt || v.Number != 5.4 || v.System != "http://unitsofmeasure.org" || v.Code != "mg" || v.SystemMode != ExactSystem || !approx(v.NumLow, 5.395) || !approx(v.NumHigh, 5.405) {
			t.Errorf("quantity %+v", v)
		}
		v = s.Clauses[1].Values[0]
		if v.Number != 100 || !approx(v.NumLow, 50) || !approx(v.NumHigh, 150) || v.SystemMode != AnySystem || v.Code != "mg" {
			t.Errorf("quantity 1e2 %+v", v)
		}
		if v = s.Clauses[1].Values[1]; v.Code != "" || !approx(v.NumHigh, 7.5) {
			t.Errorf("quantity 7 %+v", v)
		}
	}
	if s, err := ParseSearch("Observation", q("date=lt2020-01-01T10:00:00+02:00")); err != nil || !s.Clauses[0].Values[0].Date.Low.Equal(time.Date(2020, 1, 1, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("unencoded + in zone: %+v %v", s, err)
	}
	if s, err := ParseSearch("Observation", nil); err != nil || s.Count != DefaultCount {
		t.Errorf("defaults: %+v %v", s, err)
	}
	if s, err := ParseSearch("Claim", q("_id=1")); err != nil || len(s.Clauses) != 1 {
		t.Errorf("common params on any type: %+v %v", s, err)
	}
}

func TestParseSearchRejects(t *testing.T) {
	for _, tt := range []struct{ rt, q string }{
		{"Bot", "_id=1"},
		{"Observation", "favourite=1"},
		{"Observation", "Patient=1"},
		{"Observation", "patient="},
		{"Observation", "code=a,,b"},
		{"Observation", "code=|"},
		{"Observation", "code:exact=a"},
		{"Observation", "code:text=a"},
		{"Observation", "status:contains=a"},
		{"Observation", "date=2020-13"},
		{"Observation", "date=ap2020"},
		{"Observation", "date=xx2020"},
		{"Observation", "date=2020-01-01T10"},
		{"Observation", "patient=Group/1"},
		{"Observation", "patient=a/b/c"},
		{"Observation", "patient=bad id"},
		{"Observation", "patient:Group=1"},
		{"Observation", "subject.identifier=x"},
		{"Observation", "patient.name.family=x"},
		{"Observation", "patient.link=x"},
		{"Observation", "code:missing=maybe"},
		{"Observation", "_count=-1"},
		{"Observation", "_count=abc"},
		{"Observation", "_count=1&_count=2"},
		{"Observation", "_sort=code"},
		{"Observation", "_sort=foo"},
		{"Observation", "_include=Observation:code"},
		{"Observation", "_include=MedicationRequest:medication"},
		{"Observation", "_include=Observation:patient:Group"},
		{"Observation", "_include=*"},
		{"Observation", "_include:iterate=Observation:patient"},
		{"Observation", "_revinclude=Observation:patient"},
		{"Observation", "_total=maybe"},
		{"Observation", "_summary=true"},
		{"Observation", "_elements=foo"},
		{"Observation", "identifier:of-type=a|b|c"},
		{"Patient", "identifier:of-type=a|b"},
		{"Patient", "name:missing=true,false"},
		{"Observation", "code=" + strings.Repeat("a,", MaxOrValues) + "a"},
		{"Observation", strings.Repeat("code=a&", MaxClauses) + "code=a"},
		{"Observation", strings.Repeat("_include=Observation:patient&", MaxIncludes) + "_include=Observation:subject"},
		{"Observation", "value-quantity=abc"},
		{"Observation", "value-quantity=5|mg"},
		{"Observation", "value-quantity=ap5"},
		{"Observation", "value-quantity=05"},
	} {
		t.Run(tt.rt+"?"+tt.q, func(t *testing.T) {
			v, err := url.ParseQuery(tt.q)
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParseSearch(tt.rt, v)
			if errs.CodeOf(err) != errs.Invalid {
				t.Errorf("got %+v, %v; want invalid", s, err)
			}
		})
	}
}

func FuzzParseSearch(f *testing.F) {
	f.Add("Observation", "patient=1&date=ge2020&code=a|b,c&_sort=-date")
	f.Add("Patient", "family:exact=x&identifier:of-type=a|b|c&_include=Patient:foo")
	f.Add("DocumentReference", "patient.identifier=a|b&period=eb2020-01-01T00:00:00Z")
	f.Fuzz(func(t *testing.T, rt, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		s, err := ParseSearch(rt, q)
		if err != nil {
			if errs.CodeOf(err) != errs.Invalid {
				t.Fatalf("code %v", errs.CodeOf(err))
			}
			return
		}
		if s.Count < 0 || s.Count > DefaultMaxCount {
			t.Fatalf("count %d", s.Count)
		}
		for _, c := range s.Clauses {
			if len(c.Values) == 0 {
				t.Fatal("clause without values")
			}
		}
	})
}

func TestCapabilities(t *testing.T) {
	caps := Capabilities()
	byType := map[string]CapabilityResource{}
	for _, c := range caps {
		byType[c.Type] = c
		for _, p := range c.SearchParams {
			if p.Definition == "" || p.Type == "unknown" || p.Documentation == "" {
				t.Errorf("%s.%s: incomplete %+v", c.Type, p.Name, p)
			}
		}
		for _, inc := range c.SearchInclude {
			if _, err := ParseSearch(c.Type, url.Values{"_include": {inc}}); err != nil {
				t.Errorf("listed _include %s rejected: %v", inc, err)
			}
		}
		for _, inc := range c.SearchRevInclude {
			if _, err := ParseSearch(c.Type, url.Values{"_revinclude": {inc}}); err != nil {
				t.Errorf("listed _revinclude %s on %s rejected: %v", inc, c.Type, err)
			}
		}
		for _, ch := range c.Chains {
			if _, err := ParseSearch(c.Type, url.Values{ch + ":missing": {"true"}}); err == nil {
				t.Errorf("chain with modifier accepted: %s", ch)
			}
		}
	}
	mustInclude := map[string]string{"MedicationRequest": "MedicationRequest:medication", "Observation": "Observation:patient", "DiagnosticReport": "DiagnosticReport:result", "Encounter": "Encounter:patient"}
	for rt, inc := range mustInclude {
		if !contains(byType[rt].SearchInclude, inc) {
			t.Errorf("%s missing _include %s", rt, inc)
		}
	}
	if !contains(byType["DocumentReference"].Chains, "patient.identifier") || !contains(byType["Observation"].Chains, "patient.identifier") {
		t.Error("patient.identifier chain missing")
	}
	if len(byType["Patient"].SearchParams) < 15 {
		t.Errorf("Patient params: %d", len(byType["Patient"].SearchParams))
	}
	if c := CommonCapabilityParams(); len(c) != 2 || c[0].Definition == "" {
		t.Errorf("common: %+v", c)
	}
}

// TestCapabilityParamsAccepted checks every listed parameter with a value of its type.
func TestCapabilityParamsAccepted(t *testing.T) {
	sample := map[string]string{"token": "sys|code", "reference": "id1", "date": "ge2020-01-01", "string": "abc", "quantity": "5.4|http://unitsofmeasure.org|mg"}
	for _, c := range Capabilities() {
		for _, p := range c.SearchParams {
			if _, err := ParseSearch(c.Type, url.Values{p.Name: {sample[p.Type]}}); err != nil {
				t.Errorf("%s?%s=%s rejected: %v", c.Type, p.Name, sample[p.Type], err)
			}
		}
	}
}
