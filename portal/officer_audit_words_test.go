package portal

import (
	"strings"
	"testing"

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
	"unknown-or-foreign-patient", "unknown-source-identifier", "consent-saved", "consent-preview",
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
