package records

import (
	"context"
	"strconv"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
)

// Share is one use of a patient's share link: whose record it opens, what it names, and
// the request it arrived in. The link's token never reaches records; the portal resolved it
// (and its expiry and revocation) before asking.
type Share struct {
	LinkID     int64  // the link's ID, recorded as the audit event's TokenID "share-link/ID"
	PersonID   string // the patient who made the link
	ResourceID string // the one resource the link names; "" for every resource of the type
	// IncludeSensitive lets a link of every resource show the sensitive ones
	// (consent.Sensitive) too; without it they are left out, whatever consent would allow.
	// A link that names one resource shows it either way: the patient chose it.
	IncludeSensitive bool
	RequestID        string
	SourceIP         string
}

// ShareTokenID is the audit TokenID of a use of link id: the link's ID, never its token.
func ShareTokenID(id int64) string { return "share-link/" + strconv.FormatInt(id, 10) }

// viewer is the share link's holder as consent sees them: role share, acting for the
// patient with the patient's own purpose (PATRQT), anonymous.
func (sh Share) viewer() Viewer {
	return Viewer{Role: consent.RoleShare, Purpose: consent.PurposePatientRequest, PersonID: sh.PersonID,
		TokenID: ShareTokenID(sh.LinkID), RequestID: sh.RequestID, SourceIP: sh.SourceIP}
}

// Shared returns the stored resources of type typ in the compartment of sh.PersonID that
// the holder of sh's link may see, newest first: those keep accepts (nil keeps all) and, when
// sh names one resource, only that one; each decided by consent for a viewer of role
// consent.RoleShare with purpose PATRQT, exactly as Compartment decides for any viewer;
// sensitive ones only when sh.IncludeSensitive or sh names them.
// Denied items are simply absent. It commits one audit event for the use (Query, or Read
// for a link that names one resource) with ShareLink set, whatever was found, before it
// returns: errs.Unavailable when that event, consent or the MPI cannot be read, and then
// nothing is returned. No break-the-glass declaration is ever honoured for a share link.
func (s *Service) Shared(ctx context.Context, sh Share, typ string, keep func(store.Stored) bool, limit int) ([]store.Stored, error) {
	const op = "records.Shared"
	if sh.PersonID == "" || sh.LinkID == 0 {
		return nil, errs.E(op, errs.Invalid, "a share needs a person and a link")
	}
	at := s.now()
	v := sh.viewer()
	sources, err := s.mpi.Sources(ctx, mpistore.PersonID(sh.PersonID))
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "identity unavailable", err)
	}
	ids := make([]string, len(sources))
	for i, src := range sources {
		ids[i] = src.PatientID
	}
	dirs, err := s.inForce(ctx, sh.PersonID, at)
	if err != nil {
		return nil, err
	}
	var all []store.Stored
	if len(ids) > 0 {
		if all, err = s.fhir.ByPatients(ctx, typ, ids, limit); err != nil {
			return nil, errs.E(op, errs.Unavailable, "records unavailable", err)
		}
	}
	action := audit.Query
	if sh.ResourceID != "" {
		action = audit.Read
	}
	ev := event(v, action, sh.PersonID, at)
	ev.ShareLink = true
	var out []store.Stored
	denied := 0
	var lastDeny consent.Decision
	for _, st := range all {
		if (sh.ResourceID != "" && st.ID != sh.ResourceID) || (keep != nil && !keep(st)) {
			continue
		}
		if _, labels, ok := classOf(st); sh.ResourceID == "" && !sh.IncludeSensitive && (!ok || consent.Sensitive(labels)) {
			continue
		}
		d, _ := s.decide(dirs, v, sh.PersonID, at, st)
		if !d.Allow {
			denied++
			lastDeny = d
			continue
		}
		out = append(out, st)
		ev.Resources = append(ev.Resources, audit.Resource{Type: st.Type, ID: st.ID})
		if ev.Consent == "" {
			ev.Consent, ev.ConsentVersion = string(d.By), int64(d.Version)
		}
	}
	ev.Outcome, ev.Reason = audit.Permit, "permitted"
	if len(out) == 0 && denied > 0 {
		ev.Outcome, ev.Reason = audit.Deny, lastDeny.Reason.String()
		ev.Consent, ev.ConsentVersion = string(lastDeny.By), int64(lastDeny.Version)
	}
	if err := s.appendAudit(ctx, ev); err != nil {
		return nil, err
	}
	return out, nil
}
