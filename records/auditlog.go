package records

import (
	"context"

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
