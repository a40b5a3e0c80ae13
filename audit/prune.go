package audit

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// MinRetentionYears is the shortest retention the log allows: 45 CFR 164.316(b)(2) and the
// six-year look-back of 164.528. Configured retention may be longer, never shorter.
const MinRetentionYears = 6

// Prune drops the monthly partitions of audit_events that end on or before before, and
// returns how many it dropped. It refuses (errs.Invalid) when before is less than six years
// ago by the wall clock, and (errs.Conflict) when the events to drop are not a prefix of the
// chain. Before dropping, it checks the links of the events it removes and records the last
// one's seq, hash and Merkle frontier in audit_anchor, so Verify and the next checkpoint
// continue from there; it refuses (errs.Internal) if those links are broken. It must run as
// the tables' owner (the migrating role, not concord_app), best inside one transaction.
func Prune(ctx context.Context, q db.Querier, before time.Time) (int, error) {
	const op = "audit.Prune"
	if before.After(time.Now().AddDate(-MinRetentionYears, 0, 0)) {
		return 0, errs.E(op, errs.Invalid, fmt.Sprintf("audit events are kept at least %d years", MinRetentionYears))
	}
	rows, err := q.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_events'::regclass`)
	if err != nil {
		return 0, db.Map(op, err)
	}
	var drop []string
	var cut time.Time
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return 0, db.Map(op, err)
		}
		m, err := time.Parse("2006_01", strings.TrimPrefix(name, "audit_events_"))
		if err != nil {
			continue // not one of ours
		}
		end := m.AddDate(0, 1, 0)
		if !end.After(before) {
			drop = append(drop, name)
			if end.After(cut) {
				cut = end
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, db.Map(op, err)
	}
	if len(drop) == 0 {
		return 0, nil
	}
	sort.Strings(drop)
	var maxDrop, minKeep *int64
	if err := q.QueryRow(ctx, "SELECT max(seq) FROM audit_events WHERE time < $1", cut).Scan(&maxDrop); err != nil {
		return 0, db.Map(op, err)
	}
	if err := q.QueryRow(ctx, "SELECT min(seq) FROM audit_events WHERE time >= $1", cut).Scan(&minKeep); err != nil {
		return 0, db.Map(op, err)
	}
	if maxDrop != nil {
		if minKeep != nil && *minKeep < *maxDrop {
			return 0, errs.E(op, errs.Conflict, "the old partitions are not a prefix of the audit chain: nothing pruned")
		}
		if err := advanceAnchor(ctx, q, *maxDrop); err != nil {
			return 0, err
		}
	}
	for _, name := range drop {
		if _, err := q.Exec(ctx, "DROP TABLE "+quoteIdent(name)); err != nil {
			return 0, db.Map(op, err)
		}
	}
	return len(drop), nil
}

// advanceAnchor moves audit_anchor to seq upTo, checking the links on the way.
func advanceAnchor(ctx context.Context, q db.Querier, upTo int64) error {
	const op = "audit.Prune"
	a, _, err := loadAnchor(ctx, q)
	if err != nil {
		return err
	}
	fr, prev, seq := a.fr, a.hash, a.fr.size
	for seq < upTo {
		rows, err := q.Query(ctx, "SELECT seq, prev, hash FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT 10000", seq, upTo)
		if err != nil {
			return db.Map(op, err)
		}
		n := 0
		for rows.Next() {
			var s int64
			var p, h []byte
			if err := rows.Scan(&s, &p, &h); err != nil {
				rows.Close()
				return db.Map(op, err)
			}
			if s != seq+1 || string(p) != string(prev[:]) || len(h) != HashSize {
				rows.Close()
				return errs.E(op, errs.Internal, fmt.Sprintf("audit chain broken at seq %d: nothing pruned", seq+1))
			}
			copy(prev[:], h)
			fr.push(h)
			seq = s
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return db.Map(op, err)
		}
		if n == 0 {
			return errs.E(op, errs.Internal, fmt.Sprintf("audit chain broken at seq %d: nothing pruned", seq+1))
		}
	}
	_, err = q.Exec(ctx, `INSERT INTO audit_anchor (id, seq, hash, frontier, pruned_at) VALUES (true, $1, $2, $3, now())
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, frontier = excluded.frontier, pruned_at = excluded.pruned_at`,
		seq, prev[:], fr.marshal())
	return db.Map(op, err)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
