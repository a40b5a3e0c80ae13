package consent

// Reason is the machine-readable reason for a Decision. The zero value, NoDirective, is
// a denial, so a zero Decision denies.
type Reason uint8

const (
	// NoDirective: no active directive or policy permits the request.
	NoDirective Reason = iota
	// Permitted: a permit provision applies and releases every label on the item.
	Permitted
	// BreakGlassOverride: a request with purpose BTG and a valid declaration was allowed
	// (overriding a deny or the absence of a permit, or where a directive permits BTG).
	// Every such decision must be queued for officer review and notified to the patient.
	BreakGlassOverride
	// Denied: a patient's own directive denies the request.
	Denied
	// DeniedByPolicy: a regional default policy denies the request.
	DeniedByPolicy
	// LabelNotPermitted: a permit applies, but not one that names every gating label on
	// the item.
	LabelNotPermitted
	// Part2ConsentRequired: the item is a 42 CFR Part 2 record and no patient directive
	// naming the recipient releases it.
	Part2ConsentRequired
	// Expired: nothing permits the request; a directive that would have permitted it is
	// outside its period.
	Expired
	// Inactive: nothing permits the request; a directive that would have permitted it is
	// not active (withdrawn, draft, rejected, entered in error).
	Inactive
	// BreakGlassInvalid: purpose BTG without a valid, unexpired break-the-glass declaration.
	BreakGlassInvalid
	// InvalidRequest: the request lacks a person or time, or names an unknown purpose.
	InvalidRequest
	// ConsentUnavailable is never returned by Decide: callers record it when the
	// directives could not be loaded and they deny (503) without deciding.
	ConsentUnavailable
	// ItemUnreadable is never returned by Decide: callers record it when the item's
	// labels and categories could not be read from it, so nothing about it can be decided.
	ItemUnreadable
	reasonCount
)

// ONC information-blocking exceptions (45 CFR part 171) a denial relies on.
const (
	// ExceptionPrivacyPrecondition: 171.202(b), a precondition (consent or authorization
	// required by law or by the HIE's policy) is not satisfied.
	ExceptionPrivacyPrecondition = "45 CFR 171.202(b)"
	// ExceptionPrivacyIndividual: 171.202(e), respecting an individual's request not to
	// share information.
	ExceptionPrivacyIndividual = "45 CFR 171.202(e)"
	// ExceptionPreventingHarm: 171.201. No Decide reason relies on it: withholding to
	// prevent harm needs a licensed professional's individual determination, which is an
	// input Concord does not yet take.
	ExceptionPreventingHarm = "45 CFR 171.201"
	// ExceptionSecurity: 171.203, an organizational security practice.
	ExceptionSecurity = "45 CFR 171.203"
	// ExceptionInfeasibility: 171.204. Callers use it when an item cannot be segmented
	// from denied data (171.204(a)(2)); no Decide reason relies on it.
	ExceptionInfeasibility = "45 CFR 171.204"
)

// reasonInfo is the one table of reasons: name, whether it allows, and for denials the
// information-blocking exception relied on.
var reasonInfo = [reasonCount]struct {
	name      string
	allow     bool
	exception string
}{
	// No consent on file where the region requires one (opt-in purposes) or no policy
	// covers the request: the HIE's consent precondition is not met.
	NoDirective:        {"no-directive", false, ExceptionPrivacyPrecondition},
	Permitted:          {"permitted", true, ""},
	BreakGlassOverride: {"break-glass", true, ""},
	// The patient asked that this not be shared.
	Denied: {"denied", false, ExceptionPrivacyIndividual},
	// The region's policy requires consent for this purpose, actor or data: precondition.
	DeniedByPolicy: {"denied-by-policy", false, ExceptionPrivacyPrecondition},
	// Sensitive categories (state law, HIPAA 164.522 restrictions) need specific consent.
	LabelNotPermitted: {"label-not-permitted", false, ExceptionPrivacyPrecondition},
	// 42 CFR 2.31 requires written consent naming the recipient: precondition by law.
	Part2ConsentRequired: {"part2-consent-required", false, ExceptionPrivacyPrecondition},
	// The consent that would allow it has lapsed: precondition no longer met.
	Expired: {"expired", false, ExceptionPrivacyPrecondition},
	// The consent that would allow it was withdrawn or never took effect. A withdrawal is
	// the individual's choice, but the denial rests on the missing consent: precondition.
	Inactive: {"inactive", false, ExceptionPrivacyPrecondition},
	// Break-the-glass is a security control (step-up authentication, time box, review);
	// an override outside it is refused as a security practice.
	BreakGlassInvalid: {"break-glass-invalid", false, ExceptionSecurity},
	// A request without a valid purpose of use fails the exchange's access-control policy.
	InvalidRequest: {"invalid-request", false, ExceptionSecurity},
	// Failing closed when consent cannot be read protects confidentiality: security.
	ConsentUnavailable: {"consent-unavailable", false, ExceptionSecurity},
	// An item whose labels are unknown cannot be told apart from data that may not be
	// shared: it cannot be segmented (171.204(a)(2)).
	ItemUnreadable: {"item-unreadable", false, ExceptionInfeasibility},
}

// String returns the reason's stable code, e.g. "label-not-permitted", used in audit
// events and APIs.
func (r Reason) String() string {
	if r < reasonCount {
		return reasonInfo[r].name
	}
	return "unknown"
}

// Allows reports whether r is a permitting reason.
func (r Reason) Allows() bool { return r < reasonCount && reasonInfo[r].allow }

// Exception returns the information-blocking exception a denial with reason r relies
// on, or "" for a permitting reason.
func (r Reason) Exception() string {
	if r < reasonCount {
		return reasonInfo[r].exception
	}
	return ExceptionSecurity
}
