// Command concord runs the Concord health information exchange: one binary whose
// subcommands serve, migrate, seed a demo region, register members, link identities in
// batch, verify the audit chain and benchmark. It is the only place that wires packages
// together and the only place that reads the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the exchange (FHIR API, MLLP) and the portal", runServe},
		{"demo", "migrate, seed a synthetic region and serve, with embedded S3 and OIDC", runDemo},
		{"migrate", "apply pending database migrations", runMigrate},
		{"fhir", "rebuild the FHIR search index (after an upgrade that adds search parameters)", runFHIR},
		{"member", "register and list member organizations and their client systems", runMember},
		{"mpi", "batch identity linking and match-quality evaluation", runMPI},
		{"audit", "verify the audit chain and export checkpoints", runAudit},
		{"documents", "check that every stored document's bytes are in S3 and intact", runDocuments},
		{"bench", "measure anchors and scenarios as ratios in one run", runBench},
		{"version", "print the version", runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: concord COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun `concord COMMAND --help` for the flags of a command. Every flag also has a\nCONCORD_* environment variable; with none set, the local defaults of `make demo` apply.\n")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "concord:", err)
		}
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(1)
	}
}

// errReported means the command already told the user what went wrong.
var errReported = errors.New("reported")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return errReported
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "concord", version)
	return nil
}
