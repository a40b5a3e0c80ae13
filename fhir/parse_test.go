package fhir

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
)

// sharedData returns ../shared/data/<elem...> resolved from the module root, or skips.
func sharedData(tb testing.TB, elem ...string) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Skip("module root not found")
		}
		dir = parent
	}
	p := filepath.Join(append([]string{dir, "..", "shared", "data"}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("test data %s missing: %v", p, err)
	}
	return p
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name, json, path, msg string
	}{
		{"duplicate subject", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/1"},"subject":{"reference":"Patient/2"}}`, "Observation.subject", "duplicate JSON member"},
		{"case variant Subject", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/1"},"Subject":{"reference":"Patient/2"}}`, "Observation.Subject", "JSON member names differ only in case"},
		{"case variant before", `{"resourceType":"Observation","Subject":{"reference":"Patient/2"},"subject":{"reference":"Patient/1"}}`, "Observation.Subject", "unknown element"},
		{"escaped duplicate key", `{"resourceType":"Patient","gender":"male","\u0067ender":"female"}`, "Patient.gender", "duplicate JSON member"},
		{"nested duplicate", `{"resourceType":"Patient","name":[{"family":"A","family":"B"}]}`, "Patient.name[0].family", "duplicate JSON member"},
		{"nested case variant", `{"resourceType":"Observation","subject":{"reference":"Patient/1","Reference":"Patient/2"}}`, "Observation.subject.Reference", "JSON member names differ only in case"},
		{"duplicate in bundle entry", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"a","id":"b"}}]}`, "Bundle.entry[0].resource.(Patient).id", "duplicate JSON member"},
		{"duplicate resourceType", `{"resourceType":"Patient","resourceType":"Group"}`, "Patient.resourceType", "duplicate JSON member"},
		{"unknown element", `{"resourceType":"Patient","favouriteColour":"blue"}`, "Patient.favouriteColour", "unknown element"},
		{"unknown nested element", `{"resourceType":"Patient","name":[{"surname":"A"}]}`, "Patient.name[0].surname", "unknown element"},
		{"unknown backbone element", `{"resourceType":"Patient","contact":[{"nickname":"A"}]}`, "Patient.contact[0].nickname", "unknown element"},
		{"medplum meta addition", `{"resourceType":"Patient","meta":{"project":"x"}}`, "Patient.meta.project", "unknown element"},
		{"unknown choice", `{"resourceType":"Observation","valueFoo":"1"}`, "Observation.valueFoo", "unknown element"},
		{"choice base name", `{"resourceType":"Observation","value":"1"}`, "Observation.value", "unknown element"},
		{"hostile name not echoed", `{"resourceType":"Patient","John Smith 1970":"x"}`, "Patient.(invalid-name)", "unknown element"},
		{"primitive ext on complex", `{"resourceType":"Patient","_name":[{}]}`, "Patient._name", "unknown element"},
		{"missing resourceType", `{"id":"1"}`, "", "missing resourceType"},
		{"unknown resourceType", `{"resourceType":"Bot"}`, "", "unknown resourceType"},
		{"abstract resourceType", `{"resourceType":"DomainResource"}`, "", "unknown resourceType"},
		{"R4B type", `{"resourceType":"SubscriptionStatus"}`, "", "unknown resourceType"},
		{"resourceType number", `{"resourceType":1}`, "", "missing resourceType"},
		{"not an object", `[{"resourceType":"Patient"}]`, "", "JSON body must be a single object"},
		{"empty", ``, "", "JSON body must be a single object"},
		{"trailing data", `{"resourceType":"Patient"} {}`, "", "trailing data after the JSON object"},
		{"trailing comma", `{"resourceType":"Patient","active":true,}`, "Patient", "invalid JSON"},
		{"truncated", `{"resourceType":"Patient","active":tr`, "Patient.active", "invalid JSON"},
		{"bad escape", `{"resourceType":"Patient","gender":"\x"}`, "Patient.gender", "invalid JSON string"},
		{"invalid utf8", "{\"resourceType\":\"Patient\",\"gender\":\"\xff\"}", "Patient.gender", "invalid JSON string"},
		{"lone surrogate", `{"resourceType":"Patient","gender":"\ud800"}`, "Patient.gender", "invalid JSON string"},
		{"control char", "{\"resourceType\":\"Patient\",\"gender\":\"a\nb\"}", "Patient.gender", "invalid JSON string"},
		{"boolean as string", `{"resourceType":"Patient","active":"true"}`, "Patient.active", "wrong JSON type for element: want boolean, got string"},
		{"string as number", `{"resourceType":"Patient","gender":1}`, "Patient.gender", "wrong JSON type for element: want string, got number"},
		{"number as string", `{"resourceType":"Patient","multipleBirthInteger":"2"}`, "Patient.multipleBirthInteger", "wrong JSON type for element: want number, got string"},
		{"integer with fraction", `{"resourceType":"Patient","multipleBirthInteger":2.5}`, "Patient.multipleBirthInteger", "integer expected"},
		{"integer overflow", `{"resourceType":"Patient","multipleBirthInteger":2147483648}`, "Patient.multipleBirthInteger", "integer out of range"},
		{"positiveInt zero", `{"resourceType":"Observation","valueSampledData":{"origin":{"value":1},"period":1,"dimensions":0,"data":"1"}}`, "Observation.valueSampledData.dimensions", "integer out of range"},
		{"array for single", `{"resourceType":"Patient","gender":["male"]}`, "Patient.gender", "element must not be an array"},
		{"single for array", `{"resourceType":"Patient","name":{"family":"A"}}`, "Patient.name", "element must be an array"},
		{"object for string", `{"resourceType":"Patient","gender":{"code":"male"}}`, "Patient.gender", "wrong JSON type for element: want string, got object"},
		{"string for object", `{"resourceType":"Observation","subject":"Patient/1"}`, "Observation.subject", "wrong JSON type for element: want object, got string"},
		{"null element", `{"resourceType":"Patient","gender":null}`, "Patient.gender", "wrong JSON type for element: want string, got null"},
		{"empty array", `{"resourceType":"Patient","name":[]}`, "Patient.name", "empty array"},
		{"empty object", `{"resourceType":"Patient","name":[{}]}`, "Patient.name[0]", "empty object"},
		{"empty string", `{"resourceType":"Patient","gender":""}`, "Patient.gender", "empty string"},
		{"bad id chars", `{"resourceType":"Patient","id":"a/b"}`, "Patient.id", "invalid id"},
		{"id too long", `{"resourceType":"Patient","id":"` + strings.Repeat("a", 65) + `"}`, "Patient.id", "invalid id"},
		{"bad date", `{"resourceType":"Patient","birthDate":"1970-13-01"}`, "Patient.birthDate", "invalid date"},
		{"impossible date", `{"resourceType":"Patient","birthDate":"2023-02-29"}`, "Patient.birthDate", "invalid date"},
		{"date with time", `{"resourceType":"Patient","birthDate":"1970-01-01T00:00:00Z"}`, "Patient.birthDate", "invalid date"},
		{"dateTime without zone", `{"resourceType":"Observation","effectiveDateTime":"2020-01-01T10:00:00"}`, "Observation.effectiveDateTime", "invalid dateTime"},
		{"dateTime without seconds", `{"resourceType":"Observation","effectiveDateTime":"2020-01-01T10:00Z"}`, "Observation.effectiveDateTime", "invalid dateTime"},
		{"instant date only", `{"resourceType":"Observation","issued":"2020-01-01"}`, "Observation.issued", "invalid instant"},
		{"bad time", `{"resourceType":"Observation","valueTime":"25:00:00"}`, "Observation.valueTime", "invalid time"},
		{"code with leading space", `{"resourceType":"Patient","gender":" male"}`, "Patient.gender", "invalid code"},
		{"code with double space", `{"resourceType":"Observation","status":"fi  nal"}`, "Observation.status", "invalid code"},
		{"uri with space", `{"resourceType":"Patient","identifier":[{"system":"urn:a b","value":"1"}]}`, "Patient.identifier[0].system", "invalid uri"},
		{"bad base64", `{"resourceType":"Binary","contentType":"text/plain","data":"a*=="}`, "Binary.data", "invalid base64Binary"},
		{"base64 length", `{"resourceType":"Binary","contentType":"text/plain","data":"abc"}`, "Binary.data", "invalid base64Binary"},
		{"bad oid", `{"resourceType":"Observation","valueString":"x","extension":[{"url":"http://x","valueOid":"1.2.3"}]}`, "Observation.extension[0].valueOid", "invalid oid"},
		{"bad uuid", `{"resourceType":"Observation","extension":[{"url":"http://x","valueUuid":"urn:uuid:xyz"}]}`, "Observation.extension[0].valueUuid", "invalid uuid"},
		{"null without extension", `{"resourceType":"Patient","name":[{"given":["A",null]}]}`, "Patient.name[0].given", "null in a primitive array without a matching value"},
		{"null on both sides", `{"resourceType":"Patient","name":[{"given":["A",null],"_given":[{"id":"a"},null]}]}`, "Patient.name[0].given", "null in a primitive array without a matching value"},
		{"misaligned lengths", `{"resourceType":"Patient","name":[{"_given":[null,{"id":"a"}],"given":["A"]}]}`, "Patient.name[0]._given", "primitive array and its extensions differ in length"},
		{"misaligned lengths value first", `{"resourceType":"Patient","name":[{"given":["A"],"_given":[null,{"id":"a"}]}]}`, "Patient.name[0].given", "primitive array and its extensions differ in length"},
		{"bad contained", `{"resourceType":"Observation","contained":[{"resourceType":"Medication","id":"m","foo":1}]}`, "Observation.contained[0].(Medication).foo", "unknown element"},
		{"typed nested resource", `{"resourceType":"Bundle","type":"batch-response","entry":[{"response":{"status":"200","outcome":{"resourceType":"Patient"}}}]}`, "Bundle.entry[0].response.outcome", "resourceType not allowed here"},
		{"no _id on resources", `{"resourceType":"Patient","id":"a","_id":{"id":"x"}}`, "Patient._id", "unknown element"},
		{"no _id on elements", `{"resourceType":"Patient","name":[{"id":"a","_id":{"id":"x"}}]}`, "Patient.name[0]._id", "unknown element"},
		{"two choice variants", `{"resourceType":"Observation","valueString":"a","valueQuantity":{"value":1}}`, "Observation.valueQuantity", "more than one type given for a choice element"},
		{"choice variant and other ext", `{"resourceType":"Observation","valueString":"a","_valueBoolean":{"id":"x"}}`, "Observation._valueBoolean", "more than one type given for a choice element"},
		{"two choice variants in extension", `{"resourceType":"Patient","extension":[{"url":"http://x","valueCode":"a","valueString":"b"}]}`, "Patient.extension[0].valueString", "more than one type given for a choice element"},
		{"bad primitive ext", `{"resourceType":"Patient","_gender":{"foo":1}}`, "Patient._gender.foo", "unknown element"},
		{"primitive ext array shape", `{"resourceType":"Patient","name":[{"_given":{"id":"a"}}]}`, "Patient.name[0]._given", "element must be an array"},
		{"null in complex array", `{"resourceType":"Patient","name":[null]}`, "Patient.name[0]", "wrong JSON type for element: want object, got null"},
		{"resources nested too deeply", strings.Repeat(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":`, 6) + `{"resourceType":"Patient"}` + strings.Repeat(`}]}`, 6), "", "resources nested too deeply"},
		{"contained in contained", `{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p","contained":[{"resourceType":"Patient","id":"q"}]}]}`, "Observation.contained[0].(Patient).contained", "a contained resource must not contain resources"},
		{"second contained in contained", `{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"o"},{"resourceType":"Patient","id":"p","contained":[{"resourceType":"Patient","id":"q"}]}]}`, "Observation.contained[1].(Patient).contained", "a contained resource must not contain resources"},
		{"contained with versionId", `{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p","meta":{"versionId":"1"}}]}`, "Observation.contained[0].(Patient).meta.versionId", "a contained resource must not have meta.versionId or meta.lastUpdated"},
		{"required element missing", `{"resourceType":"Observation","status":"final"}`, "Observation.code", "required element missing"},
		{"required choice missing", `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"}}`, "MedicationRequest.medication[x]", "required element missing"},
		{"required in backbone", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET"}}]}`, "Bundle.entry[0].request.url", "required element missing"},
		{"extension without url", `{"resourceType":"Patient","extension":[{"valueString":"x"}]}`, "Patient.extension[0].url", "required element missing"},
		{"deep nesting", `{"resourceType":"Questionnaire"` + strings.Repeat(`,"item":[{"linkId":"a"`, 60) + strings.Repeat(`}]`, 60) + `}`, "", "JSON nested too deeply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.json))
			if err == nil {
				t.Fatal("Parse accepted invalid input")
			}
			if got := errs.CodeOf(err); got != errs.Invalid {
				t.Errorf("code = %v, want invalid", got)
			}
			if got := errs.MessageOf(err); got != tt.msg {
				t.Errorf("message = %q, want %q", got, tt.msg)
			}
			if got := errs.PathOf(err); tt.path != "" && got != tt.path {
				t.Errorf("path = %q, want %q", got, tt.path)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name, json, rtype, id string
	}{
		{"minimal", `{"resourceType":"Patient"}`, "Patient", ""},
		{"required primitive given by extension only", `{"resourceType":"Observation","_status":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]},"code":{"text":"x"}}`, "Observation", ""},
		{"resourceType not first", ` {"id":"p-1.x","resourceType":"Patient"} `, "Patient", "p-1.x"},
		{"primitive extension", `{"resourceType":"Patient","birthDate":"1970","_birthDate":{"extension":[{"url":"http://x","valueDateTime":"1970-03-04T05:06:07+01:00"}]}}`, "Patient", ""},
		{"primitive ext only", `{"resourceType":"Patient","_gender":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}}`, "Patient", ""},
		{"primitive array with nulls", `{"resourceType":"Patient","name":[{"given":["A",null],"_given":[null,{"id":"g2"}]}]}`, "Patient", ""},
		{"choice with its primitive ext", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"_valueString":{"id":"x"},"valueString":"a","effectiveDateTime":"2020","_effectiveDateTime":{"id":"y"}}`, "Observation", ""},
		{"choice types", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.5e2,"unit":"mg"},"effectivePeriod":{"start":"2020-01","end":"2021"}}`, "Observation", ""},
		{"escaped strings", `{"resourceType":"Patient","name":[{"family":"O\u2019Brien \ud83d\ude00 \"q\" \/"}]}`, "Patient", ""},
		{"contained and backbone", `{"resourceType":"MedicationRequest","id":"1","contained":[{"resourceType":"Medication","id":"m1","code":{"text":"x"}}],"status":"active","intent":"order","medicationReference":{"reference":"#m1"},"subject":{"reference":"Patient/1"},"dosageInstruction":[{"timing":{"repeat":{"frequency":1,"period":1,"periodUnit":"d"}}}]}`, "MedicationRequest", "1"},
		{"recursive content reference", `{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"1","type":"group","item":[{"linkId":"1.1","type":"string"}]}]}`, "Questionnaire", ""},
		{"contained meta source allowed, bundle entry may contain", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"meta":{"versionId":"1"},"contained":[{"resourceType":"Patient","id":"p","meta":{"source":"urn:x"}}]}}]}`, "Bundle", ""},
		{"bundle of resources", `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`, "Bundle", ""},
		{"leap second and offset", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"issued":"2016-12-31T23:59:60.123+14:00"}`, "Observation", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse([]byte(tt.json))
			if err != nil {
				t.Fatalf("Parse: %v (path %s)", err, errs.PathOf(err))
			}
			if r.ResourceType != tt.rtype || r.ID != tt.id {
				t.Errorf("got %s/%s, want %s/%s", r.ResourceType, r.ID, tt.rtype, tt.id)
			}
			if string(r.Bytes()) != tt.json {
				t.Error("Bytes() differ from the input")
			}
		})
	}
}

