package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// anchorFormat heads every signed anchor statement.
const anchorFormat = "concord-audit-anchor/v1"

// anchor is where the chain starts after a prune: the last pruned event's seq and chain hash,
// and the Merkle frontier over events 1..seq. Nothing in the row is trusted for itself: Prune
// signs a statement of it with the checkpoint key (note), and checkAnchor holds it to that
// statement. An anchor written before statements were signed (migration 0095) has no
// signature and is trusted only as far as a signed checkpoint at its size vouches for it.
type anchor struct {
	seq      int64
	hash     Hash
	fr       frontier
	prunedAt time.Time // when Prune wrote it: signed when signed is true, else the row's word only

	signed bool
	root   Hash      // Merkle root over events 1..seq
	newest time.Time // the latest event time among the pruned events
	keyID  string
	sig    []byte // Ed25519 over note()

	malformed string // why the row cannot be an anchor; empty when it can
}

// note returns the signed statement: the format line, then seq, root, head (the chain hash of
// event seq), newest and pruned times, one per line, hashes in standard base64 and times in
// RFC 3339 UTC.
func (a *anchor) note() []byte {
	return fmt.Appendf(nil, "%s\nseq %d\nroot %s\nhead %s\nnewest %s\npruned %s\n", anchorFormat, a.seq,
		base64.StdEncoding.EncodeToString(a.root[:]), base64.StdEncoding.EncodeToString(a.hash[:]),
		a.newest.UTC().Format(time.RFC3339Nano), a.prunedAt.UTC().Format(time.RFC3339Nano))
}

// sign fills root, keyID and sig from a's frontier and key; seq, hash, newest and prunedAt
// must be set and times truncated to microseconds (what PostgreSQL keeps).
func (a *anchor) sign(key ed25519.PrivateKey) {
	a.signed = true
	a.root = a.fr.root()
	a.keyID = KeyID(key.Public().(ed25519.PublicKey))
	a.sig = ed25519.Sign(key, a.note())
}

// loadAnchor reads audit_anchor. ok is false when there is none. A row that cannot be an
// anchor (a malformed frontier or hash, or a half-filled signature) comes back with ok true
// and malformed set, for checkAnchor to report; err is only for failures to read.
func loadAnchor(ctx context.Context, q db.Querier) (a anchor, ok bool, err error) {
	var h, fr, root, sig []byte
	var newest *time.Time
	var keyID *string
	err = q.QueryRow(ctx, "SELECT seq, hash, frontier, pruned_at, root, newest, key_id, sig FROM audit_anchor WHERE id").
		Scan(&a.seq, &h, &fr, &a.prunedAt, &root, &newest, &keyID, &sig)
	if err != nil {
		if errs.CodeOf(db.Map("", err)) == errs.NotFound {
			return anchor{}, false, nil
		}
		return anchor{}, false, db.Map("audit.loadAnchor", err)
	}
	a.prunedAt = a.prunedAt.UTC()
	f, err := unmarshalFrontier(fr)
	if err != nil || f.size != a.seq || len(h) != HashSize {
		a.malformed = fmt.Sprintf("the audit anchor (pruned through seq %d) is malformed", a.seq)
		return a, true, nil
	}
	copy(a.hash[:], h)
	a.fr = f
	switch {
	case root == nil && newest == nil && keyID == nil && sig == nil:
	case len(root) == HashSize && newest != nil && keyID != nil && sig != nil:
		a.signed = true
		copy(a.root[:], root)
		a.newest, a.keyID, a.sig = newest.UTC(), *keyID, sig
	default:
		a.malformed = fmt.Sprintf("the audit anchor (pruned through seq %d) has a partial signed statement", a.seq)
	}
	return a, true, nil
}

