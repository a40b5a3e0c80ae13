package audit

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/concord-hie/concord/internal/db"
)

// chainHead is the group committer's belief about audit_chain_head: the seq and hash of the
// last event, as of this process's last commit. It is a guess, never trusted: every commit
// made from it checks it inside the committing statement (see guardedHeadSQL), so an append
// by anyone else (AppendTx, another process) makes that commit fail and the head be re-read.
type chainHead struct {
	known bool
	seq   int64
	hash  Hash
}

// lockHeadSQL takes the chain-head row lock first, waiting for any writer that holds it
// (AppendTx, or this Log's previous batch still committing), so that guardedHeadSQL, a
// statement of its own with a fresh snapshot, checks the head as last committed.
const lockHeadSQL = `SELECT seq FROM audit_chain_head WHERE id FOR UPDATE`

// guardedHeadSQL moves the chain head from ($3, $4) to ($1, $2), and fails with
// division_by_zero (22012) when the head is no longer ($3, $4).
const guardedHeadSQL = `UPDATE audit_chain_head SET seq = $1, hash = $2
	WHERE id AND 1 / (CASE WHEN seq = $3 AND hash = $4 THEN 1 ELSE 0 END) = 1`

// insertEventsSQL inserts a batch from one array per column, so the statement text is the
// same for every batch size (prepared once per connection). resources travels as one array
// literal per event (see arrayLiteral), because PostgreSQL arrays cannot be ragged.
const insertEventsSQL = `INSERT INTO audit_events (seq, time, action, outcome, reason, actor, client, org, role,
	purpose, patient, resources, consent, consent_version, token_id, request_id, source_ip, query, break_glass,
	share_link, enc, prev, hash)
SELECT seq, time, action, outcome, reason, actor, client, org, role, purpose, patient,
	res::text[], consent, consent_version, token_id, request_id, source_ip,
	query, break_glass, share_link, enc, prev, hash
FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
	$8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::bigint[], $15::text[],
	$16::text[], $17::text[], $18::text[], $19::boolean[], $20::boolean[], $21::bytea[], $22::bytea[],
	$23::bytea[])
	AS u(seq, time, action, outcome, reason, actor, client, org, role, purpose, patient, res, consent,
	consent_version, token_id, request_id, source_ip, query, break_glass, share_link, enc, prev, hash)`

// headIsSQL fails with division_by_zero unless the head is ($1, $2). It ends every batch, so
// that an insert whose guarded head update matched no row (an empty audit_chain_head)
// cannot commit.
const headIsSQL = `SELECT 1 / (SELECT count(*)::int FROM audit_chain_head WHERE id AND seq = $1 AND hash = $2)`

// errHeadMoved means the chain head was not what the committer believed; nothing was written.
var errHeadMoved = errors.New("audit: chain head moved")

// headMoved reports whether err is the guard of guardedHeadSQL firing.
func headMoved(err error) bool {
	var pe *pgconn.PgError
	return errors.Is(err, errHeadMoved) || (errors.As(err, &pe) && pe.Code == "22012")
}

// readHead loads the committed chain head into l.head.
func (l *Log) readHead(ctx context.Context) error {
	var hb []byte
	if err := l.pool.QueryRow(ctx, "SELECT seq, hash FROM audit_chain_head WHERE id").Scan(&l.head.seq, &hb); err != nil {
		return err
	}
	copy(l.head.hash[:], hb)
	l.head.known = true
	return nil
}

// commitBatch appends evs (normalized and valid) to the chain in one transaction, sets
// their Seq and returns after COMMIT, one batch at a time (commitLoop's retry path). With
// the head known it costs one round trip (see send). When another writer moved the head it
// re-reads the head and tries again; after a few such collisions it takes the head lock
// first (appendEvents), so it cannot starve behind a busy AppendTx writer.
func (l *Log) commitBatch(ctx context.Context, evs []Event) error {
	const attempts = 3
	for attempt := 0; attempt < attempts; attempt++ {
		if !l.head.known {
			if err := l.readHead(ctx); err != nil {
				return err
			}
		}
		b, next := chain(l.head, evs)
		err := l.send(ctx, b, len(evs))
		if err == nil {
			l.head = next
			return nil
		}
		// After any failure the head is unknown: the commit may or may not have happened.
		l.head.known = false
		if !headMoved(err) {
			return err
		}
	}
	var next chainHead
	err := db.InTx(ctx, l.pool, func(tx db.Querier) (err error) {
		next, err = appendEvents(ctx, tx, evs)
		return err
	})
	if err == nil {
		l.head = next
	}
	return err
}

// chain chains evs after head (setting their Seq) and returns the batch that commits them,
// and the head they leave: the head lock, the guarded head update, the insert and the final
// head check, which PostgreSQL runs as one implicit transaction committed at Sync.
func chain(head chainHead, evs []Event) (*pgx.Batch, chainHead) {
	n := len(evs)
	var (
		seqs, cvers                                                = make([]int64, n), make([]int64, n)
		times                                                      = make([]time.Time, n)
		action, outcome, reason, actor, client, org, role, purpose = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		patient, consent, token, request, sourceIP, query          = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		res                                                        = make([]string, n)
		btg, share                                                 = make([]bool, n), make([]bool, n)
		encs, prevs, hashes                                        = make([][]byte, n), make([][]byte, n), make([][]byte, n)
	)
	prev, seq := head.hash, head.seq
	for i := range evs {
		ev := &evs[i]
		seq++
		ev.Seq = seq
		enc := Encode(ev)
		h := ChainHash(prev, seq, enc)
		p := prev
		seqs[i], times[i], cvers[i] = seq, ev.Time, ev.ConsentVersion
		action[i], outcome[i], reason[i], actor[i] = string(ev.Action), string(ev.Outcome), ev.Reason, ev.Actor
		client[i], org[i], role[i], purpose[i], patient[i] = ev.Client, ev.Org, ev.Role, ev.Purpose, ev.Patient
		res[i], consent[i], token[i], request[i], sourceIP[i], query[i] = arrayLiteral(resourceStrings(ev.Resources)), ev.Consent, ev.TokenID, ev.RequestID, ev.SourceIP, ev.Query
		btg[i], share[i] = ev.BreakGlass, ev.ShareLink
		encs[i], prevs[i], hashes[i] = enc, p[:], h[:]
		prev = h
	}
	b := &pgx.Batch{}
	b.Queue(lockHeadSQL)
	b.Queue(guardedHeadSQL, seq, prev[:], head.seq, head.hash[:])
	b.Queue(insertEventsSQL, seqs, times, action, outcome, reason, actor, client, org, role, purpose, patient,
		res, consent, cvers, token, request, sourceIP, query, btg, share, encs, prevs, hashes)
	b.Queue(headIsSQL, seq, prev[:])
	return b, chainHead{known: true, seq: seq, hash: prev}
}

// send runs a batch made by chain for n events and returns once it has committed.
func (l *Log) send(ctx context.Context, b *pgx.Batch, n int) error {
	br := l.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	var ct pgconn.CommandTag
	if err == nil {
		ct, err = br.Exec()
	}
	if err == nil && ct.RowsAffected() != 1 {
		err = errHeadMoved // no head row at all; the final head check keeps the insert out
	}
	if err == nil {
		ct, err = br.Exec()
		if err == nil && ct.RowsAffected() != int64(n) {
			err = errors.New("audit: batch insert wrote a different number of rows")
		}
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// arrayLiteral renders ss as a PostgreSQL text[] literal that reads back as exactly ss:
// every element double-quoted, with backslash and double quote escaped.
func arrayLiteral(ss []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}
