package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/concord-hie/concord/internal/errs"
)

// A witness file keeps signed checkpoints outside the database: one ExportCheckpoint JSON a
// line, appended after each checkpoint commits. The database alone cannot show that its
// newest events were deleted together with the checkpoints covering them; a checkpoint in
// the witness that the log no longer reaches does (VerifyWitnessed reports Truncated). The
// file holds sizes, hashes, times and signatures, no event contents. It is only as good as
// its distance from the database: put it on another disk or machine, or ship it there.

// checkWitnessFile reports whether path can be opened for appending, creating the file when
// missing. It returns errs.Invalid when not (a directory, a missing parent, no permission).
func checkWitnessFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return errs.E("audit.checkWitnessFile", errs.Invalid, "the audit witness file cannot be opened for appending", err)
	}
	return f.Close()
}

// AppendWitness appends c, exported with pub, as one line to the witness file at path,
// creating the file (and syncing its directory) when it is missing, and fsyncs the file
// before returning. The line goes out in one write with O_APPEND, so processes sharing the
// file interleave lines, not bytes; a line torn by a crash is ended first, so the next one
// starts on its own line. It returns errs.Unavailable when the file cannot be opened,
// written or synced; c is then not witnessed.
func AppendWitness(ctx context.Context, path string, c Checkpoint, pub ed25519.PublicKey) error {
	const op = "audit.AppendWitness"
	if err := ctx.Err(); err != nil {
		return errs.E(op, errs.Unavailable, "audit witness not written", err)
	}
	js, err := ExportCheckpoint(c, pub)
	if err != nil {
		return errs.E(op, errs.Internal, err)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return errs.E(op, errs.Unavailable, "audit witness not written", err)
	}
	line := append(js, '\n')
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	_, err = f.Write(line)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && created {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return errs.E(op, errs.Unavailable, "audit witness not written", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadWitness reads a witness file's checkpoints in file order, each checked with pub
// (ParseCheckpoint), dropping repeats of a checkpoint already read (a restart or a retried
// write can append one twice). A line that is not complete JSON was torn by a crash while
// it was written: it is skipped and counted in torn. It returns errs.Invalid naming the
// first line that is JSON but not a checkpoint signed with pub, and errs.Unavailable when r
// fails.
func ReadWitness(r io.Reader, pub ed25519.PublicKey) (cps []Checkpoint, torn int, err error) {
	const op = "audit.ReadWitness"
	seen := map[int64][]Checkpoint{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			torn++
			continue
		}
		c, err := ParseCheckpoint(line, pub)
		if err != nil {
			return nil, torn, errs.E(op, errs.Invalid, fmt.Sprintf("witness line %d: %s", n, errs.MessageOf(err)), err)
		}
		if repeated(seen[c.ID], c) {
			continue
		}
		seen[c.ID] = append(seen[c.ID], c)
		cps = append(cps, c)
	}
	if err := sc.Err(); err != nil {
		return nil, torn, errs.E(op, errs.Unavailable, "audit witness unreadable", err)
	}
	return cps, torn, nil
}

// repeated reports whether c equals one of cps.
func repeated(cps []Checkpoint, c Checkpoint) bool {
	for _, p := range cps {
		if p.Size == c.Size && p.Root == c.Root && p.Head == c.Head && p.Time.Equal(c.Time) && bytes.Equal(p.Sig, c.Sig) {
			return true
		}
	}
	return false
}
