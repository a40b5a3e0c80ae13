package documents

import (
	"context"
	"errors"
	"io"
	"iter"
	"sync"
	"time"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// CheckOptions tunes Check.
type CheckOptions struct {
	// VerifyBytes streams every object a content row names through SHA-256 and reports
	// those whose bytes do not hash to their key. Without it Check reads no object: one
	// listing of the bucket shows which objects exist and their sizes.
	VerifyBytes bool
	// Problem, when not nil, is called with each problem as Check finds it, in key order.
	// An error it returns stops the check and is returned as it is.
	Problem func(Problem) error
	// Progress, when not nil, is called with the counts so far after each object listed
	// and each key checked (often: callers print at most every few seconds).
	Progress func(CheckReport)
	// Parallel is how many objects are read (stat-ed or hashed) at once; 0 means
	// DefaultCheckParallel. Problems and Progress still come in key order, one at a time.
	Parallel int
}

// DefaultCheckParallel is CheckOptions.Parallel's default: enough reads in flight to hide
// the store's per-request latency, few enough not to crowd a serving Concord's own reads.
const DefaultCheckParallel = 4

// ProblemKind says what is wrong with a content row's object.
type ProblemKind uint8

const (
	// Dangling: the row names an object the store does not hold (the bytes are lost; a
	// restore of the bucket older than the database leaves this).
	Dangling ProblemKind = iota + 1
	// SizeMismatch: the object's size differs from the size the row records.
	SizeMismatch
	// DigestMismatch: the object's bytes do not hash to its key (CheckOptions.VerifyBytes).
	DigestMismatch
)

func (k ProblemKind) String() string {
	switch k {
	case Dangling:
		return "dangling"
	case SizeMismatch:
		return "size-mismatch"
	case DigestMismatch:
		return "digest-mismatch"
	}
	return "unknown"
}

// Problem is one content row whose object is missing or wrong. It holds IDs, the key and
// sizes only, never content or anything about the patient.
type Problem struct {
	Kind       ProblemKind
	DocumentID string // the DocumentReference (or patient upload) id; "" for a Binary no document names yet
	BinaryID   string // the id in Binary/{id}
	Key        string // the object key (hex SHA-256)
	Size       int64  // bytes the row records
	ObjectSize int64  // bytes the store holds; -1 when the object is missing
}

// CheckReport counts what Check saw. Problem counts are of content rows: one missing
// object that three documents share is three dangling rows and one missing object.
type CheckReport struct {
	Objects          int64         // objects listed in the bucket (names that are keys)
	Keys             int64         // distinct keys that content rows name
	Rows             int64         // content rows checked
	Verified         int64         // objects whose bytes were hashed (VerifyBytes)
	Dangling         int64         // rows whose object is missing
	MissingObjects   int64         // distinct keys named by rows but not stored
	SizeMismatches   int64         // rows whose object has another size
	DigestMismatches int64         // rows whose object does not hash to its key
	Orphans          int64         // objects no row names
	OrphanBytes      int64         // their total size
	Grace            time.Duration // how old an orphan must be before CollectGarbage removes it
}

// OK reports whether every content row's object is present and right: no dangling rows,
// no mismatches. Orphans do not count; CollectGarbage removes them.
func (r CheckReport) OK() bool {
	return r.Dangling == 0 && r.SizeMismatches == 0 && r.DigestMismatches == 0
}

// checkBatch is how many distinct keys Check reads from PostgreSQL at a time.
const checkBatch = 500

// contentRow is the part of a documents_contents row Check needs.
type contentRow struct {
	BinaryID, DocumentID string
	Size                 int64
}

// keyRows is one object key and the content rows that name it.
type keyRows struct {
	Key  string
	Rows []contentRow
}

// Check compares the content rows in PostgreSQL with the objects in Blobs and reports
// rows whose object is missing (dangling), has another size, or (with opts.VerifyBytes)
// does not hash to its key, and counts orphan objects no row names. It walks both in key
// order side by side, a batch of keys at a time, so its memory does not grow with the
// store; an object is hashed as it streams, never held. Up to opts.Parallel objects are
// read at once, a bounded window ahead of the walk; their outcomes are settled (counted and
// reported) in key order.
//
// It may run beside a serving Concord: a key whose row is listed but whose object is not is
// stat-ed again before it counts as dangling (the object may have been written since the
// bucket was listed), and a document being stored may show up as an orphan. It returns the
// counts so far and the first error: errs.Unavailable when PostgreSQL or the store fails,
// errs.Internal when the two do not list keys in the same order (a database collation that
// sorts hex digits unlike bytes), or the error opts.Problem returned. Reads still in flight
// when it stops are cancelled and waited for.
func (s *Service) Check(ctx context.Context, opts CheckOptions) (CheckReport, error) {
	const op = "documents.Service.Check"
	rep := CheckReport{Grace: s.cfg.Grace}
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = DefaultCheckParallel
	}
	ctx, cancel := context.WithCancel(ctx)
	var reads sync.WaitGroup
	defer reads.Wait()
	defer cancel()
	nextObj, stopObj := iter.Pull2(ordered(op, "the object store", s.blobs.List(ctx, "", time.Time{}), func(o ObjectInfo) string { return o.Key }))
	defer stopObj()
	nextKey, stopKey := iter.Pull2(ordered(op, "the database", s.contentKeys(ctx), func(k keyRows) string { return k.Key }))
	defer stopKey()
	progress := func() {
		if opts.Progress != nil {
			opts.Progress(rep)
		}
	}

	// window holds the keys whose reads are under way, in key order; slots bounds the
	// reads. settle counts and reports the oldest once its read is done.
	var window []*keyCheck
	slots := make(chan struct{}, parallel)
	start := func(kr keyRows, listed *ObjectInfo) {
		kc := &keyCheck{kr: kr, done: make(chan struct{})}
		window = append(window, kc)
		if listed != nil && !opts.VerifyBytes { // the listing says all there is to know
			kc.probe = keyProbe{info: *listed}
			close(kc.done)
			return
		}
		slots <- struct{}{}
		reads.Add(1)
		go func() {
			defer reads.Done()
			kc.probe = s.probeKey(ctx, opts.VerifyBytes, kr.Key, listed)
			<-slots
			close(kc.done)
		}()
	}
	settle := func() error {
		kc := window[0]
		window = window[1:]
		<-kc.done
		if err := settleKey(opts, &rep, kc.kr, kc.probe); err != nil {
			return err
		}
		progress()
		return nil
	}

	obj, err, haveObj := nextObj()
	if err != nil {
		return rep, errs.E(op, err)
	}
	kr, err, haveKey := nextKey()
	if err != nil {
		return rep, errs.E(op, err)
	}
	for err == nil && (haveObj || haveKey) {
		switch {
		case haveObj && (!haveKey || obj.Key < kr.Key): // no row names it
			rep.Objects++
			rep.Orphans++
			rep.OrphanBytes += obj.Size
			progress()
			obj, err, haveObj = nextObj()
			continue
		case haveKey && (!haveObj || kr.Key < obj.Key): // rows name it, the listing lacks it
			start(kr, nil)
			kr, err, haveKey = nextKey()
		default:
			rep.Objects++
			listed := obj
			start(kr, &listed)
			obj, err, haveObj = nextObj()
			if err == nil {
				kr, err, haveKey = nextKey()
			}
		}
		for err == nil && len(window) > parallel {
			err = settle()
		}
	}
	for err == nil && len(window) > 0 {
		err = settle()
	}
	if err != nil {
		var pe problemError
		if errors.As(err, &pe) {
			return rep, pe.err
		}
		return rep, errs.E(op, err)
	}
	return rep, nil
}

