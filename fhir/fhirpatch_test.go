package fhir

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
)

// fpParams is a FHIRPath Patch of the operations ops (fpOp).
func fpParams(ops ...string) string {
	return `{"resourceType":"Parameters","parameter":[` + strings.Join(ops, ",") + `]}`
}

// fpOp is an operation parameter of the parts given (fpPart, fpValue).
func fpOp(parts ...string) string {
	return `{"name":"operation","part":[` + strings.Join(parts, ",") + `]}`
}

// fpPart is a part named name whose value[x] is key, with the JSON value v.
func fpPart(name, key, v string) string {
	return `{"name":"` + name + `","` + key + `":` + v + `}`
}

// fpStd is an operation of type typ at path, with the parts more.
func fpStd(typ, path string, more ...string) string {
	return fpOp(append([]string{fpPart("type", "valueCode", strconv.Quote(typ)), fpPart("path", "valueString", strconv.Quote(path))}, more...)...)
}

func fpValue(key, v string) string { return fpPart("value", key, v) }
func fpName(n string) string       { return fpPart("name", "valueString", strconv.Quote(n)) }
func fpInt(name string, i int) string {
	return fpPart(name, "valueInteger", strconv.Itoa(i))
}

const fpPatient = `{"resourceType":"Patient","id":"p1","active":true,` +
	`"identifier":[{"system":"urn:a","value":"1"},{"system":"urn:b","value":"2"}],` +
	`"name":[{"use":"official","family":"Doe","given":["Ann","Bea"]},{"use":"nickname","given":["Cy"]}],` +
	`"telecom":[{"system":"phone","value":"555"}],"gender":"female","birthDate":"1970-01-01","multipleBirthInteger":2}`

