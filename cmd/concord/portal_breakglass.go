package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/portal"
	"github.com/concord-hie/concord/records"
)

// portalBreakGlass lets portal clinicians declare break-the-glass (portal.Emergency):
// the same declaration, officer review, patient notification and audit event as the FHIR
// $break-glass operation, for the clinician's own login at their member.
type portalBreakGlass struct {
	pool   *pgxpool.Pool
	store  *records.BreakGlassStore
	policy consent.BreakGlassPolicy
	audit  audit.Appender
	now    func() time.Time
}

func (b portalBreakGlass) Declare(ctx context.Context, v portal.Viewer, personID, reasonCode, text string) (time.Time, error) {
	now := b.now()
	glass, err := b.policy.Declare(v.Role == portal.RoleClinician && v.Org != "", reasonCode, text, now, 0)
	if err != nil {
		return time.Time{}, err
	}
	err = db.InTx(ctx, b.pool, func(tx db.Querier) error {
		if _, err := b.store.Declare(ctx, tx, records.Declaration{PersonID: personID, MemberID: v.Org, Actor: v.Actor, Glass: glass, RequestID: v.RequestID}); err != nil {
			return err
		}
		return b.audit.AppendTx(ctx, tx, audit.Event{Time: now, Action: audit.BreakGlass, Outcome: audit.Permit, Reason: glass.ReasonCode,
			Actor: v.Actor, Org: v.Org, Role: string(v.Role), Purpose: consent.PurposeBreakGlass, Patient: personID, BreakGlass: true,
			RequestID: v.RequestID, SourceIP: v.SourceIP})
	})
	return glass.Expires, err
}

func (b portalBreakGlass) Active(ctx context.Context, v portal.Viewer, personID string) (time.Time, error) {
	g, err := b.store.Active(ctx, nil, records.Viewer{Org: v.Org, Actor: v.Actor}, personID, b.now())
	if err != nil || g == nil {
		return time.Time{}, err
	}
	return g.Expires, nil
}