// problemError carries an error CheckOptions.Problem returned, so Check returns it as is.
type problemError struct{ err error }

func (e problemError) Error() string { return e.err.Error() }

// keyCheck is one key in Check's window: its rows and, once done is closed, what reading
// its object found.
type keyCheck struct {
	kr    keyRows
	probe keyProbe
	done  chan struct{}
}

// keyProbe is what the store says about one key's object.
type keyProbe struct {
	info     ObjectInfo
	missing  bool  // no object under the key
	verified bool  // its bytes were hashed
	digestOK bool  // and hashed to the key
	err      error // the store could not be read
}

// probeKey reads what Check needs about the object under key: its size (from listed, the
// bucket listing's entry, or a Stat when the listing did not show it) and, with verify,
// whether its bytes hash to key.
func (s *Service) probeKey(ctx context.Context, verify bool, key string, listed *ObjectInfo) keyProbe {
	const op = "documents.Service.probeKey"
	var p keyProbe
	if listed != nil {
		p.info = *listed
	} else {
		// Written after the listing passed its key, or really missing.
		st, err := s.blobs.Stat(ctx, key)
		switch {
		case errs.CodeOf(err) == errs.NotFound:
			p.missing = true
			return p
		case err != nil:
			p.err = errs.E(op, err)
			return p
		}
		p.info = st
	}
	if !verify {
		return p
	}
	ok, err := s.hashMatches(ctx, key)
	switch {
	case errs.CodeOf(err) == errs.NotFound: // deleted since it was listed
		p.missing = true
	case err != nil:
		p.err = err
	default:
		p.verified, p.digestOK = true, ok
	}
	return p
}

