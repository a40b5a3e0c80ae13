package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/concord-hie/concord/mpi"
	"github.com/concord-hie/concord/mpi/eval"
)

// runMPI runs `concord mpi <link|eval> [flags]`. It returns an error (already described
// on stderr where useful) when the subcommand fails; flag.ErrHelp after -h.
func runMPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, `usage: concord mpi <command> [flags]

commands:
  link   link NDJSON FHIR Patients into persons (CSV system,value,person)
  eval   print match quality on FEBRL 1-4 and the generated HIE suite

Run 'concord mpi <command> -h' for the flags of a command.`)
	}
	if len(args) == 0 {
		usage()
		return flag.ErrHelp
	}
	switch args[0] {
	case "link":
		return runMPILink(ctx, args[1:], stdout, stderr)
	case "eval":
		return runMPIEval(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage()
		return flag.ErrHelp
	}
	usage()
	return fmt.Errorf("mpi: unknown command %q", args[0])
}

func runMPILink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("concord mpi link", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "NDJSON file of FHIR R4 Patient resources (required; - for stdin)")
	out := fs.String("out", "", "CSV output system,value,person, one row per Patient (required; - for stdout)")
	review := fs.String("review", "", "optional CSV of records sent to review, with their best candidate and score")
	modelPath := fs.String("model", "", "optional JSON model (default: the model embedded in Concord)")
	workers := fs.Int("workers", 0, "scoring goroutines (default GOMAXPROCS)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: concord mpi link --in patients.ndjson --out links.csv [--review review.csv]

Reads one FHIR R4 Patient per line: identifier[0] is the member's MRN (system = the
member's assigning authority), an identifier with system http://hl7.org/fhir/sid/us-ssn
is the SSN; name, gender, birthDate, address and telecom are matched. Writes one CSV row
per Patient with its enterprise person ID. A malformed line is reported with its line
number; the rest is still written and the command exits non-zero. Progress goes to stderr.

flags:`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || *out == "" {
		fs.Usage()
		return errors.New("mpi link: --in and --out are required")
	}
	var m *mpi.Model
	if *modelPath != "" {
		data, err := os.ReadFile(*modelPath)
		if err != nil {
			return fmt.Errorf("mpi link: read model: %w", err)
		}
		if m, err = mpi.LoadModel(data); err != nil {
			return fmt.Errorf("mpi link: %w", err)
		}
	}
	var r io.Reader = os.Stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return fmt.Errorf("mpi link: %w", err)
		}
		defer f.Close()
		r = f
	}
	var w io.Writer = stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("mpi link: %w", err)
		}
		defer f.Close()
		w = f
	}
	var rw io.Writer
	if *review != "" {
		f, err := os.Create(*review)
		if err != nil {
			return fmt.Errorf("mpi link: %w", err)
		}
		defer f.Close()
		rw = f
	}
	start := time.Now()
	var mu sync.Mutex // progress is reported from several goroutines
	var last time.Time
	st, err := mpi.LinkNDJSON(ctx, r, w, rw, mpi.LinkOptions{Model: m, Workers: *workers,
		Progress: func(stage string, done, total int) {
			mu.Lock()
			defer mu.Unlock()
			if time.Since(last) < time.Second && done != total {
				return
			}
			last = time.Now()
			if total > 0 {
				fmt.Fprintf(stderr, "mpi link: %s %d/%d (%.1fs)\n", stage, done, total, time.Since(start).Seconds())
			} else {
				fmt.Fprintf(stderr, "mpi link: %s %d (%.1fs)\n", stage, done, time.Since(start).Seconds())
			}
		}})
	for _, ln := range st.BadLines {
		fmt.Fprintf(stderr, "mpi link: line %d: not a FHIR Patient resource; skipped\n", ln)
	}
	fmt.Fprintf(stderr, "mpi link: %d records, %d persons, %d sent to review, %d pairs scored in %.1fs\n",
		st.Records, st.Persons, st.Reviews, st.Pairs, time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("mpi link: %w", err)
	}
	return nil
}

func runMPIEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("concord mpi eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	febrl := fs.String("febrl", "../shared/data/febrl", "directory holding FEBRL dataset1-4 CSVs (skipped when missing)")
	persons := fs.Int("persons", 8000, "people in the generated HIE-style population")
	seed := fs.Uint64("seed", 2, "seed of the generated evaluation population (the shipped model was trained on seed 1)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: concord mpi eval [-febrl dir] [-persons n] [-seed s]

Prints pairwise precision/recall/F1 (blocking misses count as false negatives), B3
cluster precision/recall, pair completeness (PC), reduction ratio (RR), review rate and
overlays by kind for FEBRL 1-4 (an EM model trained on each file, auto-link at posterior
0.5) and for a generated HIE-style population linked with the shipped model.

flags:`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	var reps []*eval.Report
	if _, err := os.Stat(*febrl); err == nil {
		for n := 1; n <= 4; n++ {
			ds, err := eval.LoadFEBRL(*febrl, n)
			if err != nil {
				return fmt.Errorf("mpi eval: %w", err)
			}
			rep, _, err := eval.Run(ctx, ds, eval.Options{Seed: 1, Precision: 0.5, Guards: eval.FEBRLGuards})
			if err != nil {
				return fmt.Errorf("mpi eval: %w", err)
			}
			reps = append(reps, rep)
		}
	} else {
		fmt.Fprintf(stderr, "mpi eval: FEBRL data not found at %s; skipped\n", *febrl)
	}
	m, err := mpi.DefaultModel()
	if err != nil {
		return fmt.Errorf("mpi eval: %w", err)
	}
	rep, _, err := eval.Run(ctx, eval.Generate(eval.GenOptions{Seed: *seed, Persons: *persons}), eval.Options{Model: m})
	if err != nil {
		return fmt.Errorf("mpi eval: %w", err)
	}
	reps = append(reps, rep)
	return eval.WriteTable(stdout, reps)
}
