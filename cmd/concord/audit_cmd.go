package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/db"
)

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	if sub != "verify" && sub != "checkpoint" {
		fmt.Fprint(stderr, "usage: concord audit verify [--pub HEX]   check the whole chain and every signed checkpoint\n       concord audit checkpoint            write a signed checkpoint now and print it as JSON\n")
		if sub == "-h" || sub == "--help" {
			return flag.ErrHelp
		}
		return errReported
	}
	var pubHex string
	cfg, _, err := parseConfig("audit "+sub, "audit "+sub+" [flags]", args[1:], stderr, func(fs *flag.FlagSet) {
		if sub == "verify" {
			fs.StringVar(&pubHex, "pub", "", "checkpoint public key (hex Ed25519); default: derived from the key in DATA_DIR")
		}
	})
	if err != nil {
		return err
	}
	priv, err := auditSigningKey(cfg)
	if err != nil {
		return err
	}
	pub := priv.Public().(ed25519.PublicKey)
	if pubHex != "" {
		b, err := hex.DecodeString(pubHex)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return fmt.Errorf("--pub: want %d hex-encoded bytes", ed25519.PublicKeySize)
		}
		pub = b
	}
	pool, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: 2, StatementTimeout: time.Hour})
	if err != nil {
		return fmt.Errorf("CONCORD_DATABASE_URL: PostgreSQL does not answer: %v", errors.Unwrap(err))
	}
	defer pool.Close()
	if sub == "checkpoint" {
		log, err := audit.New(ctx, pool, audit.Config{SigningKey: priv, CheckpointEvery: -1})
		if err != nil {
			return err
		}
		defer log.Close()
		cp, err := log.Checkpoint(ctx)
		if err != nil {
			return err
		}
		b, err := audit.ExportCheckpoint(cp, pub)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	last := time.Now()
	rep, err := audit.Verify(ctx, pool, pub, func(done int64) {
		if time.Since(last) > 2*time.Second {
			fmt.Fprintf(stderr, "verified %d events\n", done)
			last = time.Now()
		}
	})
	if err != nil {
		return err
	}
	if !rep.OK {
		fmt.Fprintf(stdout, "FAILED at event %d: %s (%s)\n", rep.FirstBad, rep.Problem, rep.Detail)
		fmt.Fprintf(stdout, "%d events and %d checkpoints checked before it, in %s\n", rep.Events, rep.Checkpoints, rep.Took.Round(time.Millisecond))
		return errReported
	}
	fmt.Fprintf(stdout, "OK: %d events, chain intact through seq %d; %d signed checkpoints verified; %s\n",
		rep.Events, rep.LastSeq, rep.Checkpoints, rep.Took.Round(time.Millisecond))
	return nil
}

var _ = os.Stdout
