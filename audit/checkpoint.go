package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// checkpointFormat heads every signed checkpoint note.
const checkpointFormat = "concord-audit-checkpoint/v1"

// Checkpoint is a signed RFC 6962 Merkle tree head over the chain hashes of events 1..Size.
// ID counts checkpoints from 1 without gaps; Head is the chain hash of event Size.
type Checkpoint struct {
	ID    int64
	Size  int64
	Root  Hash
	Head  Hash
	Time  time.Time // UTC, microseconds
	KeyID string    // KeyID of the signing key
	Sig   []byte    // Ed25519 signature over Note()
}

// Note returns the text that is signed: the format line, then id, size, root, head and time,
// one per line, hashes in standard base64.
func (c *Checkpoint) Note() []byte {
	return fmt.Appendf(nil, "%s\nid %d\nsize %d\nroot %s\nhead %s\ntime %s\n", checkpointFormat, c.ID, c.Size,
		base64.StdEncoding.EncodeToString(c.Root[:]), base64.StdEncoding.EncodeToString(c.Head[:]),
		c.Time.UTC().Format(time.RFC3339Nano))
}

// KeyID names a public key: the hex of the first 8 bytes of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

// VerifySignature reports whether c is signed by pub. It returns errs.Invalid when not.
func (c *Checkpoint) VerifySignature(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize || c.KeyID != KeyID(pub) || !ed25519.Verify(pub, c.Note(), c.Sig) {
		return errs.E("audit.Checkpoint.VerifySignature", errs.Invalid, "checkpoint signature does not verify")
	}
	return nil
}

// CheckpointJSON is the exported form of a checkpoint, for an external witness.
type CheckpointJSON struct {
	Format    string `json:"format"`
	ID        int64  `json:"id"`
	Size      int64  `json:"size"`
	Root      string `json:"root"` // base64
	Head      string `json:"head"` // base64
	Time      string `json:"time"` // RFC 3339, UTC
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"` // base64 Ed25519 public key
	Note      string `json:"note"`       // the signed text
	Signature string `json:"signature"`  // base64 Ed25519 signature over note
}

// ExportCheckpoint renders c as JSON for an external witness, with pub (the verification key)
// and the signed note.
func ExportCheckpoint(c Checkpoint, pub ed25519.PublicKey) ([]byte, error) {
	return json.Marshal(CheckpointJSON{
		Format: checkpointFormat, ID: c.ID, Size: c.Size,
		Root: base64.StdEncoding.EncodeToString(c.Root[:]), Head: base64.StdEncoding.EncodeToString(c.Head[:]),
		Time: c.Time.UTC().Format(time.RFC3339Nano), KeyID: c.KeyID,
		PublicKey: base64.StdEncoding.EncodeToString(pub), Note: string(c.Note()),
		Signature: base64.StdEncoding.EncodeToString(c.Sig),
	})
}

// ParseCheckpoint reads an exported checkpoint and checks its signature against pub (not the
// key inside the JSON). It returns errs.Invalid for malformed JSON or a bad signature.
func ParseCheckpoint(b []byte, pub ed25519.PublicKey) (Checkpoint, error) {
	const op = "audit.ParseCheckpoint"
	var j CheckpointJSON
	if err := json.Unmarshal(b, &j); err != nil || j.Format != checkpointFormat {
		return Checkpoint{}, errs.E(op, errs.Invalid, "malformed checkpoint")
	}
	c := Checkpoint{ID: j.ID, Size: j.Size, KeyID: j.KeyID}
	root, err1 := base64.StdEncoding.DecodeString(j.Root)
	head, err2 := base64.StdEncoding.DecodeString(j.Head)
	sig, err3 := base64.StdEncoding.DecodeString(j.Signature)
	t, err4 := time.Parse(time.RFC3339Nano, j.Time)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || len(root) != HashSize || len(head) != HashSize {
		return Checkpoint{}, errs.E(op, errs.Invalid, "malformed checkpoint")
	}
	copy(c.Root[:], root)
	copy(c.Head[:], head)
	c.Sig, c.Time = sig, t.UTC()
	if err := c.VerifySignature(pub); err != nil {
		return Checkpoint{}, errs.E(op, err)
	}
	return c, nil
}

