package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

// lockedBuffer is a bytes.Buffer that a Log's goroutines and the test may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// appendAndCheckpoint appends n sample events in one transaction and writes a checkpoint.
func appendAndCheckpoint(t *testing.T, ctx context.Context, pool *pgxpool.Pool, l *Log, r *rand.Rand, n int) Checkpoint {
	t.Helper()
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = sampleEvent(r)
	}
	if err := db.InTx(ctx, pool, func(tx db.Querier) error { return l.AppendTx(ctx, tx, evs...) }); err != nil {
		t.Fatal(err)
	}
	c, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// readWitnessFile returns the checkpoints in the witness file at path, checked with pub.
func readWitnessFile(t *testing.T, path string, pub ed25519.PublicKey) []Checkpoint {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cps, torn, err := ReadWitness(f, pub)
	if err != nil || torn != 0 {
		t.Fatalf("ReadWitness: %d torn, %v", torn, err)
	}
	return cps
}

// TestWitnessFileCatchesTailTruncation is the attack the database cannot show on its own:
// deleting the 10 newest events together with the checkpoint that covers them and moving
// audit_chain_head back leaves a log that Verify passes. The checkpoints a Log wrote to its
// WitnessFile while it ran make VerifyWitnessed report it as Truncated at the first
// missing event.
func TestWitnessFileCatchesTailTruncation(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	key := seededKey(42)
	pub := key.Public().(ed25519.PublicKey)
	path := filepath.Join(t.TempDir(), "witness.jsonl")
	l, err := New(ctx, pool, Config{SigningKey: key, CheckpointEvery: -1, WitnessFile: path})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 4 {
		appendAndCheckpoint(t, ctx, pool, l, r, 10)
	}
	if _, err := l.Checkpoint(ctx); err != nil { // nothing new: no second line for checkpoint 4
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	witnessed := readWitnessFile(t, path, pub)
	if len(witnessed) != 4 || witnessed[3].ID != 4 || witnessed[3].Size != 40 {
		t.Fatalf("witness holds %+v; want checkpoints 1-4, the last of size 40", witnessed)
	}
	if b, _ := os.ReadFile(path); bytes.Count(b, []byte("\n")) != 4 {
		t.Fatalf("witness file has %d lines; want one per checkpoint:\n%s", bytes.Count(b, []byte("\n")), b)
	}
	if rep, err := VerifyWitnessed(ctx, pool, pub, witnessed, nil); err != nil || !rep.OK {
		t.Fatalf("untampered log against its own witness: %+v, %v", rep, err)
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	mustExec(t, ctx, tx, "DELETE FROM audit_checkpoints WHERE id = 4")
	mustExec(t, ctx, tx, "DELETE FROM audit_events WHERE seq > 30")
	mustExec(t, ctx, tx, "UPDATE audit_chain_head SET seq = 30, hash = (SELECT hash FROM audit_events WHERE seq = 30)")
	if rep, err := Verify(ctx, tx, pub, nil); err != nil || !rep.OK {
		t.Fatalf("without a witness the cut log verifies (the limit of local checks): %+v, %v", rep, err)
	}
	rep, err := VerifyWitnessed(ctx, tx, pub, witnessed, nil)
	if err != nil || rep.OK || rep.Problem != Truncated || rep.FirstBad != 31 || rep.Checkpoint != 4 {
		t.Fatalf("cut log against the witness: %+v, %v; want truncated at 31 by checkpoint 4", rep, err)
	}
}

// TestWitnessFailureKeepsAuditing: a witness file that cannot be written is logged with IDs
// only and fails neither Checkpoint nor Append; once it can be written again the next
// Checkpoint writes the checkpoint it missed. New refuses a path it cannot open at all.
func TestWitnessFailureKeepsAuditing(t *testing.T) {
	pool := testkit.DB(t)
	ctx := context.Background()
	key := seededKey(42)
	pub := key.Public().(ed25519.PublicKey)
	dir := t.TempDir()

	if _, err := New(ctx, pool, Config{SigningKey: key, CheckpointEvery: -1, WitnessFile: dir}); errs.CodeOf(err) != errs.Invalid {
		t.Fatalf("New with a directory as witness file: %v; want invalid", err)
	}

	path := filepath.Join(dir, "witness.jsonl")
	var logs lockedBuffer
	l, err := New(ctx, pool, Config{SigningKey: key, CheckpointEvery: -1, WitnessFile: path,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := rand.New(rand.NewPCG(7, 8))
	appendAndCheckpoint(t, ctx, pool, l, r, 5)

	// The path turns into a directory: every write fails.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	c2 := appendAndCheckpoint(t, ctx, pool, l, r, 5)
	if c2.ID != 2 {
		t.Fatalf("checkpoint with a broken witness: %+v", c2)
	}
	if err := l.Append(ctx, sampleEvent(r)); err != nil {
		t.Fatalf("append with a broken witness: %v", err)
	}
	if got := logs.String(); !strings.Contains(got, "not written to the witness file") || !strings.Contains(got, "checkpoint=2") {
		t.Fatalf("failed witness write not logged with the checkpoint ID:\n%s", got)
	}

	// Writable again: the next checkpoint is written, and so is a retry with nothing new.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c3, err := l.Checkpoint(ctx)
	if err != nil || c3.ID != 3 {
		t.Fatalf("checkpoint after the witness recovered: %+v, %v", c3, err)
	}
	if got := readWitnessFile(t, path, pub); len(got) != 1 || got[0].ID != 3 {
		t.Fatalf("witness after recovery: %+v; want checkpoint 3", got)
	}
	if rep, err := VerifyWitnessed(ctx, pool, pub, readWitnessFile(t, path, pub), nil); err != nil || !rep.OK {
		t.Fatalf("verify against the recovered witness: %+v, %v", rep, err)
	}
}

// TestReadWitness: repeats are dropped, a line torn by a crash is skipped and the next write
// starts a line of its own, and a checkpoint that pub did not sign is refused by line number.
func TestReadWitness(t *testing.T) {
	ctx := context.Background()
	key, other := seededKey(42), seededKey(43)
	pub := key.Public().(ed25519.PublicKey)
	sign := func(k ed25519.PrivateKey, id, size int64) Checkpoint {
		c := Checkpoint{ID: id, Size: size, KeyID: KeyID(k.Public().(ed25519.PublicKey))}
		c.Root[0], c.Head[0] = byte(id), byte(size)
		c.Sig = ed25519.Sign(k, c.Note())
		return c
	}
	path := filepath.Join(t.TempDir(), "w.jsonl")
	for _, c := range []Checkpoint{sign(key, 1, 10), sign(key, 1, 10), sign(key, 2, 20)} {
		if err := AppendWitness(ctx, path, c, pub); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"format":"concord-audit-checkpoint/v1","id":3,"si`) // a crash mid-write
	f.Close()
	if err := AppendWitness(ctx, path, sign(key, 3, 30), pub); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	cps, torn, err := ReadWitness(bytes.NewReader(b), pub)
	if err != nil || torn != 1 || len(cps) != 3 || cps[0].ID != 1 || cps[1].ID != 2 || cps[2].ID != 3 || cps[2].Size != 30 {
		t.Fatalf("ReadWitness: %+v, %d torn, %v; want checkpoints 1, 2, 3 and one torn line", cps, torn, err)
	}

	if err := AppendWitness(ctx, path, sign(other, 4, 40), other.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	_, _, err = ReadWitness(bytes.NewReader(b), pub)
	if errs.CodeOf(err) != errs.Invalid || !strings.Contains(errs.MessageOf(err), "witness line 6") {
		t.Fatalf("a checkpoint signed by another key: %v; want invalid at line 6", err)
	}
}