func TestParseMeta(t *testing.T) {
	r, err := Parse([]byte(`{"resourceType":"Patient","id":"x","meta":{"versionId":"3","lastUpdated":"2020-01-01T00:00:00Z","source":"urn:a","tag":[{"system":"s","code":"c"}],"security":[{"code":"R"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	m := r.Meta
	if m.VersionID != "3" || m.LastUpdated != "2020-01-01T00:00:00Z" || m.Source != "urn:a" || len(m.Tag) != 1 || m.Tag[0].Code != "c" || len(m.Security) != 1 {
		t.Errorf("meta = %+v", m)
	}
}

func TestSyntheaBundles(t *testing.T) {
	dir := sharedData(t, "synthea", "bundles")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Skip("no Synthea bundles")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(b)
		if err != nil {
			t.Errorf("%s: %v (path %s)", filepath.Base(f), err, errs.PathOf(err))
			continue
		}
		if r.ResourceType != "Bundle" {
			t.Errorf("%s: resourceType %s", filepath.Base(f), r.ResourceType)
		}
	}
}

func TestSyntheaBulk(t *testing.T) {
	dir := sharedData(t, "synthea", "bulk-10")
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if len(files) == 0 {
		t.Skip("no bulk NDJSON files")
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if _, err := Parse([]byte(line)); err != nil {
				t.Errorf("%s:%d: %v (path %s)", filepath.Base(f), i+1, err, errs.PathOf(err))
			}
			n++
		}
	}
	t.Logf("%d bulk resources parsed", n)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Patient","id":"1","name":[{"family":"A","given":["B",null],"_given":[null,{"id":"x"}]}]}`,
		`{"resourceType":"Observation","subject":{"reference":"Patient/1"},"Subject":{}}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient"}}]}`,
		`{"resourceType":"Observation","valueQuantity":{"value":-1.5e3},"effectiveDateTime":"2020-02-29T12:00:00+05:30"}`,
	} {
		f.Add([]byte(s))
	}
	if files, _ := filepath.Glob(filepath.Join("testdata", "examples", "*.json")); len(files) > 0 {
		for _, p := range files[:min(len(files), 5)] {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			if errs.CodeOf(err) != errs.Invalid {
				t.Fatalf("error code %v", errs.CodeOf(err))
			}
			return
		}
		if !IsResourceType(r.ResourceType) {
			t.Fatalf("accepted resourceType %q", r.ResourceType)
		}
		if !jsonValid(data) {
			t.Fatal("accepted input that encoding/json says is invalid")
		}
		if dupOrCaseVariant(data) {
			t.Fatal("accepted duplicate or case-variant member names")
		}
		if string(r.Bytes()) != string(data) {
			t.Fatal("Bytes() differ from the input")
		}
	})
}