// LatestCheckpoint returns the newest checkpoint, or errs.NotFound when there is none.
func LatestCheckpoint(ctx context.Context, q db.Querier) (Checkpoint, error) {
	c, _, err := latestCheckpoint(ctx, q)
	return c, err
}

func latestCheckpoint(ctx context.Context, q db.Querier) (Checkpoint, []byte, error) {
	var c Checkpoint
	var root, head, fr []byte
	err := q.QueryRow(ctx, "SELECT id, size, root, head, time, key_id, sig, frontier FROM audit_checkpoints ORDER BY id DESC LIMIT 1").
		Scan(&c.ID, &c.Size, &root, &head, &c.Time, &c.KeyID, &c.Sig, &fr)
	if err != nil {
		return Checkpoint{}, nil, db.Map("audit.LatestCheckpoint", err)
	}
	copy(c.Root[:], root)
	copy(c.Head[:], head)
	c.Time = c.Time.UTC()
	return c, fr, nil
}

// Checkpoint writes a signed tree head over all committed events and returns it. It continues
// the Merkle computation from the previous checkpoint (or, when there is none, from the anchor
// a prune left, which must verify: see checkAnchor), checking the chain links of the new
// events on the way, and refuses to sign (errs.Internal) when they are broken. With no new
// events since the last checkpoint it returns that one. It returns errs.Unavailable without a
// signing key or when the database fails. With a WitnessFile it then appends the checkpoint
// there unless this Log already did; a failed write is logged (IDs only) and does not fail
// Checkpoint, so the next call tries again.
func (l *Log) Checkpoint(ctx context.Context) (Checkpoint, error) {
	const op = "audit.Log.Checkpoint"
	if l.cfg.SigningKey == nil {
		return Checkpoint{}, errs.E(op, errs.Unavailable, "no checkpoint signing key configured")
	}
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	var out Checkpoint
	err := db.InTx(ctx, l.pool, func(tx db.Querier) error {
		c, err := makeCheckpoint(ctx, tx, l.cfg.SigningKey, l.cfg.Now())
		out = c
		return err
	})
	if err != nil {
		return Checkpoint{}, errs.E(op, err)
	}
	l.witnessLocked(ctx, out)
	return out, nil
}

// witnessLocked appends c to the WitnessFile when there is one and c is newer than the last
// checkpoint this Log wrote there. l.cpMu must be held.
func (l *Log) witnessLocked(ctx context.Context, c Checkpoint) {
	if l.cfg.WitnessFile == "" || c.ID <= l.witnessed {
		return
	}
	if err := AppendWitness(ctx, l.cfg.WitnessFile, c, l.PublicKey()); err != nil {
		l.log.Error("audit: checkpoint not written to the witness file; auditing goes on, and a later checkpoint will be written",
			"checkpoint", c.ID, "size", c.Size, "err", err)
		return
	}
	l.witnessed = c.ID
}

