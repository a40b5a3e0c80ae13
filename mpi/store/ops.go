package store

import (
	"context"
	"encoding/json"
	"sort"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// TopicLinkChanged is the outbox topic of every change to which person a source record
// belongs. Its payload (LinkChanged) carries IDs only.
const TopicLinkChanged = "mpi.link-changed"

// Auditor appends audit events inside the caller's transaction, so the change and its audit
// rows commit together or not at all. *audit.Log satisfies it (AppendTx).
type Auditor interface {
	AppendTx(ctx context.Context, tx db.Querier, evs ...audit.Event) error
}

// Steward is who makes a manual MPI decision. Subject ("iss|sub") is recorded in the link
// history and the audit log; the other fields only in the audit log.
type Steward struct {
	Subject   string // the user, "iss|sub"; required
	Org       string // directory member id of the steward's organization
	Role      string
	Client    string
	RequestID string
	SourceIP  string // where the request came from (a browser's or an HL7 sender's address)
}

// LinkChanged is the outbox payload of TopicLinkChanged: which sources moved from which
// person to which, and why. Consumers re-point data and tell the affected members.
type LinkChanged struct {
	Action  string  `json:"action"` // link, unlink, merge, unmerge, keep-apart, source-retired (RetireSource)
	Merge   int64   `json:"merge,omitempty"`
	Sources []Moved `json:"sources"`
	Retired string  `json:"retired,omitempty"` // person retired by a merge (redirects to Into)
	Into    string  `json:"into,omitempty"`
	Revived string  `json:"revived,omitempty"` // person restored by an unmerge
}

// Moved is one source record's move in a LinkChanged event.
type Moved struct {
	Source  int64  `json:"source"`
	Member  string `json:"member"`
	Patient string `json:"patient"` // the member's FHIR Patient id
	From    string `json:"from"`
	To      string `json:"to"`
}

// Change is the result of a steward operation.
type Change struct {
	Action  string
	Merge   int64 // the merge id (Merge, Unmerge)
	Moved   []Moved
	Persons []PersonID // every person whose compartment changed, sorted
}

// Ops runs the steward's operations. Each is one transaction that locks the affected
// persons, then the affected source records, each set in id order (so two operations on
// overlapping persons queue instead of deadlocking), and writes the link history, an outbox
// event and the audit events before it commits.
type Ops struct {
	pool  db.TxStarter
	audit Auditor
	model string
	// once makes every operation a single attempt, for tests that must see a deadlock
	// instead of a silent retry.
	once bool
}

// NewOps returns the steward operations on pool. model names the matching model recorded in
// the history rows (Matcher.Model()).
func NewOps(pool db.TxStarter, a Auditor, model string) *Ops {
	return &Ops{pool: pool, audit: a, model: model}
}

func (o *Ops) inTx(ctx context.Context, fn func(tx db.Querier) error) error {
	if !o.once {
		return db.InTx(ctx, o.pool, fn)
	}
	tx, err := o.pool.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return db.Map("mpi.store.Ops", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := fn(tx); err != nil {
		return db.Map("mpi.store.Ops", err)
	}
	return db.Map("mpi.store.Ops", tx.Commit(ctx))
}

type lockedSource struct {
	Source
	state string
	score *float64
	rule  string
}

// lockPersons locks the given persons (FOR UPDATE, in id order) and returns the ones that
// exist with their retired_into (empty when live).
func lockPersons(ctx context.Context, tx db.Querier, ids ...PersonID) (map[PersonID]PersonID, error) {
	ss := make([]string, 0, len(ids))
	for _, id := range ids {
		ss = append(ss, string(id))
	}
	sort.Strings(ss)
	rows, err := tx.Query(ctx, `SELECT id, coalesce(retired_into::text, '') FROM mpi_persons WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`, ss)
	if err != nil {
		return nil, err
	}
	defer rows.Close() // a Scan error returns early; an open result set would leave tx's conn busy
	out := map[PersonID]PersonID{}
	for rows.Next() {
		var id, into string
		if err := rows.Scan(&id, &into); err != nil {
			return nil, err
		}
		out[PersonID(id)] = PersonID(into)
	}
	return out, rows.Err()
}

// lockSources locks source records selected by where (person_id = $1 or id = ANY($1)) in
// id order.
func lockSources(ctx context.Context, tx db.Querier, where string, arg any) ([]lockedSource, error) {
	rows, err := tx.Query(ctx, `SELECT id, member_id, system, value, patient_id, person_id, version, link_state, link_score, link_rule
		FROM mpi_source_records WHERE `+where+` ORDER BY id FOR UPDATE`, arg)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (lockedSource, error) {
		var s lockedSource
		return s, r.Scan(&s.ID, &s.MemberID, &s.System, &s.Value, &s.PatientID, &s.PersonID, &s.Version, &s.state, &s.score, &s.rule)
	})
}

// livePerson locks p FOR SHARE (so a merge cannot retire it until tx ends) and follows
// its retired_into redirects to the live person, locking each in turn.
func livePerson(ctx context.Context, tx db.Querier, p PersonID) (PersonID, error) {
	for range 64 {
		var into *string
		if err := tx.QueryRow(ctx, `SELECT retired_into::text FROM mpi_persons WHERE id = $1 FOR SHARE`, string(p)).Scan(&into); err != nil {
			return "", db.Map("mpi.store.livePerson", err)
		}
		if into == nil {
			return p, nil
		}
		p = PersonID(*into)
	}
	return "", errs.E("mpi.store.livePerson", errs.Internal, "merge redirects form a chain too long to follow")
}

// resolve follows retired_into from p to the live person (at most 64 hops).
func resolve(ctx context.Context, q db.Querier, p PersonID) (PersonID, error) {
	var live string
	err := q.QueryRow(ctx, `WITH RECURSIVE chain(id, nxt, depth) AS (
			SELECT id, retired_into, 0 FROM mpi_persons WHERE id = $1
			UNION ALL
			SELECT p.id, p.retired_into, c.depth + 1 FROM mpi_persons p JOIN chain c ON p.id = c.nxt WHERE c.depth < 64
		) SELECT id::text FROM chain WHERE nxt IS NULL`, string(p)).Scan(&live)
	if err == pgx.ErrNoRows {
		return "", errs.E("mpi.store.resolve", errs.NotFound, "no such person")
	}
	return PersonID(live), err
}

// Evidence is what a steward's history row records about the decision (mpi_link_history.
// evidence): IDs and codes only.
type Evidence struct {
	Decision string          `json:"decision"`         // must-link, cannot-link, merge, unmerge, link, keep-apart
	Person   string          `json:"person,omitempty"` // the person a cannot-link keeps the source out of
	Merge    int64           `json:"merge,omitempty"`
	Review   int64           `json:"review,omitempty"`
	Engine   json.RawMessage `json:"engine,omitempty"` // the review item's engine evidence
}

type historyRow struct {
	src      lockedSource
	to       PersonID
	action   string
	state    string
	evidence Evidence
	merge    int64
}

func (o *Ops) writeHistory(ctx context.Context, tx db.Querier, st Steward, rows []historyRow) error {
	b := &pgx.Batch{}
	for _, h := range rows {
		ev, err := json.Marshal(h.evidence)
		if err != nil {
			return err
		}
		var merge *int64
		if h.merge != 0 {
			merge = &h.merge
		}
		b.Queue(`INSERT INTO mpi_link_history(source_id, person_id, prev_person, action, state, score, evidence, model, actor, merge_id, prev_state, prev_score, prev_rule)
			VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8, $9, $10, $11, $12)`,
			h.src.ID, string(h.to), string(h.src.PersonID), h.action, h.state, ev, o.model, st.Subject, merge, h.src.state, h.src.score, h.src.rule)
	}
	return tx.SendBatch(ctx, b).Close()
}

func outbox(ctx context.Context, tx db.Querier, key PersonID, ev LinkChanged) error {
	payload, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO outbox_events(topic, key, payload) VALUES ($1, $2, $3)`, TopicLinkChanged, string(key), payload)
	return err
}

// auditChange appends one event per affected person, naming the moved Patients.
func (o *Ops) auditChange(ctx context.Context, tx db.Querier, st Steward, action audit.Action, reason string, c *Change) error {
	evs := make([]audit.Event, 0, len(c.Persons))
	for _, p := range c.Persons {
		ev := audit.Event{Action: action, Outcome: audit.Permit, Reason: reason, Actor: st.Subject, Client: st.Client,
			Org: st.Org, Role: st.Role, Patient: string(p), RequestID: st.RequestID, SourceIP: st.SourceIP}
		for _, m := range c.Moved {
			if m.From == string(p) || m.To == string(p) {
				ev.Resources = append(ev.Resources, audit.Resource{Type: "Patient", ID: m.Patient})
			}
		}
		evs = append(evs, ev)
	}
	return o.audit.AppendTx(ctx, tx, evs...)
}

func persons(ps ...PersonID) []PersonID {
	seen := map[PersonID]bool{}
	out := []PersonID{}
	for _, p := range ps {
		if p != "" && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func moved(s lockedSource, to PersonID) Moved {
	return Moved{Source: s.ID, Member: s.MemberID, Patient: s.PatientID, From: string(s.PersonID), To: string(to)}
}

func checkSteward(op string, st Steward) error {
	if st.Subject == "" {
		return errs.E(op, errs.Invalid, "a steward decision needs the steward's identity")
	}
	return nil
}

// lockSourceAndPersons locks source's current person and the extra persons, then the source,
// retrying when the source moved between the read and the lock.
func lockSourceAndPersons(ctx context.Context, tx db.Querier, source int64, extra ...PersonID) (lockedSource, map[PersonID]PersonID, error) {
	for range 5 {
		var cur string
		if err := tx.QueryRow(ctx, `SELECT person_id::text FROM mpi_source_records WHERE id = $1`, source).Scan(&cur); err != nil {
			return lockedSource{}, nil, err
		}
		ps, err := lockPersons(ctx, tx, append(extra, PersonID(cur))...)
		if err != nil {
			return lockedSource{}, nil, err
		}
		srcs, err := lockSources(ctx, tx, `id = $1`, source)
		if err != nil {
			return lockedSource{}, nil, err
		}
		if len(srcs) == 1 && srcs[0].PersonID == PersonID(cur) {
			return srcs[0], ps, nil
		}
	}
	return lockedSource{}, nil, errs.E("mpi.store.lockSource", errs.Unavailable, "the record is changing; try again")
}

// Link puts source into person as a MANUAL must-link decision (a retired person is followed
// to the person it was merged into). Automation never moves the source afterwards, and a
// cannot-link decision between them is withdrawn. Linking a source to the person it is
// already in makes the link MANUAL. Errors: errs.NotFound for an unknown source or person,
// errs.Invalid without a steward.
func (o *Ops) Link(ctx context.Context, source int64, person PersonID, st Steward) (Change, error) {
	const op = "mpi.store.Ops.Link"
	if err := checkSteward(op, st); err != nil {
		return Change{}, err
	}
	var c Change
	err := o.inTx(ctx, func(tx db.Querier) error {
		var err error
		c, err = o.link(ctx, tx, source, person, st, "link", Evidence{})
		if err != nil {
			return err
		}
		return o.auditChange(ctx, tx, st, audit.Link, "manual-link", &c)
	})
	if err != nil {
		return Change{}, errs.E(op, err)
	}
	return c, nil
}

func (o *Ops) link(ctx context.Context, tx db.Querier, source int64, person PersonID, st Steward, action string, evidence Evidence) (Change, error) {
	const op = "mpi.store.Ops.Link"
	target, err := resolve(ctx, tx, person)
	if err != nil {
		return Change{}, err
	}
	src, ps, err := lockSourceAndPersons(ctx, tx, source, target)
	if err != nil {
		return Change{}, err
	}
	if into, ok := ps[target]; !ok || into != "" {
		return Change{}, errs.E(op, errs.Conflict, "the person was merged meanwhile; try again")
	}
	if _, err := tx.Exec(ctx, `UPDATE mpi_source_records SET person_id = $2, link_state = 'MANUAL', link_rule = 'manual-link', updated_at = now() WHERE id = $1`, src.ID, string(target)); err != nil {
		return Change{}, err
	}
	// Withdraw every cannot-link decision that keeps the source out of target, including
	// those naming a person since merged into it.
	if _, err := tx.Exec(ctx, `DELETE FROM mpi_cannot_link WHERE source_id = $1
		AND person_id IN (SELECT f.person_id FROM mpi_person_family($2::uuid) f)`, src.ID, string(target)); err != nil {
		return Change{}, err
	}
	if evidence.Decision == "" {
		evidence.Decision = "must-link"
	}
	if err := o.writeHistory(ctx, tx, st, []historyRow{{src: src, to: target, action: action, state: "MANUAL", evidence: evidence}}); err != nil {
		return Change{}, err
	}
	c := Change{Action: action, Moved: []Moved{moved(src, target)}, Persons: persons(src.PersonID, target)}
	if err := outbox(ctx, tx, target, LinkChanged{Action: action, Sources: c.Moved}); err != nil {
		return Change{}, err
	}
	return c, nil
}

// Unlink takes source out of its person as a MANUAL cannot-link decision: the source gets a
// new person of its own, and a constraint records that automation must never put it back
// into the old one. Errors: errs.NotFound for an unknown source; errs.Conflict when the
// source is its person's only record (a review item's keep-apart records that decision).
func (o *Ops) Unlink(ctx context.Context, source int64, st Steward) (Change, error) {
	const op = "mpi.store.Ops.Unlink"
	if err := checkSteward(op, st); err != nil {
		return Change{}, err
	}
	var c Change
	err := o.inTx(ctx, func(tx db.Querier) error {
		src, _, err := lockSourceAndPersons(ctx, tx, source)
		if err != nil {
			return err
		}
		var others bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mpi_source_records WHERE person_id = $1 AND id <> $2)`, string(src.PersonID), src.ID).Scan(&others); err != nil {
			return err
		}
		if !others {
			return errs.E(op, errs.Conflict, "the record is the only one of its person; there is nothing to unlink it from")
		}
		fresh := NewPersonID()
		if _, err := tx.Exec(ctx, `INSERT INTO mpi_persons(id) VALUES ($1)`, string(fresh)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE mpi_source_records SET person_id = $2, link_state = 'MANUAL', link_rule = 'manual-unlink', updated_at = now() WHERE id = $1`, src.ID, string(fresh)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO mpi_cannot_link(source_id, person_id, actor) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, src.ID, string(src.PersonID), st.Subject); err != nil {
			return err
		}
		if err := o.writeHistory(ctx, tx, st, []historyRow{{src: src, to: fresh, action: "unlink", state: "MANUAL",
			evidence: Evidence{Decision: "cannot-link", Person: string(src.PersonID)}}}); err != nil {
			return err
		}
		c = Change{Action: "unlink", Moved: []Moved{moved(src, fresh)}, Persons: persons(src.PersonID, fresh)}
		if err := outbox(ctx, tx, src.PersonID, LinkChanged{Action: "unlink", Sources: c.Moved}); err != nil {
			return err
		}
		return o.auditChange(ctx, tx, st, audit.Unlink, "manual-unlink", &c)
	})
	if err != nil {
		return Change{}, errs.E(op, err)
	}
	return c, nil
}

// Merge moves every source of lose into keep and retires lose as a redirect to keep. The
// sources become MANUAL. Each history row remembers the source's earlier state, so Unmerge
// can restore it exactly. Errors: errs.NotFound for an unknown person; errs.Conflict when
// either person is retired, keep == lose, or a cannot-link decision keeps a source of one
// out of the other, or out of a person since merged into the other (unlink decisions must
// be withdrawn by a Link first). The merge bumps the consent version of every person of
// the joined family (migration 0107), so the directives of each apply to all of its
// records from the next request on.
func (o *Ops) Merge(ctx context.Context, keep, lose PersonID, st Steward) (Change, error) {
	const op = "mpi.store.Ops.Merge"
	if err := checkSteward(op, st); err != nil {
		return Change{}, err
	}
	if keep == lose {
		return Change{}, errs.E(op, errs.Conflict, "a person cannot be merged into itself")
	}
	var c Change
	err := o.inTx(ctx, func(tx db.Querier) error {
		ps, err := lockPersons(ctx, tx, keep, lose)
		if err != nil {
			return err
		}
		for _, p := range []PersonID{keep, lose} {
			into, ok := ps[p]
			if !ok {
				return errs.E(op, errs.NotFound, "no such person")
			}
			if into != "" {
				return errs.E(op, errs.Conflict, "the person was already merged")
			}
		}
		// A cannot-link decision names the person the source was kept out of, which may
		// since have been merged on: it keeps the source out of the live person it
		// resolves to (as CannotLink reads it), so compare with each side's merge family
		// (mpi_person_family, migration 0107), not with its ID alone.
		var blocked bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mpi_cannot_link c JOIN mpi_source_records s ON s.id = c.source_id
			WHERE (s.person_id = $1 AND c.person_id IN (SELECT f.person_id FROM mpi_person_family($2::uuid) f))
			   OR (s.person_id = $2 AND c.person_id IN (SELECT f.person_id FROM mpi_person_family($1::uuid) f)))`, string(keep), string(lose)).Scan(&blocked); err != nil {
			return err
		}
		if blocked {
			return errs.E(op, errs.Conflict, "a cannot-link decision keeps these persons apart")
		}
		srcs, err := lockSources(ctx, tx, `person_id = $1`, string(lose))
		if err != nil {
			return err
		}
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO mpi_merges(keep, lose, actor) VALUES ($1, $2, $3) RETURNING id`, string(keep), string(lose), st.Subject).Scan(&id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE mpi_source_records SET person_id = $1, link_state = 'MANUAL', link_rule = 'manual-merge', updated_at = now() WHERE person_id = $2`, string(keep), string(lose)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE mpi_persons SET retired_into = $1 WHERE id = $2`, string(keep), string(lose)); err != nil {
			return err
		}
		c = Change{Action: "merge", Merge: id, Persons: persons(keep, lose)}
		hist := make([]historyRow, len(srcs))
		for i, s := range srcs {
			hist[i] = historyRow{src: s, to: keep, action: "merge", state: "MANUAL", merge: id,
				evidence: Evidence{Decision: "merge", Merge: id}}
			c.Moved = append(c.Moved, moved(s, keep))
		}
		if err := o.writeHistory(ctx, tx, st, hist); err != nil {
			return err
		}
		if err := outbox(ctx, tx, keep, LinkChanged{Action: "merge", Merge: id, Sources: c.Moved, Retired: string(lose), Into: string(keep)}); err != nil {
			return err
		}
		return o.auditChange(ctx, tx, st, audit.Merge, "manual-merge", &c)
	})
	if err != nil {
		return Change{}, errs.E(op, err)
	}
	return c, nil
}

// Unmerge undoes merge mergeID: the retired person is live again and every source the merge
// moved returns to it with the link state, score and rule it had before. It refuses
// (errs.Conflict) when the merge was already undone, when the kept person has since been
// merged on (undo that merge first), or when a later link, unlink or review decision
// touched a moved source — restoring then would override that decision. A later merge
// that was itself undone is no obstacle. errs.NotFound for an unknown merge.
func (o *Ops) Unmerge(ctx context.Context, mergeID int64, st Steward) (Change, error) {
	const op = "mpi.store.Ops.Unmerge"
	if err := checkSteward(op, st); err != nil {
		return Change{}, err
	}
	var c Change
	err := o.inTx(ctx, func(tx db.Querier) error {
		var keep, lose string
		var undone bool
		err := tx.QueryRow(ctx, `SELECT keep::text, lose::text, undone_at IS NOT NULL FROM mpi_merges WHERE id = $1 FOR UPDATE`, mergeID).Scan(&keep, &lose, &undone)
		if err == pgx.ErrNoRows {
			return errs.E(op, errs.NotFound, "no such merge")
		} else if err != nil {
			return err
		}
		if undone {
			return errs.E(op, errs.Conflict, "the merge was already undone")
		}
		ps, err := lockPersons(ctx, tx, PersonID(keep), PersonID(lose))
		if err != nil {
			return err
		}
		if ps[PersonID(keep)] != "" || ps[PersonID(lose)] != PersonID(keep) {
			return errs.E(op, errs.Conflict, "the persons were merged again since; undo that merge first")
		}
		// The merge's history rows, and whether a decision other than a later merge and
		// its unmerge has touched each source since (restoring would override it).
		rows, err := tx.Query(ctx, `SELECT h.source_id, h.prev_state, h.prev_score, coalesce(h.prev_rule, ''),
				NOT EXISTS (SELECT 1 FROM mpi_link_history l WHERE l.source_id = h.source_id AND l.id > h.id AND l.action NOT IN ('merge', 'unmerge'))
			FROM mpi_link_history h WHERE h.merge_id = $1 AND h.action = 'merge' ORDER BY h.source_id`, mergeID)
		if err != nil {
			return err
		}
		defer rows.Close() // a Scan error returns early; an open result set would leave tx's conn busy
		type prior struct {
			state  string
			score  *float64
			rule   string
			latest bool
		}
		prev := map[int64]prior{}
		ids := []int64{}
		for rows.Next() {
			var id int64
			var p prior
			if err := rows.Scan(&id, &p.state, &p.score, &p.rule, &p.latest); err != nil {
				return err
			}
			prev[id] = p
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		srcs, err := lockSources(ctx, tx, `id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		for _, s := range srcs {
			if !prev[s.ID].latest || s.PersonID != PersonID(keep) {
				return errs.E(op, errs.Conflict, "a merged record was moved since; undo that change first")
			}
		}
		c = Change{Action: "unmerge", Merge: mergeID, Persons: persons(PersonID(keep), PersonID(lose))}
		b := &pgx.Batch{}
		hist := make([]historyRow, len(srcs))
		for i, s := range srcs {
			p := prev[s.ID]
			b.Queue(`UPDATE mpi_source_records SET person_id = $2, link_state = $3, link_score = $4, link_rule = $5, updated_at = now() WHERE id = $1`,
				s.ID, lose, p.state, p.score, p.rule)
			hist[i] = historyRow{src: s, to: PersonID(lose), action: "unmerge", state: p.state, merge: mergeID,
				evidence: Evidence{Decision: "unmerge", Merge: mergeID}}
			c.Moved = append(c.Moved, moved(s, PersonID(lose)))
		}
		b.Queue(`UPDATE mpi_persons SET retired_into = NULL WHERE id = $1`, lose)
		b.Queue(`UPDATE mpi_merges SET undone_at = now(), undone_by = $2 WHERE id = $1`, mergeID, st.Subject)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		if err := o.writeHistory(ctx, tx, st, hist); err != nil {
			return err
		}
		if err := outbox(ctx, tx, PersonID(keep), LinkChanged{Action: "unmerge", Merge: mergeID, Sources: c.Moved, Revived: lose}); err != nil {
			return err
		}
		return o.auditChange(ctx, tx, st, audit.Unmerge, "manual-unmerge", &c)
	})
	if err != nil {
		return Change{}, errs.E(op, err)
	}
	return c, nil
}

