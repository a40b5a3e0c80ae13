package records

import (
	"context"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/errs"
)

// AuditQuery commits the audit.AuditQuery event of v reading the audit log itself (RESTful
// ATNA, an officer's search, a patient's access log) about person ("" for none), with the
// read's canonical query — IDs, dates and codes only, never demographics — and its outcome:
// a failure when readErr is not nil. Callers show nothing of the log until it returns nil;
// errs.Unavailable means the event could not be committed.
func (s *Service) AuditQuery(ctx context.Context, v Viewer, person, query string, readErr error) error {
	ev := event(v, audit.AuditQuery, person, s.now())
	ev.Outcome, ev.Query = audit.Permit, query
	if readErr != nil {
		ev.Outcome, ev.Reason = audit.Failure, errs.CodeOf(readErr).String()
	}
	return s.appendAudit(ctx, ev)
}

// appendAll appends evs concurrently, so the group committer carries them in one commit
// instead of one commit after another, and returns once all are durable; any failure is
// errs.Unavailable (the caller discloses nothing, though some events may be committed: an
// extra audit row is the safe side).
func (s *Service) appendAll(ctx context.Context, evs []audit.Event) error {
	if len(evs) == 1 {
		return s.appendAudit(ctx, evs[0])
	}
	errc := make(chan error, len(evs))
	for _, ev := range evs {
		go func() { errc <- s.appendAudit(ctx, ev) }()
	}
	var first error
	for range evs {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// AuditRefusal commits the Deny event of v's request that the transport refuses before any
// record is decided: one that names nothing the caller may know of (an unknown source
// identifier), or a person's data that is never served to v on this path (a patient's own
// upload asked for through the member API). person is "" when none is known; resources
// and query (IDs and codes only, never demographics) say what was asked for. The caller
// answers its usual absent-alike response once it returns nil; errs.Unavailable means the
// event could not be committed.
func (s *Service) AuditRefusal(ctx context.Context, v Viewer, action audit.Action, person, reason, query string, resources ...audit.Resource) error {
	ev := event(v, action, person, s.now())
	ev.Outcome, ev.Reason, ev.Query, ev.Resources = audit.Deny, reason, query, resources
	return s.appendAudit(ctx, ev)
}

// AuditWriteRefusal commits the Deny event of v's update or delete (action audit.Update or
// audit.Delete) of typ/id that the exchange refuses and answers as if the id were absent,
// for reason (a code: "not-owner" for another member's resource, "not-found" for an id
// never stored, "deleted" for the member's own deleted one). The event names typ/id and
// the person behind the Patient whose compartment the resource's newest version (of any
// member, a deletion included) lies in; no person when the id was never stored, lies in no
// compartment, or its Patient has no source record. It never carries the request's body.
// The caller answers its usual absent-alike response once it returns nil; errs.Unavailable
// means the person could not be looked up or the event not committed (the caller answers
// 503). The lookups and the append run detached from ctx's cancellation, so a client that
// hangs up cannot drop the row.
func (s *Service) AuditWriteRefusal(ctx context.Context, v Viewer, action audit.Action, typ, id, reason string) error {
	const op = "records.AuditWriteRefusal"
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	person, err := s.personOfResource(lctx, typ, id)
	if err != nil {
		return errs.E(op, errs.Unavailable, "audit log unavailable", err)
	}
	return s.AuditRefusal(lctx, v, action, person, reason, "", audit.Resource{Type: typ, ID: id})
}

// personOfResource returns the person behind the Patient whose compartment the newest
// version of typ/id lies in (a Patient's own), whichever member's it is and deleted or
// not; "" when there is no version, no such Patient, or the Patient has no source record.
func (s *Service) personOfResource(ctx context.Context, typ, id string) (string, error) {
	list, err := s.fhir.History(ctx, nil, typ, id, 1)
	if err != nil || len(list) == 0 {
		return "", err
	}
	patientID := id
	if typ != "Patient" {
		patientID = compartmentOf(list[0].Body)
	}
	if patientID == "" {
		return "", nil
	}
	src, err := s.mpi.SourceByPatient(ctx, nil, patientID)
	switch {
	case errs.CodeOf(err) == errs.NotFound:
		return "", nil
	case err != nil:
		return "", err
	}
	return string(src.PersonID), nil
}
