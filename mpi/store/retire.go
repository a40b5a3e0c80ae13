package store

import (
	"context"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// ActionSourceRetired is the LinkChanged action (and history action) of RetireSource.
const ActionSourceRetired = "source-retired"

// RetireSource takes source out of its person in the caller's tx because the member that
// owns it merged that record into another of its own records, survivor (an HL7 ADT
// A40/A34): the source moves to a new person of its own that is retired into survivor's
// person, so its Patient still resolves to where its data went while no person lists it
// among its sources, and it leaves the matching blocks (it is never a candidate again).
// When that leaves its former person with no source records, that person is retired into
// survivor's person as a merge retires one (a redirect; there is no merge to undo). The
// history row, the outbox event (action ActionSourceRetired, Into survivor's person,
// Retired the emptied person if any) and the audit events are written in tx.
//
// A source whose person is already retired (retired before) is left as it is: the zero
// Change and no error. Errors: errs.NotFound for an unknown source or survivor,
// errs.Invalid for source == survivor, two members' records or no steward, errs.Conflict
// when survivor's person was merged meanwhile.
func (o *Ops) RetireSource(ctx context.Context, tx db.Querier, source, survivor int64, st Steward) (Change, error) {
	const op = "mpi.store.Ops.RetireSource"
	if err := checkSteward(op, st); err != nil {
		return Change{}, err
	}
	if source == survivor {
		return Change{}, errs.E(op, errs.Invalid, "a record cannot be retired into itself")
	}
	c, err := o.retireSource(ctx, tx, source, survivor, st)
	if err != nil {
		return Change{}, errs.E(op, db.Map(op, err))
	}
	return c, nil
}

func (o *Ops) retireSource(ctx context.Context, tx db.Querier, source, survivor int64, st Steward) (Change, error) {
	const op = "mpi.store.Ops.RetireSource"
	var survPerson, survMember string
	if err := tx.QueryRow(ctx, `SELECT person_id::text, member_id FROM mpi_source_records WHERE id = $1`, survivor).Scan(&survPerson, &survMember); err != nil {
		return Change{}, err
	}
	target, err := resolve(ctx, tx, PersonID(survPerson))
	if err != nil {
		return Change{}, err
	}
	src, ps, err := lockSourceAndPersons(ctx, tx, source, target)
	if err != nil {
		return Change{}, err
	}
	if src.MemberID != survMember {
		return Change{}, errs.E(op, errs.Invalid, "a record is retired only into another record of its own member")
	}
	if ps[src.PersonID] != "" {
		return Change{}, nil // retired before: nothing changes
	}
	if into, ok := ps[target]; !ok || into != "" {
		return Change{}, errs.E(op, errs.Conflict, "the person was merged meanwhile; try again")
	}
	old := src.PersonID
	fresh := NewPersonID()
	if _, err := tx.Exec(ctx, `INSERT INTO mpi_persons(id, retired_into) VALUES ($1, $2)`, string(fresh), string(target)); err != nil {
		return Change{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE mpi_source_records SET person_id = $2, link_state = 'MANUAL', link_rule = $3, updated_at = now() WHERE id = $1`,
		src.ID, string(fresh), ActionSourceRetired); err != nil {
		return Change{}, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM mpi_block_keys WHERE source_id = $1`, src.ID); err != nil {
		return Change{}, err
	}
	var emptied PersonID
	if old != target {
		tag, err := tx.Exec(ctx, `UPDATE mpi_persons SET retired_into = $2 WHERE id = $1
			AND NOT EXISTS (SELECT 1 FROM mpi_source_records WHERE person_id = $1)`, string(old), string(target))
		if err != nil {
			return Change{}, err
		}
		if tag.RowsAffected() == 1 {
			emptied = old
		}
	}
	if err := o.writeHistory(ctx, tx, st, []historyRow{{src: src, to: fresh, action: ActionSourceRetired, state: "MANUAL",
		evidence: Evidence{Decision: ActionSourceRetired, Person: string(target)}}}); err != nil {
		return Change{}, err
	}
	c := Change{Action: ActionSourceRetired, Moved: []Moved{moved(src, fresh)}, Persons: persons(old, fresh, target)}
	if err := outbox(ctx, tx, target, LinkChanged{Action: ActionSourceRetired, Sources: c.Moved, Retired: string(emptied), Into: string(target)}); err != nil {
		return Change{}, err
	}
	if err := o.auditChange(ctx, tx, st, audit.Merge, ActionSourceRetired, &c); err != nil {
		return Change{}, err
	}
	return c, nil
}
