package records

import (
	"context"
	"slices"
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
	// IncludeSensitive lets the link show sensitive resources (consent.Sensitive); without
	// it they are left out, whatever consent would allow. For a link of every resource it
	// is the patient's choice to include them; for a link that names one resource it says
	// the resource was sensitive when the patient chose it. A link made for a resource
	// that was not sensitive then never shows it once a member labels it sensitive: the
	// patient never chose to share that.
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

// sharedBatch is the first batch a link of every resource reads; a batch that does not
// fill the page doubles the next, up to sharedMaxBatch. A link stops reading after
// sharedMaxRead rows, however few it could show: one page view by an anonymous link holder
// must not walk a long record without bound (the newest shown results come first anyway).
const (
	sharedBatch    = 50
	sharedMaxBatch = 1000
	sharedMaxRead  = 10000
)

// Shared returns the stored resources of type typ in the compartment of sh.PersonID that
// the holder of sh's link may see, newest first, at most limit of them (every one when limit
// is zero or less): those keep accepts (nil keeps all), or, when sh names one resource, that
// one alone if it is current and in the compartment of one of the person's member Patients;
// each decided by consent for a viewer of role consent.RoleShare with purpose PATRQT,
// exactly as Compartment decides for any viewer; sensitive ones only when
// sh.IncludeSensitive. The limit counts only what is shown: rows keep drops, sensitive
// rows left out and denied rows do not use it up.
// Denied items are simply absent. It commits one audit event for the use (Query, or Read
// for a link that names one resource) with ShareLink set, naming exactly what it returns,
// whatever was found, before it returns: errs.Unavailable when that event, consent, the MPI
// or the records cannot be read, and then nothing is returned. No break-the-glass
// declaration is ever honoured for a share link.
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
	action := audit.Query
	if sh.ResourceID != "" {
		action = audit.Read
	}
	ev := event(v, action, sh.PersonID, at)
	ev.ShareLink = true
	var out []store.Stored
	denied := 0
	var lastDeny consent.Decision
	// show decides st and adds it to out and the event when the link shows it.
	show := func(st store.Stored) {
		if keep != nil && !keep(st) {
			return
		}
		if _, labels, ok := classOf(st); !sh.IncludeSensitive && (!ok || consent.Sensitive(labels)) {
			return
		}
		d, _ := s.decide(dirs, v, sh.PersonID, at, st)
		if !d.Allow {
			denied++
			lastDeny = d
			return
		}
		out = append(out, st)
		ev.Resources = append(ev.Resources, audit.Resource{Type: st.Type, ID: st.ID})
		if ev.Consent == "" {
			ev.Consent, ev.ConsentVersion = string(d.By), int64(d.Version)
		}
	}
	switch {
	case len(ids) == 0:
	case sh.ResourceID != "":
		st, found, err := s.sharedOne(ctx, typ, sh.ResourceID, ids)
		if err != nil {
			return nil, errs.E(op, errs.Unavailable, "records unavailable", err)
		}
		if found {
			show(st)
		}
	default:
		q := store.Query{Type: typ, Patients: ids, PatientsSelf: typ == "Patient"}
		read := 0
		for batch := sharedBatch; (limit <= 0 || len(out) < limit) && read < sharedMaxRead; batch = min(2*batch, sharedMaxBatch) {
			q.Limit = batch
			rows, err := s.fhir.Search(ctx, nil, q)
			if err != nil {
				return nil, errs.E(op, errs.Unavailable, "records unavailable", err)
			}
			read += len(rows)
			for i := range rows {
				if limit > 0 && len(out) == limit {
					break
				}
				show(rows[i].Stored)
				q.After = &rows[i].Key
			}
			if len(rows) < batch {
				break
			}
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

// sharedOne reads the current version of typ/id, found only when it exists, is not deleted
// and is in the compartment of one of patients (for a Patient: is one of them). Any other
// resource, another person's included, is simply not found.
func (s *Service) sharedOne(ctx context.Context, typ, id string, patients []string) (store.Stored, bool, error) {
	st, err := s.fhir.Get(ctx, nil, typ, id)
	if errs.CodeOf(err) == errs.NotFound {
		return store.Stored{}, false, nil
	}
	if err != nil {
		return store.Stored{}, false, err
	}
	compartment := st.PatientID
	if typ == "Patient" {
		compartment = st.ID
	}
	if compartment == "" || !slices.Contains(patients, compartment) {
		return store.Stored{}, false, nil
	}
	return st, true, nil
}
