// Package records is the regional record's one enforcement point. Every disclosure path
// (FHIR reads and searches, the portal, share links, notifications) asks it for data: it
// resolves the person through the MPI, reads members' stored resources, decides each item
// with consent.Decide, writes the audit event before anything leaves, and drops what the
// caller may not see without revealing that it exists.
package records

import (
	"context"
	"strings"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
	mpistore "github.com/concord-hie/concord/mpi/store"
)

// ReferenceType reports whether typ is reference data (fhir.IsReferenceData): shared
// directory and formulary data (an organization, a clinician, a place, a drug) that holds
// no patient's record and sits in no compartment, readable and searchable by every member
// without a patient, like a clinical type is within a compartment. See sharedReference for
// which of their resources are shared.
func ReferenceType(typ string) bool { return fhir.IsReferenceData(typ) }

// sharedReference reports whether st is reference data every member may see: of a
// reference data type, in no compartment, and carrying no security label. A label
// (confidentiality, sensitivity, 42 CFR Part 2, which a Part 2 program's member puts on
// everything it sends) is released only under a consent provision naming it, and reference
// data has no patient whose consent could: such a resource stays its sender's alone, as
// does one whose labels cannot be read.
func sharedReference(st store.Stored) bool {
	if !fhir.IsReferenceData(st.Type) || st.PatientID != "" {
		return false
	}
	labels, _, ok := fhir.ConsentCodes(st.Body)
	return ok && len(labels) == 0
}

// Viewer is who asks, in what role, and why.
type Viewer struct {
	Actor      string // user "iss|sub", or "" for a system
	Client     string // OAuth client_id, for member systems
	Org        string // directory member ID of the viewer's organization ("" for patients)
	Role       string // consent role: patient, proxy, clinician, officer, system
	Purpose    string // v3-ActReason code
	PersonID   string // for patients and proxies: the person they are (or act for)
	TokenID    string
	RequestID  string
	SourceIP   string
	BreakGlass *consent.BreakGlass
}

// Directives loads the consent directives in force for a person at a time, regional
// defaults included. An error means the decision cannot be made: callers deny with 503.
type Directives interface {
	InForce(ctx context.Context, person string, at time.Time) ([]consent.Directive, error)
}

// versionedDirectives is a Directives that can take the consent versions its caller read in
// its own statement (consent.Cache): Read then needs no round trip of its own for them.
type versionedDirectives interface {
	CurrentAt(ctx context.Context, person string, v consent.Versions) ([]consent.Directive, error)
	SourceTimeout() time.Duration
}

// personAndVersions is a store.CompartmentLookup: "person person-version policy-version"
// for the compartment Patient's person (consent.VersionsSQL), NULL when it has none.
func personAndVersions(patientExpr string) string {
	return `(SELECT x.p || ' ' || ` + consent.VersionsSQL("x.p") + ` FROM (SELECT ` +
		mpistore.PersonOfPatient(patientExpr) + ` AS p) x)`
}

// AuditLog appends events durably; an error means nothing may be disclosed.
type AuditLog interface {
	Append(ctx context.Context, ev audit.Event) error
}

// Service composes the regional record.
type Service struct {
	fhir  *store.Store
	mpi   *mpistore.Store
	dirs  Directives
	audit AuditLog
	now   func() time.Time
	btg   *BreakGlassStore // nil: no break-the-glass declarations are honoured
}

// WithBreakGlass makes the service honour active break-the-glass declarations for viewers
// whose purpose is BTG. It returns s.
func (s *Service) WithBreakGlass(b *BreakGlassStore) *Service {
	s.btg = b
	return s
}

// New returns the enforcement point. now may be nil (time.Now).
func New(fhir *store.Store, mpi *mpistore.Store, dirs Directives, log AuditLog, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{fhir: fhir, mpi: mpi, dirs: dirs, audit: log, now: now}
}

// classOf reads what consent needs of st besides its type: its category codes and its
// security labels (fhir.ConsentCodes). ok is false when the stored body cannot be read;
// decide then denies, and the other callers treat the item as sensitive or leave it out.
func classOf(st store.Stored) (c consent.Class, labels []string, ok bool) {
	labels, cats, ok := fhir.ConsentCodes(st.Body)
	return consent.Class{ResourceType: st.Type, Categories: cats}, labels, ok
}

// decide runs consent for one stored item. A viewer bound to a person (a patient, a proxy,
// a share link's holder: Viewer.PersonID) is decided against no directive at all for any
// other person's item, so the right-of-access policy, which permits "the patient", never
// lets one patient read another's record. It also returns the item's security labels, read
// for the decision (nil when the body could not be read, which it denies).
func (s *Service) decide(dirs []consent.Directive, v Viewer, person string, at time.Time, st store.Stored) (consent.Decision, []string) {
	class, labels, readable := classOf(st)
	actor := v.Actor
	if actor == "" {
		actor = v.Client
	}
	if v.PersonID != "" && v.PersonID != person {
		dirs = nil
	}
	req := consent.Request{
		Actor: actor, ActorRole: v.Role, Org: v.Org, Purpose: v.Purpose, PersonID: person,
		Class: class, Custodian: st.MemberID, Labels: labels, At: at, BreakGlass: v.BreakGlass,
	}
	if !readable { // labels unknown: nothing can be decided about it, so nothing is shared
		return consent.UnreadableDecision(req), nil
	}
	return consent.Decide(dirs, req), labels
}

