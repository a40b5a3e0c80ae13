package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/config"
)

// TestAuditVerifyWitness runs `concord audit verify` against the witness file a server's
// audit log (and `concord audit checkpoint`) appended its checkpoints to
// (CONCORD_AUDIT_WITNESS): the untouched log verifies against it; after the newest events
// and the newest checkpoint are deleted and audit_chain_head is moved back, plain verify
// still says OK but warns that it cannot see this, and verify --witness fails naming the
// first missing event.
func TestAuditVerifyWitness(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	witness := filepath.Join(t.TempDir(), "audit-witness.jsonl")
	_, owner, app, run := auditCLI(t, dataDir)

	key, err := auditSigningKey(config.Config{DataDir: dataDir}) // as serve makes it
	if err != nil {
		t.Fatal(err)
	}
	// As serve wires it: audit.Config.WitnessFile from CONCORD_AUDIT_WITNESS.
	l, err := audit.New(ctx, app, audit.Config{SigningKey: key, CheckpointEvery: -1, WitnessFile: witness})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 30 {
		ev := audit.Event{Action: audit.Read, Outcome: audit.Permit, Actor: "https://idp.example|u1", Client: "ehr-a",
			Org: "riverside", Role: "clinician", Purpose: "TREAT", Patient: fmt.Sprint("person-", i),
			Resources: []audit.Resource{{Type: "Observation", ID: fmt.Sprint("o", i)}}, RequestID: fmt.Sprint("req-", i)}
		if err := l.Append(ctx, ev); err != nil {
			t.Fatal(err)
		}
		switch i {
		case 9:
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		case 19, 29: // `concord audit checkpoint` writes to the same witness
			if out, err := run("checkpoint", "--audit-witness", witness); err != nil {
				t.Fatalf("audit checkpoint: %v %s", err, out)
			}
		}
	}

	out, err := run("verify", "--witness", witness)
	if err != nil || !strings.HasPrefix(out, "OK: 30 events") || !strings.Contains(out, "none of 3 witnessed checkpoints disagrees") {
		t.Fatalf("verify --witness on the untouched log: %v\n%s", err, out)
	}

	// Cut the tail: the 10 newest events, the checkpoint over them, and the head moved back.
	if _, err := owner.Exec(ctx, `DELETE FROM audit_checkpoints WHERE id = 3;
		DELETE FROM audit_events WHERE seq > 20;
		UPDATE audit_chain_head SET seq = 20, hash = (SELECT hash FROM audit_events WHERE seq = 20)`); err != nil {
		t.Fatal(err)
	}
	out, err = run("verify")
	if err != nil || !strings.HasPrefix(out, "OK: 20 events") || !strings.Contains(out, "cannot be detected without --witness FILE") {
		t.Fatalf("verify without a witness: %v\n%s; want OK with the no-witness warning", err, out)
	}
	out, err = run("verify", "--witness", witness)
	if !errors.Is(err, errReported) || !strings.HasPrefix(out, "FAILED at event 21: truncated (witnessed checkpoint 3 covers 30 events") {
		t.Fatalf("verify --witness on the cut log: %v\n%s; want FAILED at event 21: truncated", err, out)
	}

	// A witness that is not this log's key's is named, not trusted.
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(bad, []byte(`{"format":"concord-audit-checkpoint/v1","id":1}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run("verify", "--witness", bad); err == nil || !strings.Contains(err.Error(), "witness line 1") {
		t.Fatalf("verify --witness with a bad line: %v %s", err, out)
	}
}
