package consent

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParseConsent checks that ParseConsent never panics, that whatever it accepts
// formats and re-parses to the same directive, and that Decide runs on it.
func FuzzParseConsent(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "fhir-r4-examples", "*.json"))
	for _, fn := range files {
		if b, err := os.ReadFile(fn); err == nil {
			f.Add(b)
		}
	}
	for _, d := range []Directive{optOutExcept, optInNoConditions, denyPSYExceptB, part2ForB, defaults[1]} {
		if b, err := FormatConsent(d); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseConsent(data, time.UTC)
		if err != nil {
			return
		}
		b1, err := FormatConsent(d)
		if err != nil {
			t.Fatalf("accepted directive does not format: %v", err)
		}
		d2, err := ParseConsent(b1, time.UTC)
		if err != nil {
			t.Fatalf("formatted directive does not parse: %v\n%s", err, b1)
		}
		b2, err := FormatConsent(d2)
		if err != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("round trip not stable (%v):\n%s\n%s", err, b1, b2)
		}
		req := read("org-b", PurposeTreatment, LabelMentalHealth)
		req.PersonID = d.PersonID
		_ = Decide([]Directive{d}, req)
	})
}
