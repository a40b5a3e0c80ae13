package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
)

// Problem says why verification failed.
type Problem string

// Problems, in the words an operator reads.
const (
	// Edited: a row's columns, encoding or hash differ from what its chain hash covers.
	Edited Problem = "edited"
	// Deleted: a seq is missing (a gap in the chain).
	Deleted Problem = "deleted"
	// Inserted: a seq occurs twice, a row lies outside the chain, or rows follow the head.
	Inserted Problem = "inserted"
	// Reordered: a row is intact but does not link to the row before it (moved, or a row
	// before it was replaced).
	Reordered Problem = "reordered"
	// Truncated: events that a checkpoint or the chain head covers are missing at the end.
	Truncated Problem = "truncated"
	// Rechained: the chain is self-consistent, but a signed checkpoint disagrees with it:
	// events were rewritten and re-hashed without the checkpoint key.
	Rechained Problem = "rechained"
	// BadCheckpoint: a checkpoint's signature does not verify, or checkpoints are missing or
	// out of order.
	BadCheckpoint Problem = "bad-checkpoint"
	// BadHead: the chain head row does not match the last event.
	BadHead Problem = "bad-head"
	// BadAnchor: the anchor a prune left (where the chain starts) is not vouched for: its
	// statement is unsigned, or its signature, root or hash do not match, or it records a
	// prune of events younger than MinRetentionYears. Events before it were deleted without
	// the checkpoint key, or too early.
	BadAnchor Problem = "bad-anchor"
)

// Report is the result of Verify. When OK is false, FirstBad names the first failing seq
// (0 when the failure is a checkpoint's or the anchor's own), Checkpoint the failing
// checkpoint's ID if one is involved, and Detail explains with seqs and IDs only.
type Report struct {
	OK          bool
	Events      int64 // events checked
	LastSeq     int64
	Checkpoints int64 // checkpoints checked
	FirstBad    int64
	Checkpoint  int64
	Problem     Problem
	Detail      string
	Took        time.Duration
}

func (r *Report) fail(seq int64, p Problem, format string, args ...any) {
	r.OK, r.FirstBad, r.Problem, r.Detail = false, seq, p, fmt.Sprintf(format, args...)
}

// verifyBatch is how many events one query fetches.
const verifyBatch = 20000

// Verify checks the whole audit log: when a prune left an anchor, it first checks that the
// anchor's statement is signed with pub and that the events it removed were at least
// MinRetentionYears old when pruned (BadAnchor otherwise; see checkAnchor); then it streams
// the events after it in seq order in batches (never all in memory), checks that each row's
// columns equal its encoding, recomputes every chain hash and link, recomputes the Merkle
// tree head at every checkpoint and checks its Ed25519 signature with pub, and checks the
// chain head row. It stops at the first failure and names it in the Report; err is only for
// failures to read (errs.Unavailable, errs.Internal). Given a pool (or anything that can
// begin a transaction) it reads in one REPEATABLE READ snapshot, so appends running
// meanwhile are not mistaken for insertions; given a transaction it reads through it. A nil
// pub skips signature checks only. progress, if not nil, is called with the number of
// events checked after each batch.
func Verify(ctx context.Context, q db.Querier, pub ed25519.PublicKey, progress func(done int64)) (Report, error) {
	return VerifyWitnessed(ctx, q, pub, nil, progress)
}

// VerifyWitnessed is Verify that also holds the log to checkpoints kept outside the database
// (by an external witness, from ExportCheckpoint/ParseCheckpoint): each must match the
// recomputed tree head and chain hash at its size, or the Report fails with Rechained, or
// Truncated when the log no longer reaches its size. Only a witness catches an attacker who
// deletes the newest events together with the newest checkpoints. The witnessed checkpoints'
// signatures are checked with pub too.
func VerifyWitnessed(ctx context.Context, q db.Querier, pub ed25519.PublicKey, witnessed []Checkpoint, progress func(done int64)) (Report, error) {
	const op = "audit.Verify"
	start := time.Now()
	if ts, ok := q.(db.TxStarter); ok {
		var rep Report
		err := db.InTxOpts(ctx, ts, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx db.Querier) error {
			var err error
			rep, err = verify(ctx, tx, pub, witnessed, progress)
			return err
		})
		rep.Took = time.Since(start)
		return rep, err
	}
	rep, err := verify(ctx, q, pub, witnessed, progress)
	rep.Took = time.Since(start)
	if err != nil {
		return rep, db.Map(op, err)
	}
	return rep, nil
}

