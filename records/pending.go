package records

import (
	"context"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/fhir/store"
)

// Disclosure is a permitted read whose audit event is still being committed. The caller
// may prepare its answer meanwhile (open the object a document's bytes stream from), but
// nothing of the record may leave before Wait has returned nil.
type Disclosure struct {
	Stored store.Stored
	Part2  *Part2Release // what must travel with a Part 2 record, as ReadRelease returns it
	done   chan error
	err    error
	waited bool
}

// Wait blocks until the read's audit event is durable. A nil error means the record may be
// disclosed; any error (errs.Unavailable) means it must not be, and the caller answers 503.
// Wait may be called more than once.
func (d *Disclosure) Wait() error {
	if !d.waited {
		d.err, d.waited = <-d.done, true
	}
	return d.err
}

// ReadPending is ReadRelease for a caller that has slow work to do before it can answer and
// may do it before the audit event commits: it decides like ReadRelease and then, for a
// permit, returns at once with the event's append under way (see Disclosure). Everything
// else returns only after its audit event committed, with ReadRelease's errors: a denial is
// errs.NotFound, so a denied caller's request never reaches the slow work at all.
func (s *Service) ReadPending(ctx context.Context, v Viewer, typ, id string) (*Disclosure, error) {
	return s.ReadPendingIf(ctx, v, typ, id, nil)
}

// ReadPendingIf is ReadPending for a caller that shows v less than consent permits (a
// caregiver never sees sensitive items): a permitted record for which show returns false
// is not disclosed, and its one audit event says so (outcome deny, reason ViewerFiltered)
// instead of recording a disclosure that did not happen. A nil show shows everything.
func (s *Service) ReadPendingIf(ctx context.Context, v Viewer, typ, id string, show func(store.Stored) bool) (*Disclosure, error) {
	st, rel, ev, err := s.decideRead(ctx, v, typ, id)
	if err != nil {
		return nil, err
	}
	if ev.Outcome == audit.Permit && show != nil && !show(st) {
		ev.Outcome, ev.Reason, ev.Consent, ev.ConsentVersion = audit.Deny, ViewerFiltered, "", 0
	}
	if ev.Outcome != audit.Permit {
		if err := s.appendAudit(ctx, ev); err != nil {
			return nil, err
		}
		return nil, denied(ev)
	}
	d := &Disclosure{Stored: st, Part2: rel, done: make(chan error, 1)}
	go func() { d.done <- s.appendAudit(ctx, ev) }()
	return d, nil
}

// ViewerFiltered is the audit reason of a read that consent permitted and the caller's own
// rule kept from the viewer (ReadPendingIf).
const ViewerFiltered = "viewer-filtered"