// checkAnchor reports what is wrong with a, in the words of a Report's Detail, or "" when
// nothing is. A signed anchor must verify with pub (skipped when pub is nil), its frontier
// must have the signed root and size, and its newest pruned event must have been at least
// MinRetentionYears old at the signed prune time. An unsigned anchor (written before anchors
// were signed) must equal, in root and chain hash, a checkpoint at its size whose signature
// verifies, signed at least MinRetentionYears before the prune: before the row's pruned_at,
// which is unsigned and so is also capped at now. err is only for failures to read.
func checkAnchor(ctx context.Context, q db.Querier, a *anchor, pub ed25519.PublicKey, now time.Time) (string, error) {
	if a.malformed != "" {
		return a.malformed, nil
	}
	if a.signed {
		if pub != nil && (len(pub) != ed25519.PublicKeySize || a.keyID != KeyID(pub) || !ed25519.Verify(pub, a.note(), a.sig)) {
			return fmt.Sprintf("the audit anchor (pruned through seq %d): its signature does not verify with the checkpoint key", a.seq), nil
		}
		if a.fr.root() != a.root {
			return fmt.Sprintf("the audit anchor (pruned through seq %d): its Merkle frontier does not match its signed root", a.seq), nil
		}
		if a.newest.AddDate(MinRetentionYears, 0, 0).After(a.prunedAt) {
			return fmt.Sprintf("the audit anchor (pruned through seq %d): the pruned events were younger than the %d-year minimum retention when pruned", a.seq, MinRetentionYears), nil
		}
		return "", nil
	}
	c, err := checkpointAtSize(ctx, q, a.seq)
	if errs.CodeOf(err) == errs.NotFound {
		return fmt.Sprintf("the audit anchor (pruned through seq %d) is unsigned and no checkpoint has its size", a.seq), nil
	}
	if err != nil {
		return "", err
	}
	if pub != nil && c.VerifySignature(pub) != nil {
		return fmt.Sprintf("the audit anchor (pruned through seq %d) is unsigned and checkpoint %d at its size does not verify with the checkpoint key", a.seq, c.ID), nil
	}
	if c.Root != a.fr.root() || c.Head != a.hash {
		return fmt.Sprintf("the audit anchor (pruned through seq %d) is unsigned and does not match checkpoint %d at its size", a.seq, c.ID), nil
	}
	pruned := a.prunedAt
	if now.Before(pruned) {
		pruned = now
	}
	if c.Time.AddDate(MinRetentionYears, 0, 0).After(pruned) {
		return fmt.Sprintf("the audit anchor (pruned through seq %d) is unsigned and checkpoint %d at its size was signed less than %d years before the prune", a.seq, c.ID, MinRetentionYears), nil
	}
	return "", nil
}

// checkpointAtSize returns the first checkpoint (by id) of size size, or errs.NotFound.
func checkpointAtSize(ctx context.Context, q db.Querier, size int64) (Checkpoint, error) {
	var c Checkpoint
	var root, head []byte
	err := q.QueryRow(ctx, "SELECT id, size, root, head, time, key_id, sig FROM audit_checkpoints WHERE size = $1 ORDER BY id LIMIT 1", size).
		Scan(&c.ID, &c.Size, &root, &head, &c.Time, &c.KeyID, &c.Sig)
	if err != nil {
		return Checkpoint{}, db.Map("audit.checkpointAtSize", err)
	}
	if len(root) == HashSize && len(head) == HashSize { // else left zero: the comparison fails
		copy(c.Root[:], root)
		copy(c.Head[:], head)
	}
	c.Time = c.Time.UTC()
	return c, nil
}

// storeAnchor writes a (signed) as the one audit_anchor row.
func storeAnchor(ctx context.Context, q db.Querier, a *anchor) error {
	_, err := q.Exec(ctx, `INSERT INTO audit_anchor (id, seq, hash, frontier, pruned_at, root, newest, key_id, sig)
		VALUES (true, $1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, frontier = excluded.frontier,
			pruned_at = excluded.pruned_at, root = excluded.root, newest = excluded.newest, key_id = excluded.key_id,
			sig = excluded.sig`,
		a.seq, a.hash[:], a.fr.marshal(), a.prunedAt, a.root[:], a.newest, a.keyID, a.sig)
	return db.Map("audit.Prune", err)
}
