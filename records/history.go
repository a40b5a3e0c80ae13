package records

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
)

// Versions and history are served only to the member that owns the resource: earlier
// versions may hold what a later version (or a consent change) withdrew, and consent
// decides current data only. They still disclose PHI, so each answer is audited like a
// read of one's own record before it leaves.

// OwnVersion returns version version of typ/id if v's organization (v.Org) owns the
// resource, after appending a Read event (Permit, reason own-record) for the person whose
// compartment holds it. An unknown version, and another member's resource, are
// errs.NotFound alike; the latter after a Read event (Deny, reason not-owner) for its
// person. A deletion version is returned (Deleted set) for the caller to answer 410. If
// the audit row cannot be written it returns errs.Unavailable and nothing.
func (s *Service) OwnVersion(ctx context.Context, v Viewer, typ, id string, version int) (store.Stored, error) {
	const op = "records.OwnVersion"
	st, err := s.fhir.Version(ctx, nil, typ, id, version)
	if err != nil {
		if errs.CodeOf(err) == errs.NotFound {
			return store.Stored{}, errs.E(op, errs.NotFound, "resource not found", err)
		}
		return store.Stored{}, err
	}
	if v.Org == "" || st.MemberID != v.Org {
		if err := s.auditVersions(ctx, v, false, st); err != nil {
			return store.Stored{}, err
		}
		return store.Stored{}, errs.E(op, errs.NotFound, "resource not found")
	}
	if err := s.auditVersions(ctx, v, true, st); err != nil {
		return store.Stored{}, err
	}
	return st, nil
}

// OwnHistory returns up to limit versions of typ/id, newest first, if v's organization
// owns the resource, after appending one Read event (Permit, own-record) for the person
// whose compartment holds its newest version. Another member's resource and an unknown
// id are errs.NotFound alike; the former after a Read event (Deny, not-owner). An audit
// failure is errs.Unavailable and nothing.
func (s *Service) OwnHistory(ctx context.Context, v Viewer, typ, id string, limit int) ([]store.Stored, error) {
	const op = "records.OwnHistory"
	list, err := s.fhir.History(ctx, nil, typ, id, limit)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, errs.E(op, errs.NotFound, "resource not found")
	}
	own := v.Org != "" && list[0].MemberID == v.Org
	if err := s.auditVersions(ctx, v, own, list...); err != nil {
		return nil, err
	}
	if !own {
		return nil, errs.E(op, errs.NotFound, "resource not found")
	}
	return list, nil
}

// auditVersions appends the Read event of a member asking for versions of a resource:
// Permit (own-record) for its own, Deny (not-owner) for another member's. The person is the one behind the Patient the versions' bodies point at (the first one,
// newest first, that names one); history rows keep no compartment column.
func (s *Service) auditVersions(ctx context.Context, v Viewer, own bool, versions ...store.Stored) error {
	st := versions[0]
	patientID := ""
	if st.Type == "Patient" {
		patientID = st.ID
	}
	for _, o := range versions {
		if patientID != "" {
			break
		}
		patientID = compartmentOf(o.Body)
	}
	person := ""
	if patientID != "" {
		src, err := s.mpi.SourceByPatient(ctx, nil, patientID)
		if err != nil && errs.CodeOf(err) != errs.NotFound {
			return err
		}
		person = string(src.PersonID)
	}
	ev := event(v, audit.Read, person, s.now())
	ev.Resources = []audit.Resource{{Type: st.Type, ID: st.ID}}
	ev.Outcome, ev.Reason = audit.Permit, "own-record"
	if !own {
		ev.Outcome, ev.Reason = audit.Deny, "not-owner"
	}
	return s.appendAudit(ctx, ev)
}

// compartmentRef is where a stored body names its Patient.
type compartmentRef struct {
	Subject *struct {
		Reference string `json:"reference"`
	} `json:"subject"`
	Patient *struct {
		Reference string `json:"reference"`
	} `json:"patient"`
}

// compartmentOf returns the Patient id a stored body's subject (or patient) names, "" if none.
func compartmentOf(body []byte) string {
	var c compartmentRef
	if json.Unmarshal(body, &c) != nil {
		return ""
	}
	ref := ""
	switch {
	case c.Subject != nil:
		ref = c.Subject.Reference
	case c.Patient != nil:
		ref = c.Patient.Reference
	}
	id, _ := strings.CutPrefix(ref, "Patient/")
	if id == ref {
		return ""
	}
	return id
}
