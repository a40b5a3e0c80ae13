package consent

import (
	"strings"
	"testing"
)

func TestPart2NoticeFile(t *testing.T) {
	if !strings.HasPrefix(Part2Notice, "This record which has been disclosed to you is protected by Federal confidentiality rules (42 CFR part 2).") {
		t.Errorf("notice starts %.60q", Part2Notice)
	}
	if !strings.HasSuffix(Part2Notice, "(see 42 CFR 2.31).") {
		t.Errorf("notice ends %q", Part2Notice[max(0, len(Part2Notice)-40):])
	}
	if strings.Contains(Part2Notice, "#") || strings.Contains(Part2Notice, "source:") || strings.Contains(Part2Notice, "  ") {
		t.Error("notice carries comment text or doubled spaces")
	}
	for i := 0; i < len(Part2Notice); i++ { // it travels in an HTTP header
		if c := Part2Notice[i]; c < 0x20 || c > 0x7e {
			t.Fatalf("notice byte %d is %#x, not printable ASCII", i, c)
		}
	}
	if !strings.Contains(part2NoticeFile, "89 FR 12472") || !strings.Contains(part2NoticeFile, "# source:") {
		t.Error("data/part2-notice.txt does not name its source")
	}
	if got := parseNotice("# c\n  a  b\n# d\nc\n"); got != "a b c" {
		t.Errorf("parseNotice = %q", got)
	}
}

// TestPart2TPOConsent checks the 2024 rule: one consent for treatment, payment and health
// care operations covers all three, and no consent makes a Part 2 record usable in
// proceedings against the patient (Concord knows no legal purpose of use, so such a
// request is malformed and denied whatever the directives say).
func TestPart2TPOConsent(t *testing.T) {
	part2 := Part2ProgramLabels()
	tpo := patient("part2-tpo", OptIn, Provision{Type: Permit, Actors: []Actor{orgActor("org-b")},
		Purposes:       []string{PurposeTreatment, PurposePayment, PurposeOperations},
		SecurityLabels: []string{LabelSubstanceUse, LabelRestricted, LabelPart2}})
	legal := patient("part2-legal", OptIn, Provision{Type: Permit, Actors: []Actor{orgActor("org-b")},
		Purposes:       []string{"HLEGAL", "COURTORD"},
		SecurityLabels: []string{LabelSubstanceUse, LabelRestricted, LabelPart2}})
	tests := []struct {
		name    string
		dirs    []Directive
		req     Request
		allow   bool
		reason  Reason
		decider DirectiveID
	}{
		{"TPO consent: treatment", dirs(tpo), read("org-b", PurposeTreatment, part2...), true, Permitted, "part2-tpo"},
		{"TPO consent: payment", dirs(tpo), read("org-b", PurposePayment, part2...), true, Permitted, "part2-tpo"},
		{"TPO consent: operations", dirs(tpo), read("org-b", PurposeOperations, part2...), true, Permitted, "part2-tpo"},
		{"TPO consent: not public health", dirs(tpo), read("org-b", PurposePublicHealth, part2...), false, NoDirective, ""},
		{"TPO consent: not another recipient", dirs(tpo), read("org-c", PurposeTreatment, part2...), false, LabelNotPermitted, PolicyTreatmentID},
		{"TPO consent: never proceedings", dirs(tpo), read("org-b", "HLEGAL", part2...), false, InvalidRequest, ""},
		{"consent naming proceedings: still never", dirs(tpo, legal), read("org-b", "HLEGAL", part2...), false, InvalidRequest, ""},
		{"court order purpose: never", dirs(tpo, legal), read("org-b", "COURTORD", part2...), false, InvalidRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.dirs, tt.req)
			if d.Allow != tt.allow || d.Reason != tt.reason || d.By != tt.decider {
				t.Errorf("Decide = allow %v, %v by %q; want allow %v, %v by %q", d.Allow, d.Reason, d.By, tt.allow, tt.reason, tt.decider)
			}
		})
	}
}
