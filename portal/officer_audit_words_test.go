package portal

import (
	"fmt"
	"strings"
	"testing"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/errs"
)

// auditReasonCodes are the reason codes audit events carry, found by grepping the event
// writers (Reason in audit.Event literals and assignments across cmd/, portal/, records/,
// exchange/, mpi/, documents/ and consent/). Consent reasons, break-the-glass reasons and
// errs codes are added from their packages by the test, so a new one there fails it too.
var auditReasonCodes = []string{
	// records, exchange and documents: access decided without a directive
	"own-record", "not-owner", "not-found", "deleted", "patient-upload", "integrity-sha256-mismatch",
	"reference-data", "no-compartment", "viewer-filtered", "own-patient", "not-member-patient",
	"unknown-or-foreign-patient", "unknown-source-identifier", "consent-saved", "consent-preview", "not-filed-or-named",
	// portal
	"choice-on", "choice-off", "paper-form-on", "paper-form-off",
	"proxy-invited", "proxy-registered", "proxy-accepted", "proxy-revoked", "proxy-sensitive-on", "proxy-sensitive-off",
	"portal-message", "officer-simulation", "officer-consent-review", "review-closed",
	"share-link-created", "share-link-revoked", "access-disputed", "dispute-closed",
	// patient matching
	"match", "pix", "pix-source", "review-link", "review-keep-apart",
	"manual-link", "manual-unlink", "manual-merge", "manual-unmerge", "source-retired",
}

// TestAuditReasonWords: every reason code an audit event carries has words for the officer,
// and the page keeps the code beside them.
func TestAuditReasonWords(t *testing.T) {
	t.Parallel()
	codes := append([]string(nil), auditReasonCodes...)
	for r := consent.Reason(0); r.String() != "unknown"; r++ {
		codes = append(codes, r.String())
	}
	codes = append(codes, consent.BreakGlassReasons()...)
	for c := errs.Code(0); !strings.HasPrefix(c.String(), "code("); c++ {
		codes = append(codes, c.String())
	}
	for _, code := range codes {
		w := auditReasonWords(code)
		if w == "" || w == code {
			t.Errorf("audit reason %q has no words", code)
		}
	}
	// Break-the-glass reasons read as the reviews page reads them.
	if got, want := auditReasonWords(consent.BTGUnresponsive), btgReasonWords(consent.BTGUnresponsive); got != want {
		t.Errorf("unresponsive: %q, want %q", got, want)
	}
	if w := auditReasonWords("no-such-reason"); w != "" {
		t.Errorf("unknown code has words %q", w)
	}
}

// TestOfficerAuditDataWords: the audit search's Data column names what was disclosed in the
// words of the patient's access log (third person), each class once, with the FHIR types
// kept for the hover.
func TestOfficerAuditDataWords(t *testing.T) {
	t.Parallel()
	res := func(types ...string) []audit.Resource {
		var out []audit.Resource
		for i, ty := range types {
			out = append(out, audit.Resource{Type: ty, ID: fmt.Sprint(i)})
		}
		return out
	}
	tests := []struct {
		name        string
		res         []audit.Resource
		words, hint string
	}{
		{"none", nil, "", ""},
		{"labs", res("Observation", "Observation"), "Lab results and measurements", "Observation"},
		{"documents, once", res("DocumentReference", "Binary", "DocumentReference"), "Documents", "Binary, DocumentReference"},
		{"medications, once", res("MedicationStatement", "MedicationRequest"), "Medications", "MedicationRequest, MedicationStatement"},
		{"the patient's details", res("Patient", "Consent"), "The patient's sharing choices, The patient's details", "Consent, Patient"},
		{"mixed", res("Observation", "AllergyIntolerance", "Condition"),
			"Allergies, Problems and diagnoses, Lab results and measurements", "AllergyIntolerance, Condition, Observation"},
		{"a type without words", res("Questionnaire"), "Questionnaire", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			words, hint := officerData(tt.res)
			if words != tt.words || hint != tt.hint {
				t.Errorf("officerData = %q, %q; want %q, %q", words, hint, tt.words, tt.hint)
			}
		})
	}
	// The words are the patient's access log's, not a second list.
	for _, ty := range []string{"Observation", "Condition", "MedicationRequest", "AllergyIntolerance", "Immunization",
		"DocumentReference", "Binary", "Encounter", "Patient", "DiagnosticReport", "Procedure", "Consent"} {
		if words, _ := officerData(res(ty)); words != thirdPerson(dataWords(ty)) || words == ty {
			t.Errorf("%s: officer reads %q, the patient %q", ty, words, dataWords(ty))
		}
	}
}
