package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
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
// returns how many it dropped. It refuses (errs.Invalid) when before is less than
// MinRetentionYears ago by the wall clock, and (errs.Conflict) when the events to drop are
// not a prefix of the chain, when no signed checkpoint covers them yet, or when the anchor a
// previous prune left does not verify (see checkAnchor). Before dropping, it checks the
// events it removes up to the first checkpoint at or beyond the last of them: their
// encodings, hashes and links, and that checkpoint's signature, root and head. It refuses
// (errs.Internal) if any check fails. Then it records the last removed event's seq, hash and
// Merkle frontier in audit_anchor, so Verify and the next checkpoint continue from there,
// with a statement signed by key: that seq, hash and Merkle root, the latest time among the
// removed events and the time of pruning. Verify rejects an anchor without a valid
// statement, or whose events were younger than MinRetentionYears when pruned; Prune refuses
// (errs.Invalid) to write one that would be rejected. It returns errs.Unavailable without a
// key. It must run as the tables' owner (the migrating role: concord_app may neither drop
// partitions nor write audit_anchor), best inside one transaction, in which it takes the
// checkpoint lock. ApplyPrune does the same and says what it dropped.
func Prune(ctx context.Context, q db.Querier, key ed25519.PrivateKey, before time.Time) (int, error) {
	p, err := ApplyPrune(ctx, q, key, before)
	return len(p.Partitions), err
}

// PrunePlan is what ApplyPrune dropped or PlanPrune would drop: names and seqs only.
type PrunePlan struct {
	Partitions []string // the monthly partitions of audit_events, oldest first
	// FirstSeq and LastSeq bound the events in the partitions, and LastSeq becomes the
	// anchor's seq. Both are 0 when the partitions hold no events: they are dropped and the
	// anchor stays as it was.
	FirstSeq, LastSeq int64
	// Checkpoint is the ID of the signed checkpoint that vouches for the events, 0 with none.
	Checkpoint int64
}

// ErrNoCheckpoint is the cause of the errs.Conflict that Prune, ApplyPrune and PlanPrune
// return when no signed checkpoint covers the events to drop yet.
var ErrNoCheckpoint = errors.New("audit: no signed checkpoint covers the events to prune yet")

// ApplyPrune is Prune, returning what it dropped; the zero PrunePlan with any error.
func ApplyPrune(ctx context.Context, q db.Querier, key ed25519.PrivateKey, before time.Time) (PrunePlan, error) {
	return prune(ctx, q, key, before, true)
}

// PlanPrune runs every check Prune runs and returns what Prune would drop, with the same
// errors, but changes nothing: it neither writes audit_anchor nor drops a partition. Like
// Prune it takes the checkpoint lock, held until q's transaction ends.
func PlanPrune(ctx context.Context, q db.Querier, key ed25519.PrivateKey, before time.Time) (PrunePlan, error) {
	return prune(ctx, q, key, before, false)
}

// prune is ApplyPrune, or PlanPrune without apply.
func prune(ctx context.Context, q db.Querier, key ed25519.PrivateKey, before time.Time, apply bool) (PrunePlan, error) {
	const op = "audit.Prune"
	if len(key) != ed25519.PrivateKeySize {
		return PrunePlan{}, errs.E(op, errs.Unavailable, "no checkpoint signing key configured")
	}
	now := time.UnixMicro(time.Now().UnixMicro()).UTC()
	if before.After(now.AddDate(-MinRetentionYears, 0, 0)) {
		return PrunePlan{}, errs.E(op, errs.Invalid, fmt.Sprintf("audit events are kept at least %d years", MinRetentionYears))
	}
	if _, err := q.Exec(ctx, "SELECT pg_advisory_xact_lock(7311031)"); err != nil {
		return PrunePlan{}, db.Map(op, err)
	}
	rows, err := q.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_events'::regclass`)
	if err != nil {
		return PrunePlan{}, db.Map(op, err)
	}
	var drop []string
	var cut time.Time
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return PrunePlan{}, db.Map(op, err)
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
		return PrunePlan{}, db.Map(op, err)
	}
	if len(drop) == 0 {
		return PrunePlan{}, nil
	}
	sort.Strings(drop)
	plan := PrunePlan{Partitions: drop}
	var minDrop, maxDrop, minKeep *int64
	if err := q.QueryRow(ctx, "SELECT min(seq), max(seq) FROM audit_events WHERE time < $1", cut).Scan(&minDrop, &maxDrop); err != nil {
		return PrunePlan{}, db.Map(op, err)
	}
	if err := q.QueryRow(ctx, "SELECT min(seq) FROM audit_events WHERE time >= $1", cut).Scan(&minKeep); err != nil {
		return PrunePlan{}, db.Map(op, err)
	}
	if maxDrop != nil {
		if minKeep != nil && *minKeep < *maxDrop {
			return PrunePlan{}, errs.E(op, errs.Conflict, "the old partitions are not a prefix of the audit chain: nothing pruned")
		}
		cp, err := advanceAnchor(ctx, q, key, *maxDrop, now, apply)
		if err != nil {
			return PrunePlan{}, err
		}
		plan.FirstSeq, plan.LastSeq, plan.Checkpoint = *minDrop, *maxDrop, cp
	}
	if !apply {
		return plan, nil
	}
	for _, name := range drop {
		if _, err := q.Exec(ctx, "DROP TABLE "+quoteIdent(name)); err != nil {
			return PrunePlan{}, db.Map(op, err)
		}
	}
	return plan, nil
}

