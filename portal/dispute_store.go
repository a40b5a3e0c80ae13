package portal

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// disputeEvent is the audit event of a change to dispute id about person: action create
// (reported) or update (closed), resource AuditEvent/seq.
func disputeEvent(v Viewer, action audit.Action, reason, person string, seq int64) audit.Event {
	return audit.Event{Action: action, Outcome: audit.Permit, Reason: reason, Actor: v.Actor, Org: v.Org,
		Role: string(v.Role), Patient: person, Resources: []audit.Resource{{Type: "AuditEvent", ID: strconv.FormatInt(seq, 10)}},
		RequestID: v.RequestID, SourceIP: v.SourceIP}
}

// Dispute implements Privacy.
func (p *PrivacyStore) Dispute(ctx context.Context, v Viewer, seq int64, reason string) error {
	const op = "portal.PrivacyStore.Dispute"
	if v.PersonID == "" || v.Role != RolePatient {
		return errs.E(op, errs.Invalid, "only the patient reports an access to their record")
	}
	acc, err := audit.AccessesBySeq(ctx, p.db, v.PersonID, []int64{seq})
	if err != nil {
		return err
	}
	if _, ok := acc[seq]; !ok {
		return errs.E(op, errs.NotFound, "no such access")
	}
	if p.audit == nil {
		return errs.E(op, errs.Unavailable, "disputes need an audit writer")
	}
	return auditedTx(ctx, p.db, p.audit, func(tx db.Querier) (audit.Event, error) {
		_, err := tx.Exec(ctx, `INSERT INTO portal_access_disputes (person_id, audit_seq, reason, created_by) VALUES ($1, $2, $3, $4)`,
			v.PersonID, seq, reason, v.Actor)
		if err != nil {
			return audit.Event{}, db.Map(op, err) // Conflict: reported already
		}
		return disputeEvent(v, audit.Create, "access-disputed", v.PersonID, seq), nil
	})
}

const disputeCols = `id, person_id, audit_seq, reason, created_at, status = 'open', closed_at, coalesce(resolution, '')`

func scanDispute(row pgx.Row) (Dispute, error) {
	var d Dispute
	var closed *time.Time
	err := row.Scan(&d.ID, &d.PersonID, &d.Seq, &d.Reason, &d.Created, &d.Open, &closed, &d.Resolution)
	if closed != nil {
		d.Closed = *closed
	}
	return d, err
}

func (p *PrivacyStore) disputes(ctx context.Context, op, where string, args ...any) ([]Dispute, error) {
	rows, err := p.db.Query(ctx, `SELECT `+disputeCols+` FROM portal_access_disputes WHERE `+where, args...)
	if err != nil {
		return nil, db.Map(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Dispute, error) { return scanDispute(r) })
	return out, db.Map(op, err)
}

// Disputes implements Privacy.
func (p *PrivacyStore) Disputes(ctx context.Context, personID string) (map[int64]Dispute, error) {
	ds, err := p.disputes(ctx, "portal.PrivacyStore.Disputes", `person_id = $1`, personID)
	if err != nil {
		return nil, err
	}
	out := make(map[int64]Dispute, len(ds))
	for _, d := range ds {
		out[d.Seq] = d
	}
	return out, nil
}

// OpenDisputes implements Privacy.
func (p *PrivacyStore) OpenDisputes(ctx context.Context) ([]Dispute, error) {
	ds, err := p.disputes(ctx, "portal.PrivacyStore.OpenDisputes", `status = 'open' ORDER BY created_at, id LIMIT 200`)
	if err != nil || len(ds) == 0 {
		return ds, err
	}
	seqs := make([]int64, len(ds))
	for i, d := range ds {
		seqs[i] = d.Seq
	}
	acc, err := audit.AccessesBySeq(ctx, p.db, "", seqs)
	if err != nil {
		return nil, err
	}
	for i := range ds {
		ds[i].Access = acc[ds[i].Seq]
	}
	return ds, nil
}

// CloseDispute implements Privacy.
func (p *PrivacyStore) CloseDispute(ctx context.Context, v Viewer, id int64, resolution string) error {
	const op = "portal.PrivacyStore.CloseDispute"
	if p.audit == nil {
		return errs.E(op, errs.Unavailable, "disputes need an audit writer")
	}
	return auditedTx(ctx, p.db, p.audit, func(tx db.Querier) (audit.Event, error) {
		var person string
		var seq int64
		err := tx.QueryRow(ctx, `UPDATE portal_access_disputes SET status = 'closed', closed_at = now(), closed_by = $2, resolution = $3
			WHERE id = $1 AND status = 'open' RETURNING person_id, audit_seq`, id, v.Actor, resolution).Scan(&person, &seq)
		if err != nil {
			if errs.CodeOf(db.Map(op, err)) == errs.NotFound {
				return audit.Event{}, errs.E(op, errs.NotFound, "no open report with that ID")
			}
			return audit.Event{}, db.Map(op, err)
		}
		return disputeEvent(v, audit.Update, "dispute-closed", person, seq), nil
	})
}
