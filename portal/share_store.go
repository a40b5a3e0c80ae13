package portal

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// maxActiveShareLinks bounds one person's active links.
const maxActiveShareLinks = 20

// ShareStore keeps share links in portal_share_links. It implements ShareLinks.
type ShareStore struct {
	db db.Querier
}

var _ ShareLinks = (*ShareStore)(nil)

// NewShareStore returns a store on q (usually the pool).
func NewShareStore(q db.Querier) *ShareStore { return &ShareStore{db: q} }

// CreateShareLink implements ShareLinks. The count of active links and the insert are one
// statement, so two concurrent creations cannot both pass the cap.
func (s *ShareStore) CreateShareLink(ctx context.Context, l ShareLink, tokenHash []byte) (int64, error) {
	const op = "portal.ShareStore.CreateShareLink"
	if l.PersonID == "" || l.CreatedBy == "" || len(tokenHash) != 32 || !l.Expires.After(l.Created) {
		return 0, errs.E(op, errs.Invalid, "a share link needs a person, a creator, a token hash and an expiry")
	}
	scope := "labs"
	var res *string
	if l.ResourceID != "" {
		scope, res = "lab", &l.ResourceID
	}
	var id int64
	err := s.db.QueryRow(ctx, `
		INSERT INTO portal_share_links (person_id, token_hash, scope, resource_id, note, first_name, created_by, created_at, expires_at)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9
		WHERE (SELECT count(*) FROM portal_share_links
		       WHERE person_id = $1 AND revoked_at IS NULL AND expires_at > $8) < $10
		RETURNING id`, l.PersonID, tokenHash, scope, res, l.Note, l.FirstName, l.CreatedBy, l.Created.UTC(), l.Expires.UTC(),
		maxActiveShareLinks).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, errs.E(op, errs.Conflict, "too many active share links")
	}
	if err != nil {
		return 0, db.Map(op, err)
	}
	return id, nil
}

const shareCols = `id, person_id, coalesce(resource_id, ''), note, first_name, created_by, created_at, expires_at,
	revoked_at, use_count, last_used_at`

func scanShare(row pgx.Row) (ShareLink, error) {
	var l ShareLink
	var revoked, used *time.Time
	err := row.Scan(&l.ID, &l.PersonID, &l.ResourceID, &l.Note, &l.FirstName, &l.CreatedBy, &l.Created, &l.Expires,
		&revoked, &l.Uses, &used)
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
	defer rows.Close()
	var out []ShareLink
	for rows.Next() {
		l, err := scanShare(rows)
		if err != nil {
			return nil, db.Map(op, err)
		}
		out = append(out, l)
	}
	return out, db.Map(op, rows.Err())
}

// RevokeShareLink implements ShareLinks. The revocation is committed when it returns: the
// next request with the link's token is refused.
func (s *ShareStore) RevokeShareLink(ctx context.Context, personID string, id int64, now time.Time) error {
	const op = "portal.ShareStore.RevokeShareLink"
	tag, err := s.db.Exec(ctx, `UPDATE portal_share_links SET revoked_at = $3
		WHERE person_id = $1 AND id = $2 AND revoked_at IS NULL AND expires_at > $3`, personID, id, now.UTC())
	if err != nil {
		return db.Map(op, err)
	}
	if tag.RowsAffected() == 0 {
		return errs.E(op, errs.NotFound, "no such share link")
	}
	return nil
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
