package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/errs"
)

const fhirUsage = `usage: concord fhir reindex [--type T[,T...]] [--batch N] [--dry-run]
                                     rebuild the search index after an upgrade that adds search parameters
`

const reindexSynopsis = `fhir reindex [--type T[,T...]] [--batch N] [--dry-run] [flags]

Run it after an upgrade that adds search parameters: after ` + "`concord migrate`" + `, with the
new binary, while the exchange serves. The search index is written when a resource is
written, so resources stored before a parameter existed are not found by it until then. It
rebuilds the index rows of every current FHIR resource (of the --type resource types; all
of them by default) from this binary's search parameters.

It commits every --batch resources and never overrides a concurrent write of the same
resource (it waits for it, or the write waits for the batch). Resource versions, bodies,
lastUpdated and history do not change, and nothing is audited: it is index maintenance and
discloses no record. A resource whose index is already current is not written, so a second
run changes nothing, and an interrupted run can simply be started again. Prints counts only;
a resource whose stored body no longer parses, or holds a value the index cannot store, is
named by type and id, left as it was, and makes the command exit non-zero.`

// runFHIR runs `concord fhir reindex`: maintenance of the FHIR store.
func runFHIR(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "reindex" {
		fmt.Fprint(stderr, fhirUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return flag.ErrHelp
		}
		return errReported
	}
	return runFHIRReindex(ctx, args[1:], stdout, stderr)
}

// runFHIRReindex runs `concord fhir reindex` (store.Store.Reindex) and prints its counts,
// progress on stderr every few seconds. It returns errReported, after naming them, when
// some resources could not be reindexed.
func runFHIRReindex(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var types string
	var batch int
	var dryRun bool
	cfg, _, err := parseConfig("fhir reindex", reindexSynopsis, args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&types, "type", "", "comma-separated resource types to reindex (e.g. PractitionerRole,Location); default: all")
		fs.IntVar(&batch, "batch", store.DefaultReindexBatch, "resources per transaction (1-10000)")
		fs.BoolVar(&dryRun, "dry-run", false, "count the resources whose index is out of date, changing nothing")
	})
	if err != nil {
		return err
	}
	if batch < 1 || batch > 10000 {
		return fmt.Errorf("fhir reindex: --batch %d: want 1 to 10000", batch)
	}
	var ts []string
	for _, t := range strings.Split(types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			ts = append(ts, t)
		}
	}
	pool, err := openAdminDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	last := time.Now()
	rep, err := store.New(pool).Reindex(ctx, store.ReindexOptions{Types: ts, Batch: batch, DryRun: dryRun, Progress: func(r store.ReindexReport) {
		if time.Since(last) > 2*time.Second {
			fmt.Fprintf(stderr, "examined %d resources, %d reindexed\n", r.Examined, r.Reindexed)
			last = time.Now()
		}
	}})
	if err != nil {
		if errs.CodeOf(err) == errs.Invalid {
			return fmt.Errorf("fhir reindex: --type: %s", errs.MessageOf(err))
		}
		return fmt.Errorf("fhir reindex: stopped after %d resources (%d reindexed; what was committed stays, run it again to finish): %w",
			rep.Examined, rep.Reindexed, err)
	}
	if dryRun {
		fmt.Fprintf(stdout, "dry run: examined %d current resources: %d would be reindexed, %d already current, %d skipped (deleted meanwhile), %d failed; nothing changed\n",
			rep.Examined, rep.Reindexed, rep.Unchanged, rep.Skipped, rep.Failed)
	} else {
		fmt.Fprintf(stdout, "examined %d current resources: %d reindexed, %d already current, %d skipped (deleted meanwhile), %d failed\n",
			rep.Examined, rep.Reindexed, rep.Unchanged, rep.Skipped, rep.Failed)
	}
	if rep.Failed > 0 {
		more := ""
		if n := rep.Failed - len(rep.FailedRefs); n > 0 {
			more = fmt.Sprintf(" and %d more", n)
		}
		fmt.Fprintf(stderr, "fhir reindex: %d stored resources could not be reindexed (the body no longer parses, or holds a value the index cannot store) and were left as they were: %s%s\n",
			rep.Failed, strings.Join(rep.FailedRefs, ", "), more)
		return errReported
	}
	return nil
}
