package records

import (
	"context"
	"net/url"

	"github.com/concord-hie/concord/audit"
)

// AuditReference commits the Permit event of v reading (action audit.Read) or searching
// (audit.Query, with its query q) reference data that lives outside the resource store:
// the member directory served as FHIR Organization and Endpoint. It is the event a search
// or read of stored reference data writes: no patient, the resources shown (at most
// 1000), the query with PHI-named parameters hashed. Callers disclose nothing until it
// returns nil; errs.Unavailable means the event could not be committed.
func (x *Searcher) AuditReference(ctx context.Context, v Viewer, action audit.Action, q url.Values, resources []audit.Resource) error {
	ev := event(v, action, "", x.svc.now())
	ev.Outcome, ev.Reason = audit.Permit, "permitted"
	if action == audit.Read {
		ev.Reason = "reference-data"
	}
	if q != nil {
		if ev.Query = x.hash.HashQuery(q, audit.PHIParams()); len(ev.Query) > 8192 {
			ev.Query = ev.Query[:8192]
		}
	}
	ev.Resources = resources[:min(len(resources), 1000):min(len(resources), 1000)]
	return x.svc.appendAudit(ctx, ev)
}
