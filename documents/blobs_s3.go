package documents

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"

	"github.com/concord-hie/concord/internal/errs"
)

// SSEMode says whether objects are written with server-side encryption (SSE-S3, AES256 with
// keys the S3 server manages).
type SSEMode uint8

const (
	// SSEAuto probes the server once in NewS3Blobs and encrypts when it honours SSE-S3,
	// that is when it answers a PUT carrying x-amz-server-side-encryption: AES256 by
	// reporting the object encrypted. versitygw v1.8.0 (posix) accepts the header and
	// ignores it; devs3 refuses it (raw gofakes3 would echo it without encrypting): with
	// both, objects are stored unencrypted and Encrypted reports false. Production points
	// at a server that encrypts (or encrypts its disks); a server that echoes the header
	// without encrypting fools the probe, so configure SSEOff for such a server.
	SSEAuto SSEMode = iota
	// SSEOn always asks for SSE-S3; a server that refuses makes every Put fail.
	SSEOn
	// SSEOff never asks for it.
	SSEOff
)

// DefaultPartSize is the multipart part size: objects larger than it are uploaded in parts
// of this size. 5 MiB is the S3 minimum, which keeps memory per upload small.
const DefaultPartSize = 5 << 20

// S3Config locates the bucket that holds document bytes.
type S3Config struct {
	Endpoint  string // host:port, no scheme
	AccessKey string
	SecretKey string
	Bucket    string
	Region    string // "" means us-east-1
	Secure    bool   // HTTPS
	SSE       SSEMode
	// PartSize is the multipart part size in bytes (>= 5 MiB); 0 means DefaultPartSize.
	PartSize uint64
	// Transport, when not nil, carries every request (tests inject faults through it).
	Transport http.RoundTripper
	// MaxRetries bounds minio-go's retries of one request; 0 means 3.
	MaxRetries int
	// ExistingBucket makes a missing bucket an error (errs.NotFound) rather than creating
	// it: for tools that only read, where a missing bucket means a wrong configuration.
	ExistingBucket bool
}

// S3Blobs is Blobs on an S3-compatible server through minio-go, with path-style bucket
// lookup. It is safe for concurrent use.
type S3Blobs struct {
	c        *minio.Client
	core     minio.Core
	bucket   string
	partSize uint64
	sse      encrypt.ServerSide // nil when not encrypting
}

var _ Blobs = (*S3Blobs)(nil)

// NewS3Blobs connects to the server, creates the bucket if it is missing (unless
// cfg.ExistingBucket) and settles server-side encryption (see SSEMode). It returns
// errs.Unavailable when the server cannot be reached, errs.Invalid for an unusable
// configuration and errs.NotFound for a missing bucket it may not create.
func NewS3Blobs(ctx context.Context, cfg S3Config) (*S3Blobs, error) {
	const op = "documents.NewS3Blobs"
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errs.E(op, errs.Invalid, "S3 endpoint and bucket are required")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < 5<<20 {
		return nil, errs.E(op, errs.Invalid, "S3 part size must be at least 5 MiB")
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 3
	}
	tr := cfg.Transport
	if tr == nil {
		t, err := minio.DefaultTransport(cfg.Secure)
		if err != nil {
			return nil, errs.E(op, errs.Internal, err)
		}
		t.MaxIdleConnsPerHost = 256
		tr = t
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       cfg.Secure,
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    tr,
		MaxRetries:   cfg.MaxRetries,
	})
	if err != nil {
		return nil, errs.E(op, errs.Invalid, "S3 endpoint is not usable", err)
	}
	s := &S3Blobs{c: c, core: minio.Core{Client: c}, bucket: cfg.Bucket, partSize: cfg.PartSize}

	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, mapErr(op, err)
	}
	if !ok && cfg.ExistingBucket {
		return nil, errs.E(op, errs.NotFound, "S3 bucket "+strconv.Quote(cfg.Bucket)+" does not exist")
	}
	if !ok {
		err := c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
		if code := minio.ToErrorResponse(err).Code; err != nil &&
			code != "BucketAlreadyOwnedByYou" && code != "BucketAlreadyExists" {
			return nil, mapErr(op, err)
		}
	}

	switch cfg.SSE {
	case SSEOn:
		s.sse = encrypt.NewSSE()
	case SSEAuto:
		on, err := s.probeSSE(ctx)
		if err != nil {
			return nil, mapErr(op, err)
		}
		if on {
			s.sse = encrypt.NewSSE()
		}
	}
	return s, nil
}

