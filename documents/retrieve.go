package documents

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// Content is one stored content, addressed as [base]/Binary/{BinaryID}.
type Content struct {
	BinaryID    string
	DocumentID  string // the DocumentReference it belongs to; "" for a Binary no document names yet
	MemberID    string // the sending member; "" for a patient upload
	PersonID    string // the uploading person, for a patient upload
	Key         string // SHA-256, hex: the object key and the HTTP ETag
	Size        int64
	SHA1        string // base64, as in Attachment.hash
	ContentType string
}

// Filename is the download name to offer for c: generated from its id and type, never a
// name a sender supplied.
func (c Content) Filename() string { return safeFilename(c.BinaryID, c.ContentType) }

// Content returns the stored content with this binary id, or errs.NotFound. It reads
// metadata only: callers authorize (a read of DocumentID, or of the Binary itself when
// DocumentID is "") before calling Open.
func (s *Service) Content(ctx context.Context, binaryID string) (Content, error) {
	const op = "documents.Service.Content"
	c := Content{BinaryID: binaryID}
	var doc, member, person *string
	err := s.pool.QueryRow(ctx, `SELECT document_id, member_id, person_id, object_key, size, sha1, content_type
		FROM documents_contents WHERE binary_id = $1`, binaryID).Scan(&doc, &member, &person, &c.Key, &c.Size, &c.SHA1, &c.ContentType)
	if errors.Is(err, pgx.ErrNoRows) {
		return Content{}, errs.E(op, errs.NotFound, "resource not found", err)
	}
	if err != nil {
		return Content{}, db.Map(op, err)
	}
	c.DocumentID, c.MemberID, c.PersonID = deref(doc), deref(member), deref(person)
	return c, nil
}

// ContentOfDocument returns the first content of document documentID (a DocumentReference
// or a patient upload) as its current version names it, never an earlier version's, or
// errs.NotFound (also when the current version names no content stored here). Like
// Content it reads metadata only and authorizes nothing.
func (s *Service) ContentOfDocument(ctx context.Context, documentID string) (Content, error) {
	const op = "documents.Service.ContentOfDocument"
	var binaryID string
	err := s.pool.QueryRow(ctx, `SELECT binary_id FROM documents_contents WHERE document_id = $1 AND current
		ORDER BY idx, binary_id LIMIT 1`, documentID).Scan(&binaryID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Content{}, errs.E(op, errs.NotFound, "resource not found", err)
	}
	if err != nil {
		return Content{}, db.Map(op, err)
	}
	return s.Content(ctx, binaryID)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Transfer is an open download of one content: the whole object streams from Blobs through
// a SHA-256 check. Close it.
type Transfer struct {
	s    *Service
	c    Content
	body io.ReadCloser
	vr   io.Reader
	ev   audit.Event
	used bool
}

// Open starts streaming c's object from Blobs. Call it only after the read was authorized
// and audited. ev describes the request (actor, client, request ID): on an integrity
// failure it is appended with Outcome Failure and Reason "integrity-sha256-mismatch".
// Open fails with errs.NotFound when the object is missing (an alert: metadata never points
// at a missing object) and errs.Unavailable when the store cannot be reached.
func (s *Service) Open(ctx context.Context, c Content, ev audit.Event) (*Transfer, error) {
	const op = "documents.Service.Open"
	body, info, err := s.blobs.Get(ctx, c.Key, nil)
	if err != nil {
		if errs.CodeOf(err) == errs.NotFound {
			s.log.Error("document object missing", "alert", true, "binary", c.BinaryID, "key", c.Key)
		}
		return nil, errs.E(op, err)
	}
	if info.Size != c.Size {
		body.Close()
		s.integrityFailure(ctx, c, ev, fmt.Errorf("%w: object has %d bytes, metadata %d", ErrSizeMismatch, info.Size, c.Size))
		return nil, errs.E(op, errs.Internal, "stored document failed its integrity check", ErrSizeMismatch)
	}
	return &Transfer{s: s, c: c, body: body, vr: VerifyingReader(body, c.Key, c.Size), ev: ev}, nil
}

// Close releases the S3 response.
func (t *Transfer) Close() error { return t.body.Close() }

// WriteRange writes bytes rng.Start..rng.End (clamped to the object) of the content to w,
// which should already carry a Content-Length of rng.Len(size). The whole object is read
// and hashed, even for a range, and the last byte is held back until the hash matched: on a
// mismatch, a short object or a read error, WriteRange stops without it (so a receiver of a
// Content-Length response never sees a complete body), raises an alert and audit event for
// a mismatch, and returns an error (errs.Internal for corruption, errs.Unavailable for
// the store failing mid-way). It may be called once.
func (t *Transfer) WriteRange(w io.Writer, rng ByteRange) error {
	const op = "documents.Transfer.WriteRange"
	if t.used {
		return errs.E(op, errs.Internal, "transfer already used")
	}
	t.used = true
	n := rng.Len(t.c.Size)
	if n <= 0 {
		return errs.E(op, errs.Invalid, "byte range not satisfiable")
	}
	fail := func(err error) error {
		if errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch) {
			t.s.integrityFailure(context.Background(), t.c, t.ev, err)
			return errs.E(op, errs.Internal, "stored document failed its integrity check", err)
		}
		return errs.E(op, errs.Unavailable, "document transfer failed", err)
	}
	if _, err := io.CopyN(io.Discard, t.vr, rng.Start); err != nil {
		return fail(err)
	}
	cw := &errWriter{w: w}
	if n > 1 {
		if _, err := io.CopyN(cw, t.vr, n-1); err != nil {
			if cw.err != nil {
				return errs.E(op, errs.Unavailable, "the client went away", err)
			}
			return fail(err)
		}
	}
	var last [1]byte
	if _, err := io.ReadFull(t.vr, last[:]); err != nil {
		return fail(err)
	}
	if _, err := io.Copy(io.Discard, t.vr); err != nil { // the rest of the object, for the hash
		return fail(err)
	}
	if _, err := w.Write(last[:]); err != nil {
		return errs.E(op, errs.Unavailable, "the client went away", err)
	}
	return nil
}

