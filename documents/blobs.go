// Package documents keeps clinical documents: bytes in S3 under their SHA-256 (Blobs), and,
// in later work, their metadata in PostgreSQL.
package documents

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// Blobs stores document bytes, content-addressed: every key is the lowercase hex SHA-256 of
// the bytes stored under it (64 characters). PostgreSQL holds the metadata that points at a
// key; Blobs knows nothing about patients or documents.
//
// Every method returns *errs.Error: errs.Invalid for a malformed key, range or body,
// errs.NotFound for a key that holds no object, errs.Unavailable when the store cannot be
// reached or answers with a server error (retrying later may succeed).
type Blobs interface {
	// Put stores size bytes read from r under key. The bytes must hash to key and number
	// exactly size; otherwise Put fails with errs.Invalid. Put never leaves a partial object
	// under key: when it fails (bad body, reader error, store down, cancelled ctx) the key holds
	// what it held before, which for a content-addressed key is nothing or the same bytes.
	// Putting a key that already exists with the same bytes succeeds and refreshes its
	// LastModified (so an orphan collector that re-checks the age before deleting spares it).
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error

	// Get streams the object under key, or the inclusive byte range rng of it when rng is
	// not nil. The caller must close the body. ObjectInfo.Size is the size of the whole
	// object, not of the range. A missing key is errs.NotFound; a range that starts past the
	// end of the object is errs.Invalid. Get does not verify the bytes against the key: the
	// caller hashes as it streams (see VerifyingReader).
	Get(ctx context.Context, key string, rng *ByteRange) (io.ReadCloser, ObjectInfo, error)

	// Stat returns what the store knows about key without reading the bytes; errs.NotFound
	// when there is no object.
	Stat(ctx context.Context, key string) (ObjectInfo, error)

	// Delete removes the object under key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error

	// List yields, in key order, the objects whose key starts with prefix and whose
	// LastModified is before olderThan (the zero time means no age limit). Objects whose
	// names are not valid keys are skipped. Iteration stops at the first error, which is
	// yielded with a zero ObjectInfo. It is meant for the orphan collector.
	List(ctx context.Context, prefix string, olderThan time.Time) iter.Seq2[ObjectInfo, error]

	// Ping reports whether the store answers and the bucket exists, for /readyz.
	Ping(ctx context.Context) error
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key          string
	Size         int64 // of the whole object
	ContentType  string
	ETag         string // the store's ETag, without quotes; not the SHA-256
	LastModified time.Time
}

// ByteRange selects the bytes Start..End of an object, both inclusive and zero-based, like
// an HTTP Range "bytes=Start-End". End < 0 means "to the end of the object".
type ByteRange struct {
	Start, End int64
}

// Len returns the number of bytes the range selects from an object of size bytes, after
// clamping End to the object; 0 when Start is past the end.
func (r ByteRange) Len(size int64) int64 {
	end := r.End
	if end < 0 || end >= size {
		end = size - 1
	}
	if r.Start > end {
		return 0
	}
	return end - r.Start + 1
}

func (r ByteRange) valid() bool { return r.Start >= 0 && (r.End < 0 || r.End >= r.Start) }

// KeyLen is the length of a blob key: hex SHA-256.
const KeyLen = 2 * sha256.Size

// KeyOf returns the blob key for b.
func KeyOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ValidKey reports whether key is a lowercase hex SHA-256.
func ValidKey(key string) bool {
	if len(key) != KeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func checkKey(op, key string) error {
	if !ValidKey(key) {
		return errs.E(op, errs.Invalid, "blob key must be a lowercase hex SHA-256")
	}
	return nil
}

// ErrDigestMismatch is the cause carried by errors for bytes that do not hash to their key.
var ErrDigestMismatch = errors.New("documents: content does not match its SHA-256 key")

// ErrSizeMismatch is the cause carried by errors for a body shorter or longer than declared.
var ErrSizeMismatch = errors.New("documents: content length differs from the declared size")

// VerifyingReader wraps r, which must yield exactly size bytes hashing to key. It withholds
// the final bytes and returns an error wrapping ErrDigestMismatch or ErrSizeMismatch instead
// when they do not match, so a consumer that only acts on a complete stream (an S3 upload, an
// HTTP response with a Content-Length) never completes with wrong bytes. After the last
// byte it returns io.EOF.
func VerifyingReader(r io.Reader, key string, size int64) io.Reader {
	return &verifyingReader{r: r, key: key, size: size, h: sha256.New()}
}

type verifyingReader struct {
	r    io.Reader
	key  string
	size int64
	n    int64
	h    hash.Hash
	err  error // sticky: the first error returned
	done bool
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.done {
		return 0, io.EOF
	}
	if rem := v.size - v.n; int64(len(p)) > rem+1 {
		// Read at most one byte past the declared end, to detect a longer body.
		p = p[:rem+1]
	}
	n, err := v.r.Read(p)
	if int64(n) > v.size-v.n {
		v.err = fmt.Errorf("%w: more than %d bytes", ErrSizeMismatch, v.size)
		return 0, v.err
	}
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n == v.size {
		// Probe for a longer body before releasing the final bytes.
		if err == nil {
			var one [1]byte
			m, perr := io.ReadFull(v.r, one[:])
			if m > 0 {
				v.err = fmt.Errorf("%w: more than %d bytes", ErrSizeMismatch, v.size)
				return 0, v.err
			}
			if perr != io.EOF && perr != io.ErrUnexpectedEOF {
				v.err = perr
				return 0, v.err
			}
		} else if err != io.EOF {
			v.err = err
			return 0, v.err
		}
		if hex.EncodeToString(v.h.Sum(nil)) != v.key {
			v.err = ErrDigestMismatch
			return 0, v.err
		}
		v.done = true
		return n, io.EOF
	}
	if err == io.EOF {
		v.err = fmt.Errorf("%w: %d of %d bytes: %w", ErrSizeMismatch, v.n, v.size, io.ErrUnexpectedEOF)
		return 0, v.err
	}
	if err != nil {
		v.err = err
		return 0, err
	}
	return n, nil
}