// probeSSE writes a tiny object with SSE-S3 and reports whether the server says it
// encrypted it. A server that rejects the header, or accepts it silently, counts as no.
func (s *S3Blobs) probeSSE(ctx context.Context) (bool, error) {
	const probe = ".concord/sse-probe"
	body := strings.NewReader("probe")
	_, err := s.c.PutObject(ctx, s.bucket, probe, body, body.Size(), minio.PutObjectOptions{
		ServerSideEncryption: encrypt.NewSSE(), DisableMultipart: true,
	})
	if err != nil {
		if isTransport(err) {
			return false, err
		}
		return false, nil // refused: not supported
	}
	defer s.c.RemoveObject(context.WithoutCancel(ctx), s.bucket, probe, minio.RemoveObjectOptions{})
	info, err := s.c.StatObject(ctx, s.bucket, probe, minio.StatObjectOptions{})
	if err != nil {
		return false, err
	}
	return strings.EqualFold(info.Metadata.Get("X-Amz-Server-Side-Encryption"), "AES256"), nil
}

// Encrypted reports whether objects are written with SSE-S3.
func (s *S3Blobs) Encrypted() bool { return s.sse != nil }

// Bucket returns the bucket name.
func (s *S3Blobs) Bucket() string { return s.bucket }

// Put implements Blobs. Bodies larger than the part size go up as a multipart upload, which
// minio-go aborts when any part fails; the last bytes are withheld unless the body hashes to
// key, so a wrong or short body never completes an object.
func (s *S3Blobs) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	const op = "documents.S3Blobs.Put"
	if err := checkKey(op, key); err != nil {
		return err
	}
	if size < 0 {
		return errs.E(op, errs.Invalid, "blob size must be known")
	}
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	vr := VerifyingReader(r, key, size).(*verifyingReader)
	_, err := s.c.PutObject(ctx, s.bucket, key, vr, size, minio.PutObjectOptions{
		ContentType:          contentType,
		ServerSideEncryption: s.sse,
		PartSize:             s.partSize,
		NumThreads:           1,
	})
	if err == nil {
		return nil
	}
	if vr.err != nil { // the body, not the store, failed
		switch {
		case errors.Is(vr.err, ErrDigestMismatch):
			return errs.E(op, errs.Invalid, "content does not match its key", vr.err)
		case errors.Is(vr.err, ErrSizeMismatch):
			return errs.E(op, errs.Invalid, "content length differs from the declared size", vr.err)
		default:
			return errs.E(op, errs.Invalid, "upload body could not be read", vr.err)
		}
	}
	return mapErr(op, err)
}

// Get implements Blobs. It makes one GET request and hands back its body unbuffered.
func (s *S3Blobs) Get(ctx context.Context, key string, rng *ByteRange) (io.ReadCloser, ObjectInfo, error) {
	const op = "documents.S3Blobs.Get"
	if err := checkKey(op, key); err != nil {
		return nil, ObjectInfo{}, err
	}
	var opts minio.GetObjectOptions
	if rng != nil {
		if !rng.valid() {
			return nil, ObjectInfo{}, errs.E(op, errs.Invalid, "invalid byte range")
		}
		if rng.End < 0 {
			opts.Set("Range", fmt.Sprintf("bytes=%d-", rng.Start))
		} else {
			opts.Set("Range", fmt.Sprintf("bytes=%d-%d", rng.Start, rng.End))
		}
	}
	body, oi, hdr, err := s.core.GetObject(ctx, s.bucket, key, opts)
	if err != nil {
		return nil, ObjectInfo{}, mapErr(op, err)
	}
	info := toInfo(oi)
	if rng != nil {
		// Size is the whole object: take it from Content-Range "bytes a-b/total".
		cr := hdr.Get("Content-Range")
		i := strings.LastIndexByte(cr, '/')
		total, perr := strconv.ParseInt(cr[i+1:], 10, 64)
		if i < 0 || perr != nil {
			body.Close()
			return nil, ObjectInfo{}, errs.E(op, errs.Internal, fmt.Errorf("bad Content-Range %q", cr))
		}
		info.Size = total
	}
	return body, info, nil
}

// Stat implements Blobs.
func (s *S3Blobs) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	const op = "documents.S3Blobs.Stat"
	if err := checkKey(op, key); err != nil {
		return ObjectInfo{}, err
	}
	oi, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, mapErr(op, err)
	}
	return toInfo(oi), nil
}

