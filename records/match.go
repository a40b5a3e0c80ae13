package records

import (
	"context"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
)

// IdentityQuery asks which member Patients of some persons a viewer may be shown, for an
// identity transaction ($match, PIXm) that must never reveal a person the viewer may not
// see.
type IdentityQuery struct {
	Persons []string // person IDs, in the order the answer keeps
	// Keep narrows each person's source records (e.g. to a target domain); nil keeps all.
	Keep func(mpistore.Source) bool
	// One answers at most one Patient per person: the viewer's own member's if it has
	// one, else the first permitted of the other members' (by member, then source).
	One bool
	// Reason is the audit reason code of the disclosure ("match", "pix").
	Reason string
	// Query is the request's query string with PHI values already replaced by keyed
	// hashes (audit.Hasher.HashQuery); it is recorded as is.
	Query string
}

// IdentityPatients answers q for v: for each person, the Patients v may be shown — always
// those its own member sent; another member's only under purpose TREAT (or BTG) when consent.Decide
// permits v for that custodian. A person v may see nothing of answers an empty slice, the
// same as no person at all. Under purpose BTG another member's Patient is decided with v's
// active break-the-glass declaration for the person (none: denied), and the event is
// marked BreakGlass. One Query audit event per person is written before anything
// returns: Permit naming the Patients shown, or Deny with the consent reason when consent
// hid every Patient. errs.Unavailable when consent or the audit log cannot be reached.
func (s *Service) IdentityPatients(ctx context.Context, v Viewer, q IdentityQuery) ([][]store.Stored, error) {
	a, err := s.IdentityRelease(ctx, v, q)
	return a.Patients, err
}

// IdentityAnswer is IdentityRelease's answer.
type IdentityAnswer struct {
	Patients [][]store.Stored // per person of the query, in its order (IdentityPatients)
	// Part2 holds, by "Patient/{id}", what must travel with each 42 CFR Part 2 Patient
	// shown to another member than its own, from the decision that permitted it (as
	// Page.Part2). nil when there is none.
	Part2 map[string]Part2Release
}

// Part2Of returns what must travel with st if it is a Part 2 record the answer discloses.
func (a IdentityAnswer) Part2Of(st store.Stored) (Part2Release, bool) {
	r, ok := a.Part2[part2Key(st)]
	return r, ok
}

// IdentityRelease is IdentityPatients that also returns, for every Part 2 Patient it
// shows to a member other than its own, what must travel with it: an answer that hands out
// whole Patients ($match) discloses them as a read does, notice included. Errors are
// IdentityPatients'.
func (s *Service) IdentityRelease(ctx context.Context, v Viewer, q IdentityQuery) (IdentityAnswer, error) {
	return s.identity(ctx, v, q, true)
}

// IdentityVisible reports, for each person of q, whether IdentityPatients would show v any
// Patient of it, deciding exactly as it does, but it discloses nothing and writes no audit
// event. It is for what an answer says about persons it does not hand out: a $match grade
// must be decided among the persons the caller may see, or it would tell the caller that
// someone it may not see resembles its patient. Errors are IdentityPatients'.
func (s *Service) IdentityVisible(ctx context.Context, v Viewer, q IdentityQuery) ([]bool, error) {
	a, err := s.identity(ctx, v, q, false)
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(a.Patients))
	for i, ps := range a.Patients {
		out[i] = len(ps) > 0
	}
	return out, nil
}

// identity answers q for v (IdentityRelease); without disclose it writes no audit event,
// and its answer must not leave the exchange (IdentityVisible).
func (s *Service) identity(ctx context.Context, v Viewer, q IdentityQuery, disclose bool) (IdentityAnswer, error) {
	const op = "records.IdentityPatients"
	at := s.now()
	out := make([][]store.Stored, len(q.Persons))
	var releases map[string]Part2Release
	// Every person's source records, then every Patient they name, in one query each.
	ids := make([]mpistore.PersonID, len(q.Persons))
	for i, p := range q.Persons {
		ids[i] = mpistore.PersonID(p)
	}
	sources, err := s.mpi.SourcesOf(ctx, ids)
	if err != nil {
		return IdentityAnswer{}, errs.E(op, err)
	}
	var refs [][2]string
	for _, srcs := range sources {
		for _, src := range srcs {
			if q.Keep == nil || q.Keep(src) {
				refs = append(refs, [2]string{"Patient", src.PatientID})
			}
		}
	}
	got, err := s.fhir.GetMany(ctx, nil, refs)
	if err != nil {
		return IdentityAnswer{}, errs.E(op, err)
	}
	patients := make(map[string]store.Stored, len(got))
	for _, st := range got {
		patients[st.ID] = st
	}
	var evs []audit.Event
	for i, person := range q.Persons {
		var own, other []mpistore.Source
		for _, src := range sources[mpistore.PersonID(person)] {
			if q.Keep != nil && !q.Keep(src) {
				continue
			}
			if v.Org != "" && src.MemberID == v.Org {
				own = append(own, src)
			} else {
				other = append(other, src)
			}
		}
		var shown []store.Stored
		for _, src := range own {
			if st, ok := patients[src.PatientID]; ok {
				shown = append(shown, st)
			}
		}
		var deny *consent.Decision
		pv := v // v with its break-the-glass declaration for person, if any
		if !(q.One && len(shown) > 0) && regionalPurpose(v.Purpose) && len(other) > 0 {
			dirs, err := s.inForce(ctx, person, at)
			if err != nil {
				return IdentityAnswer{}, err
			}
			if pv, err = s.breakGlass(ctx, v, person, at); err != nil {
				return IdentityAnswer{}, err
			}
			for _, src := range other {
				st, ok := patients[src.PatientID]
				if !ok {
					continue
				}
				d, labels := s.decide(dirs, pv, person, at, st)
				if !d.Allow {
					deny = &d
					continue
				}
				shown = append(shown, st)
				if r, ok := part2Release(pv, labels, d); ok {
					if releases == nil {
						releases = map[string]Part2Release{}
					}
					releases[part2Key(st)] = r
				}
				if q.One {
					break
				}
			}
		}
		if q.One && len(shown) > 1 {
			for _, st := range shown[1:] {
				delete(releases, part2Key(st))
			}
			shown = shown[:1]
		}
		if len(shown) == 0 && deny == nil {
			continue // nothing considered for disclosure: nothing to account for
		}
		ev := event(pv, audit.Query, person, at)
		ev.Query = q.Query
		if len(ev.Query) > 8192 {
			ev.Query = ev.Query[:8192]
		}
		ev.Outcome, ev.Reason = audit.Permit, q.Reason
		for _, st := range shown {
			ev.Resources = append(ev.Resources, audit.Resource{Type: "Patient", ID: st.ID})
		}
		if len(shown) == 0 {
			ev.Outcome, ev.Reason = audit.Deny, deny.Reason.String()
			ev.Consent, ev.ConsentVersion = string(deny.By), int64(deny.Version)
		}
		evs = append(evs, ev)
		out[i] = shown
	}
	if !disclose {
		return IdentityAnswer{Patients: out}, nil
	}
	// One event per person, all committed (together) before anything is returned.
	if err := s.appendAll(ctx, evs); err != nil {
		return IdentityAnswer{}, err
	}
	return IdentityAnswer{Patients: out, Part2: releases}, nil
}
