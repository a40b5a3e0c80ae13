package portal

import (
	"context"
	"encoding/json"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/mpi"
	mpistore "github.com/concord-hie/concord/mpi/store"
)

// CurrentDirectives is the consent source the privacy page reads; consent.Cache and
// records.StoreDirectives implement it.
type CurrentDirectives interface {
	Current(ctx context.Context, person string) ([]consent.Directive, consent.Versions, error)
}

// PrivacyStore implements Privacy on PostgreSQL: the audit log (package audit), the
// directory's members, the break-the-glass review tasks (consent_review_tasks,
// consent_break_glass) and the MPI review queue (mpi_review_items). Directives come from
// dirs.
type PrivacyStore struct {
	db    db.Querier
	dirs  CurrentDirectives
	mpi   MPIResolver
	audit Auditor // nil: audit reads answer errs.Unavailable; review closings are not audited
	// consents saves patients' sharing choices; nil: SetChoice answers errs.Unavailable.
	consents *consent.Store
}

// Auditor appends audit events, alone or inside a caller's transaction; *audit.Log
// implements it.
type Auditor interface {
	// Append commits ev (group commit) before it returns.
	Append(ctx context.Context, ev audit.Event) error
	AppendTx(ctx context.Context, tx db.Querier, evs ...audit.Event) error
}

// WithAudit makes officer actions (closing a break-the-glass review) commit together with
// their audit event, and audits every read of the audit log (officer searches, a patient's
// access log). Without it those reads are refused. It returns p.
func (p *PrivacyStore) WithAudit(a Auditor) *PrivacyStore {
	p.audit = a
	return p
}

// MPIResolver decides MPI review items; *mpistore.Ops implements it.
type MPIResolver interface {
	ResolveReview(ctx context.Context, item int64, decision mpistore.Decision, st mpistore.Steward) (mpistore.Change, error)
}

var _ Privacy = (*PrivacyStore)(nil)

// NewPrivacyStore returns the store on q (usually the pool), dirs, and mpi for review
// decisions (nil: ResolveMPIReview answers errs.Unavailable).
func NewPrivacyStore(q db.Querier, dirs CurrentDirectives, mpi MPIResolver) *PrivacyStore {
	return &PrivacyStore{db: q, dirs: dirs, mpi: mpi}
}

// MemberNames returns member ID → display name.
func (p *PrivacyStore) MemberNames(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	if err := p.memberNames(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (p *PrivacyStore) memberNames(ctx context.Context, out map[string]string) error {
	const op = "portal.PrivacyStore.MemberNames"
	ms, err := directory.NewStore(p.db).Members(ctx)
	if err != nil {
		return errs.E(op, errs.Unavailable, "member directory unavailable", err)
	}
	for _, m := range ms {
		out[m.ID] = m.Name
	}
	return nil
}

// AccessLog returns audit.AccessLog for personID, read by patient v. It commits one
// audit.AuditQuery event (actor v, patient personID, the period as its query, outcome) before
// returning the rows, and returns errs.Unavailable without rows when it cannot.
func (p *PrivacyStore) AccessLog(ctx context.Context, v Viewer, personID string, from, to time.Time) ([]audit.Access, error) {
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339))
	}
	acc, err := audit.AccessLog(ctx, p.db, personID, from, to)
	if aerr := p.auditRead(ctx, v, personID, q, err); aerr != nil {
		return nil, aerr
	}
	return acc, err
}

// Accounting returns audit.Accounting for personID, read by v (the patient or an officer),
// after committing the read's audit.AuditQuery event (with the read's outcome).
func (p *PrivacyStore) Accounting(ctx context.Context, v Viewer, personID string, from, to time.Time) ([]audit.DisclosureRow, error) {
	q := url.Values{"report": {"accounting"}}
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339))
	}
	rows, err := audit.Accounting(ctx, p.db, personID, from, to)
	if aerr := p.auditRead(ctx, v, personID, q, err); aerr != nil {
		return nil, aerr
	}
	return rows, err
}

// auditRead commits the audit.AuditQuery event of one read of the audit log by v about
// patient (may be ""), with the read's canonical query and its outcome (failure when
// readErr is not nil). It returns errs.Unavailable when the event cannot be committed or
// there is no Auditor.
func (p *PrivacyStore) auditRead(ctx context.Context, v Viewer, patient string, q url.Values, readErr error) error {
	const op = "portal.PrivacyStore.auditRead"
	if p.audit == nil {
		return errs.E(op, errs.Unavailable, "audit log reads need an audit writer")
	}
	ev := audit.Event{Action: audit.AuditQuery, Outcome: audit.Permit, Actor: v.Actor, Org: v.Org, Role: string(v.Role),
		Patient: patient, Query: q.Encode(), RequestID: v.RequestID, SourceIP: v.SourceIP}
	if readErr != nil {
		ev.Outcome, ev.Reason = audit.Failure, errs.CodeOf(readErr).String()
	}
	if err := p.audit.Append(ctx, ev); err != nil {
		return errs.E(op, errs.Unavailable, "audit log unavailable", err)
	}
	return nil
}

