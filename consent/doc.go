// Package consent holds Concord's consent directives and the one decision point every
// disclosure path asks: Decide. It is pure: no I/O, no clock, no globals. Directives are
// R4 Consent resources in spirit (scope patient-privacy, policyRule, nested permit/deny
// provisions); ParseConsent and FormatConsent map them to and from FHIR JSON.
//
// The regional default policies are directives too (DefaultPolicies), loaded with the
// patient's own, so an explanation can always name what decided.
//
// Rules Decide applies, in order (see Decide for the full contract):
//
//   - a malformed request (unknown purpose, no person, no time) is denied; there is no
//     legal or court-order purpose, so no directive — not even a single TPO consent for a
//     Part 2 record (2024 rule) — permits use in proceedings against the patient;
//   - purpose BTG needs a valid, unexpired BreakGlass, else it is denied;
//   - only active directives whose root provision's period contains req.At apply; a
//     patient's directive applies only to that patient;
//   - within a directive the deepest matching provision decides (FHIR semantics: a
//     nested provision is an exception to its parent and, unless it says otherwise,
//     of the opposite type);
//   - any applicable deny wins over any permit, across all directives;
//   - a deny that names no purpose does not cover PATRQT (the right of access): to
//     restrict a proxy, a deny must name PATRQT;
//   - a permit releases an item carrying a protecting label (ETH, PSY, HIV, SDV, SEX,
//     R, V, 42CFRPart2) only if that provision or one of its ancestors names the label;
//   - an item labelled 42CFRPart2 is released only under a patient's own directive that
//     names the recipient (organization or person), never under a default policy,
//     except to the patient themselves (PATRQT) or in a declared emergency (BTG);
//   - BTG with a valid declaration overrides a deny, except a deny that names BTG;
//   - nothing applicable: deny, explained by the lapsed (Expired, Inactive) directive
//     that would have permitted, if any.
//
// Every denial's Reason maps to the information-blocking exception (45 CFR 171.20x) it
// relies on, in one table in reason.go.
//
// Besides Decide: DefaultPolicies (regional defaults), Preview (a decision per data
// class), InForce/DecideAsOf (as-of evaluation), BreakGlassPolicy.Declare, CacheKey and
// ValidUntil (for a caching decorator), ParseConsent/FormatConsent (R4 Consent), Labeler
// (sensitivity labels from the value sets in valuesets/), Part2Notice (the §2.32 text, from
// data/part2-notice.txt), and Store
// (versioned PostgreSQL storage).
package consent
