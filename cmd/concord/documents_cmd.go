package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/devs3"
	"github.com/concord-hie/concord/internal/errs"
)

const documentsCheckHelp = `documents check [--verify-bytes] [--json] [flags]

Compares the document rows in PostgreSQL with the objects in the S3 bucket and reports, by
document id, Binary id and object key only:
  dangling         a row names an object the bucket does not hold (the bytes are lost)
  size-mismatch    the object's size differs from the size the row records
  digest-mismatch  the object's bytes do not hash to its key (--verify-bytes only)
and counts orphans, objects no row names: ` + "`concord serve`" + ` removes those once they are older
than its grace period (%s), so they are no fault. The exit status is 1 when any row is
dangling or mismatched, 0 when every row's object is present and right.

--verify-bytes reads every object a row names once, streaming it through SHA-256, --parallel
objects at a time; without it only the bucket listing is read. A missing bucket is an error:
the check creates nothing. It may run beside a serving Concord. With no
CONCORD_S3_ENDPOINT it opens the embedded S3 data in DATA_DIR, which a running
` + "`concord serve`" + ` or ` + "`concord demo`" + ` holds: stop it first.`

func runDocuments(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	if sub != "check" {
		fmt.Fprint(stderr, "usage: concord documents check [--verify-bytes] [--json]\n"+
			"                                           report document rows whose bytes in S3 are missing or wrong\n")
		if sub == "-h" || sub == "--help" {
			return flag.ErrHelp
		}
		return errReported
	}
	var verify, asJSON bool
	var parallel int
	cfg, _, err := parseConfig("documents check", fmt.Sprintf(documentsCheckHelp, hours(documents.DefaultGrace)), args[1:], stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&verify, "verify-bytes", false, "also hash every object a row names and report those whose bytes do not match their key")
		fs.BoolVar(&asJSON, "json", false, "print one JSON object per line: each problem, then {\"summary\": …}")
		fs.IntVar(&parallel, "parallel", documents.DefaultCheckParallel, "objects read (stat-ed or hashed) at once")
	})
	if err != nil {
		return err
	}

	pool, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: 2})
	if err != nil {
		return fmt.Errorf("CONCORD_DATABASE_URL: PostgreSQL does not answer: %v", errors.Unwrap(err))
	}
	defer pool.Close()
	if err := db.CheckSchema(ctx, pool); err != nil {
		return errors.New(errs.MessageOf(err))
	}
	s3cfg := documents.S3Config{Endpoint: cfg.S3Endpoint, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey,
		Bucket: cfg.S3Bucket, Region: cfg.S3Region, Secure: cfg.S3Secure, SSE: documents.SSEOff, // reads only: no SSE probe
		ExistingBucket: true} // nor a bucket made: a missing one is a wrong CONCORD_S3_BUCKET or endpoint
	if cfg.S3Endpoint == "" {
		dev, err := devs3.Start(ctx, "127.0.0.1:0", filepath.Join(cfg.DataDir, "s3"))
		if err != nil {
			return fmt.Errorf("embedded S3 server (no CONCORD_S3_ENDPOINT): %s; stop the `concord serve` or `concord demo` using CONCORD_DATA_DIR %s first",
				errs.MessageOf(err), cfg.DataDir)
		}
		defer dev.Close()
		s3cfg.Endpoint, s3cfg.AccessKey, s3cfg.SecretKey = dev.Endpoint(), dev.AccessKey(), dev.SecretKey()
	}
	blobs, err := documents.NewS3Blobs(ctx, s3cfg)
	if errs.CodeOf(err) == errs.NotFound {
		return fmt.Errorf("CONCORD_S3_BUCKET: %s at %s (documents check creates nothing; is the bucket or the endpoint wrong?)",
			errs.MessageOf(err), s3cfg.Endpoint)
	}
	if err != nil {
		return fmt.Errorf("CONCORD_S3_ENDPOINT: S3 is not usable (%v)", errs.MessageOf(err))
	}
	svc := documents.New(pool, store.New(pool), blobs, nil, nil, documents.Config{})

	out := checkPrinter{w: stdout, json: asJSON}
	last := time.Now()
	rep, err := svc.Check(ctx, documents.CheckOptions{
		VerifyBytes: verify,
		Parallel:    parallel,
		Problem:     out.problem,
		Progress: func(r documents.CheckReport) {
			if time.Since(last) > 2*time.Second {
				fmt.Fprintf(stderr, "checked %d objects and %d keys; %d problem rows so far\n",
					r.Objects, r.Keys, r.Dangling+r.SizeMismatches+r.DigestMismatches)
				last = time.Now()
			}
		},
	})
	if err != nil {
		return fmt.Errorf("documents check: stopped after %d objects and %d keys: %w", rep.Objects, rep.Keys, err)
	}
	if err := out.summary(rep, verify); err != nil {
		return err
	}
	if !rep.OK() {
		return errReported
	}
	return nil
}

