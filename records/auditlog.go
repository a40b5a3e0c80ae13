package records

import (
	"context"
	"slices"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/db"
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
	return s.AuditWriteRefusals(ctx, v, WriteRefusal{Action: action, Type: typ, ID: id, Reason: reason})
}

// WriteRefusal is one refused update or delete, for AuditWriteRefusals: the action
// (audit.Update or audit.Delete), the resource and the reason code (see AuditWriteRefusal).
type WriteRefusal struct {
	Action           audit.Action
	Type, ID, Reason string
}

// AuditWriteRefusals is AuditWriteRefusal for the refusals of one request (a Bundle's
// entries, after the transaction that refused them rolled back): one Deny event each, as
// AuditWriteRefusal makes it, committed together. It returns nil only once all are
// committed; errs.Unavailable means a person could not be looked up or an event not
// committed (some may be: an extra row is the safe side). The lookups and the append run
// detached from ctx's cancellation.
func (s *Service) AuditWriteRefusals(ctx context.Context, v Viewer, rs ...WriteRefusal) error {
	const op = "records.AuditWriteRefusals"
	if len(rs) == 0 {
		return nil
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	evs, err := s.refusalEvents(lctx, nil, v, rs)
	if err != nil {
		return errs.E(op, errs.Unavailable, "audit log unavailable", err)
	}
	return s.appendAll(lctx, evs)
}

// refusalEvents returns the Deny event of each of rs (see AuditWriteRefusal), looking the
// persons up through q (nil: the pool).
func (s *Service) refusalEvents(ctx context.Context, q db.Querier, v Viewer, rs []WriteRefusal) ([]audit.Event, error) {
	at := s.now()
	evs := make([]audit.Event, len(rs))
	for i, r := range rs {
		person, err := s.personOfResource(ctx, q, r.Type, r.ID)
		if err != nil {
			return nil, err
		}
		evs[i] = event(v, r.Action, person, at)
		evs[i].Outcome, evs[i].Reason, evs[i].Resources = audit.Deny, r.Reason, []audit.Resource{{Type: r.Type, ID: r.ID}}
	}
	return evs, nil
}

// personOfResource returns the person behind the Patient whose compartment the newest
// version of typ/id lies in (a Patient's own), whichever member's it is and deleted or
// not; "" when there is no version, no such Patient, or the Patient has no source record.
// It reads through q (nil: the pool).
func (s *Service) personOfResource(ctx context.Context, q db.Querier, typ, id string) (string, error) {
	list, err := s.fhir.History(ctx, q, typ, id, 1)
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
	src, err := s.mpi.SourceByPatient(ctx, q, patientID)
	switch {
	case errs.CodeOf(err) == errs.NotFound:
		return "", nil
	case err != nil:
		return "", err
	}
	return string(src.PersonID), nil
}

// Filed is a write together with the person it is filed under, for Writes.File.
type Filed struct {
	Action   audit.Action // audit.Create, audit.Update or audit.Delete
	Person   string       // the MPI person; "" for none
	Resource audit.Resource
}

// fileWrite adds f to the write event of its action and person in evs that lists it
// already (then nothing changes) or has room for it, else to a new one, and returns evs.
func fileWrite(evs []audit.Event, v Viewer, f Filed, at time.Time) []audit.Event {
	room := -1
	for i, ev := range evs {
		if ev.Action != f.Action || ev.Patient != f.Person {
			continue
		}
		if slices.Contains(ev.Resources, f.Resource) {
			return evs
		}
		if room < 0 && len(ev.Resources) < maxWriteResources {
			room = i
		}
	}
	if room >= 0 {
		evs[room].Resources = append(evs[room].Resources, f.Resource)
		return evs
	}
	ev := event(v, f.Action, f.Person, at)
	ev.Outcome, ev.Resources = audit.Permit, []audit.Resource{f.Resource}
	return append(evs, ev)
}