// event starts an audit event for v about person.
func event(v Viewer, action audit.Action, person string, at time.Time) audit.Event {
	return audit.Event{Time: at, Action: action, Actor: v.Actor, Client: v.Client, Org: v.Org, Role: v.Role,
		Purpose: v.Purpose, Patient: person, TokenID: v.TokenID, RequestID: v.RequestID, SourceIP: v.SourceIP,
		BreakGlass: v.BreakGlass != nil}
}

// appendAudit writes ev with a detached, bounded context so a hung-up client cannot drop
// the row. Failure is errs.Unavailable: the caller answers 503 and discloses nothing.
func (s *Service) appendAudit(ctx context.Context, ev audit.Event) error {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := s.audit.Append(actx, ev); err != nil {
		return errs.E("records.audit", errs.Unavailable, "audit log unavailable", err)
	}
	return nil
}

// breakGlass attaches the viewer's active break-the-glass declaration for person, when the
// service has a declaration store; without one the viewer is passed through as given.
func (s *Service) breakGlass(ctx context.Context, v Viewer, person string, at time.Time) (Viewer, error) {
	if s.btg == nil {
		return v, nil
	}
	return s.btg.ForPerson(ctx, nil, v, person, at)
}

// inForce loads directives or fails closed.
func (s *Service) inForce(ctx context.Context, person string, at time.Time) ([]consent.Directive, error) {
	dirs, err := s.dirs.InForce(ctx, person, at)
	if err != nil {
		return nil, errs.E("records.consent", errs.Unavailable, "consent unavailable", err)
	}
	return dirs, nil
}

// Compartment returns the stored resources of type typ for person across every member,
// newest first, filtered by consent for v, with one audit event for the person recorded
// before return. Denied items are simply absent. If nothing at all was permitted and
// something was denied, the denial is audited too.
func (s *Service) Compartment(ctx context.Context, v Viewer, person string, typ string, keep func(store.Stored) bool, limit int) ([]store.Stored, error) {
	return s.CompartmentTypes(ctx, v, person, []string{typ}, keep, limit)
}

// CompartmentTypes is Compartment for several types at once (at most limit of each, each
// type's newest first, in the order of types): the person's records, consent and
// break-the-glass are read once, and the one audit event names everything disclosed.
// "Patient" among types stands for the person's Patient records at every member.
func (s *Service) CompartmentTypes(ctx context.Context, v Viewer, person string, types []string, keep func(store.Stored) bool, limit int) ([]store.Stored, error) {
	return s.compartment(ctx, v, person, types, keep, limit, audit.Query)
}

// Export is CompartmentTypes for a copy of the record that leaves Concord as a whole (the
// patient's download): the same decisions, audited as an export rather than a query.
func (s *Service) Export(ctx context.Context, v Viewer, person string, types []string, keep func(store.Stored) bool, limit int) ([]store.Stored, error) {
	return s.compartment(ctx, v, person, types, keep, limit, audit.Export)
}

// ExportBulk is Export for one file of a Bulk Data export to the member system v: the
// person's consent-filtered regional resources of type typ last updated after since (all
// of them when since is zero), with no limit, audited as one export event for the person
// before it returns. Resources are served as they stand now, including changes after the
// export's transactionTime (the IG's SHOULD NOT, taken over dropping them, which would
// lose a change for good: the next export starts from transactionTime). 42 CFR Part 2
// records are left out: an NDJSON line cannot carry the redisclosure notice that must
// travel with them (§2.32), so they are disclosed one by one (read, search), never in bulk.
func (s *Service) ExportBulk(ctx context.Context, v Viewer, person, typ string, since time.Time) ([]store.Stored, error) {
	keep := func(st store.Stored) bool {
		if !st.LastUpdated.After(since) {
			return false
		}
		_, labels, ok := classOf(st)
		return ok && !consent.NeedsPart2Notice(labels, consent.Request{ActorRole: v.Role})
	}
	return s.compartment(ctx, v, person, []string{typ}, keep, 0, audit.Export)
}