// checkPrinter writes what `concord documents check` finds: IDs, keys and sizes, never
// content.
type checkPrinter struct {
	w    io.Writer
	json bool
}

type problemLine struct {
	Problem    string `json:"problem"`
	DocumentID string `json:"document_id"` // "" for a Binary no document names yet
	BinaryID   string `json:"binary_id"`
	ObjectKey  string `json:"object_key"`
	Size       int64  `json:"size"`
	ObjectSize int64  `json:"object_size"` // -1: missing
}

type summaryLine struct {
	OK               bool   `json:"ok"`
	BytesVerified    bool   `json:"bytes_verified"`
	Objects          int64  `json:"objects"`
	Keys             int64  `json:"keys"`
	Rows             int64  `json:"rows"`
	Verified         int64  `json:"verified"`
	Dangling         int64  `json:"dangling"`
	MissingObjects   int64  `json:"missing_objects"`
	SizeMismatches   int64  `json:"size_mismatches"`
	DigestMismatches int64  `json:"digest_mismatches"`
	Orphans          int64  `json:"orphans"`
	OrphanBytes      int64  `json:"orphan_bytes"`
	OrphanGrace      string `json:"orphan_grace"`
}

func (p checkPrinter) problem(pr documents.Problem) error {
	if p.json {
		return json.NewEncoder(p.w).Encode(problemLine{Problem: pr.Kind.String(), DocumentID: pr.DocumentID, BinaryID: pr.BinaryID,
			ObjectKey: pr.Key, Size: pr.Size, ObjectSize: pr.ObjectSize})
	}
	doc := pr.DocumentID
	if doc == "" {
		doc = "-"
	}
	var why string
	switch pr.Kind {
	case documents.Dangling:
		why = fmt.Sprintf("object missing; the row records %d bytes", pr.Size)
	case documents.SizeMismatch:
		why = fmt.Sprintf("the row records %d bytes, the object has %d", pr.Size, pr.ObjectSize)
	case documents.DigestMismatch:
		why = "the object's bytes do not hash to its key"
	}
	_, err := fmt.Fprintf(p.w, "%-16s document %s binary %s object %s (%s)\n", pr.Kind, doc, pr.BinaryID, pr.Key, why)
	return err
}

func (p checkPrinter) summary(r documents.CheckReport, verified bool) error {
	if p.json {
		return json.NewEncoder(p.w).Encode(struct {
			Summary summaryLine `json:"summary"`
		}{summaryLine{OK: r.OK(), BytesVerified: verified, Objects: r.Objects, Keys: r.Keys, Rows: r.Rows, Verified: r.Verified,
			Dangling: r.Dangling, MissingObjects: r.MissingObjects, SizeMismatches: r.SizeMismatches, DigestMismatches: r.DigestMismatches,
			Orphans: r.Orphans, OrphanBytes: r.OrphanBytes, OrphanGrace: hours(r.Grace)}})
	}
	w := p.w
	fmt.Fprintf(w, "content rows: %d, naming %d objects; objects in the bucket: %d\n", r.Rows, r.Keys, r.Objects)
	if verified {
		fmt.Fprintf(w, "bytes verified: %d objects hashed\n", r.Verified)
	} else {
		fmt.Fprintln(w, "bytes not verified (--verify-bytes hashes every object)")
	}
	fmt.Fprintf(w, "dangling rows: %d (missing objects: %d)\n", r.Dangling, r.MissingObjects)
	fmt.Fprintf(w, "size-mismatch rows: %d\n", r.SizeMismatches)
	if verified {
		fmt.Fprintf(w, "digest-mismatch rows: %d\n", r.DigestMismatches)
	}
	fmt.Fprintf(w, "orphan objects: %d (%d bytes), named by no row; `concord serve` removes orphans older than %s\n",
		r.Orphans, r.OrphanBytes, hours(r.Grace))
	var err error
	if r.OK() {
		_, err = fmt.Fprintln(w, "OK")
	} else {
		_, err = fmt.Fprintln(w, "FAILED: rows above name bytes that are missing or wrong")
	}
	return err
}

// hours writes d as "24h" when it is whole hours, else as time.Duration does.
func hours(d time.Duration) string {
	if d > 0 && d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}
