package audit

import (
	"context"
	"crypto/ed25519"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/testkit"
)

func seededKey(b byte) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = b
	}
	return ed25519.NewKeyFromSeed(s)
}

// tamperFixture appends n events in four checkpointed quarters and returns the pool and key.
func tamperFixture(t *testing.T, n int) (*pgxpool.Pool, ed25519.PrivateKey) {
	pool := testkit.DB(t)
	ctx := context.Background()
	key := seededKey(42)
	l, err := New(ctx, pool, Config{SigningKey: key, CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := rand.New(rand.NewPCG(5, 6))
	for q := 0; q < 4; q++ {
		evs := make([]Event, n/4)
		for i := range evs {
			evs[i] = sampleEvent(r)
		}
		if err := db.InTx(ctx, pool, func(tx db.Querier) error { return l.AppendTx(ctx, tx, evs...) }); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Verify(ctx, pool, key.Public().(ed25519.PublicKey), nil)
	if err != nil || !rep.OK || rep.Events != int64(n) || rep.Checkpoints != 4 {
		t.Fatalf("untampered log: %+v, %v", rep, err)
	}
	return pool, key
}

type tamperRow struct {
	seq  int64
	ev   Event
	enc  []byte
	prev []byte
	hash []byte
}

func loadRows(t *testing.T, ctx context.Context, tx pgx.Tx, from int64) []tamperRow {
	rows, err := tx.Query(ctx, eventSelect+" WHERE seq >= $1 ORDER BY seq", from)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []tamperRow
	for rows.Next() {
		var r verifyRow
		if err := scanRow(rows, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, tamperRow{seq: r.seq, ev: r.event(), enc: r.enc, prev: r.prev, hash: r.hash})
	}
	return out
}

// rechain rewrites event k's purpose in both its column and its encoding and re-hashes every
// event from k on, moving the head: what an attacker with database access but without the
// checkpoint key can do. It returns the new hashes from k on.
func rechain(t *testing.T, ctx context.Context, tx pgx.Tx, k int64) {
	rs := loadRows(t, ctx, tx, k)
	var prev Hash
	copy(prev[:], rs[0].prev)
	seqs := make([]int64, len(rs))
	encs := make([][]byte, len(rs))
	prevs := make([][]byte, len(rs))
	hashes := make([][]byte, len(rs))
	for i, r := range rs {
		if i == 0 {
			r.ev.Purpose = "HACKED"
			r.enc = Encode(&r.ev)
		}
		h := ChainHash(prev, r.seq, r.enc)
		seqs[i], encs[i], prevs[i], hashes[i] = r.seq, r.enc, append([]byte(nil), prev[:]...), append([]byte(nil), h[:]...)
		prev = h
	}
	mustExec(t, ctx, tx, `UPDATE audit_events e SET enc = u.enc, prev = u.prev, hash = u.hash,
		purpose = CASE WHEN e.seq = $5 THEN 'HACKED' ELSE e.purpose END
		FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[]) AS u(seq, enc, prev, hash) WHERE e.seq = u.seq`,
		seqs, encs, prevs, hashes, k)
	mustExec(t, ctx, tx, "UPDATE audit_chain_head SET hash = $1", prev[:])
}

func mustExec(t *testing.T, ctx context.Context, tx pgx.Tx, sql string, args ...any) {
	t.Helper()
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("tamper %q: %v", sql, err)
	}
}

// TestTamperingDetected applies at least 1,000 random tamperings, each directly in SQL as a
// superuser inside a transaction that Verify reads and that is then rolled back, and requires
// every one to be detected.
func TestTamperingDetected(t *testing.T) {
	const n = 80 // events; four checkpoints at 20, 40, 60, 80
	pool, key := tamperFixture(t, n)
	pub := key.Public().(ed25519.PublicKey)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 8))
	iterations := 1026 // ≥ 1,000: each of the 19 kinds 54 times
	if testing.Short() {
		iterations = 200
	}
	columns := []string{
		"purpose = 'HACK'", "patient = patient || 'x'", "org = 'evil'", "actor = 'iss|mallory'",
		"outcome = CASE WHEN outcome = 'permit' THEN 'deny' ELSE 'permit' END",
		"time = time + interval '1 second'", "resources = array_append(resources, 'Observation/x')",
		"break_glass = NOT break_glass", "share_link = NOT share_link", "request_id = 'forged'",
		"consent_version = consent_version + 1", "query = query || '&x=1'", "reason = reason || 'x'",
	}
	attacker := seededKey(99)
	kinds := []string{"edit-column", "edit-encoding", "edit-column-and-encoding", "edit-hash", "edit-prev",
		"delete", "delete-last-fix-head", "insert-duplicate", "insert-shift", "swap", "swap-adjacent",
		"truncate", "rechain", "rechain-resign", "delete-checkpoint", "edit-checkpoint", "insert-before-start", "append-beyond-head",
		"forge-anchor"}
	// What Verify must say for the tamperings whose diagnosis is unambiguous.
	type expect struct {
		p   Problem
		atK bool // FirstBad must be the tampered seq
	}
	wantProblem := map[string]expect{
		"edit-column": {Edited, true}, "edit-encoding": {Edited, true}, "edit-column-and-encoding": {Edited, true},
		"insert-duplicate": {Inserted, false}, "rechain": {Rechained, false}, "rechain-resign": {BadCheckpoint, false},
		"delete-checkpoint": {BadCheckpoint, false}, "edit-checkpoint": {BadCheckpoint, false},
		"append-beyond-head": {Inserted, false}, "swap": {Reordered, false}, "swap-adjacent": {Reordered, false}, "truncate": {Truncated, false}, "insert-before-start": {Inserted, false},
		"forge-anchor": {BadAnchor, false},
	}
	detected := map[string]int{}
	problems := map[Problem]int{}
	total := 0
	for i := 0; i < iterations; i++ {
		kind := kinds[i%len(kinds)]
		k := 1 + r.Int64N(n)
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch kind {
		case "edit-column":
			mustExec(t, ctx, tx, "UPDATE audit_events SET "+columns[r.IntN(len(columns))]+" WHERE seq = $1", k)
		case "edit-encoding":
			pos := r.IntN(1 << 16)
			mustExec(t, ctx, tx, "UPDATE audit_events SET enc = set_byte(enc, $2 % length(enc), get_byte(enc, $2 % length(enc)) # (1 + $3::int)) WHERE seq = $1", k, pos, r.IntN(255))
		case "edit-column-and-encoding":
			rs := loadRows(t, ctx, tx, k)
			ev := rs[0].ev
			ev.Patient = "someone-else"
			mustExec(t, ctx, tx, "UPDATE audit_events SET patient = $2, enc = $3 WHERE seq = $1", k, ev.Patient, Encode(&ev))
		case "edit-hash":
			mustExec(t, ctx, tx, "UPDATE audit_events SET hash = set_byte(hash, $2, get_byte(hash, $2) # 1) WHERE seq = $1", k, r.IntN(32))
		case "edit-prev":
			mustExec(t, ctx, tx, "UPDATE audit_events SET prev = set_byte(prev, $2, get_byte(prev, $2) # 1) WHERE seq = $1", k, r.IntN(32))
		case "delete":
			mustExec(t, ctx, tx, "DELETE FROM audit_events WHERE seq = $1", k)
		case "delete-last-fix-head":
			mustExec(t, ctx, tx, "DELETE FROM audit_events WHERE seq = $1", n)
			mustExec(t, ctx, tx, "UPDATE audit_chain_head SET seq = $1, hash = (SELECT hash FROM audit_events WHERE seq = $1)", n-1)
		case "insert-duplicate":
			mustExec(t, ctx, tx, "INSERT INTO audit_events SELECT * FROM audit_events WHERE seq = $1", k)
		case "insert-shift":
			// A forged event, correctly chained to its predecessor, pushed in at k.
			rs := loadRows(t, ctx, tx, k)
			ev := sampleEvent(r)
			ev.Seq = k
			enc := Encode(&ev)
			var prev Hash
			copy(prev[:], rs[0].prev)
			h := ChainHash(prev, k, enc)
			mustExec(t, ctx, tx, "UPDATE audit_events SET seq = seq + 1 WHERE seq >= $1", k)
			mustExec(t, ctx, tx, `INSERT INTO audit_events (seq, time, action, outcome, reason, actor, client, org, role, purpose, patient,
				resources, consent, consent_version, token_id, request_id, source_ip, query, break_glass, share_link, enc, prev, hash)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)`,
				k, ev.Time, string(ev.Action), string(ev.Outcome), ev.Reason, ev.Actor, ev.Client, ev.Org, ev.Role, ev.Purpose,
				ev.Patient, resourceStrings(ev.Resources), ev.Consent, ev.ConsentVersion, ev.TokenID, ev.RequestID, ev.SourceIP,
				ev.Query, ev.BreakGlass, ev.ShareLink, enc, prev[:], h[:])
			mustExec(t, ctx, tx, "UPDATE audit_chain_head SET seq = seq + 1, hash = (SELECT hash FROM audit_events WHERE seq = $1)", n+1)
		case "swap", "swap-adjacent":
			a, b := k, 1+r.Int64N(n)
			if kind == "swap-adjacent" || a == b {
				if a == n {
					a--
				}
				b = a + 1
			}
			mustExec(t, ctx, tx, "UPDATE audit_events SET seq = CASE WHEN seq = $1 THEN $2 ELSE $1 END WHERE seq IN ($1, $2)", a, b)
		case "truncate":
			k-- // keep events 1..k (k may be 0), drop the rest, move the head back
			mustExec(t, ctx, tx, "DELETE FROM audit_events WHERE seq > $1", k)
			mustExec(t, ctx, tx, "UPDATE audit_chain_head SET seq = $1, hash = coalesce((SELECT hash FROM audit_events WHERE seq = $1), decode(repeat('00', 32), 'hex'))", k)
		case "rechain":
			rechain(t, ctx, tx, k)
		case "rechain-resign":
			// Re-chain, then recompute every checkpoint over the forged chain and sign it with
			// the attacker's own key.
			rechain(t, ctx, tx, k)
			rs := loadRows(t, ctx, tx, 1)
			var fr frontier
			var cps []Checkpoint
			rows, err := tx.Query(ctx, "SELECT id, size, time FROM audit_checkpoints ORDER BY id")
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var c Checkpoint
				if err := rows.Scan(&c.ID, &c.Size, &c.Time); err != nil {
					t.Fatal(err)
				}
				cps = append(cps, c)
			}
			rows.Close()
			next := 0
			for _, row := range rs {
				fr.push(row.hash)
				for next < len(cps) && cps[next].Size == row.seq {
					c := &cps[next]
					c.Root = fr.root()
					copy(c.Head[:], row.hash)
					c.KeyID = KeyID(attacker.Public().(ed25519.PublicKey))
					c.Sig = ed25519.Sign(attacker, c.Note())
					mustExec(t, ctx, tx, "UPDATE audit_checkpoints SET root = $2, head = $3, key_id = $4, sig = $5 WHERE id = $1", c.ID, c.Root[:], c.Head[:], c.KeyID, c.Sig)
					next++
				}
			}
		case "delete-checkpoint":
			mustExec(t, ctx, tx, "DELETE FROM audit_checkpoints WHERE id = $1", 1+r.Int64N(3)) // not the newest: only a witness can tell that one is gone
		case "edit-checkpoint":
			switch r.IntN(3) {
			case 0:
				mustExec(t, ctx, tx, "UPDATE audit_checkpoints SET size = size - 1 WHERE id = $1", 1+r.Int64N(4))
			case 1:
				mustExec(t, ctx, tx, "UPDATE audit_checkpoints SET root = set_byte(root, 0, get_byte(root, 0) # 1) WHERE id = $1", 1+r.Int64N(4))
			default:
				mustExec(t, ctx, tx, "UPDATE audit_checkpoints SET time = time - interval '1 hour' WHERE id = $1", 1+r.Int64N(4))
			}
		case "insert-before-start":
			mustExec(t, ctx, tx, "INSERT INTO audit_events SELECT * FROM audit_events WHERE seq = $1", k)
			mustExec(t, ctx, tx, "UPDATE audit_events SET seq = 0 WHERE ctid = (SELECT ctid FROM audit_events WHERE seq = $1 LIMIT 1) AND tableoid = (SELECT tableoid FROM audit_events WHERE seq = $1 LIMIT 1)", k)
		case "append-beyond-head":
			// A forged event correctly chained after the last one, without moving the head.
			rs := loadRows(t, ctx, tx, n)
			ev := sampleEvent(r)
			enc := Encode(&ev)
			var prev Hash
			copy(prev[:], rs[0].hash)
			h := ChainHash(prev, n+1, enc)
			mustExec(t, ctx, tx, `INSERT INTO audit_events (seq, time, action, outcome, reason, actor, client, org, role, purpose, patient,
				resources, consent, consent_version, token_id, request_id, source_ip, query, break_glass, share_link, enc, prev, hash)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)`,
				n+1, ev.Time, string(ev.Action), string(ev.Outcome), ev.Reason, ev.Actor, ev.Client, ev.Org, ev.Role, ev.Purpose,
				ev.Patient, resourceStrings(ev.Resources), ev.Consent, ev.ConsentVersion, ev.TokenID, ev.RequestID, ev.SourceIP,
				ev.Query, ev.BreakGlass, ev.ShareLink, enc, prev[:], h[:])
		case "forge-anchor":
			// Delete the oldest events, however young, and write the anchor their public hashes
			// give: unsigned, signed with another key, or a statement under the real key that
			// claims they were old enough (but not its signed prune time: that would be the
			// key holder pruning).
			switch r.IntN(3) {
			case 0:
				forgeAnchor(t, ctx, tx, k, nil, time.Time{})
			case 1:
				forgeAnchor(t, ctx, tx, k, attacker, time.Now().AddDate(-7, 0, 0))
			default:
				forgeAnchor(t, ctx, tx, k, key, time.Time{})
			}
		default:
			t.Fatalf("unknown tampering %s", kind)
		}
		rep, err := Verify(ctx, tx, pub, nil)
		if err != nil {
			t.Fatalf("%s at %d: Verify: %v", kind, k, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		total++
		if want, ok := wantProblem[kind]; ok && !rep.OK && (rep.Problem != want.p || (want.atK && rep.FirstBad != k)) {
			t.Errorf("%s at seq %d: reported %s at seq %d (%s); want %s%s", kind, k, rep.Problem, rep.FirstBad, rep.Detail, want.p,
				map[bool]string{true: " at that seq", false: ""}[want.atK])
		}
		if kind == "rechain" && !rep.OK && (rep.FirstBad > k || rep.FirstBad < k-n/4) {
			t.Errorf("rechain from seq %d: reported from seq %d; want the checkpoint interval holding it", k, rep.FirstBad)
		}
		if !rep.OK {
			detected[kind]++
			problems[rep.Problem]++
		} else {
			t.Errorf("tampering %d (%s at seq %d) was not detected", i, kind, k)
		}
	}
	sum := 0
	for _, c := range detected {
		sum += c
	}
	t.Logf("tamperings: %d, detected: %d (%.1f %%); by kind %v; by problem %v", total, sum, 100*float64(sum)/float64(total), detected, problems)
	if total < iterations || sum != total {
		t.Fatalf("detected %d of %d tamperings; want all", sum, total)
	}
	// Checkpoint refuses to sign over a broken chain.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, ctx, tx, "DELETE FROM audit_checkpoints WHERE id = 4")
	mustExec(t, ctx, tx, "DELETE FROM audit_events WHERE seq = $1", n-3)
	if _, err := makeCheckpoint(ctx, tx, key, time.Now()); err == nil {
		t.Fatal("makeCheckpoint signed a chain with a gap")
	}
	tx.Rollback(ctx)
	// The fixture is untouched after all the rolled-back tamperings.
	if rep, err := Verify(ctx, pool, pub, nil); err != nil || !rep.OK {
		t.Fatalf("after rollbacks: %+v, %v", rep, err)
	}
}

// TestWitnessCatchesTailDeletion: deleting the newest events together with the newest
// checkpoint and moving the head back leaves a log that is consistent on its own; only an
// exported (witnessed) checkpoint shows the loss.
func TestWitnessCatchesTailDeletion(t *testing.T) {
	const n = 40
	pool, key := tamperFixture(t, n)
	pub := key.Public().(ed25519.PublicKey)
	ctx := context.Background()
	last, err := LatestCheckpoint(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	js, err := ExportCheckpoint(last, pub)
	if err != nil {
		t.Fatal(err)
	}
	witnessed, err := ParseCheckpoint(js, pub)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	mustExec(t, ctx, tx, "DELETE FROM audit_checkpoints WHERE id = 4")
	mustExec(t, ctx, tx, "DELETE FROM audit_events WHERE seq > 35")
	mustExec(t, ctx, tx, "UPDATE audit_chain_head SET seq = 35, hash = (SELECT hash FROM audit_events WHERE seq = 35)")
	rep, err := Verify(ctx, tx, pub, nil)
	if err != nil || !rep.OK {
		t.Fatalf("without a witness the cut log should verify (that is the limit of local checks): %+v, %v", rep, err)
	}
	rep, err = VerifyWitnessed(ctx, tx, pub, []Checkpoint{witnessed}, nil)
	if err != nil || rep.OK || rep.Problem != Truncated || rep.FirstBad != 36 {
		t.Fatalf("with the witness: %+v, %v; want truncated at 36", rep, err)
	}
	// And a rewrite under a witnessed size, with every stored checkpoint deleted, is Rechained.
	var early Checkpoint
	var root, head []byte
	if err := tx.QueryRow(ctx, "SELECT id, size, root, head, time, key_id, sig FROM audit_checkpoints WHERE id = 2").
		Scan(&early.ID, &early.Size, &root, &head, &early.Time, &early.KeyID, &early.Sig); err != nil {
		t.Fatal(err)
	}
	copy(early.Root[:], root)
	copy(early.Head[:], head)
	rechain(t, ctx, tx, 3)
	mustExec(t, ctx, tx, "DELETE FROM audit_checkpoints")
	rep, err = VerifyWitnessed(ctx, tx, pub, []Checkpoint{early}, nil)
	if err != nil || rep.OK || rep.Problem != Rechained || rep.FirstBad > 3 {
		t.Fatalf("rewrite under a witness: %+v, %v; want rechained from seq <= 3", rep, err)
	}
	w2 := witnessed
	w2.Size = 30
	if rep, _ := VerifyWitnessed(ctx, tx, pub, []Checkpoint{w2}, nil); rep.OK || rep.Problem != BadCheckpoint {
		t.Fatalf("edited witness checkpoint accepted: %+v", rep)
	}
}

// forgeAnchor deletes events 1..k and writes the anchor that anyone can compute from their
// public chain hashes: seq k, the chain hash of event k, the Merkle frontier of events 1..k
// and pruned_at now. With key nil the row has no signed statement; otherwise key signs one
// with newest as the latest pruned event time, or the real latest time when newest is zero.
func forgeAnchor(t *testing.T, ctx context.Context, tx pgx.Tx, k int64, key ed25519.PrivateKey, newest time.Time) anchor {
	t.Helper()
	rs := loadRows(t, ctx, tx, 1)
	a := anchor{seq: k, prunedAt: time.UnixMicro(time.Now().UnixMicro()).UTC()}
	for _, r := range rs[:k] {
		a.fr.push(r.hash)
		if r.ev.Time.After(a.newest) {
			a.newest = r.ev.Time
		}
	}
	copy(a.hash[:], rs[k-1].hash)
	mustExec(t, ctx, tx, "DELETE FROM audit_events WHERE seq <= $1", k)
	if key == nil {
		mustExec(t, ctx, tx, "INSERT INTO audit_anchor (id, seq, hash, frontier, pruned_at) VALUES (true, $1, $2, $3, $4)",
			a.seq, a.hash[:], a.fr.marshal(), a.prunedAt)
		return a
	}
	if !newest.IsZero() {
		a.newest = time.UnixMicro(newest.UnixMicro()).UTC()
	}
	a.sign(key)
	if err := storeAnchor(ctx, tx, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestForgedAnchorDetected: an attacker with database access but without the checkpoint key
// deletes the oldest events, minutes old, and writes an anchor from their public chain
// hashes, so that the events left and every checkpoint after them still agree.
func TestForgedAnchorDetected(t *testing.T) {
	const n = 40 // checkpoints at 10, 20, 30, 40
	pool, key := tamperFixture(t, n)
	pub := key.Public().(ed25519.PublicKey)
	ctx := context.Background()
	old := time.Now().AddDate(-7, 0, 0)
	tests := []struct {
		name   string
		k      int64
		forge  func(tx pgx.Tx, k int64)
		detail string // in the Report's Detail
	}{
		{"unsigned", 7, func(tx pgx.Tx, k int64) { forgeAnchor(t, ctx, tx, k, nil, time.Time{}) }, "unsigned and no checkpoint has its size"},
		{"unsigned at a checkpoint's size", 10, func(tx pgx.Tx, k int64) { forgeAnchor(t, ctx, tx, k, nil, time.Time{}) }, "signed less than 6 years before the prune"},
		{"unsigned, claiming a prune in the future", 10, func(tx pgx.Tx, k int64) {
			forgeAnchor(t, ctx, tx, k, nil, time.Time{})
			mustExec(t, ctx, tx, "UPDATE audit_anchor SET pruned_at = now() + interval '10 years'")
		}, "signed less than 6 years before the prune"},
		{"signed with another key", 7, func(tx pgx.Tx, k int64) { forgeAnchor(t, ctx, tx, k, seededKey(99), old) }, "signature does not verify"},
		{"signed statement edited", 7, func(tx pgx.Tx, k int64) {
			forgeAnchor(t, ctx, tx, k, key, old) // what the key holder could sign: passes on its own
			mustExec(t, ctx, tx, "UPDATE audit_anchor SET newest = newest - interval '1 second'")
		}, "signature does not verify"},
		{"signed, frontier swapped", 7, func(tx pgx.Tx, k int64) {
			forgeAnchor(t, ctx, tx, k, key, old)
			var fr frontier // of the right size, other leaves
			for i := int64(0); i < k; i++ {
				fr.push([]byte{byte(i)})
			}
			mustExec(t, ctx, tx, "UPDATE audit_anchor SET frontier = $1", fr.marshal())
		}, "does not match its signed root"},
		{"malformed frontier", 7, func(tx pgx.Tx, k int64) {
			forgeAnchor(t, ctx, tx, k, nil, time.Time{})
			mustExec(t, ctx, tx, "UPDATE audit_anchor SET frontier = '\\x00'")
		}, "malformed"},
		{"partial statement", 7, func(tx pgx.Tx, k int64) {
			forgeAnchor(t, ctx, tx, k, key, old)
			mustExec(t, ctx, tx, "ALTER TABLE audit_anchor DROP CONSTRAINT audit_anchor_signed_whole")
			mustExec(t, ctx, tx, "UPDATE audit_anchor SET sig = NULL")
		}, "partial signed statement"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			tt.forge(tx, tt.k)
			rep, err := Verify(ctx, tx, pub, nil)
			if err != nil || rep.OK || rep.Problem != BadAnchor || !strings.Contains(rep.Detail, tt.detail) {
				t.Fatalf("Verify = %+v, %v; want bad-anchor: ...%s...", rep, err, tt.detail)
			}
		})
	}
	// The reviewer's case, spelled out: unsigned anchor after deleting seq <= 7.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	forgeAnchor(t, ctx, tx, 7, nil, time.Time{})
	rep, err := Verify(ctx, tx, pub, nil)
	if err != nil || rep.OK || rep.Problem != BadAnchor || rep.Events != 0 {
		t.Fatalf("forged anchor after deleting seq <= 7: %+v, %v; want bad-anchor before any event", rep, err)
	}
	// With no checkpoint to continue from, Checkpoint does not sign over a forged anchor.
	mustExec(t, ctx, tx, "DELETE FROM audit_checkpoints")
	if _, err := makeCheckpoint(ctx, tx, key, time.Now()); err == nil || !strings.Contains(err.Error(), "not signing") {
		t.Fatalf("makeCheckpoint over a forged anchor: %v; want a refusal", err)
	}
}

// TestYoungPruneRejected: a statement signed with the real key, but recording a prune of
// events younger than the minimum retention, fails verification; so does a prune whose
// signed time is before the events it removed.
func TestYoungPruneRejected(t *testing.T) {
	pool, key := tamperFixture(t, 40)
	pub := key.Public().(ed25519.PublicKey)
	ctx := context.Background()
	for _, newest := range []time.Time{
		time.Time{}, // the real times: minutes old
		time.Now().AddDate(-MinRetentionYears, 0, 1),
		time.Now().Add(time.Hour),
	} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		forgeAnchor(t, ctx, tx, 7, key, newest)
		rep, err := Verify(ctx, tx, pub, nil)
		tx.Rollback(ctx)
		if err != nil || rep.OK || rep.Problem != BadAnchor || !strings.Contains(rep.Detail, "younger than the 6-year minimum retention") {
			t.Errorf("newest %v: Verify = %+v, %v; want bad-anchor for retention", newest, rep, err)
		}
	}
	// Just old enough verifies: the check is the retention rule, not a refusal of anchors.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	forgeAnchor(t, ctx, tx, 7, key, time.Now().AddDate(-MinRetentionYears, 0, -1))
	if rep, err := Verify(ctx, tx, pub, nil); err != nil || !rep.OK || rep.Events != 33 {
		t.Fatalf("signed anchor of a prune past retention: %+v, %v; want OK with 33 events", rep, err)
	}
}

// TestUnsignedAnchorVouchedByCheckpoint: an anchor written before anchors were signed (as
// migration 0095 leaves it) verifies when a checkpoint at its size, signed at least the
// minimum retention before the prune, has its root and hash; Prune re-checks it the same way
// and replaces it with a signed one.
func TestUnsignedAnchorVouchedByCheckpoint(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	key := seededKey(42)
	pub := key.Public().(ed25519.PublicKey)
	l, err := New(ctx, pool, Config{SigningKey: key, CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := rand.New(rand.NewPCG(1, 2))
	longAgo := time.Now().AddDate(-8, 0, 0)
	appendN := func(n int, at time.Time) {
		evs := make([]Event, n)
		for i := range evs {
			evs[i] = sampleEvent(r)
			if !at.IsZero() {
				evs[i].Time = at.Add(time.Duration(i) * time.Second)
			}
		}
		if err := db.InTx(ctx, pool, func(tx db.Querier) error { return l.AppendTx(ctx, tx, evs...) }); err != nil {
			t.Fatal(err)
		}
	}
	// Checkpoints at seq 10 and 15 as they were signed eight years ago.
	oldCheckpoint := func(at time.Time) {
		if err := db.InTx(ctx, pool, func(tx db.Querier) error {
			_, err := makeCheckpoint(ctx, tx, key, at)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	appendN(10, longAgo)
	oldCheckpoint(longAgo.Add(time.Minute))
	appendN(5, longAgo.Add(time.Hour))
	oldCheckpoint(longAgo.Add(2 * time.Hour))
	appendN(10, time.Time{})
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	legacy := func(tx pgx.Tx, prunedAt string) {
		t.Helper()
		forgeAnchor(t, ctx, tx, 10, nil, time.Time{})
		mustExec(t, ctx, tx, "UPDATE audit_anchor SET pruned_at = "+prunedAt)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	legacy(tx, "now() - interval '1 day'")
	if rep, err := Verify(ctx, tx, pub, nil); err != nil || !rep.OK || rep.Events != 15 || rep.Checkpoints != 3 {
		t.Fatalf("unsigned anchor vouched for by checkpoint 1: %+v, %v; want OK with 15 events", rep, err)
	}
	tx.Rollback(ctx)
	for _, tamper := range []func(tx pgx.Tx){
		func(tx pgx.Tx) { legacy(tx, "now() - interval '3 years'") }, // pruned when checkpoint 1 was 5 years old
		func(tx pgx.Tx) { // the frontier does not match checkpoint 1
			legacy(tx, "now()")
			mustExec(t, ctx, tx, "UPDATE audit_anchor SET hash = set_byte(hash, 0, get_byte(hash, 0) # 1)")
		},
		func(tx pgx.Tx) { // checkpoint 1 re-signed by someone else
			legacy(tx, "now()")
			mustExec(t, ctx, tx, "UPDATE audit_checkpoints SET time = time + interval '1 second' WHERE id = 1")
		},
	} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tamper(tx)
		rep, err := Verify(ctx, tx, pub, nil)
		tx.Rollback(ctx)
		if err != nil || rep.OK || rep.Problem != BadAnchor {
			t.Errorf("Verify = %+v, %v; want bad-anchor", rep, err)
		}
	}
	// Prune extends a vouched-for unsigned anchor with a signed statement.
	tx, err = pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	legacy(tx, "now() - interval '1 day'")
	if n, err := Prune(ctx, tx, key, time.Now().AddDate(-7, 0, 0)); err != nil || n < 1 {
		t.Fatalf("Prune after an unsigned anchor: %d, %v", n, err)
	}
	a, ok, err := loadAnchor(ctx, tx)
	if err != nil || !ok || !a.signed || a.seq != 15 {
		t.Fatalf("anchor after Prune = %+v, %v, %v; want signed at seq 15", a, ok, err)
	}
	if rep, err := Verify(ctx, tx, pub, nil); err != nil || !rep.OK || rep.Events != 10 {
		t.Fatalf("after Prune: %+v, %v", rep, err)
	}
}
