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