// settleKey counts the rows of kr in rep and reports their problems as p shows them: every
// row dangling when the object is missing, then size mismatches, then (hashed) a digest
// mismatch.
func settleKey(opts CheckOptions, rep *CheckReport, kr keyRows, p keyProbe) error {
	if p.err != nil {
		return p.err
	}
	rep.Keys++
	rep.Rows += int64(len(kr.Rows))
	report := func(kind ProblemKind, objectSize int64) error {
		for _, r := range kr.Rows {
			switch kind {
			case Dangling:
				rep.Dangling++
			case SizeMismatch:
				if r.Size == objectSize {
					continue
				}
				rep.SizeMismatches++
			case DigestMismatch:
				rep.DigestMismatches++
			}
			if opts.Problem != nil {
				p := Problem{Kind: kind, DocumentID: r.DocumentID, BinaryID: r.BinaryID, Key: kr.Key, Size: r.Size, ObjectSize: objectSize}
				if err := opts.Problem(p); err != nil {
					return problemError{err}
				}
			}
		}
		return nil
	}
	if p.missing {
		rep.MissingObjects++
		return report(Dangling, -1)
	}
	if err := report(SizeMismatch, p.info.Size); err != nil {
		return err
	}
	if !p.verified {
		return nil
	}
	rep.Verified++
	if !p.digestOK {
		return report(DigestMismatch, p.info.Size)
	}
	return nil
}

// hashMatches streams the object under key through SHA-256 and reports whether its bytes
// hash to key. A read that fails part-way is tried once more; errs.NotFound when there is
// no object, errs.Unavailable when it cannot be read.
func (s *Service) hashMatches(ctx context.Context, key string) (bool, error) {
	const op = "documents.Service.hashMatches"
	var err error
	for range 2 {
		var body io.ReadCloser
		var info ObjectInfo
		body, info, err = s.blobs.Get(ctx, key, nil)
		if err != nil {
			return false, errs.E(op, err)
		}
		// The size is the store's own, so only a body cut short (a read error) can fail
		// the length check: that is retried, never reported as a wrong digest.
		_, err = io.Copy(io.Discard, VerifyingReader(body, key, info.Size))
		body.Close()
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, ErrDigestMismatch):
			return false, nil
		case ctx.Err() != nil:
			return false, errs.E(op, errs.Unavailable, ctx.Err())
		}
	}
	return false, errs.E(op, errs.Unavailable, "document store unavailable", err)
}

// contentKeys yields the distinct object keys of documents_contents in the database's
// order, each with its rows, reading checkBatch keys per query.
func (s *Service) contentKeys(ctx context.Context) iter.Seq2[keyRows, error] {
	const op = "documents.Service.contentKeys"
	return func(yield func(keyRows, error) bool) {
		after := ""
		for {
			batch, err := contentBatch(ctx, s.pool, after, checkBatch)
			if err != nil {
				yield(keyRows{}, db.Map(op, err))
				return
			}
			for _, kr := range batch {
				if !yield(kr, nil) {
					return
				}
				after = kr.Key
			}
			if len(batch) < checkBatch {
				return
			}
		}
	}
}

// contentBatch returns up to limit keys after the key after, in the database's order, with
// the rows that name each, in one statement (one snapshot).
func contentBatch(ctx context.Context, q db.Querier, after string, limit int) ([]keyRows, error) {
	rows, err := q.Query(ctx, `WITH k AS (
			SELECT DISTINCT object_key FROM documents_contents WHERE object_key > $1 ORDER BY object_key LIMIT $2)
		SELECT c.object_key, c.binary_id, coalesce(c.document_id, ''), c.size
		FROM documents_contents c JOIN k USING (object_key)
		ORDER BY c.object_key, c.binary_id`, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []keyRows
	for rows.Next() {
		var key string
		var r contentRow
		if err := rows.Scan(&key, &r.BinaryID, &r.DocumentID, &r.Size); err != nil {
			return nil, err
		}
		if n := len(out); n == 0 || out[n-1].Key != key {
			out = append(out, keyRows{Key: key})
		}
		out[len(out)-1].Rows = append(out[len(out)-1].Rows, r)
	}
	return out, rows.Err()
}

// ordered passes seq through, failing with errs.Internal when a key is not greater, byte
// for byte, than the one before: Check's merge needs both sides in the same order.
func ordered[T any](op, what string, seq iter.Seq2[T, error], key func(T) string) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		prev := ""
		for v, err := range seq {
			if err != nil {
				yield(v, err)
				return
			}
			k := key(v)
			if k <= prev {
				var zero T
				yield(zero, errs.E(op, errs.Internal, what+" lists object keys out of byte order; the check cannot compare the database with the bucket"))
				return
			}
			prev = k
			if !yield(v, nil) {
				return
			}
		}
	}
}
