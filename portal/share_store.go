package portal

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/consent"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// maxActiveShareLinks bounds one person's active links.
const maxActiveShareLinks = 20

// ShareStore keeps share links in portal_share_links. It implements ShareLinks.
type ShareStore struct {
	db    db.Querier
	audit Auditor // nil: creating and revoking links is not audited
}

var _ ShareLinks = (*ShareStore)(nil)

// NewShareStore returns a store on q (usually the pool).
func NewShareStore(q db.Querier) *ShareStore { return &ShareStore{db: q} }

// WithAudit makes creating and revoking a link commit together with its audit event
// (audit.ConsentChange, reason share-link-created or share-link-revoked, TokenID naming the
// link as each use's event does): the patient's grant is traceable like any consent
// change. It returns s.
func (s *ShareStore) WithAudit(a Auditor) *ShareStore {
	s.audit = a
	return s
}

// shareTokenID names link id in audit events, as records.ShareTokenID does for its uses.
func shareTokenID(id int64) string { return "share-link/" + strconv.FormatInt(id, 10) }

// inTx is auditedTx on the store's Querier and audit writer.
func (s *ShareStore) inTx(ctx context.Context, fn func(tx db.Querier) (audit.Event, error)) error {
	return auditedTx(ctx, s.db, s.audit, fn)
}

// auditedTx runs fn in one transaction on q when q can start one, and appends the audit
// event fn returns in that transaction (nothing when a is nil), so a change and its audit
// event commit together or not at all.
func auditedTx(ctx context.Context, q db.Querier, a Auditor, fn func(tx db.Querier) (audit.Event, error)) error {
	run := func(tx db.Querier) error {
		ev, err := fn(tx)
		if err != nil || a == nil {
			return err
		}
		return a.AppendTx(ctx, tx, ev)
	}
	if ts, ok := q.(db.TxStarter); ok {
		return db.InTx(ctx, ts, run)
	}
	return run(q)
}

// changeEvent is the audit event of patient v changing their link id.
func changeEvent(v Viewer, id int64, reason string, at time.Time) audit.Event {
	return audit.Event{Time: at, Action: audit.ConsentChange, Outcome: audit.Permit, Reason: reason, Actor: v.Actor,
		Role: string(v.Role), Purpose: consent.PurposePatientRequest, Patient: v.PersonID, TokenID: shareTokenID(id),
		RequestID: v.RequestID, SourceIP: v.SourceIP}
}

// CreateShareLink implements ShareLinks. The count of active links and the insert are one
// statement, so two concurrent creations cannot both pass the cap.
func (s *ShareStore) CreateShareLink(ctx context.Context, v Viewer, l ShareLink, tokenHash []byte) (int64, error) {
	const op = "portal.ShareStore.CreateShareLink"
	if l.PersonID == "" || l.PersonID != v.PersonID || l.CreatedBy == "" || len(tokenHash) != 32 || !l.Expires.After(l.Created) {
		return 0, errs.E(op, errs.Invalid, "a share link needs its patient, a creator, a token hash and an expiry")
	}
	scope := "labs"
	var res *string
	if l.ResourceID != "" {
		scope, res = "lab", &l.ResourceID
	}
	var id int64
	err := s.inTx(ctx, func(tx db.Querier) (audit.Event, error) {
		err := tx.QueryRow(ctx, `
			INSERT INTO portal_share_links (person_id, token_hash, scope, resource_id, note, first_name, created_by, created_at, expires_at, include_sensitive)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $11
			WHERE (SELECT count(*) FROM portal_share_links
			       WHERE person_id = $1 AND revoked_at IS NULL AND expires_at > $8) < $10
			RETURNING id`, l.PersonID, tokenHash, scope, res, l.Note, l.FirstName, l.CreatedBy, l.Created.UTC(), l.Expires.UTC(),
			maxActiveShareLinks, l.IncludeSensitive).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return audit.Event{}, errs.E(op, errs.Conflict, "too many active share links")
		}
		if err != nil {
			return audit.Event{}, db.Map(op, err)
		}
		return changeEvent(v, id, "share-link-created", l.Created), nil
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

const shareCols = `id, person_id, coalesce(resource_id, ''), note, first_name, created_by, created_at, expires_at,
	revoked_at, use_count, last_used_at, include_sensitive`

func scanShare(row pgx.Row) (ShareLink, error) {
	var l ShareLink
	var revoked, used *time.Time
	err := row.Scan(&l.ID, &l.PersonID, &l.ResourceID, &l.Note, &l.FirstName, &l.CreatedBy, &l.Created, &l.Expires,
		&revoked, &l.Uses, &used, &l.IncludeSensitive)
	if revoked != nil {
		l.Revoked = *revoked
	}
	if used != nil {
		l.LastUsed = *used
	}
	return l, err
}

// ActiveShareLinks implements ShareLinks.
func (s *ShareStore) ActiveShareLinks(ctx context.Context, personID string, now time.Time) ([]ShareLink, error) {
	const op = "portal.ShareStore.ActiveShareLinks"
	rows, err := s.db.Query(ctx, `SELECT `+shareCols+` FROM portal_share_links
		WHERE person_id = $1 AND revoked_at IS NULL AND expires_at > $2
		ORDER BY created_at DESC, id DESC`, personID, now.UTC())
	if err != nil {
		return nil, db.Map(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ShareLink, error) { return scanShare(r) })
	return out, db.Map(op, err)
}

// RevokeShareLink implements ShareLinks. The revocation is committed when it returns: the
// next request with the link's token is refused.
func (s *ShareStore) RevokeShareLink(ctx context.Context, v Viewer, id int64, now time.Time) error {
	const op = "portal.ShareStore.RevokeShareLink"
	return s.inTx(ctx, func(tx db.Querier) (audit.Event, error) {
		tag, err := tx.Exec(ctx, `UPDATE portal_share_links SET revoked_at = $3
			WHERE person_id = $1 AND id = $2 AND revoked_at IS NULL AND expires_at > $3`, v.PersonID, id, now.UTC())
		if err != nil {
			return audit.Event{}, db.Map(op, err)
		}
		if tag.RowsAffected() == 0 {
			return audit.Event{}, errs.E(op, errs.NotFound, "no such share link")
		}
		return changeEvent(v, id, "share-link-revoked", now), nil
	})
}

// ShareLinkByHash implements ShareLinks: one equality probe of the unique hash index, so
// the time it takes says nothing about how close a guess was.
func (s *ShareStore) ShareLinkByHash(ctx context.Context, tokenHash []byte, now time.Time) (ShareLink, error) {
	const op = "portal.ShareStore.ShareLinkByHash"
	l, err := scanShare(s.db.QueryRow(ctx, `SELECT `+shareCols+` FROM portal_share_links
		WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2`, tokenHash, now.UTC()))
	if err != nil {
		return ShareLink{}, db.Map(op, err)
	}
	return l, nil
}

// CountShareUse implements ShareLinks.
func (s *ShareStore) CountShareUse(ctx context.Context, id int64, now time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE portal_share_links SET use_count = use_count + 1, last_used_at = $2 WHERE id = $1`, id, now.UTC())
	return db.Map("portal.ShareStore.CountShareUse", err)
}
