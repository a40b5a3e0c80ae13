package portal

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// Notice is one notification for a patient about their record: today, that an
// organization opened it in an emergency (break the glass). The clinician's free-text
// reason is not part of it: the patient sees the reason code in words, officers the text.
type Notice struct {
	ID         int64
	Kind       string // "break-glass"
	Created    time.Time
	Org        string // the member's display name
	ReasonCode string
	Declared   time.Time
	Expires    time.Time
}

// LogValue keeps notices out of logs.
func (Notice) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// maxNotices bounds the notices a page lists.
const maxNotices = 20

// Notices implements Privacy: personID's unread notices, newest first, at most 20.
func (p *PrivacyStore) Notices(ctx context.Context, personID string) ([]Notice, error) {
	const op = "portal.PrivacyStore.Notices"
	rows, err := p.db.Query(ctx, `SELECT n.id, n.kind, n.created_at, coalesce(m.name, b.member_id), b.reason_code, b.declared_at, b.expires_at
		FROM consent_patient_notifications n
		JOIN consent_break_glass b ON b.id = n.break_glass_id
		LEFT JOIN directory_members m ON m.id = b.member_id
		WHERE n.person_id::text = $1 AND n.seen_at IS NULL
		ORDER BY n.created_at DESC, n.id DESC LIMIT $2`, personID, maxNotices)
	if err != nil {
		return nil, db.Map(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Notice, error) {
		var n Notice
		err := r.Scan(&n.ID, &n.Kind, &n.Created, &n.Org, &n.ReasonCode, &n.Declared, &n.Expires)
		return n, err
	})
	if err != nil {
		return nil, db.Map(op, err)
	}
	return out, nil
}

// UnseenNotices implements Privacy.
func (p *PrivacyStore) UnseenNotices(ctx context.Context, personID string) (int, error) {
	var n int
	err := p.db.QueryRow(ctx, `SELECT count(*) FROM consent_patient_notifications WHERE person_id::text = $1 AND seen_at IS NULL`, personID).Scan(&n)
	return n, db.Map("portal.PrivacyStore.UnseenNotices", err)
}

// MarkNoticeSeen implements Privacy.
func (p *PrivacyStore) MarkNoticeSeen(ctx context.Context, personID string, id int64, at time.Time) error {
	const op = "portal.PrivacyStore.MarkNoticeSeen"
	ct, err := p.db.Exec(ctx, `UPDATE consent_patient_notifications SET seen_at = $3
		WHERE id = $2 AND person_id::text = $1 AND seen_at IS NULL`, personID, id, at)
	if err != nil {
		return db.Map(op, err)
	}
	if ct.RowsAffected() != 1 {
		return errs.E(op, errs.NotFound, "no such notice")
	}
	return nil
}