func (s *Service) compartment(ctx context.Context, v Viewer, person string, types []string, keep func(store.Stored) bool, limit int, action audit.Action) ([]store.Stored, error) {
	at := s.now()
	sources, err := s.mpi.Sources(ctx, mpistore.PersonID(person))
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(sources))
	for i, src := range sources {
		ids[i] = src.PatientID
	}
	dirs, err := s.inForce(ctx, person, at)
	if err != nil {
		return nil, err
	}
	if v, err = s.breakGlass(ctx, v, person, at); err != nil {
		return nil, err
	}
	var all []store.Stored
	for _, typ := range types {
		some, err := s.fhir.ByPatients(ctx, typ, ids, limit)
		if err != nil {
			return nil, err
		}
		all = append(all, some...)
	}
	ev := event(v, action, person, at)
	var out []store.Stored
	denied := 0
	var lastDeny consent.Decision
	for _, st := range all {
		if keep != nil && !keep(st) {
			continue
		}
		d, _ := s.decide(dirs, v, person, at, st)
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

// Read returns one stored resource if v may see it. A member always sees what it sent
// itself; anything else passes consent for the person whose compartment holds it.
// Whatever v may not see — absent, deleted, another member's without consent — is
// errs.NotFound, and the denial is audited with its reason.
func (s *Service) Read(ctx context.Context, v Viewer, typ, id string) (store.Stored, error) {
	st, _, err := s.read(ctx, v, typ, id)
	return st, err
}

// read is Read that also returns, from the same decision, what must travel with a Part 2
// record disclosed to v (see ReadRelease).
func (s *Service) read(ctx context.Context, v Viewer, typ, id string) (store.Stored, *Part2Release, error) {
	st, rel, ev, err := s.decideRead(ctx, v, typ, id)
	if err != nil {
		return store.Stored{}, nil, err
	}
	if err := s.appendAudit(ctx, ev); err != nil {
		return store.Stored{}, nil, err
	}
	if ev.Outcome != audit.Permit {
		return store.Stored{}, nil, denied(ev)
	}
	return st, rel, nil
}

// denied is the error of a read that ev denied: absent to the caller, the reason inside.
func denied(ev audit.Event) error {
	const op = "records.Read"
	return errs.E(op, errs.NotFound, "resource not found", errs.E(op, errs.Forbidden, "consent: "+ev.Reason))
}

// decideRead reads typ/id and decides whether v may see it, returning the audit event
// that records the decision (not yet appended) and, for a permitted Part 2 record, what
// must travel with it.
func (s *Service) decideRead(ctx context.Context, v Viewer, typ, id string) (store.Stored, *Part2Release, audit.Event, error) {
	const op = "records.Read"
	at := s.now()
	// The resource, the person its compartment is linked to and (with a versioned consent
	// cache) that person's consent versions, in one statement: one snapshot, one round trip.
	vd, versioned := s.dirs.(versionedDirectives)
	lookup := mpistore.PersonOfPatient
	if versioned {
		lookup = personAndVersions
	}
	gctx, cancel := ctx, context.CancelFunc(func() {})
	if versioned {
		// The statement reads consent state: bounded like any consent read, so a consent
		// store that hangs is a prompt 503 and never a permit.
		gctx, cancel = context.WithTimeout(ctx, vd.SourceTimeout())
	}
	st, person, err := s.fhir.GetInCompartment(gctx, nil, typ, id, lookup)
	cancel()
	if err != nil {
		return store.Stored{}, nil, audit.Event{}, err
	}
	var versions consent.Versions
	if versioned && person != "" {
		var vs string
		person, vs, _ = strings.Cut(person, " ")
		if versions, err = consent.ParseVersions(vs); err != nil {
			return store.Stored{}, nil, audit.Event{}, errs.E(op, errs.Unavailable, "consent unavailable", err)
		}
	}
	ev := event(v, audit.Read, person, at)
	var rel *Part2Release
	ev.Resources = []audit.Resource{{Type: typ, ID: id}}
	switch {
	case v.Org != "" && v.Org == st.MemberID:
		ev.Outcome, ev.Reason = audit.Permit, "own-record"
	case person == "" && sharedReference(st):
		ev.Outcome, ev.Reason = audit.Permit, "reference-data"
	case person == "":
		ev.Outcome, ev.Reason = audit.Deny, "no-compartment"
	default:
		var dirs []consent.Directive
		if versioned {
			dirs, err = vd.CurrentAt(ctx, person, versions)
			if err != nil {
				err = errs.E("records.consent", errs.Unavailable, "consent unavailable", err)
			}
		} else {
			dirs, err = s.inForce(ctx, person, at)
		}
		if err != nil {
			return store.Stored{}, nil, audit.Event{}, err
		}
		if v, err = s.breakGlass(ctx, v, person, at); err != nil {
			return store.Stored{}, nil, audit.Event{}, err
		}
		ev.BreakGlass = v.BreakGlass != nil
		d, labels := s.decide(dirs, v, person, at, st)
		ev.Consent, ev.ConsentVersion, ev.Reason = string(d.By), int64(d.Version), d.Reason.String()
		ev.Outcome = audit.Deny
		if d.Allow {
			ev.Outcome = audit.Permit
		}
		if r, ok := part2Release(v, labels, d); ok {
			rel = &r
		}
	}
	return st, rel, ev, nil
}
