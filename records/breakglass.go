package records

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// Declaration is one break-the-glass declaration: who declared it, for which person, why,
// and until when.
type Declaration struct {
	ID        string
	PersonID  string
	MemberID  string // the declaring organization
	ClientID  string // the declaring system ("" for a user)
	Actor     string // the declaring user "iss|sub" ("" for a system)
	Glass     consent.BreakGlass
	RequestID string
}

// BreakGlassStore keeps declarations (tables consent_break_glass, consent_review_tasks,
// consent_patient_notifications; migration 0021). A declaration applies only to the
// caller that made it (same member, client and actor), only to its person, and only until
// it expires.
type BreakGlassStore struct{ pool *pgxpool.Pool }

// NewBreakGlassStore returns the store over pool (used when a method's q is nil).
func NewBreakGlassStore(pool *pgxpool.Pool) *BreakGlassStore { return &BreakGlassStore{pool: pool} }

// Declare stores d in the caller's transaction tx together with an open officer review
// task and a pending patient notification, and returns d with its ID. d.Glass must come
// from consent.BreakGlassPolicy.Declare (errs.Invalid otherwise).
func (b *BreakGlassStore) Declare(ctx context.Context, tx db.Querier, d Declaration) (Declaration, error) {
	const op = "records.BreakGlassStore.Declare"
	if !d.Glass.ValidAt(d.Glass.Start) || d.PersonID == "" || d.MemberID == "" || (d.ClientID == "" && d.Actor == "") {
		return Declaration{}, errs.E(op, errs.Invalid, "incomplete break-the-glass declaration")
	}
	if err := tx.QueryRow(ctx, `INSERT INTO consent_break_glass
		(id, person_id, member_id, client_id, actor, reason_code, reason_text, declared_at, expires_at, request_id)
		VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id::text`,
		d.PersonID, d.MemberID, d.ClientID, d.Actor, d.Glass.ReasonCode, d.Glass.Text, d.Glass.Start, d.Glass.Expires, d.RequestID).Scan(&d.ID); err != nil {
		return Declaration{}, db.Map(op, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO consent_review_tasks (kind, break_glass_id, person_id) VALUES ('break-glass', $1, $2)`, d.ID, d.PersonID); err != nil {
		return Declaration{}, db.Map(op, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO consent_patient_notifications (kind, break_glass_id, person_id) VALUES ('break-glass', $1, $2)`, d.ID, d.PersonID); err != nil {
		return Declaration{}, db.Map(op, err)
	}
	return d, nil
}

// Active returns v's declaration for person in force at at (the latest-expiring one), or
// nil when there is none. q may be nil (the store's pool). A database failure is
// errs.Unavailable: the caller denies.
func (b *BreakGlassStore) Active(ctx context.Context, q db.Querier, v Viewer, person string, at time.Time) (*consent.BreakGlass, error) {
	const op = "records.BreakGlassStore.Active"
	if q == nil {
		q = b.pool
	}
	var g consent.BreakGlass
	err := q.QueryRow(ctx, `SELECT reason_code, reason_text, declared_at, expires_at FROM consent_break_glass
		WHERE person_id = $1 AND member_id = $2 AND client_id = $3 AND actor = $4 AND declared_at <= $5 AND expires_at > $5
		ORDER BY expires_at DESC LIMIT 1`, person, v.Org, v.Client, v.Actor, at).Scan(&g.ReasonCode, &g.Text, &g.Start, &g.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, "break-the-glass lookup failed", db.Map(op, err))
	}
	return &g, nil
}

// ForPerson returns v ready to ask about person: when v's purpose is BTG, with
// v.BreakGlass set to v's active declaration for that person (nil when there is none, so
// Decide denies with BreakGlassInvalid); otherwise v unchanged. A declaration for another
// person or by another caller never applies. Every disclosure path that knows the person
// calls it before deciding; the audit event then carries BreakGlass=true. A nil store
// leaves BTG requests without a declaration (denied). q may be nil (the store's pool).
func (b *BreakGlassStore) ForPerson(ctx context.Context, q db.Querier, v Viewer, person string, at time.Time) (Viewer, error) {
	if v.Purpose != consent.PurposeBreakGlass {
		return v, nil
	}
	v.BreakGlass = nil
	if b == nil || person == "" {
		return v, nil
	}
	g, err := b.Active(ctx, q, v, person, at)
	if err != nil {
		return v, err
	}
	v.BreakGlass = g
	return v, nil
}