func verify(ctx context.Context, q db.Querier, pub ed25519.PublicKey, witnessed []Checkpoint, progress func(done int64)) (Report, error) {
	rep := Report{OK: true}
	wit := append([]Checkpoint(nil), witnessed...)
	sort.Slice(wit, func(i, j int) bool { return wit[i].Size < wit[j].Size })
	for _, c := range wit {
		if pub != nil {
			if err := c.VerifySignature(pub); err != nil {
				rep.Checkpoint = c.ID
				rep.fail(0, BadCheckpoint, "witnessed checkpoint %d (size %d): signature does not verify with the checkpoint key", c.ID, c.Size)
				return rep, nil
			}
		}
	}

	var fr frontier
	var prevHash Hash
	a, ok, err := loadAnchor(ctx, q)
	if err != nil {
		return rep, err
	}
	if ok {
		// The anchor says events 1..a.seq were pruned; believe it only as far as it is signed.
		problem, err := checkAnchor(ctx, q, &a, pub, time.Now())
		if err != nil {
			return rep, err
		}
		if problem != "" {
			rep.fail(0, BadAnchor, "%s", problem)
			return rep, nil
		}
		fr, prevHash = a.fr, a.hash
	}
	startSeq := fr.size
	var headSeq int64
	var headHash []byte
	if err := q.QueryRow(ctx, "SELECT seq, hash FROM audit_chain_head WHERE id").Scan(&headSeq, &headHash); err != nil {
		return rep, db.Map("audit.Verify", err)
	}

	var queue []Checkpoint        // checkpoints delivered by the fetcher, in id order
	var lastGood int64 = startSeq // size of the last checkpoint that matched
	var prevCP Checkpoint
	// checkCP checks one checkpoint's signature, numbering and order; a false result means
	// rep has failed.
	checkCP := func(c *Checkpoint) bool {
		rep.Checkpoints++
		if c.ID != prevCP.ID+1 {
			rep.Checkpoint = c.ID
			rep.fail(0, BadCheckpoint, "checkpoint %d follows checkpoint %d: checkpoints are missing", c.ID, prevCP.ID)
			return false
		}
		if c.Size < prevCP.Size {
			rep.Checkpoint = c.ID
			rep.fail(0, BadCheckpoint, "checkpoint %d covers fewer events than checkpoint %d", c.ID, prevCP.ID)
			return false
		}
		if pub != nil {
			if err := c.VerifySignature(pub); err != nil {
				rep.Checkpoint = c.ID
				rep.fail(0, BadCheckpoint, "checkpoint %d (size %d): signature does not verify with the checkpoint key", c.ID, c.Size)
				return false
			}
		}
		prevCP = *c
		return true
	}
	// matchCP compares a checkpoint at the current position with the recomputed tree.
	matchCP := func(c *Checkpoint) bool {
		if c.Root != fr.root() || c.Head != prevHash {
			rep.Checkpoint = c.ID
			rep.fail(lastGood+1, Rechained, "checkpoint %d (size %d) does not match the events after seq %d: they were rewritten", c.ID, c.Size, lastGood)
			return false
		}
		lastGood = c.Size
		return true
	}
	seq := startSeq
	// consume checks the queued checkpoints that cover at most seq; false means rep failed.
	consume := func() bool {
		for len(queue) > 0 && queue[0].Size <= seq {
			c := queue[0]
			queue = queue[1:]
			if !checkCP(&c) {
				return false
			}
			switch {
			case c.Size == seq && seq > 0:
				if !matchCP(&c) {
					return false
				}
			case c.Size < seq && c.Size > startSeq: // a size the chain went past without a stop
				rep.Checkpoint = c.ID
				rep.fail(c.Size+1, BadCheckpoint, "checkpoint %d is out of order", c.ID)
				return false
			}
		}
		return true
	}

	batches := make(chan verifyRows, 2)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ferr := make(chan error, 1)
	go func() { ferr <- fetchEvents(fctx, q, batches) }()

	var colEnc []byte
	failed := false
	for b := range batches {
		if failed {
			continue // drain so the fetcher can finish
		}
		queue = append(queue, b.cps...)
		if !consume() {
			failed = true
			continue
		}
		for i := range b.rows {
			r := &b.rows[i]
			expected := seq + 1
			switch {
			case r.seq < expected:
				rep.fail(r.seq, Inserted, "seq %d occurs again or lies before the chain start %d", r.seq, startSeq+1)
			case r.seq > expected:
				rep.fail(expected, Deleted, "seq %d is missing (next present is %d)", expected, r.seq)
			}
			if !rep.OK {
				failed = true
				break
			}
			// Equal bytes imply a well-formed encoding; decode only to explain a difference.
			colEnc = encodeRow(colEnc[:0], r)
			if !bytes.Equal(colEnc, r.enc) {
				if _, err := Decode(r.enc); err != nil {
					rep.fail(r.seq, Edited, "seq %d: its encoding is malformed", r.seq)
				} else {
					rep.fail(r.seq, Edited, "seq %d: its columns differ from its hashed encoding", r.seq)
				}
				failed = true
				break
			}
			var stored, storedPrev Hash
			copy(stored[:], r.hash)
			copy(storedPrev[:], r.prev)
			if len(r.prev) != HashSize || storedPrev != prevHash {
				if len(r.hash) == HashSize && len(r.prev) == HashSize && ChainHash(storedPrev, r.seq, r.enc) == stored {
					rep.fail(r.seq, Reordered, "seq %d is intact but does not link to seq %d", r.seq, r.seq-1)
				} else if orig := movedFrom(storedPrev, stored, r.enc, max(headSeq, r.seq)+1); orig > 0 {
					rep.fail(r.seq, Reordered, "seq %d holds the event chained as seq %d: rows were moved, inserted or deleted before it", r.seq, orig)
				} else {
					rep.fail(r.seq, Edited, "seq %d: its hash or link was altered", r.seq)
				}
				failed = true
				break
			}
			h := ChainHash(prevHash, r.seq, r.enc)
			if len(r.hash) != HashSize || h != stored {
				rep.fail(r.seq, Edited, "seq %d: its content does not match its hash", r.seq)
				failed = true
				break
			}
			prevHash = h
			fr.push(h[:])
			seq = r.seq
			rep.Events++
			rep.LastSeq = seq
			for len(wit) > 0 && wit[0].Size <= seq {
				c := wit[0]
				wit = wit[1:]
				if c.Size == seq && (c.Root != fr.root() || c.Head != prevHash) {
					rep.Checkpoint = c.ID
					rep.fail(lastGood+1, Rechained, "witnessed checkpoint %d (size %d) does not match the events after seq %d", c.ID, c.Size, lastGood)
					failed = true
					break
				}
			}
			if failed {
				break
			}
			if len(queue) > 0 && queue[0].Size <= seq && !consume() {
				failed = true
				break
			}
		}
		if progress != nil && !failed {
			progress(rep.Events)
		}
	}
	if err := <-ferr; err != nil && !failed {
		return rep, err
	}
	if failed {
		return rep, nil
	}
	if len(wit) > 0 && wit[len(wit)-1].Size > seq {
		c := wit[len(wit)-1]
		rep.Checkpoint = c.ID
		rep.fail(seq+1, Truncated, "witnessed checkpoint %d covers %d events but the chain ends at seq %d", c.ID, c.Size, seq)
		return rep, nil
	}
	// A checkpoint beyond the last event: events were cut off.
	if len(queue) > 0 {
		c := queue[0]
		if !checkCP(&c) {
			return rep, nil
		}
		rep.Checkpoint = c.ID
		rep.fail(seq+1, Truncated, "checkpoint %d covers %d events but the chain ends at seq %d", c.ID, c.Size, seq)
		return rep, nil
	}
	switch {
	case headSeq > seq:
		rep.fail(seq+1, Truncated, "the chain head is at seq %d but the chain ends at seq %d", headSeq, seq)
	case headSeq < seq:
		rep.fail(headSeq+1, Inserted, "events follow the chain head at seq %d", headSeq)
	case !bytes.Equal(headHash, prevHash[:]):
		rep.fail(seq, BadHead, "the chain head's hash does not match seq %d", seq)
	}
	return rep, nil
}