func jsonValid(b []byte) bool { return json.Valid(b) }

// dupOrCaseVariant is an independent check (encoding/json tokens) for duplicate or
// case-variant member names in any object.
func dupOrCaseVariant(data []byte) bool {
	d := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		obj    bool
		keys   []string
		expKey bool
	}
	var stack []*frame
	for {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.obj {
					top.expKey = true
				}
				stack = append(stack, &frame{obj: v == '{', expKey: v == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.obj && top.expKey {
				for _, k := range top.keys {
					if strings.EqualFold(k, v) {
						return true
					}
				}
				top.keys = append(top.keys, v)
				top.expKey = false
				continue
			}
		}
		if top != nil && top.obj {
			top.expKey = true
		}
	}
}

// TestParseErrorsCarryNoValues: error text, message and path never echo a value.
func TestParseErrorsCarryNoValues(t *testing.T) {
	const canary = "ZZCANARY1970"
	for _, in := range []string{
		`{"resourceType":"Patient","birthDate":"` + canary + `"}`,
		`{"resourceType":"Patient","id":"` + canary + `/x"}`,
		`{"resourceType":"Patient","gender":" ` + canary + `"}`,
		`{"resourceType":"Patient","name":[{"family":"` + canary + `","family":"x"}]}`,
		`{"resourceType":"Patient","name":[{"family":"` + canary + `"}],"multipleBirthInteger":"` + canary + `"}`,
		`{"resourceType":"` + canary + `"}`,
		`{"resourceType":"Patient","` + canary + ` Smith":1}`,
		`{"resourceType":"Patient","active":true} ` + canary,
		`{"resourceType":"Patient","identifier":[{"system":"urn:x","value":"` + canary + `\q"}]}`,
	} {
		_, err := Parse([]byte(in))
		if err == nil {
			t.Errorf("accepted %s", in)
			continue
		}
		for _, s := range []string{err.Error(), errs.MessageOf(err), errs.PathOf(err)} {
			if strings.Contains(s, canary) {
				t.Errorf("error leaks a value: %q", s)
			}
		}
	}
}

func TestDupCheckerItself(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a":1,"b":{"c":[{"d":1,"D":2}]}}`:         true,
		`{"a":1,"b":{"a":1},"c":[{"a":1},{"a":2}]}`: false,
		`{"a":{"x":1},"a":2}`:                       true,
	} {
		if got := dupOrCaseVariant([]byte(in)); got != want {
			t.Errorf("%s: got %v", in, got)
		}
	}
}