// makeCheckpoint does the work of Checkpoint in tx (READ COMMITTED).
func makeCheckpoint(ctx context.Context, tx db.Querier, key ed25519.PrivateKey, now time.Time) (Checkpoint, error) {
	const op = "audit.makeCheckpoint"
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(7311031)"); err != nil {
		return Checkpoint{}, db.Map(op, err)
	}
	prev, frBytes, err := latestCheckpoint(ctx, tx)
	var fr frontier
	var prevHash Hash
	switch {
	case err == nil:
		if fr, err = unmarshalFrontier(frBytes); err != nil || fr.size != prev.Size {
			return Checkpoint{}, errs.E(op, errs.Internal, "stored checkpoint frontier is malformed", err)
		}
		prevHash = prev.Head
	case errs.CodeOf(err) == errs.NotFound:
		a, ok, err := loadAnchor(ctx, tx)
		if err != nil {
			return Checkpoint{}, err
		}
		if ok {
			problem, err := checkAnchor(ctx, tx, &a, key.Public().(ed25519.PublicKey), now)
			if err != nil {
				return Checkpoint{}, err
			}
			if problem != "" {
				return Checkpoint{}, errs.E(op, errs.Internal, problem+": not signing")
			}
			fr, prevHash = a.fr, a.hash
		}
	default:
		return Checkpoint{}, err
	}
	var headSeq int64
	var headBytes []byte
	if err := tx.QueryRow(ctx, "SELECT seq, hash FROM audit_chain_head WHERE id").Scan(&headSeq, &headBytes); err != nil {
		return Checkpoint{}, db.Map(op, err)
	}
	if prev.ID > 0 && headSeq == prev.Size {
		return prev, nil
	}
	if headSeq < fr.size {
		return Checkpoint{}, errs.E(op, errs.Internal, fmt.Sprintf("audit chain head %d is behind checkpoint %d", headSeq, prev.ID))
	}
	seq := fr.size
	const batch = 10000
	for seq < headSeq {
		rows, err := tx.Query(ctx, "SELECT seq, prev, hash FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3", seq, headSeq, batch)
		if err != nil {
			return Checkpoint{}, db.Map(op, err)
		}
		n := 0
		for rows.Next() {
			var s int64
			var p, h []byte
			if err := rows.Scan(&s, &p, &h); err != nil {
				rows.Close()
				return Checkpoint{}, db.Map(op, err)
			}
			if s != seq+1 || string(p) != string(prevHash[:]) || len(h) != HashSize {
				rows.Close()
				return Checkpoint{}, errs.E(op, errs.Internal, fmt.Sprintf("audit chain broken at seq %d: not signing", seq+1))
			}
			copy(prevHash[:], h)
			fr.push(h)
			seq = s
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return Checkpoint{}, db.Map(op, err)
		}
		if n == 0 {
			return Checkpoint{}, errs.E(op, errs.Internal, fmt.Sprintf("audit chain broken at seq %d: not signing", seq+1))
		}
	}
	if string(headBytes) != string(prevHash[:]) {
		return Checkpoint{}, errs.E(op, errs.Internal, fmt.Sprintf("audit chain head does not match event %d: not signing", headSeq))
	}
	pub := key.Public().(ed25519.PublicKey)
	c := Checkpoint{ID: prev.ID + 1, Size: headSeq, Root: fr.root(), Head: prevHash,
		Time: time.UnixMicro(now.UnixMicro()).UTC(), KeyID: KeyID(pub)}
	c.Sig = ed25519.Sign(key, c.Note())
	_, err = tx.Exec(ctx, "INSERT INTO audit_checkpoints (id, size, root, head, time, key_id, sig, frontier) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
		c.ID, c.Size, c.Root[:], c.Head[:], c.Time, c.KeyID, c.Sig, fr.marshal())
	if err != nil {
		return Checkpoint{}, db.Map(op, err)
	}
	return c, nil
}

// checkpointTimeout is the least time the checkpoint loop gives one checkpoint.
const checkpointTimeout = 10 * time.Second

// checkpointLoop writes a checkpoint every CheckpointEvery and keeps next month's partition
// ready, until ctx ends.
func (l *Log) checkpointLoop(ctx context.Context) {
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.CheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// At least checkpointTimeout, however short the interval: a slow database delays
		// the next tick rather than failing every checkpoint.
		cctx, cancel := context.WithTimeout(ctx, max(l.cfg.CheckpointEvery, checkpointTimeout))
		if err := l.EnsurePartitions(cctx, l.cfg.Now(), 2); err != nil {
			l.log.Error("audit: ensure partitions", "err", err)
		}
		c, err := l.Checkpoint(cctx)
		cancel()
		if err != nil {
			l.log.Error("audit: checkpoint failed", "err", err)
			continue
		}
		l.log.Debug("audit: checkpoint", "id", c.ID, "size", c.Size)
	}
}
