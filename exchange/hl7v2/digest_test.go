package hl7v2

import (
	"strings"
	"testing"
)

// TestDigestIsTheContent: a resend of the same message gets the same digest even when the
// engine stamps MSH-7 again or writes it out anew without the trailing empty fields and
// components HL7 v2 reads as absent (else the intake answered it AE 205, "control ID
// already used for a different message", instead of the stored AA: session review); a
// message whose content differs gets another digest.
func TestDigestIsTheContent(t *testing.T) {
	first := "MSH|^~\\&|LAB|HOSP|CONCORD|HIE|20240101120000||ADT^A01|MSG1|P|2.5.1\r" +
		"PID|1||MRN1^^^HOSP^MR||DOE^JOHN||19800101|M|||\r" +
		"PV1|1|I|||||||||||||||||V1^^^HOSP|\r"
	resend := "MSH|^~\\&|LAB|HOSP|CONCORD|HIE|20240101120500||ADT^A01|MSG1|P|2.5.1\r" +
		"PID|1||MRN1^^^HOSP^MR||DOE^JOHN||19800101|M\r" +
		"PV1|1|I|||||||||||||||||V1^^^HOSP\r"
	a, err := Parse([]byte(first))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte(resend))
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest() != b.Digest() {
		t.Errorf("same message, trailing empty fields dropped on resend: digests differ, so the resend is answered AE 205 instead of the stored AA")
	}
	for _, other := range []string{
		strings.Replace(first, "DOE^JOHN", "DOE^JANE", 1),
		strings.Replace(first, "|M|||", "|F|||", 1),
		strings.Replace(first, "MRN1^^^HOSP^MR", "MRN1^^^HOSP^MR~MRN9^^^HOSP^MR", 1),
		strings.Replace(first, "|ADT^A01|", "|ADT^A08|", 1),
	} {
		c, err := Parse([]byte(other))
		if err != nil {
			t.Fatal(err)
		}
		if c.Digest() == a.Digest() {
			t.Errorf("a message with other content has the same digest:\n%q", other)
		}
	}
}
