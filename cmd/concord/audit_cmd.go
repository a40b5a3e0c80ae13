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
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/config"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	if sub != "verify" && sub != "checkpoint" && sub != "prune" {
		fmt.Fprint(stderr, "usage: concord audit verify [--pub HEX] [--witness FILE]\n"+
			"                                           check the whole chain, every signed checkpoint and, with\n"+
			"                                           --witness, the checkpoints CONCORD_AUDIT_WITNESS kept\n"+
			"       concord audit checkpoint            write a signed checkpoint now and print it as JSON\n"+
			"       concord audit prune --before YYYY-MM-DD [--dry-run]\n"+
			"                                           drop the monthly partitions that end by then (at least 6 years ago)\n")
		if sub == "-h" || sub == "--help" {
			return flag.ErrHelp
		}
		return errReported
	}
	var pubHex, beforeArg, witness string
	var dryRun bool
	synopsis := "audit " + sub + " [flags]"
	if sub == "prune" {
		synopsis = "audit prune --before YYYY-MM-DD [--dry-run] [flags]\n\n" +
			"Drops the monthly partitions of the audit log that end on or before --before (at least\n" +
			"CONCORD_AUDIT_RETENTION_YEARS, never under 6, years ago), once a signed checkpoint covers their events. The chain then starts\n" +
			"from a signed anchor and `concord audit verify` still proves it whole. Run it as the\n" +
			"database owner (the role `concord migrate` uses) with the server's DATA_DIR, which holds\n" +
			"the checkpoint key. Prints partition names and seqs only."
	}
	cfg, _, err := parseConfig("audit "+sub, synopsis, args[1:], stderr, func(fs *flag.FlagSet) {
		switch sub {
		case "verify":
			fs.StringVar(&pubHex, "pub", "", "checkpoint public key (hex Ed25519); default: derived from the key in DATA_DIR")
			fs.StringVar(&witness, "witness", "", "witness file the server appended its checkpoints to (CONCORD_AUDIT_WITNESS), or lines of `concord audit checkpoint` output; without it, deleting the newest events together with the newest checkpoints goes undetected")
		case "prune":
			fs.StringVar(&beforeArg, "before", "", "drop the monthly partitions that end on or before this date (YYYY-MM-DD, UTC); required")
			fs.BoolVar(&dryRun, "dry-run", false, "run every check and list what would be dropped, changing nothing")
		}
	})
	if err != nil {
		return err
	}
	if sub == "prune" {
		return auditPrune(ctx, cfg, beforeArg, dryRun, time.Now(), stdout)
	}
	// verify --pub needs no signing key; otherwise the key must be the one DATA_DIR already
	// holds: a new one would sign checkpoints the chain's old ones do not match.
	var priv ed25519.PrivateKey
	var pub ed25519.PublicKey
	if pubHex != "" && sub == "verify" {
		b, err := hex.DecodeString(pubHex)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return fmt.Errorf("--pub: want %d hex-encoded bytes", ed25519.PublicKeySize)
		}
		pub = b
	} else {
		if priv, err = existingAuditKey(cfg, "audit "+sub, ""); err != nil {
			return err
		}
		pub = priv.Public().(ed25519.PublicKey)
	}
	pool, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: 2, StatementTimeout: time.Hour})
	if err != nil {
		return fmt.Errorf("CONCORD_DATABASE_URL: PostgreSQL does not answer: %v", errors.Unwrap(err))
	}
	defer pool.Close()
	if sub == "checkpoint" {
		log, err := audit.New(ctx, pool, audit.Config{SigningKey: priv, CheckpointEvery: -1, WitnessFile: cfg.AuditWitness})
		if err != nil {
			if errs.CodeOf(err) == errs.Invalid && cfg.AuditWitness != "" {
				return fmt.Errorf("CONCORD_AUDIT_WITNESS: %v", err)
			}
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
	var witnessed []audit.Checkpoint
	if witness != "" {
		if witnessed, err = readWitness(witness, pub, stderr); err != nil {
			return err
		}
	}
	last := time.Now()
	rep, err := audit.VerifyWitnessed(ctx, pool, pub, witnessed, func(done int64) {
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
	switch {
	case len(witnessed) > 0:
		newest := witnessed[0]
		for _, c := range witnessed[1:] {
			if c.Size > newest.Size {
				newest = c
			}
		}
		fmt.Fprintf(stdout, "witness: none of %d witnessed checkpoints disagrees with the log, which still reaches the newest (checkpoint %d, %d events)\n",
			len(witnessed), newest.ID, newest.Size)
	case witness != "":
		fmt.Fprintf(stdout, "witness: %s holds no checkpoints: deleting the newest events together with the newest checkpoints cannot be detected\n", witness)
	default:
		hint := "set CONCORD_AUDIT_WITNESS on the server"
		if cfg.AuditWitness != "" {
			hint = "CONCORD_AUDIT_WITNESS is " + cfg.AuditWitness
		}
		fmt.Fprintf(stdout, "no witness: deleting the newest events together with the newest checkpoints cannot be detected without --witness FILE (%s)\n", hint)
	}
	return nil
}

// readWitness reads the checkpoints in the witness file at path, each checked with pub, and
// notes torn lines on stderr. Its errors name the file and the first bad line.
func readWitness(path string, pub ed25519.PublicKey, stderr io.Writer) ([]audit.Checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--witness: %v", err)
	}
	defer f.Close()
	cps, torn, err := audit.ReadWitness(f, pub)
	if err != nil {
		if msg := errs.MessageOf(err); msg != "" {
			return nil, fmt.Errorf("--witness %s: %s", path, msg)
		}
		return nil, fmt.Errorf("--witness %s: %w", path, err)
	}
	if torn > 0 {
		fmt.Fprintf(stderr, "witness: skipped %d torn lines (a write cut off by a crash)\n", torn)
	}
	return cps, nil
}

// pruneRetentionYears is how long audit prune keeps events: the configured retention
// (CONCORD_AUDIT_RETENTION_YEARS), never less than audit.MinRetentionYears.
func pruneRetentionYears(cfg config.Config) int {
	return max(cfg.AuditRetentionYears, audit.MinRetentionYears)
}

// auditSeedFile is where auditSigningKey keeps the checkpoint key's seed, under DATA_DIR.
const auditSeedFile = "audit-checkpoint.seed"

// existingAuditKey returns the checkpoint signing key DATA_DIR holds, and an error (naming
// cmd, ending with suffix) when it holds none. auditSigningKey makes a new key when DATA_DIR
// has none: right for a first `serve`, wrong for the audit commands, where the key must be
// the one that signed the chain's checkpoints (a restore without keys/ must not mint one
// that a later `serve` would then sign with).
func existingAuditKey(cfg config.Config, cmd, suffix string) (ed25519.PrivateKey, error) {
	seed := filepath.Join(cfg.DataDir, "keys", auditSeedFile)
	if _, err := os.Stat(seed); err != nil {
		return nil, fmt.Errorf("%s: no checkpoint signing key at %s (%v): run it with the CONCORD_DATA_DIR of the `concord serve` that writes the checkpoints (verify also takes --pub)%s",
			cmd, seed, errors.Unwrap(err), suffix)
	}
	key, err := auditSigningKey(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: checkpoint signing key: %v%s", cmd, err, suffix)
	}
	return key, nil
}

// auditPrune runs `concord audit prune`: it drops (or, with dryRun, lists) the audit
// partitions that end on or before the date before names, and prints partition names and
// seqs, never event contents. It refuses a date less than pruneRetentionYears(cfg) before now,
// and a DATA_DIR without the checkpoint key, before opening the database; every error says
// that nothing was pruned, since the prune is one transaction.
func auditPrune(ctx context.Context, cfg config.Config, before string, dryRun bool, now time.Time, stdout io.Writer) error {
	if before == "" {
		return errors.New("audit prune: --before YYYY-MM-DD is required")
	}
	cut, err := time.Parse(time.DateOnly, before)
	if err != nil {
		return fmt.Errorf("audit prune: --before %q: want a date as YYYY-MM-DD", before)
	}
	keep := pruneRetentionYears(cfg)
	floor := now.UTC().AddDate(-keep, 0, 0)
	if cut.After(floor) {
		return fmt.Errorf("audit prune: --before %s is too recent: audit events are kept at least %d years, so the latest date allowed today is %s; nothing pruned",
			before, keep, floor.Format(time.DateOnly))
	}
	key, err := existingAuditKey(cfg, "audit prune", "; nothing pruned")
	if err != nil {
		return err
	}
	pool, err := openAdminDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	var plan audit.PrunePlan
	if dryRun {
		err = db.InTxOpts(ctx, pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx db.Querier) error {
			plan, err = audit.PlanPrune(ctx, tx, key, cut)
			return err
		})
	} else {
		err = db.InTx(ctx, pool, func(tx db.Querier) error {
			plan, err = audit.ApplyPrune(ctx, tx, key, cut)
			return err
		})
	}
	if err != nil {
		return pruneError(err)
	}
	verb := "pruned"
	if dryRun {
		verb = "dry run: would prune"
	}
	if len(plan.Partitions) == 0 {
		_, err = fmt.Fprintf(stdout, "%s nothing: no audit partition ends on or before %s\n", verb, before)
		return err
	}
	fmt.Fprintf(stdout, "%s %d audit partitions:\n", verb, len(plan.Partitions))
	for _, p := range plan.Partitions {
		fmt.Fprintf(stdout, "  %s\n", p)
	}
	switch {
	case plan.LastSeq == 0:
		fmt.Fprintln(stdout, "they hold no events; the audit anchor stays as it was")
	case dryRun:
		fmt.Fprintf(stdout, "events seq %d-%d, covered by signed checkpoint %d; the audit anchor would move to seq %d\n",
			plan.FirstSeq, plan.LastSeq, plan.Checkpoint, plan.LastSeq)
	default:
		fmt.Fprintf(stdout, "events seq %d-%d, covered by signed checkpoint %d; signed audit anchor written at seq %d\n",
			plan.FirstSeq, plan.LastSeq, plan.Checkpoint, plan.LastSeq)
	}
	if dryRun {
		_, err = fmt.Fprintln(stdout, "nothing changed")
	}
	return err
}

// pruneError turns an error from audit.ApplyPrune or PlanPrune into a sentence for the
// operator.
func pruneError(err error) error {
	msg := errs.MessageOf(err)
	switch {
	case errors.Is(err, audit.ErrNoCheckpoint):
		return fmt.Errorf("audit prune: %s. Wait for the server's next checkpoint (it writes one every minute) or run `concord audit checkpoint` with the same CONCORD_DATA_DIR, then prune again", msg)
	case msg != "":
		return fmt.Errorf("audit prune: %s", msg)
	}
	return fmt.Errorf("audit prune: nothing pruned: %w", err)
}
