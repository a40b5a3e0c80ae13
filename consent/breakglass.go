package consent

import (
	"log/slog"
	"strings"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// DefaultBreakGlassDuration is how long a break-the-glass declaration lasts unless
// configured otherwise (standards.md §5: at most 60 minutes).
const DefaultBreakGlassDuration = 60 * time.Minute

// Break-the-glass reason codes. The clinician picks one and adds free text.
const (
	BTGUnresponsive      = "unresponsive"       // patient cannot communicate consent
	BTGLifeThreatening   = "life-threatening"   // immediate threat to life or limb
	BTGUrgentTreatment   = "urgent-treatment"   // urgent care needs history now
	BTGPublicSafety      = "public-safety"      // serious and imminent threat to others
	BTGPoisoningOverdose = "poisoning-overdose" // suspected poisoning or overdose
)

// BreakGlassReasons returns the reason codes in display order.
func BreakGlassReasons() []string {
	return []string{BTGUnresponsive, BTGLifeThreatening, BTGUrgentTreatment, BTGPoisoningOverdose, BTGPublicSafety}
}

// KnownBreakGlassReason reports whether code is a break-the-glass reason code.
func KnownBreakGlassReason(code string) bool {
	switch code {
	case BTGUnresponsive, BTGLifeThreatening, BTGUrgentTreatment, BTGPublicSafety, BTGPoisoningOverdose:
		return true
	}
	return false
}

// BreakGlassPolicy configures declarations. The zero value uses DefaultBreakGlassDuration.
type BreakGlassPolicy struct {
	// MaxDuration caps a declaration; zero means DefaultBreakGlassDuration.
	MaxDuration time.Duration
}

func (p BreakGlassPolicy) max() time.Duration {
	if p.MaxDuration <= 0 {
		return DefaultBreakGlassDuration
	}
	return p.MaxDuration
}

// maxBreakGlassText bounds the free text kept with a declaration.
const maxBreakGlassText = 1000

// Declare builds a BreakGlass declared at now. mayDeclare is the caller's role
// permission check (the role/permission model lives with the caller). want is the
// asked-for duration: zero or more than the policy's maximum gives the maximum.
//
// It returns errs.Forbidden when mayDeclare is false, and errs.Invalid (with Path
// "reasonCode" or "text") for an unknown reason code or an empty or overlong text.
// The error never contains the text.
func (p BreakGlassPolicy) Declare(mayDeclare bool, reasonCode, text string, now time.Time, want time.Duration) (BreakGlass, error) {
	const op = "consent.BreakGlassPolicy.Declare"
	if !mayDeclare {
		return BreakGlass{}, errs.E(op, errs.Forbidden, "this role may not declare break-the-glass")
	}
	if !KnownBreakGlassReason(reasonCode) {
		e := errs.E(op, errs.Invalid, "unknown break-the-glass reason code")
		e.Path = "reasonCode"
		return BreakGlass{}, e
	}
	text = strings.TrimSpace(text)
	if text == "" || len(text) > maxBreakGlassText {
		e := errs.E(op, errs.Invalid, "break-the-glass needs a reason text of 1 to 1000 bytes")
		e.Path = "text"
		return BreakGlass{}, e
	}
	if now.IsZero() {
		return BreakGlass{}, errs.E(op, errs.Invalid, "break-the-glass needs a declaration time")
	}
	d := p.max()
	if want > 0 && want < d {
		d = want
	}
	return BreakGlass{ReasonCode: reasonCode, Text: text, Start: now, Expires: now.Add(d)}, nil
}

// LogValue logs the reason code and times, never the free text.
func (b BreakGlass) LogValue() slog.Value {
	return slog.GroupValue(slog.String("reason", b.ReasonCode),
		slog.Time("start", b.Start), slog.Time("expires", b.Expires))
}