// movedFrom returns the seq s in [1, limit] (at most 5,000,000 tried) for which the row's
// stored hash is ChainHash(prev, s, enc): the position the intact row was chained at before
// it moved. It returns 0 when there is none. It runs only on a failure path.
func movedFrom(prev, stored Hash, enc []byte, limit int64) int64 {
	limit = min(limit, 5_000_000)
	for s := int64(1); s <= limit; s++ {
		if ChainHash(prev, s, enc) == stored {
			return s
		}
	}
	return 0
}

// verifyRow is one audit_events row as stored.
type verifyRow struct {
	seq                                             int64
	time                                            time.Time
	action, outcome, reason, actor, client, org     string
	role, purpose, patient, consent, tokenID, reqID string
	sourceIP, query                                 string
	resources                                       []string
	consentVersion                                  int64
	breakGlass, shareLink                           bool
	enc, prev, hash                                 []byte
}

// verifyRows is one message from the fetcher: a batch of rows in seq order and the
// checkpoints (in id order) whose sizes are at most the batch's last seq. The last message
// carries every remaining checkpoint.
type verifyRows struct {
	rows []verifyRow
	cps  []Checkpoint
}

const eventSelect = `SELECT seq, time, action, outcome, reason, actor, client, org, role, purpose, patient,
	resources, consent, consent_version, token_id, request_id, source_ip, query, break_glass, share_link,
	enc, prev, hash FROM audit_events`