// TestFHIRPathPatch covers each operation type of FHIR R4 fhirpatch.html, the path subset
// (names, indexers, first(), last(), where()), choice elements, anonymous values given as
// parts, and the outcomes: applied, 422 (no match, several, an index beyond its list, an add
// of a present element) and 400 (what does not fit the resource's definition).
func TestFHIRPathPatch(t *testing.T) {
	withOnly := func(old, new string) string {
		if !strings.Contains(fpPatient, old) {
			t.Fatalf("test document lacks %s", old)
		}
		return strings.Replace(fpPatient, old, new, 1)
	}
	tests := []struct {
		name, doc, patch string
		outcome          patchOutcome
		want             string // the patched document; for an error, a part of its message
	}{
		// replace
		{"replace birthDate", fpPatient, fpParams(fpStd("replace", "Patient.birthDate", fpValue("valueDate", `"1980-02-03"`))), patchOK,
			withOnly(`"birthDate":"1970-01-01"`, `"birthDate":"1980-02-03"`)},
		{"replace through where and an indexer", fpPatient, fpParams(fpStd("replace", "Patient.name.where(use = 'official').given[1]", fpValue("valueString", `"Bee"`))), patchOK,
			withOnly(`["Ann","Bea"]`, `["Ann","Bee"]`)},
		{"replace through first()", fpPatient, fpParams(fpStd("replace", "Patient.name.first().family", fpValue("valueString", `"Roe"`))), patchOK,
			withOnly(`"family":"Doe"`, `"family":"Roe"`)},
		{"replace through last()", fpPatient, fpParams(fpStd("replace", "Patient.name.last().given.last()", fpValue("valueString", `"Di"`))), patchOK,
			withOnly(`["Cy"]`, `["Di"]`)},
		{"replace with where($this = ...)", fpPatient, fpParams(fpStd("replace", "Patient.name.given.where($this='Bea')", fpValue("valueString", `"Bee"`))), patchOK,
			withOnly(`["Ann","Bea"]`, `["Ann","Bee"]`)},
		{"replace a complex element", fpPatient, fpParams(fpStd("replace", "Patient.telecom[0]", fpValue("valueContactPoint", `{"system":"email","value":"a@b"}`))), patchOK,
			withOnly(`{"system":"phone","value":"555"}`, `{"system":"email","value":"a@b"}`)},
		{"replace with a value that specializes the type", fpPatient, fpParams(fpStd("replace", "Patient.name[1].given[0]", fpValue("valueCode", `"Cy2"`))), patchOK,
			withOnly(`["Cy"]`, `["Cy2"]`)},
		{"replace a choice element by its base name", fpPatient, fpParams(fpStd("replace", "Patient.multipleBirth.where($this = 2.0)", fpValue("valueInteger", `3`))), patchOK,
			withOnly(`"multipleBirthInteger":2`, `"multipleBirthInteger":3`)},
		{"replace changes a choice element's variant in place", fpPatient, fpParams(fpStd("replace", "Patient.multipleBirth", fpValue("valueBoolean", `true`))), patchOK,
			withOnly(`"multipleBirthInteger":2`, `"multipleBirthBoolean":true`)},
		{"replace with where on a boolean", fpPatient, fpParams(fpStd("replace", "Patient.where(active = true).gender", fpValue("valueCode", `"male"`))), patchOK,
			withOnly(`"gender":"female"`, `"gender":"male"`)},
		{"replace with where on a sub-element", fpPatient, fpParams(fpStd("replace", "Patient . telecom . where ( system = 'phone' ) . value", fpValue("valueString", `"556"`))), patchOK,
			withOnly(`"value":"555"`, `"value":"556"`)},
		{"replace a code with a string", fpPatient, fpParams(fpStd("replace", "Patient.gender", fpValue("valueString", `"male"`))), patchMalformed,
			"Patient.gender is a code, not a string"},
		{"replace with a choice variant the element lacks", fpPatient, fpParams(fpStd("replace", "Patient.multipleBirth", fpValue("valueString", `"x"`))), patchMalformed,
			"no variant of type string"},
		{"replace of no element", fpPatient, fpParams(fpStd("replace", "Patient.name.where(use = 'maiden').family", fpValue("valueString", `"X"`))), patchNotApplied,
			"no element matches the path"},
		{"replace of several elements", fpPatient, fpParams(fpStd("replace", "Patient.name.given", fpValue("valueString", `"X"`))), patchNotApplied,
			"the path matches 3 elements"},
		{"replace where the criterion has several values", fpPatient, fpParams(fpStd("replace", "Patient.name.where(given = 'Ann').family", fpValue("valueString", `"X"`))), patchNotApplied,
			"no element matches"},
		{"replace of the resource", fpPatient, fpParams(fpStd("replace", "Patient.first()", fpValue("valueString", `"X"`))), patchMalformed,
			"the resource itself cannot be replaced"},

		// add
		{"add a telecom", fpPatient, fpParams(fpStd("add", "Patient", fpName("telecom"), fpValue("valueContactPoint", `{"system":"email","value":"a@b"}`))), patchOK,
			withOnly(`"telecom":[{"system":"phone","value":"555"}]`, `"telecom":[{"system":"phone","value":"555"},{"system":"email","value":"a@b"}]`)},
		{"add a single element", fpPatient, fpParams(fpStd("add", "Patient", fpName("maritalStatus"), fpValue("valueCodeableConcept", `{"text":"M"}`))), patchOK,
			strings.TrimSuffix(fpPatient, "}") + `,"maritalStatus":{"text":"M"}}`},
		{"add a repeating element that is absent", fpPatient, fpParams(fpStd("add", "Patient", fpName("address"), fpValue("valueAddress", `{"city":"X"}`))), patchOK,
			strings.TrimSuffix(fpPatient, "}") + `,"address":[{"city":"X"}]}`},
		{"add to an item where() selects", fpPatient, fpParams(fpStd("add", "Patient.name.where(use='nickname')", fpName("family"), fpValue("valueString", `"Z"`))), patchOK,
			withOnly(`{"use":"nickname","given":["Cy"]}`, `{"use":"nickname","given":["Cy"],"family":"Z"}`)},
		{"add a choice element by its base name", fpPatient, fpParams(fpStd("add", "Patient", fpName("deceased"), fpValue("valueBoolean", `false`))), patchOK,
			strings.TrimSuffix(fpPatient, "}") + `,"deceasedBoolean":false}`},
		{"add a HumanName", fpPatient, fpParams(fpStd("add", "Patient", fpName("name"), fpValue("valueHumanName", `{"text":"A B"}`))), patchOK,
			withOnly(`{"use":"nickname","given":["Cy"]}]`, `{"use":"nickname","given":["Cy"]},{"text":"A B"}]`)},
		{"add a backbone element as parts", fpPatient, fpParams(fpStd("add", "Patient", fpName("contact"),
			`{"name":"value","part":[{"name":"name","valueHumanName":{"text":"a name"}},{"name":"telecom","valueContactPoint":{"value":"1"}},{"name":"telecom","valueContactPoint":{"value":"2"}}]}`)), patchOK,
			strings.TrimSuffix(fpPatient, "}") + `,"contact":[{"name":{"text":"a name"},"telecom":[{"value":"1"},{"value":"2"}]}]}`},
		{"add an extension as parts", fpPatient, fpParams(fpStd("add", "Patient", fpName("extension"),
			`{"name":"value","part":[{"name":"url","valueUri":"http://example.org/x"},{"name":"value","valueCoding":{"code":"c"}}]}`)), patchOK,
			strings.TrimSuffix(fpPatient, "}") + `,"extension":[{"url":"http://example.org/x","valueCoding":{"code":"c"}}]}`},
		{"add a present single element", fpPatient, fpParams(fpStd("add", "Patient", fpName("birthDate"), fpValue("valueDate", `"1980-01-01"`))), patchNotApplied,
			"element birthDate is present already"},
		{"add a choice element with another variant present", fpPatient, fpParams(fpStd("add", "Patient", fpName("multipleBirth"), fpValue("valueBoolean", `true`))), patchNotApplied,
			"present already"},
		{"add an unknown element", fpPatient, fpParams(fpStd("add", "Patient", fpName("colour"), fpValue("valueString", `"red"`))), patchMalformed,
			"Patient has no element of the name given"},
		{"add to a primitive", fpPatient, fpParams(fpStd("add", "Patient.birthDate", fpName("extension"), fpValue("valueString", `"x"`))), patchMalformed,
			"primitive"},
		{"add to several elements", fpPatient, fpParams(fpStd("add", "Patient.name", fpName("family"), fpValue("valueString", `"x"`))), patchNotApplied,
			"the path matches 2 elements"},
		{"add parts to a primitive element", fpPatient, fpParams(fpStd("add", "Patient", fpName("language"), `{"name":"value","part":[{"name":"x","valueString":"y"}]}`)), patchMalformed,
			"give it as a value, not as parts"},
		{"add parts naming an unknown element", fpPatient, fpParams(fpStd("add", "Patient", fpName("contact"), `{"name":"value","part":[{"name":"colour","valueString":"y"}]}`)), patchMalformed,
			"Patient.contact has no element of the name given"},
		{"add parts repeating a single element", fpPatient, fpParams(fpStd("add", "Patient", fpName("contact"),
			`{"name":"value","part":[{"name":"gender","valueCode":"male"},{"name":"gender","valueCode":"female"}]}`)), patchMalformed,
			"does not repeat but is given twice"},
		{"add a wrongly typed value", fpPatient, fpParams(fpStd("add", "Patient", fpName("telecom"), fpValue("valueString", `"555"`))), patchMalformed,
			"Patient.telecom is a ContactPoint, not a string"},

		// insert
		{"insert at the front", fpPatient, fpParams(fpStd("insert", "Patient.identifier", fpValue("valueIdentifier", `{"system":"urn:c","value":"3"}`), fpInt("index", 0))), patchOK,
			withOnly(`"identifier":[`, `"identifier":[{"system":"urn:c","value":"3"},`)},
		{"insert at the end", fpPatient, fpParams(fpStd("insert", "Patient.identifier", fpValue("valueIdentifier", `{"value":"3"}`), fpInt("index", 2))), patchOK,
			withOnly(`{"system":"urn:b","value":"2"}]`, `{"system":"urn:b","value":"2"},{"value":"3"}]`)},
		{"insert into a list inside an item", fpPatient, fpParams(fpStd("insert", "Patient.name[0].given", fpValue("valueString", `"Al"`), fpInt("index", 1))), patchOK,
			withOnly(`["Ann","Bea"]`, `["Ann","Al","Bea"]`)},
		{"insert into an absent list", fpPatient, fpParams(fpStd("insert", "Patient.address", fpValue("valueAddress", `{"city":"X"}`), fpInt("index", 0))), patchOK,
			strings.TrimSuffix(fpPatient, "}") + `,"address":[{"city":"X"}]}`},
		{"insert beyond the list", fpPatient, fpParams(fpStd("insert", "Patient.identifier", fpValue("valueIdentifier", `{"value":"3"}`), fpInt("index", 3))), patchNotApplied,
			"index 3 is beyond the 2 items of identifier"},
		{"insert into an element that does not repeat", fpPatient, fpParams(fpStd("insert", "Patient.gender", fpValue("valueCode", `"male"`), fpInt("index", 0))), patchMalformed,
			"Patient.gender does not repeat"},
		{"insert under several elements", fpPatient, fpParams(fpStd("insert", "Patient.name.given", fpValue("valueString", `"x"`), fpInt("index", 0))), patchNotApplied,
			"the path matches 2 elements"},

		// delete
		{"delete an item", fpPatient, fpParams(fpStd("delete", "Patient.name[1]")), patchOK,
			withOnly(`,{"use":"nickname","given":["Cy"]}`, ``)},
		{"delete the last item removes the list", fpPatient, fpParams(fpStd("delete", "Patient.telecom")), patchOK,
			withOnly(`"telecom":[{"system":"phone","value":"555"}],`, ``)},
		{"delete a single element", fpPatient, fpParams(fpStd("delete", "Patient.birthDate")), patchOK,
			withOnly(`,"birthDate":"1970-01-01"`, ``)},
		{"delete a primitive item", fpPatient, fpParams(fpStd("delete", "Patient.name.where(use = 'official').given.where($this = 'Ann')")), patchOK,
			withOnly(`["Ann","Bea"]`, `["Bea"]`)},
		{"delete a choice element", fpPatient, fpParams(fpStd("delete", "Patient.multipleBirth")), patchOK,
			withOnly(`,"multipleBirthInteger":2`, ``)},
		{"delete of nothing", fpPatient, fpParams(fpStd("delete", "Patient.address")), patchOK, fpPatient},
		{"delete of nothing where() selects", fpPatient, fpParams(fpStd("delete", "Patient.identifier.where(system = 'urn:z')")), patchOK, fpPatient},
		{"delete of several elements", fpPatient, fpParams(fpStd("delete", "Patient.identifier")), patchNotApplied,
			"the path matches 2 elements"},
		{"delete of the resource", fpPatient, fpParams(fpStd("delete", "Patient.last()")), patchMalformed,
			"the resource itself cannot be deleted"},

		// move
		{"move to the front", fpPatient, fpParams(fpStd("move", "Patient.identifier", fpInt("source", 1), fpInt("destination", 0))), patchOK,
			withOnly(`{"system":"urn:a","value":"1"},{"system":"urn:b","value":"2"}`, `{"system":"urn:b","value":"2"},{"system":"urn:a","value":"1"}`)},
		{"move to the end", fpPatient, fpParams(fpStd("move", "Patient.name[0].given", fpInt("source", 0), fpInt("destination", 1))), patchOK,
			withOnly(`["Ann","Bea"]`, `["Bea","Ann"]`)},
		{"move onto itself", fpPatient, fpParams(fpStd("move", "Patient.identifier", fpInt("source", 1), fpInt("destination", 1))), patchOK, fpPatient},
		{"move beyond the list", fpPatient, fpParams(fpStd("move", "Patient.identifier", fpInt("source", 0), fpInt("destination", 2))), patchNotApplied,
			"beyond the 2 items"},
		{"move in an element that does not repeat", fpPatient, fpParams(fpStd("move", "Patient.gender", fpInt("source", 0), fpInt("destination", 0))), patchMalformed,
			"does not repeat"},

		// the path against the resource's definition
		{"an unknown element", fpPatient, fpParams(fpStd("delete", "Patient.nmae")), patchMalformed, "Patient has no element of the name given"},
		{"a choice variant in the path", fpPatient, fpParams(fpStd("delete", "Patient.multipleBirthInteger")), patchMalformed,
			"the choice element is named multipleBirth"},
		{"another resource type", fpPatient, fpParams(fpStd("delete", "Observation.status")), patchMalformed,
			"the path starts with Observation, but the resource is a Patient"},
		{"into a primitive", fpPatient, fpParams(fpStd("delete", "Patient.birthDate.extension")), patchMalformed, "primitive"},
		{"an unknown element in where()", fpPatient, fpParams(fpStd("delete", "Patient.name.where(colour = 'x')")), patchMalformed,
			"HumanName has no element of the name given"},

		// operations in order, each on the result of the one before
		{"operations in order", fpPatient, fpParams(
			fpStd("delete", "Patient.identifier[0]"),
			fpStd("replace", "Patient.identifier.value", fpValue("valueString", `"9"`)),
			fpStd("add", "Patient.identifier.first()", fpName("use"), fpValue("valueCode", `"usual"`))), patchOK,
			withOnly(`[{"system":"urn:a","value":"1"},{"system":"urn:b","value":"2"}]`, `[{"system":"urn:b","value":"9","use":"usual"}]`)},

		// the primitive extensions of an element ("_name") go with it
		{"delete a primitive item and its extension", withOnly(`"given":["Ann","Bea"]`, `"given":["Ann","Bea"],"_given":[null,{"id":"x"}]`),
			fpParams(fpStd("delete", "Patient.name[0].given[1]")), patchOK, withOnly(`["Ann","Bea"]`, `["Ann"]`)},
		{"delete a primitive item keeps the others' extensions", withOnly(`"given":["Ann","Bea"]`, `"given":["Ann","Bea"],"_given":[null,{"id":"x"}]`),
			fpParams(fpStd("delete", "Patient.name[0].given[0]")), patchOK, withOnly(`"given":["Ann","Bea"]`, `"given":["Bea"],"_given":[{"id":"x"}]`)},
		{"replace a primitive drops its extension", withOnly(`"birthDate":"1970-01-01"`, `"birthDate":"1970-01-01","_birthDate":{"id":"x"}`),
			fpParams(fpStd("replace", "Patient.birthDate", fpValue("valueDate", `"1971"`))), patchOK, withOnly(`"1970-01-01"`, `"1971"`)},
		{"replace a primitive item drops its extension", withOnly(`"given":["Ann","Bea"]`, `"given":["Ann","Bea"],"_given":[null,{"id":"x"}]`),
			fpParams(fpStd("replace", "Patient.name[0].given[1]", fpValue("valueString", `"Bee"`))), patchOK, withOnly(`["Ann","Bea"]`, `["Ann","Bee"]`)},
		{"insert into a primitive list keeps extensions aligned", withOnly(`"given":["Ann","Bea"]`, `"given":["Ann","Bea"],"_given":[null,{"id":"x"}]`),
			fpParams(fpStd("insert", "Patient.name[0].given", fpValue("valueString", `"Al"`), fpInt("index", 0))), patchOK,
			withOnly(`"given":["Ann","Bea"]`, `"given":["Al","Ann","Bea"],"_given":[null,null,{"id":"x"}]`)},
		{"move in a primitive list moves extensions", withOnly(`"given":["Ann","Bea"]`, `"given":["Ann","Bea"],"_given":[null,{"id":"x"}]`),
			fpParams(fpStd("move", "Patient.name[0].given", fpInt("source", 1), fpInt("destination", 0))), patchOK,
			withOnly(`"given":["Ann","Bea"]`, `"given":["Bea","Ann"],"_given":[{"id":"x"},null]`)},

		// other resources: choice types, contained resources
		{"replace an Observation's value with another type", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","note":[{"text":"n"}]}`,
			fpParams(fpStd("replace", "Observation.value", fpValue("valueQuantity", `{"value":1.5,"unit":"mg"}`))), patchOK,
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.5,"unit":"mg"},"note":[{"text":"n"}]}`},
		{"an Age where value[x] takes a Quantity", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`,
			fpParams(fpStd("add", "Observation", fpName("value"), fpValue("valueAge", `{"value":3}`))), patchOK,
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":3}}`},
		{"where() on a number", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"component":[{"code":{"text":"a"},"valueInteger":10},{"code":{"text":"b"},"valueInteger":20}]}`,
			fpParams(fpStd("replace", "Observation.component.where(value = 20).code.text", fpValue("valueString", `"c"`))), patchOK,
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"component":[{"code":{"text":"a"},"valueInteger":10},{"code":{"text":"c"},"valueInteger":20}]}`},
		{"into a contained resource", `{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"c1"}],"status":"final","code":{"text":"x"}}`,
			fpParams(fpStd("add", "Observation.contained.where(id = 'c1')", fpName("gender"), fpValue("valueCode", `"other"`))), patchOK,
			`{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"c1","gender":"other"}],"status":"final","code":{"text":"x"}}`},
		{"add a contained resource", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`,
			fpParams(fpStd("add", "Observation", fpName("contained"), `{"name":"value","resource":{"resourceType":"Patient","id":"c2"}}`)), patchOK,
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"contained":[{"resourceType":"Patient","id":"c2"}]}`},
		{"a resource where a datatype goes", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`,
			fpParams(fpStd("add", "Observation", fpName("subject"), `{"name":"value","resource":{"resourceType":"Patient","id":"c2"}}`)), patchMalformed,
			"Observation.subject is a Reference, not a Patient resource"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseFHIRPathPatch([]byte(tt.patch))
			if err != nil {
				t.Fatalf("ParseFHIRPathPatch: %v", err)
			}
			got, err := applyChecked(t, tt.doc, p, tt.outcome, tt.want)
			if tt.outcome == patchOK {
				if _, err := Parse(got); err != nil {
					t.Errorf("the result does not parse: %v", err)
				}
				return
			}
			if msg := errs.MessageOf(err); !strings.HasPrefix(msg, "FHIRPath Patch operation ") || !strings.Contains(msg, tt.want) {
				t.Errorf("message %q, want it to name the operation and %q", msg, tt.want)
			}
		})
	}
}

// TestParseFHIRPathPatch: the Parameters are read strictly: anything the specification
// does not define for an operation (or does not define at all) is a 400 naming the
// operation and the part, as is a path outside the supported subset, naming what is not
// supported.
func TestParseFHIRPathPatch(t *testing.T) {
	replace := func(more ...string) string {
		return fpParams(fpOp(append([]string{fpPart("type", "valueCode", `"replace"`)}, more...)...))
	}
	path := fpPart("path", "valueString", `"Patient.birthDate"`)
	value := fpValue("valueDate", `"1970"`)
	tests := []struct{ name, body, want string }{
		{"not JSON", `{"resourceType":`, "FHIRPath Patch: "},
		{"a JSON Patch", `[{"op":"remove","path":"/a"}]`, "FHIRPath Patch: "},
		{"not a Parameters", `{"resourceType":"Patient"}`, "must be a Parameters resource"},
		{"duplicate keys", `{"resourceType":"Parameters","parameter":[],"parameter":[]}`, "FHIRPath Patch: "},
		{"an unknown element", `{"resourceType":"Parameters","colour":"red"}`, "FHIRPath Patch: "},
		{"implicitRules", `{"resourceType":"Parameters","implicitRules":"http://x"}`, "implicitRules is not supported"},
		{"a parameter that is no operation", fpParams(`{"name":"op","part":[{"name":"type","valueCode":"delete"}]}`), "parameter 1 is not named operation"},
		{"an operation with a value", fpParams(`{"name":"operation","valueString":"x"}`), "operation 1 carries a value of its own"},
		{"an operation with a resource", fpParams(`{"name":"operation","resource":{"resourceType":"Patient"}}`), "operation 1 carries a value of its own"},
		{"an operation without parts", fpParams(`{"name":"operation"}`), "operation 1 has no parts"},
		{"a modifierExtension", fpParams(`{"name":"operation","modifierExtension":[{"url":"http://x","valueString":"y"}],"part":[{"name":"type","valueCode":"delete"}]}`), "modifierExtension"},
		{"an unknown part", replace(path, value, fpPart("colour", "valueString", `"red"`)), `operation 1: unknown part (want type,`},
		{"an unknown part of a name with spaces", replace(path, value, fpPart("a b", "valueString", `"red"`)), `operation 1: unknown part (want type,`},
		{"a duplicate part", replace(path, path, value), "operation 1: part path given twice"},
		{"a part without a name", fpParams(fpOp(`{"valueString":"x"}`)), "FHIRPath Patch: "},
		{"no type", fpParams(fpOp(path, value)), "operation 1 has no part type"},
		{"an unknown type", fpParams(fpOp(fpPart("type", "valueCode", `"copy"`), path)), "operation 1: unknown type"},
		{"type as a string", fpParams(fpOp(fpPart("type", "valueString", `"replace"`), path, value)), "operation 1: part type must be a valueCode"},
		{"path as a code", replace(fpPart("path", "valueCode", `"Patient.birthDate"`), value), "part path must be a valueString"},
		{"path given as parts", replace(`{"name":"path","part":[{"name":"x","valueString":"y"}]}`, value), "part path must be a valueString"},
		{"a path with its own parts besides", replace(`{"name":"path","valueString":"Patient.birthDate","part":[{"name":"x","valueString":"y"}]}`, value), "part path must be a valueString"},
		{"an index as a string", fpParams(fpStd("insert", "Patient.name", fpValue("valueHumanName", `{"text":"x"}`), fpPart("index", "valueString", `"0"`))), "part index must be a valueInteger"},
		{"a negative index", fpParams(fpStd("insert", "Patient.name", fpValue("valueHumanName", `{"text":"x"}`), fpInt("index", -1))), "part index must not be negative"},
		{"a path part without a value", replace(`{"name":"path"}`, value), "part path has no value"},
		{"extensions on a part's value", replace(`{"name":"path","valueString":"Patient.birthDate","_valueString":{"id":"x"}}`, value), "extensions on its value are not supported"},
		{"a replace without value", replace(path), "operation 1 (replace) has no part value"},
		{"an insert without index", fpParams(fpStd("insert", "Patient.name", fpValue("valueHumanName", `{"text":"x"}`))), "operation 1 (insert) has no part index"},
		{"an add without name", fpParams(fpStd("add", "Patient", value)), "operation 1 (add) has no part name"},
		{"a move without destination", fpParams(fpStd("move", "Patient.name", fpInt("source", 0))), "operation 1 (move) has no part destination"},
		{"a name on a replace", replace(path, value, fpName("birthDate")), "operation 1 (replace): part name is not allowed for replace"},
		{"a value on a delete", fpParams(fpStd("delete", "Patient.birthDate", value)), "part value is not allowed for delete"},
		{"an index on an add", fpParams(fpStd("add", "Patient", fpName("birthDate"), value, fpInt("index", 0))), "part index is not allowed for add"},
		{"a name that is no element name", fpParams(fpStd("add", "Patient", fpName("birth date"), value)), "part name must be an element name"},
		{"a value without a value", replace(path, `{"name":"value"}`), "part value has no value"},
		{"a value with a value[x] and parts", replace(path, `{"name":"value","valueString":"x","part":[{"name":"text","valueString":"y"}]}`), "part value has more than one"},
		{"a value with extensions", replace(path, `{"name":"value","valueDate":"1970","_valueDate":{"id":"x"}}`), "part value: extensions on a primitive value are not supported"},
		{"a value part without a name", replace(path, `{"name":"value","part":[{"valueString":"y"}]}`), "FHIRPath Patch: "},
		{"a value part with a bad name", replace(path, `{"name":"value","part":[{"name":"a.b","valueString":"y"}]}`), "part value part 1: its name must be an element name"},
		{"a value part without a value", replace(path, `{"name":"value","part":[{"name":"text"}]}`), "part value part text has no value"},
		{"the second operation", fpParams(fpStd("delete", "Patient.birthDate"), fpStd("delete", "Patient.birthDate", value)), "operation 2 (delete): part value is not allowed"},

		// paths
		{"an empty path", replace(`{"name":"path","valueString":" "}`, value), "path: the path must start with the resource type"},
		{"a path without its resource type", fpParams(fpStd("delete", "name.given")), `path: a path must start with the resource type`},
		{"a function", fpParams(fpStd("delete", "Patient.name.exists()")), "unsupported FHIRPath function exists()"},
		{"ofType()", fpParams(fpStd("delete", "Patient.multipleBirth.ofType(integer)")), "unsupported FHIRPath function ofType()"},
		{"a union", fpParams(fpStd("delete", "Patient.name | Patient.telecom")), `unsupported FHIRPath operator "|"`},
		{"and in where()", fpParams(fpStd("delete", "Patient.name.where(use = 'a' and family = 'b')")), `unsupported FHIRPath operator "and"`},
		{"!= in where()", fpParams(fpStd("delete", "Patient.name.where(use != 'a')")), `unsupported FHIRPath operator "!="`},
		{"a function in where()", fpParams(fpStd("delete", "Patient.name.where(given.exists() = true)")), "unsupported FHIRPath function exists() inside where()"},
		{"where() without a comparison", fpParams(fpStd("delete", "Patient.name.where(use)")), "where() takes one comparison"},
		{"where() comparing two elements", fpParams(fpStd("delete", "Patient.name.where(use = family)")), "where() must compare an element with a quoted string, a boolean or a number literal"},
		{"a date literal", fpParams(fpStd("delete", "Patient.where(birthDate = @1970-01-01)")), "date and time literals"},
		{"an environment variable", fpParams(fpStd("delete", "%resource.name")), "environment variables"},
		{"$this outside where()", fpParams(fpStd("delete", "Patient.name.$this")), "$this is supported inside where() only"},
		{"a delimited identifier", fpParams(fpStd("delete", "Patient.`name`")), "delimited identifiers"},
		{"a negative indexer", fpParams(fpStd("delete", "Patient.name[-1]")), "an indexer takes a non-negative integer"},
		{"an expression indexer", fpParams(fpStd("delete", "Patient.name[0+1]")), "an indexer takes a non-negative integer"},
		{"arguments to first()", fpParams(fpStd("delete", "Patient.name.first(1)")), "first() takes no arguments"},
		{"an unterminated string", fpParams(fpStd("delete", "Patient.name.where(use = 'a)")), "unterminated string literal"},
		{"an unknown escape", fpParams(fpStd("delete", `Patient.name.where(use = 'a\q')`)), "unknown escape"},
		{"a delete of the resource", fpParams(fpStd("delete", "Patient")), "the resource itself cannot be the path"},
		{"an insert whose path ends with where()", fpParams(fpStd("insert", "Patient.name.where(use = 'a')", fpValue("valueHumanName", `{"text":"x"}`), fpInt("index", 0))),
			"the path must end with the name of the repeating element"},
		{"a move whose path ends with an indexer", fpParams(fpStd("move", "Patient.name[0]", fpInt("source", 0), fpInt("destination", 0))),
			"the path must end with the name of the repeating element"},
		{"a path too long", fpParams(fpStd("delete", "Patient"+strings.Repeat(".name", maxPathLen/5))), "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFHIRPathPatch([]byte(tt.body))
			if errs.CodeOf(err) != errs.Invalid || errors.Is(err, ErrPatchNotApplied) || !strings.Contains(errs.MessageOf(err), tt.want) {
				t.Fatalf("ParseFHIRPathPatch = %v (message %q); want Invalid naming %q", err, errs.MessageOf(err), tt.want)
			}
			if !strings.HasPrefix(errs.MessageOf(err), "FHIRPath Patch: ") {
				t.Errorf("message %q does not say it is about a FHIRPath Patch", errs.MessageOf(err))
			}
		})
	}

	// An empty Parameters is a patch of no operations, as [] is a JSON Patch of none.
	p, err := ParseFHIRPathPatch([]byte(`{"resourceType":"Parameters"}`))
	if err != nil || p.Len() != 0 {
		t.Fatalf("empty Parameters: %v, %d operations", err, p.Len())
	}
	if got, err := ApplyPatch([]byte(fpPatient), p, 1<<20); err != nil || string(got) != fpPatient {
		t.Errorf("empty Parameters applied: %s, %v", got, err)
	}
}

// TestFHIRPathPatchMessages: messages name the operation and its path with the literals
// of where() left out, never a value of the resource or of the patch.
func TestFHIRPathPatchMessages(t *testing.T) {
	for _, tt := range []struct{ patch, want, notWant string }{
		{fpParams(fpStd("delete", "Patient.birthDate"), fpStd("replace", "Patient.name.where(family = 'Secret').given", fpValue("valueString", `"Guess"`))),
			`FHIRPath Patch operation 2 (replace "Patient.name.where(family = '…').given"): no element matches the path`, "Secret"},
		{fpParams(fpStd("replace", "Patient.where(multipleBirth = 2).gender", fpValue("valueString", `"Guess"`))),
			`FHIRPath Patch operation 1 (replace "Patient.where(multipleBirth = …).gender"): Patient.gender is a code, not a string`, "Guess"},
		{fpParams(fpStd("add", "Patient", fpName("birthDate"), fpValue("valueDate", `"1999"`))),
			`FHIRPath Patch operation 1 (add "Patient"): element birthDate is present already`, "1970"},
	} {
		p, err := ParseFHIRPathPatch([]byte(tt.patch))
		if err != nil {
			t.Fatal(err)
		}
		_, err = ApplyPatch([]byte(fpPatient), p, 1<<20)
		msg := errs.MessageOf(err)
		if !strings.HasPrefix(msg, tt.want) || strings.Contains(msg, tt.notWant) {
			t.Errorf("message %q, want it to start %q and not contain %q", msg, tt.want, tt.notWant)
		}
	}
	_, err := ParseFHIRPathPatch([]byte(fpParams(fpStd("delete", "Patient.name.where(family = 'Secret' or family = 'Other')"))))
	if msg := errs.MessageOf(err); !strings.Contains(msg, `"or"`) || strings.Contains(msg, "Secret") {
		t.Errorf("message %q", msg)
	}
}

// TestFHIRPathPatchBounds: a FHIRPath Patch is held to the bounds of a JSON Patch: the
// operations, the JSON values of the Parameters, the size of the result and the work of
// finding elements (where() over a large list, many times).
func TestFHIRPathPatchBounds(t *testing.T) {
	ops := make([]string, MaxPatchOps+1)
	for i := range ops {
		ops[i] = fpStd("delete", "Patient.address")
	}
	if _, err := ParseFHIRPathPatch([]byte(fpParams(ops...))); errs.CodeOf(err) != errs.Invalid || !strings.Contains(errs.MessageOf(err), "operations") {
		t.Errorf("%d operations: %v, want Invalid", len(ops), err)
	}

	items := strings.Repeat(`{"value":"0"},`, MaxPatchValues/2) + `{"value":"0"}`
	body := `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.address"}],"extension":[` +
		strings.ReplaceAll(items, `{"value":"0"}`, `{"url":"http://x","valueString":"0"}`) + `]}]}`
	if _, err := ParseFHIRPathPatch([]byte(body)); errs.CodeOf(err) != errs.TooLarge {
		t.Errorf("more than MaxPatchValues values: %v, want TooLarge", err)
	}

	big := `{"resourceType":"Patient","name":[{"text":"` + strings.Repeat("x", 10_000) + `"}]}`
	adds := make([]string, 200)
	for i := range adds {
		adds[i] = fpStd("add", "Patient", fpName("name"), fpValue("valueHumanName", `{"text":"`+strings.Repeat("y", 10_000)+`"}`))
	}
	p, err := ParseFHIRPathPatch([]byte(fpParams(adds...)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyPatch([]byte(big), p, 1<<20); errs.CodeOf(err) != errs.TooLarge {
		t.Errorf("result over the size bound: %v, want TooLarge", err)
	}

	ids := strings.TrimSuffix(strings.Repeat(`{"value":"v"},`, 20_000), ",")
	scans := make([]string, 3000)
	for i := range scans {
		scans[i] = fpStd("delete", "Patient.identifier.where(value = 'none')")
	}
	if p, err = ParseFHIRPathPatch([]byte(fpParams(scans...))); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyPatch([]byte(`{"resourceType":"Patient","identifier":[`+ids+`]}`), p, 1<<20); errs.CodeOf(err) != errs.TooLarge || errors.Is(err, ErrPatchNotApplied) {
		t.Errorf("where() over a large list, 3000 times: %v, want TooLarge", err)
	}
	// A few scans of it apply.
	if p, err = ParseFHIRPathPatch([]byte(fpParams(scans[:3]...))); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyPatch([]byte(`{"resourceType":"Patient","identifier":[`+ids+`]}`), p, 1<<20); err != nil {
		t.Errorf("three scans: %v", err)
	}
}

// TestResourceApplyFHIRPathPatch: a FHIRPath Patch's result is validated as a JSON
// Patch's is (Resource.ApplyPatch), and the same Patch applies again unchanged.
func TestResourceApplyFHIRPathPatch(t *testing.T) {
	r := MustParse([]byte(`{"resourceType":"Observation","id":"o1","status":"preliminary","code":{"text":"x"},"valueString":"a"}`))
	p, err := ParseFHIRPathPatch([]byte(fpParams(
		fpStd("replace", "Observation.status", fpValue("valueCode", `"final"`)),
		fpStd("add", "Observation", fpName("note"), fpValue("valueAnnotation", `{"text":"rechecked"}`)))))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := r.ApplyPatch(p, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"valueString":"a","note":[{"text":"rechecked"}]}`; string(got.Bytes()) != want {
			t.Errorf("got  %s\nwant %s", got.Bytes(), want)
		}
	}
	for _, tt := range []struct{ name, patch, path string }{
		{"required element deleted", fpParams(fpStd("delete", "Observation.status")), "Observation.status"},
		{"id changed", fpParams(fpStd("replace", "Observation.id", fpValue("valueId", `"o2"`))), "Observation.id"},
		{"id deleted", fpParams(fpStd("delete", "Observation.id")), "Observation.id"},
		{"a code that is not one", fpParams(fpStd("replace", "Observation.status", fpValue("valueCode", `"final"`)), fpStd("add", "Observation", fpName("language"), fpValue("valueCode", `"en"`)),
			fpStd("replace", "Observation.language", fpValue("valueCode", `"en"`)), fpStd("delete", "Observation.code")), "Observation.code"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseFHIRPathPatch([]byte(tt.patch))
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.ApplyPatch(p, 1<<20)
			if errs.CodeOf(err) != errs.Invalid || errors.Is(err, ErrPatchNotApplied) || errs.PathOf(err) != tt.path {
				t.Fatalf("err = %v (path %q), want Invalid at %s", err, errs.PathOf(err), tt.path)
			}
		})
	}
}

// FuzzFHIRPathPatch: any path, type and value in a FHIRPath Patch applied to a Patient
// gives a result within the bound, or an Invalid or TooLarge error; it never panics.
func FuzzFHIRPathPatch(f *testing.F) {
	f.Add("replace", "Patient.name.where(use = 'official').given[1]", "name", `{"name":"value","valueString":"x"}`)
	f.Add("add", "Patient", "contact", `{"name":"value","part":[{"name":"name","valueHumanName":{"text":"a"}}]}`)
	f.Add("insert", "Patient.name[0].given", "", `{"name":"value","valueString":"x"}`)
	f.Add("move", "Patient.identifier", "", `{"name":"value","valueString":"x"}`)
	f.Add("delete", "Patient.multipleBirth.where($this = 2)", "", `{"name":"value","valueString":"x"}`)
	f.Fuzz(func(t *testing.T, typ, path, name, value string) {
		parts := []string{fpPart("type", "valueCode", strconv.Quote(typ)), fpPart("path", "valueString", strconv.Quote(path))}
		switch typ {
		case "add":
			parts = append(parts, fpName(name), value)
		case "insert":
			parts = append(parts, value, fpInt("index", len(name)))
		case "replace":
			parts = append(parts, value)
		case "move":
			parts = append(parts, fpInt("source", len(name)%3), fpInt("destination", len(value)%3))
		}
		p, err := ParseFHIRPathPatch([]byte(fpParams(fpOp(parts...))))
		if err != nil {
			if c := errs.CodeOf(err); c != errs.Invalid && c != errs.TooLarge {
				t.Fatalf("ParseFHIRPathPatch: code %v", c)
			}
			return
		}
		out, err := ApplyPatch([]byte(fpPatient), p, 1<<16)
		if err != nil {
			if c := errs.CodeOf(err); c != errs.Invalid && c != errs.TooLarge {
				t.Fatalf("ApplyPatch: %v", err)
			}
			return
		}
		if len(out) > 1<<16 {
			t.Fatalf("result of %d bytes over the bound", len(out))
		}
	})
}

// TestFHIRPathPatchWhereWork: where() counts each name of its criterion for each item it
// is tried on, so a long criterion over a list, many times, meets the work bound; and a
// path or criterion of more than maxPathSteps names is refused before it is applied.
func TestFHIRPathPatchWhereWork(t *testing.T) {
	crit := "assigner" + strings.Repeat(".identifier.assigner", (maxPathSteps-1)/2)
	ids := strings.TrimSuffix(strings.Repeat(`{"system":"s"},`, 300), ",")
	doc := []byte(`{"resourceType":"Patient","identifier":[` + ids + `]}`)
	ops := make([]string, 20)
	for i := range ops {
		ops[i] = fpStd("delete", "Patient.identifier.where("+crit+" = 'x')")
	}
	p, err := ParseFHIRPathPatch([]byte(fpParams(ops...)))
	if err != nil {
		t.Fatal(err)
	}
	// 20 ops × 300 items × 31 names is more than the work 8 KB allows.
	if _, err := ApplyPatch(doc, p, 8<<10); errs.CodeOf(err) != errs.TooLarge {
		t.Errorf("a long where() criterion over 300 items, 20 times: %v, want TooLarge", err)
	}
	// One of them applies within the same bound.
	if p, err = ParseFHIRPathPatch([]byte(fpParams(ops[0]))); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyPatch(doc, p, 8<<10); err != nil {
		t.Errorf("one long where() criterion: %v", err)
	}

	long := "assigner" + strings.Repeat(".identifier.assigner", maxPathSteps/2)
	for _, path := range []string{
		"Patient.identifier.where(" + long + " = 'x')",
		"Patient.identifier" + strings.Repeat(".assigner.identifier", maxPathSteps/2),
	} {
		_, err := ParseFHIRPathPatch([]byte(fpParams(fpStd("delete", path))))
		if msg := errs.MessageOf(err); errs.CodeOf(err) != errs.Invalid || !strings.Contains(msg, "at most 32") || strings.Contains(msg, "assigner") {
			t.Errorf("a path of more than %d names: %v, want Invalid naming the bound only", maxPathSteps, err)
		}
	}
}

// TestFHIRPathPatchMessagesNameNoClientText: where a client wrote something that is not an
// R4 element name, a FHIRPath function or an operator (it may be a value: a patient's name
// sent as a path or an unquoted literal), messages say what was expected without it.
func TestFHIRPathPatchMessagesNameNoClientText(t *testing.T) {
	const secret = "JohnSmith"
	for _, tt := range []struct{ name, patch string }{
		{"root", fpParams(fpStd("delete", secret+".name"))},
		{"unquoted literal", fpParams(fpStd("delete", "Patient.name.where(family = "+secret+")"))},
		{"function", fpParams(fpStd("delete", "Patient.name."+secret+"()"))},
		{"function in where()", fpParams(fpStd("delete", "Patient.name.where("+secret+"() = 'x')"))},
		{"unknown part", fpParams(fpStd("delete", "Patient.name", fpPart(secret, "valueString", `"x"`)))},
		{"anonymous part", fpParams(fpStd("add", "Patient", fpName("contact"),
			`{"name":"value","part":[{"name":"`+secret+`","modifierExtension":[{"url":"http://x","valueString":"y"}],"valueString":"x"}]}`))},
		{"anonymous part value", fpParams(fpStd("add", "Patient", fpName("contact"), `{"name":"value","part":[{"name":"`+secret+`"}]}`))},
		{"element", fpParams(fpStd("delete", "Patient."+secret))},
		{"element in where()", fpParams(fpStd("delete", "Patient.name.where("+secret+" = 'x')"))},
		{"added element", fpParams(fpStd("add", "Patient", fpName(secret), fpValue("valueString", `"x"`)))},
		{"element in parts", fpParams(fpStd("add", "Patient", fpName("contact"), `{"name":"value","part":[{"name":"`+secret+`","valueString":"x"}]}`))},
	} {
		p, err := ParseFHIRPathPatch([]byte(tt.patch))
		if err == nil {
			_, err = ApplyPatch([]byte(fpPatient), p, 1<<20)
		}
		if err == nil {
			t.Errorf("%s: applied, want an error", tt.name)
			continue
		}
		if msg := errs.MessageOf(err); strings.Contains(msg, secret) || strings.Contains(err.Error(), secret) {
			t.Errorf("%s: message %q names the client's text", tt.name, msg)
		}
	}
}

// TestFHIRPathPatchMixedTypes: where the definition leaves an element's type open (an
// extension's value[x], a contained resource), items of other types (a valueString, a
// contained Patient) that lack the element named simply do not match, as in FHIRPath; a
// name no R4 type has is still 400.
func TestFHIRPathPatchMixedTypes(t *testing.T) {
	const race = `{"resourceType":"Patient","id":"p1","extension":[{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":[` +
		`{"url":"ombCategory","valueCoding":{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3","display":"White"}},` +
		`{"url":"text","valueString":"White"}]}]}`
	const path = "Patient.extension.where(url = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-race').extension.where(value.code = '2106-3').value"
	const obs = `{"resourceType":"Observation","id":"o1","contained":[{"resourceType":"Patient","id":"c1","active":true},` +
		`{"resourceType":"Observation","id":"c2","status":"final","code":{"text":"x"}}],"status":"final","code":{"text":"y"}}`
	for _, tt := range []struct {
		name, doc, patch string
		outcome          patchOutcome
		want             string
	}{
		{"replace the race Coding", race, fpParams(fpStd("replace", path, fpValue("valueCoding", `{"system":"urn:oid:2.16.840.1.113883.6.238","code":"2106-3","display":"White race"}`))), patchOK,
			strings.Replace(race, `"display":"White"`, `"display":"White race"`, 1)},
		{"replace the race Coding's display", race, fpParams(fpStd("replace", path+".display", fpValue("valueString", `"White race"`))), patchOK,
			strings.Replace(race, `"display":"White"`, `"display":"White race"`, 1)},
		{"a code no sub-extension has", race, fpParams(fpStd("replace", strings.Replace(path, "2106-3", "2054-5", 1), fpValue("valueString", `"x"`))), patchNotApplied,
			"no element matches the path"},
		{"where() over contained resources of two types", obs, fpParams(fpStd("replace", "Observation.contained.where(status = 'final').status", fpValue("valueCode", `"amended"`))), patchOK,
			strings.Replace(obs, `"status":"final","code":{"text":"x"}`, `"status":"amended","code":{"text":"x"}`, 1)},
		{"a name of no R4 type in where() over contained", obs, fpParams(fpStd("delete", "Observation.contained.where(colour = 'x')")), patchMalformed,
			"has no element of the name given"},
		{"a name of no R4 type on a value[x]", race, fpParams(fpStd("delete", "Patient.extension.extension.value.colour")), patchMalformed,
			"has no element of the name given"},
		{"a name the declared type lacks is still 400", race, fpParams(fpStd("delete", "Patient.extension.status")), patchMalformed,
			"Extension has no element status"},
	} {
		p, err := ParseFHIRPathPatch([]byte(tt.patch))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		out, err := ApplyPatch([]byte(tt.doc), p, 1<<20)
		switch tt.outcome {
		case patchOK:
			if err != nil || string(out) != tt.want {
				t.Errorf("%s: %s, %v; want %s", tt.name, out, err, tt.want)
			}
		case patchNotApplied:
			if !errors.Is(err, ErrPatchNotApplied) || !strings.Contains(errs.MessageOf(err), tt.want) {
				t.Errorf("%s: %v; want not applied, %q", tt.name, err, tt.want)
			}
		default:
			if errs.CodeOf(err) != errs.Invalid || errors.Is(err, ErrPatchNotApplied) || !strings.Contains(errs.MessageOf(err), tt.want) {
				t.Errorf("%s: %v; want Invalid, %q", tt.name, err, tt.want)
			}
		}
	}
}
