package records

import (
	"bytes"
	"context"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
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

// part2Release returns the release record for st decided by d for v, and whether st needs
// one: st is labelled 42CFRPart2, d allowed it, and v is not the patient.
func part2Release(v Viewer, st store.Stored, d consent.Decision) (Part2Release, bool) {
	if !d.Allow {
		return Part2Release{}, false
	}
	_, labels := classOf(st)
	if !consent.NeedsPart2Notice(labels, consent.Request{ActorRole: v.Role}) {
		return Part2Release{}, false
	}
	return Part2Release{Consent: d.By, Version: d.Version, Reason: d.Reason, Summary: d.Explanation}, true
}

// ReadRelease is Read that also returns, for a Part 2 record disclosed to v, what must
// travel with it (nil for anything else: not a Part 2 record, the member's own record, the
// patient's own access). Errors are Read's.
//
// For a Part 2 record released to someone else it decides once more, after Read, to learn
// which consent permitted the release: a few more statements, paid only for Part 2 records.
// If that second decision no longer allows the release (the consent changed in between),
// the record is errs.NotFound like any denied read: the newer answer wins, and the audit
// log errs towards having recorded a disclosure.
func (s *Service) ReadRelease(ctx context.Context, v Viewer, typ, id string) (store.Stored, *Part2Release, error) {
	const op = "records.ReadRelease"
	st, err := s.Read(ctx, v, typ, id)
	if err != nil {
		return store.Stored{}, nil, err
	}
	if !bytes.Contains(st.Body, []byte(consent.LabelPart2)) || (v.Org != "" && v.Org == st.MemberID) {
		return st, nil, nil
	}
	if _, labels := classOf(st); !consent.NeedsPart2Notice(labels, consent.Request{ActorRole: v.Role}) {
		return st, nil, nil
	}
	patient := st.PatientID
	if st.Type == "Patient" {
		patient = st.ID
	}
	src, err := s.mpi.SourceByPatient(ctx, nil, patient)
	if err != nil {
		if errs.CodeOf(err) == errs.NotFound { // unlinked since Read
			return store.Stored{}, nil, errs.E(op, errs.NotFound, "resource not found", err)
		}
		return store.Stored{}, nil, err
	}
	person := string(src.PersonID)
	at := s.now()
	dirs, err := s.inForce(ctx, person, at)
	if err != nil {
		return store.Stored{}, nil, err
	}
	if v, err = s.breakGlass(ctx, v, person, at); err != nil {
		return store.Stored{}, nil, err
	}
	r, ok := part2Release(v, st, s.decide(dirs, v, person, at, st))
	if !ok {
		return store.Stored{}, nil, errs.E(op, errs.NotFound, "resource not found", errs.E(op, errs.Forbidden, "consent changed during the read"))
	}
	return st, &r, nil
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