// Delete implements Blobs.
func (s *S3Blobs) Delete(ctx context.Context, key string) error {
	const op = "documents.S3Blobs.Delete"
	if err := checkKey(op, key); err != nil {
		return err
	}
	err := s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code != "NoSuchKey" {
		return mapErr(op, err)
	}
	return nil
}

// List implements Blobs.
func (s *S3Blobs) List(ctx context.Context, prefix string, olderThan time.Time) iter.Seq2[ObjectInfo, error] {
	const op = "documents.S3Blobs.List"
	return func(yield func(ObjectInfo, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // stops minio-go's lister when the caller breaks out
		for oi := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if oi.Err != nil {
				yield(ObjectInfo{}, mapErr(op, oi.Err))
				return
			}
			if !ValidKey(oi.Key) || (!olderThan.IsZero() && !oi.LastModified.Before(olderThan)) {
				continue
			}
			if !yield(toInfo(oi), nil) {
				return
			}
		}
	}
}

// Ping implements Blobs: one HEAD of the bucket.
func (s *S3Blobs) Ping(ctx context.Context) error {
	const op = "documents.S3Blobs.Ping"
	ok, err := s.c.BucketExists(ctx, s.bucket)
	if err != nil {
		return mapErr(op, err)
	}
	if !ok {
		return errs.E(op, errs.Unavailable, "document bucket is missing")
	}
	return nil
}

// PresignGet returns a URL that lets whoever holds it GET the object under key, without
// credentials, until ttl (1 s to 7 days) has passed. It cannot be revoked before then: hand
// it out only after the consent decision and audit, with a short ttl. It does not check that
// the object exists.
func (s *S3Blobs) PresignGet(ctx context.Context, key string, ttl time.Duration) (*url.URL, error) {
	const op = "documents.S3Blobs.PresignGet"
	if err := checkKey(op, key); err != nil {
		return nil, err
	}
	if ttl < time.Second || ttl > 7*24*time.Hour {
		return nil, errs.E(op, errs.Invalid, "presign ttl must be between 1 second and 7 days")
	}
	u, err := s.c.PresignedGetObject(ctx, s.bucket, key, ttl, nil)
	if err != nil {
		return nil, mapErr(op, err)
	}
	return u, nil
}

// AbortStaleUploads aborts the multipart uploads under the bucket that started before
// olderThan. minio-go aborts the uploads it sees fail; this reaps those a crash left behind.
// It returns how many it aborted.
func (s *S3Blobs) AbortStaleUploads(ctx context.Context, olderThan time.Time) (int, error) {
	const op = "documents.S3Blobs.AbortStaleUploads"
	n := 0
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for u := range s.c.ListIncompleteUploads(ctx, s.bucket, "", true) {
		if u.Err != nil {
			return n, mapErr(op, u.Err)
		}
		if !u.Initiated.Before(olderThan) {
			continue
		}
		if err := s.core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID); err != nil &&
			minio.ToErrorResponse(err).Code != "NoSuchUpload" {
			return n, mapErr(op, err)
		}
		n++
	}
	return n, nil
}

func toInfo(oi minio.ObjectInfo) ObjectInfo {
	return ObjectInfo{
		Key:          oi.Key,
		Size:         oi.Size,
		ContentType:  oi.ContentType,
		ETag:         strings.Trim(oi.ETag, `"`),
		LastModified: oi.LastModified,
	}
}

// mapErr turns a minio-go or transport error into an *errs.Error.
func mapErr(op string, err error) error {
	var e *errs.Error
	if errors.As(err, &e) {
		return errs.E(op, err)
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.Code {
		case "NoSuchKey":
			return errs.E(op, errs.NotFound, "no object under this key", err)
		case "InvalidRange":
			return errs.E(op, errs.Invalid, "byte range not satisfiable", err)
		case "NoSuchBucket":
			return errs.E(op, errs.Unavailable, "document bucket is missing", err)
		case "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout":
			return errs.E(op, errs.Unavailable, "document store unavailable", err)
		}
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return errs.E(op, errs.Unavailable, "document store unavailable", err)
		}
		if resp.StatusCode == http.StatusNotFound {
			return errs.E(op, errs.NotFound, "no object under this key", err)
		}
		if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			return errs.E(op, errs.Invalid, "byte range not satisfiable", err)
		}
		return errs.E(op, errs.Internal, err)
	}
	if isTransport(err) {
		return errs.E(op, errs.Unavailable, "document store unavailable", err)
	}
	return errs.E(op, errs.Internal, err)
}

// isTransport reports whether err is a network-level failure or an expired/cancelled context.
func isTransport(err error) bool {
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