// Directives returns the directives currently in force for personID.
func (p *PrivacyStore) Directives(ctx context.Context, personID string) ([]consent.Directive, error) {
	dirs, _, err := p.dirs.Current(ctx, personID)
	return dirs, err
}

// DirectivesAt implements Privacy: the directives source's InForce when it has one (as-of
// answers from history), else the current directives for a time that is not past.
func (p *PrivacyStore) DirectivesAt(ctx context.Context, v Viewer, personID string, at time.Time) ([]consent.Directive, error) {
	const op = "portal.PrivacyStore.DirectivesAt"
	var dirs []consent.Directive
	var err error
	if src, ok := p.dirs.(interface {
		InForce(ctx context.Context, person string, at time.Time) ([]consent.Directive, error)
	}); ok {
		dirs, err = src.InForce(ctx, personID, at)
	} else {
		dirs, _, err = p.dirs.Current(ctx, personID)
	}
	if err != nil {
		return nil, err
	}
	if p.audit == nil {
		return nil, errs.E(op, errs.Unavailable, "simulations need an audit writer")
	}
	ev := audit.Event{Action: audit.ConsentDecision, Outcome: audit.Permit, Reason: "officer-simulation", Actor: v.Actor, Org: v.Org,
		Role: string(v.Role), Patient: personID, Query: "at=" + at.UTC().Format(time.RFC3339), RequestID: v.RequestID, SourceIP: v.SourceIP}
	if err := p.audit.Append(ctx, ev); err != nil {
		return nil, errs.E(op, errs.Unavailable, "audit log unavailable", err)
	}
	return dirs, nil
}

// ConsentHistory implements Privacy.
func (p *PrivacyStore) ConsentHistory(ctx context.Context, v Viewer, personID string) ([]consent.Version, error) {
	const op = "portal.PrivacyStore.ConsentHistory"
	if p.consents == nil || p.audit == nil {
		return nil, errs.E(op, errs.Unavailable, "consent history needs the consent store and the audit log")
	}
	all, err := p.consents.History(ctx, p.db, personID)
	if err != nil {
		return nil, err
	}
	var own []consent.Version
	var res []audit.Resource
	seen := map[consent.DirectiveID]bool{}
	for _, ver := range all {
		if ver.Directive.Kind != consent.KindPatient {
			continue // a default policy
		}
		// The person's own directives and, after an MPI merge, those of the persons
		// retired into it: all of them decide its requests (consent.Store.Load).
		own = append(own, ver)
		if id := ver.Directive.ID; !seen[id] {
			seen[id] = true
			res = append(res, audit.Resource{Type: "Consent", ID: string(id)})
		}
	}
	ev := audit.Event{Action: audit.Read, Outcome: audit.Permit, Reason: "officer-consent-review", Actor: v.Actor, Org: v.Org,
		Role: string(v.Role), Purpose: consent.PurposeOperations, Patient: personID, Resources: res, RequestID: v.RequestID, SourceIP: v.SourceIP}
	if err := p.audit.Append(ctx, ev); err != nil {
		return nil, errs.E(op, errs.Unavailable, "audit log unavailable", err)
	}
	return own, nil
}

// SearchAudit returns audit.Search over the log for officer v. It commits one
// audit.AuditQuery event (actor v, patient f.Patient, the filter as its query, outcome)
// before returning the events, and returns errs.Unavailable without events when it cannot.
// The officer's filter holds IDs, dates and codes only, so the query needs no HMACs.
func (p *PrivacyStore) SearchAudit(ctx context.Context, v Viewer, f audit.Filter) ([]audit.Event, string, error) {
	q := url.Values{}
	set := func(k, val string) {
		if val != "" {
			q.Set(k, val)
		}
	}
	set("patient", f.Patient)
	set("org", f.Org)
	set("agent", f.Agent)
	set("outcome", string(f.Outcome))
	set("cursor", f.Cursor)
	if !f.From.IsZero() {
		q.Set("from", f.From.UTC().Format(time.RFC3339))
	}
	if !f.To.IsZero() {
		q.Set("to", f.To.UTC().Format(time.RFC3339))
	}
	evs, next, err := audit.Search(ctx, p.db, f)
	if aerr := p.auditRead(ctx, v, f.Patient, q, err); aerr != nil {
		return nil, "", aerr
	}
	return evs, next, err
}

