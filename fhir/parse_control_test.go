package fhir

import (
	"testing"

	"github.com/concord-hie/concord/internal/errs"
)

// TestParseRejectsControlCharacters: FHIR R4 strings (and every primitive built on them:
// code, id, uri, ...) hold no code point below 32 but tab, LF and CR (datatypes.html#string).
// The scanner refuses such a raw byte; an escaped one (\u0000) is refused too, naming the
// element, instead of reaching the store, where PostgreSQL refused the NUL with a bare
// "invalid value" (FHIR review). Escaped tab, LF and CR stay allowed.
func TestParseRejectsControlCharacters(t *testing.T) {
	for _, tc := range []struct{ body, path string }{
		{`{"resourceType":"Patient","name":[{"family":"A\u0000B"}]}`, "Patient.name[0].family"},
		{`{"resourceType":"Patient","gender":"male\u0000"}`, "Patient.gender"},
		{`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7\u0001"}]}}`, "Observation.code.coding[0].code"},
	} {
		_, err := Parse([]byte(tc.body))
		if errs.CodeOf(err) != errs.Invalid {
			t.Errorf("Parse accepted a control character: %s (err %v)", tc.body, err)
			continue
		}
		if e, ok := err.(*errs.Error); !ok || e.Path != tc.path {
			t.Errorf("error %v does not name %s", err, tc.path)
		}
	}
	if _, err := Parse([]byte(`{"resourceType":"Patient","name":[{"text":"Ana\tB\r\nC"}]}`)); err != nil {
		t.Errorf("escaped tab, CR and LF refused: %v", err)
	}
}