func scanRow(rows pgx.Rows, r *verifyRow) error {
	return rows.Scan(&r.seq, &r.time, &r.action, &r.outcome, &r.reason, &r.actor, &r.client, &r.org, &r.role,
		&r.purpose, &r.patient, &r.resources, &r.consent, &r.consentVersion, &r.tokenID, &r.reqID, &r.sourceIP,
		&r.query, &r.breakGlass, &r.shareLink, &r.enc, &r.prev, &r.hash)
}

func (r *verifyRow) event() Event {
	return Event{Seq: r.seq, Time: r.time.UTC(), Action: Action(r.action), Outcome: Outcome(r.outcome), Reason: r.reason,
		Actor: r.actor, Client: r.client, Org: r.org, Role: r.role, Purpose: r.purpose, Patient: r.patient,
		Resources: parseResources(r.resources), Consent: r.consent, ConsentVersion: r.consentVersion,
		TokenID: r.tokenID, RequestID: r.reqID, SourceIP: r.sourceIP, Query: r.query,
		BreakGlass: r.breakGlass, ShareLink: r.shareLink}
}

// encodeRow appends to dst the encoding of the event the row's columns describe: the same
// bytes as Encode(r.event()), without building the event.
func encodeRow(dst []byte, r *verifyRow) []byte {
	dst = append(dst, encodingVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.time.UnixMicro()))
	for _, s := range [...]string{r.action, r.outcome, r.reason, r.actor, r.client, r.org, r.role, r.purpose,
		r.patient, r.consent, r.tokenID, r.reqID, r.sourceIP, r.query} {
		dst = appendString(dst, s)
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.consentVersion))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.resources)))
	for _, res := range r.resources {
		t, id, _ := strings.Cut(res, "/")
		dst = appendString(dst, t)
		dst = appendString(dst, id)
	}
	var flags byte
	if r.breakGlass {
		flags |= 1
	}
	if r.shareLink {
		flags |= 2
	}
	return append(dst, flags)
}

