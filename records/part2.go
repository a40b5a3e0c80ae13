package records

import (
	"context"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir/store"
)

// Part2Release is what must travel with a 42 CFR Part 2 record that is disclosed (§2.32):
// the redisclosure notice (consent.Part2Notice, the caller adds it) and a reference to, or
// summary of, the consent that permitted the disclosure. A member reading what it sent
// itself, and the patient reading their own record, are not disclosures of this kind and
// get none.
type Part2Release struct {
	// Consent and Version name the patient's directive that permitted the disclosure;
	// Consent is "" when none did (a break-the-glass medical emergency, §2.51).
	Consent consent.DirectiveID
	Version int
	Reason  consent.Reason // Permitted or BreakGlassOverride
	// Summary is the decision's plain-language explanation: who may see what for which
	// purpose under which choice (no PHI).
	Summary string
}

// part2Release returns the release record for an item with security labels labels that d
// decided for v (both from decide), and whether the item needs one: it is labelled
// 42CFRPart2, d allowed it, and v is not the patient.
func part2Release(v Viewer, labels []string, d consent.Decision) (Part2Release, bool) {
	if !d.Allow || !consent.NeedsPart2Notice(labels, consent.Request{ActorRole: v.Role}) {
		return Part2Release{}, false
	}
	return Part2Release{Consent: d.By, Version: d.Version, Reason: d.Reason, Summary: d.Explanation}, true
}

// ReadRelease is Read that also returns, for a Part 2 record disclosed to v, what must
// travel with it (nil for anything else: not a Part 2 record, the member's own record, the
// patient's own access), from the same decision that permitted the read. Errors are Read's.
func (s *Service) ReadRelease(ctx context.Context, v Viewer, typ, id string) (store.Stored, *Part2Release, error) {
	return s.read(ctx, v, typ, id)
}

// part2Key is the key of Page.Part2.
func part2Key(st store.Stored) string { return st.Type + "/" + st.ID }

// Part2Of returns what must travel with st if it is a Part 2 record this page discloses.
func (p *Page) Part2Of(st store.Stored) (Part2Release, bool) {
	r, ok := p.Part2[part2Key(st)]
	return r, ok
}

// part2Page fills page.Part2 from the releases d recorded, for the rows the page returns.
func (d *decider) part2Page(page *Page) {
	if len(d.part2) == 0 {
		return
	}
	for _, list := range [][]store.Stored{page.Matches, page.Included} {
		for _, st := range list {
			if r, ok := d.part2[part2Key(st)]; ok {
				if page.Part2 == nil {
					page.Part2 = map[string]Part2Release{}
				}
				page.Part2[part2Key(st)] = r
			}
		}
	}
}