// advanceAnchor moves audit_anchor to seq upTo with a statement signed by key at now, after
// checking the present anchor, the events after it up to the first checkpoint at or beyond
// upTo, and that checkpoint (see Prune); it returns that checkpoint's ID. Without apply it
// only checks and writes nothing.
func advanceAnchor(ctx context.Context, q db.Querier, key ed25519.PrivateKey, upTo int64, now time.Time, apply bool) (int64, error) {
	const op = "audit.Prune"
	pub := key.Public().(ed25519.PublicKey)
	a, ok, err := loadAnchor(ctx, q)
	if err != nil {
		return 0, err
	}
	if ok {
		problem, err := checkAnchor(ctx, q, &a, pub, now)
		if err != nil {
			return 0, err
		}
		if problem != "" {
			return 0, errs.E(op, errs.Conflict, problem+": nothing pruned")
		}
	}
	if upTo <= a.seq {
		return 0, errs.E(op, errs.Conflict, fmt.Sprintf("events through seq %d are pruned already: nothing pruned", a.seq))
	}
	var c Checkpoint
	var root, head []byte
	err = q.QueryRow(ctx, "SELECT id, size, root, head, time, key_id, sig FROM audit_checkpoints WHERE size >= $1 ORDER BY size, id LIMIT 1", upTo).
		Scan(&c.ID, &c.Size, &root, &head, &c.Time, &c.KeyID, &c.Sig)
	if errs.CodeOf(db.Map(op, err)) == errs.NotFound {
		return 0, errs.E(op, errs.Conflict, fmt.Sprintf("no checkpoint covers seq %d yet: nothing pruned", upTo), ErrNoCheckpoint)
	}
	if err != nil {
		return 0, db.Map(op, err)
	}
	copy(c.Root[:], root)
	copy(c.Head[:], head)
	if len(root) != HashSize || len(head) != HashSize || c.VerifySignature(pub) != nil {
		return 0, errs.E(op, errs.Internal, fmt.Sprintf("checkpoint %d does not verify with the checkpoint key: nothing pruned", c.ID))
	}
	fr, prev, seq := a.fr, a.hash, a.seq
	next := anchor{seq: upTo, prunedAt: now}
	if a.signed {
		next.newest = a.newest
	}
	var enc []byte
	for seq < c.Size {
		rows, err := q.Query(ctx, eventSelect+" WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT 10000", seq, c.Size)
		if err != nil {
			return 0, db.Map(op, err)
		}
		n := 0
		for rows.Next() {
			var r verifyRow
			if err := scanRow(rows, &r); err != nil {
				rows.Close()
				return 0, db.Map(op, err)
			}
			enc = encodeRow(enc[:0], &r)
			var h Hash
			copy(h[:], r.hash)
			if r.seq != seq+1 || string(r.prev) != string(prev[:]) || len(r.hash) != HashSize ||
				string(enc) != string(r.enc) || ChainHash(prev, r.seq, r.enc) != h {
				rows.Close()
				return 0, errs.E(op, errs.Internal, fmt.Sprintf("audit chain broken at seq %d: nothing pruned", seq+1))
			}
			prev = h
			fr.push(h[:])
			seq = r.seq
			n++
			if seq <= upTo && r.time.After(next.newest) {
				next.newest = r.time.UTC()
			}
			if seq == upTo {
				next.hash = h
				next.fr = frontier{size: fr.size, nodes: append([]Hash(nil), fr.nodes...)}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, db.Map(op, err)
		}
		if n == 0 {
			return 0, errs.E(op, errs.Internal, fmt.Sprintf("audit chain broken at seq %d: nothing pruned", seq+1))
		}
	}
	if c.Root != fr.root() || c.Head != prev {
		return 0, errs.E(op, errs.Internal, fmt.Sprintf("checkpoint %d does not match the events to prune: nothing pruned", c.ID))
	}
	if next.newest.AddDate(MinRetentionYears, 0, 0).After(now) {
		return 0, errs.E(op, errs.Invalid, fmt.Sprintf("audit events through seq %d include some younger than %d years: nothing pruned", upTo, MinRetentionYears))
	}
	if !apply {
		return c.ID, nil
	}
	next.sign(key)
	return c.ID, storeAnchor(ctx, q, &next)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