// errWriter remembers its writer's error, to tell a hung-up client from a failing store.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// integrityFailure logs an alert and records an audit event for bytes that do not match
// their hash.
func (s *Service) integrityFailure(ctx context.Context, c Content, ev audit.Event, cause error) {
	s.log.Error("document integrity failure: stored bytes do not match their SHA-256", "alert", true,
		"binary", c.BinaryID, "document", c.DocumentID, "key", c.Key, "err", cause)
	if s.audit == nil {
		return
	}
	ev.Action, ev.Outcome, ev.Reason = audit.Read, audit.Failure, "integrity-sha256-mismatch"
	ev.Resources = []audit.Resource{{Type: "Binary", ID: c.BinaryID}}
	if c.DocumentID != "" {
		ev.Resources = append(ev.Resources, audit.Resource{Type: "DocumentReference", ID: c.DocumentID})
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := s.audit.Append(actx, ev); err != nil {
		s.log.Error("integrity audit event not recorded", "alert", true, "binary", c.BinaryID, "err", err)
	}
}

// PresignedURL returns a short-lived URL from which anyone holding it can GET c's bytes
// directly from S3, when Blobs can presign (S3Blobs). Trade-off: it spares the exchange
// the bytes, but once issued it works for everyone until it expires (no revocation, no
// per-download audit, no SHA-256 check in transit), so issue it only after the consent
// decision and audit, with a ttl of seconds to minutes. errs.Unsupported otherwise.
func (s *Service) PresignedURL(ctx context.Context, c Content, ttl time.Duration) (*url.URL, error) {
	p, ok := s.blobs.(interface {
		PresignGet(context.Context, string, time.Duration) (*url.URL, error)
	})
	if !ok {
		return nil, errs.E("documents.Service.PresignedURL", errs.Unsupported, "this document store cannot presign")
	}
	return p.PresignGet(ctx, c.Key, ttl)
}