// BreakGlassReviews returns the open break-the-glass review tasks, oldest first, at most 200.
func (p *PrivacyStore) BreakGlassReviews(ctx context.Context) ([]BreakGlassReview, error) {
	const op = "portal.PrivacyStore.BreakGlassReviews"
	rows, err := p.db.Query(ctx, `
		SELECT t.id, t.person_id::text, b.member_id, b.actor, b.client_id, b.reason_code, b.reason_text,
		       b.declared_at, b.expires_at, t.created_at
		FROM consent_review_tasks t JOIN consent_break_glass b ON b.id = t.break_glass_id
		WHERE t.status = 'open' AND t.kind = 'break-glass'
		ORDER BY t.created_at, t.id LIMIT 200`)
	if err != nil {
		return nil, db.Map(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (BreakGlassReview, error) {
		var b BreakGlassReview
		err := r.Scan(&b.ID, &b.PersonID, &b.Member, &b.Actor, &b.Client, &b.ReasonCode, &b.ReasonText, &b.Declared, &b.Expires, &b.Opened)
		return b, err
	})
	if err != nil {
		return nil, db.Map(op, err)
	}
	return out, nil
}

// CloseBreakGlassReview closes open task id as reviewed by officer v. With an Auditor the
// closing and its audit event (break-the-glass, reason review-closed, v's actor, org, role,
// request ID and source IP) commit together.
func (p *PrivacyStore) CloseBreakGlassReview(ctx context.Context, v Viewer, id int64) error {
	const op = "portal.PrivacyStore.CloseBreakGlassReview"
	closeTask := func(tx db.Querier) error {
		var person string
		err := tx.QueryRow(ctx, `UPDATE consent_review_tasks SET status = 'closed', closed_at = now(), closed_by = $2
			WHERE id = $1 AND status = 'open' RETURNING person_id::text`, id, v.Actor).Scan(&person)
		if err != nil {
			if errs.CodeOf(db.Map(op, err)) == errs.NotFound {
				return errs.E(op, errs.NotFound, "no open review task with that ID")
			}
			return db.Map(op, err)
		}
		if p.audit == nil {
			return nil
		}
		return p.audit.AppendTx(ctx, tx, audit.Event{Action: audit.BreakGlass, Outcome: audit.Permit, Reason: "review-closed",
			Actor: v.Actor, Org: v.Org, Role: string(RoleOfficer), Patient: person, RequestID: v.RequestID, SourceIP: v.SourceIP})
	}
	if ts, ok := p.db.(db.TxStarter); ok {
		return db.InTx(ctx, ts, closeTask)
	}
	return closeTask(p.db)
}

// MPIReviews returns the open MPI review items, oldest first, at most limit (0: 100).
func (p *PrivacyStore) MPIReviews(ctx context.Context, limit int) ([]MPIReview, error) {
	const op = "portal.PrivacyStore.MPIReviews"
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := p.db.Query(ctx, `
		SELECT r.id, r.kind, r.source_id, s.member_id, r.candidate::text, coalesce(r.runner_up::text, ''),
		       r.score, r.guards, r.model, r.created_at, r.evidence
		FROM mpi_review_items r JOIN mpi_source_records s ON s.id = r.source_id
		WHERE r.status = 'open'
		ORDER BY r.created_at, r.id LIMIT $1`, limit)
	if err != nil {
		return nil, db.Map(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (MPIReview, error) {
		var m MPIReview
		var ev []byte
		if err := r.Scan(&m.ID, &m.Kind, &m.SourceID, &m.Member, &m.Candidate, &m.RunnerUp, &m.Score, &m.Guards, &m.Model, &m.Created, &ev); err != nil {
			return m, err
		}
		m.Fields = mpiFields(ev)
		return m, nil
	})
	if err != nil {
		return nil, db.Map(op, err)
	}
	return out, nil
}

// mpiFields decodes stored mpi.Evidence into named fields; malformed evidence yields none.
func mpiFields(b []byte) []MPIField {
	var ev struct {
		Levels  []int
		Weights []float64
	}
	if json.Unmarshal(b, &ev) != nil {
		return nil
	}
	var out []MPIField
	for i, name := range mpi.FieldNames {
		f := MPIField{Name: name}
		if i < len(ev.Levels) {
			f.Level = ev.Levels[i]
		}
		if i < len(ev.Weights) {
			f.Weight = ev.Weights[i]
		}
		out = append(out, f)
	}
	return out
}

// ResolveMPIReview decides review item id through the MPI's steward operations, with v
// as the steward.
func (p *PrivacyStore) ResolveMPIReview(ctx context.Context, v Viewer, id int64, link bool) error {
	const op = "portal.PrivacyStore.ResolveMPIReview"
	if p.mpi == nil {
		return errs.E(op, errs.Unavailable, "identity review decisions are not available")
	}
	d := mpistore.DecideKeepApart
	if link {
		d = mpistore.DecideLink
	}
	_, err := p.mpi.ResolveReview(ctx, id, d, mpistore.Steward{Subject: v.Actor, Org: v.Org, Role: string(v.Role), RequestID: v.RequestID, SourceIP: v.SourceIP})
	return err
}