// Decision is a steward's answer to a review item.
type Decision string

// Decisions on a review item.
const (
	DecideLink      Decision = "link"       // the record is the candidate person: must-link
	DecideKeepApart Decision = "keep-apart" // it is not: cannot-link with the candidate
)

// ResolveReview closes open review item with decision: DecideLink links the item's source
// to its candidate person (as Link, with the item's evidence in the history); DecideKeepApart
// keeps the source where it is, makes its link MANUAL and records a cannot-link constraint
// with the candidate (and the runner-up of a possible-duplicate item). Errors: errs.NotFound
// for an unknown item, errs.Conflict for one already resolved, errs.Invalid for another
// decision.
func (o *Ops) ResolveReview(ctx context.Context, item int64, decision Decision, st Steward) (Change, error) {
	const op = "mpi.store.Ops.ResolveReview"
	if err := checkSteward(op, st); err != nil {
		return Change{}, err
	}
	if decision != DecideLink && decision != DecideKeepApart {
		return Change{}, errs.E(op, errs.Invalid, "unknown review decision")
	}
	var c Change
	err := o.inTx(ctx, func(tx db.Querier) error {
		var source int64
		var candidate, status string
		var runner *string
		var evidence json.RawMessage
		err := tx.QueryRow(ctx, `SELECT source_id, candidate::text, runner_up::text, status, evidence FROM mpi_review_items WHERE id = $1 FOR UPDATE`, item).
			Scan(&source, &candidate, &runner, &status, &evidence)
		if err == pgx.ErrNoRows {
			return errs.E(op, errs.NotFound, "no such review item")
		} else if err != nil {
			return err
		}
		if status != "open" {
			return errs.E(op, errs.Conflict, "the review item was already resolved")
		}
		ev := Evidence{Decision: string(decision), Review: item, Engine: evidence}
		if decision == DecideLink {
			if c, err = o.link(ctx, tx, source, PersonID(candidate), st, "link", ev); err != nil {
				return err
			}
			if err := o.auditChange(ctx, tx, st, audit.Link, "review-link", &c); err != nil {
				return err
			}
		} else {
			src, _, err := lockSourceAndPersons(ctx, tx, source)
			if err != nil {
				return err
			}
			apart := []string{candidate}
			if runner != nil {
				apart = append(apart, *runner)
			}
			if _, err := tx.Exec(ctx, `UPDATE mpi_source_records SET link_state = 'MANUAL', link_rule = 'manual-keep-apart' WHERE id = $1`, src.ID); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO mpi_cannot_link(source_id, person_id, actor) SELECT $1, p, $3 FROM unnest($2::uuid[]) AS p
				WHERE p NOT IN (SELECT f.person_id FROM mpi_person_family($4::uuid) f) ON CONFLICT DO NOTHING`, src.ID, apart, st.Subject, string(src.PersonID)); err != nil {
				return err
			}
			if err := o.writeHistory(ctx, tx, st, []historyRow{{src: src, to: src.PersonID, action: "keep-apart", state: "MANUAL", evidence: ev}}); err != nil {
				return err
			}
			c = Change{Action: "keep-apart", Moved: []Moved{moved(src, src.PersonID)}, Persons: persons(src.PersonID)}
			if err := outbox(ctx, tx, src.PersonID, LinkChanged{Action: "keep-apart", Sources: c.Moved}); err != nil {
				return err
			}
			if err := o.auditChange(ctx, tx, st, audit.Unlink, "review-keep-apart", &c); err != nil {
				return err
			}
		}
		closed := "linked"
		if decision == DecideKeepApart {
			closed = "kept-apart"
		}
		_, err = tx.Exec(ctx, `UPDATE mpi_review_items SET status = $2, resolved_at = now(), resolved_by = $3 WHERE id = $1`, item, closed, st.Subject)
		return err
	})
	if err != nil {
		return Change{}, errs.E(op, err)
	}
	return c, nil
}

// CannotLink returns the live persons that source must never be linked into by automation:
// its cannot-link decisions, each followed through merges.
func CannotLink(ctx context.Context, q db.Querier, source int64) ([]PersonID, error) {
	rows, err := q.Query(ctx, `SELECT person_id::text FROM mpi_cannot_link WHERE source_id = $1 ORDER BY person_id`, source)
	if err != nil {
		return nil, db.Map("mpi.store.CannotLink", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, db.Map("mpi.store.CannotLink", err)
	}
	out := make([]PersonID, 0, len(ids))
	for _, id := range ids {
		p, err := resolve(ctx, q, PersonID(id))
		if err != nil {
			return nil, db.Map("mpi.store.CannotLink", err)
		}
		out = append(out, p)
	}
	return out, nil
}