// fetchEvents streams all rows in seq order into out, verifyBatch at a time, with the
// checkpoints, and closes out. It is the only user of q while it runs (a connection serves one
// query at a time). Each query restarts at the last seq seen (>=, skipping the rows already
// sent), so a duplicated seq at a batch boundary is still delivered.
func fetchEvents(ctx context.Context, q db.Querier, out chan<- verifyRows) error {
	defer close(out)
	it := &checkpointIter{q: q}
	send := func(b verifyRows) error {
		select {
		case out <- b:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// upTo takes the checkpoints up to the first whose size exceeds last (all when last < 0).
	upTo := func(last int64) ([]Checkpoint, error) {
		var cps []Checkpoint
		for {
			c, ok, err := it.peek(ctx)
			if err != nil || !ok || (last >= 0 && c.Size > last) {
				return cps, err
			}
			cps = append(cps, c)
			it.next()
		}
	}
	from := int64(math.MinInt64)
	skip := 0
	for {
		rows, err := q.Query(ctx, eventSelect+" WHERE seq >= $1 ORDER BY seq LIMIT $2", from, verifyBatch+skip)
		if err != nil {
			return db.Map("audit.Verify", err)
		}
		b := verifyRows{rows: make([]verifyRow, 0, verifyBatch)}
		n := 0
		for rows.Next() {
			n++
			var r verifyRow
			if err := scanRow(rows, &r); err != nil {
				rows.Close()
				return db.Map("audit.Verify", err)
			}
			if skip > 0 && r.seq == from {
				skip--
				continue
			}
			b.rows = append(b.rows, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return db.Map("audit.Verify", err)
		}
		if len(b.rows) == 0 {
			break
		}
		last := b.rows[len(b.rows)-1].seq
		if b.cps, err = upTo(max(last, 0)); err != nil {
			return err
		}
		if err := send(b); err != nil {
			return err
		}
		if n < verifyBatch+skip {
			break
		}
		skip = 0
		for i := len(b.rows) - 1; i >= 0 && b.rows[i].seq == last; i-- {
			skip++
		}
		from = last
	}
	cps, err := upTo(-1)
	if err != nil {
		return err
	}
	return send(verifyRows{cps: cps})
}

// checkpointIter streams checkpoints in id order, a batch at a time.
type checkpointIter struct {
	q     db.Querier
	buf   []Checkpoint
	after int64
	done  bool
}

func (it *checkpointIter) peek(ctx context.Context) (Checkpoint, bool, error) {
	if len(it.buf) == 0 && !it.done {
		rows, err := it.q.Query(ctx, "SELECT id, size, root, head, time, key_id, sig FROM audit_checkpoints WHERE id > $1 ORDER BY id LIMIT 1000", it.after)
		if err != nil {
			return Checkpoint{}, false, db.Map("audit.Verify", err)
		}
		for rows.Next() {
			var c Checkpoint
			var root, head []byte
			if err := rows.Scan(&c.ID, &c.Size, &root, &head, &c.Time, &c.KeyID, &c.Sig); err != nil {
				rows.Close()
				return Checkpoint{}, false, db.Map("audit.Verify", err)
			}
			if len(root) != HashSize || len(head) != HashSize {
				// Leave the hashes zero: the tree comparison or signature will fail on it.
				root, head = nil, nil
			}
			copy(c.Root[:], root)
			copy(c.Head[:], head)
			c.Time = c.Time.UTC()
			it.buf = append(it.buf, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return Checkpoint{}, false, db.Map("audit.Verify", err)
		}
		if len(it.buf) == 0 {
			it.done = true
		} else {
			it.after = it.buf[len(it.buf)-1].ID
		}
	}
	if len(it.buf) == 0 {
		return Checkpoint{}, false, nil
	}
	return it.buf[0], true, nil
}

func (it *checkpointIter) next() { it.buf = it.buf[1:] }
