package documents

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/internal/db"
)

// Copy is one document that holds a given content.
type Copy struct {
	DocumentID string
	BinaryID   string
	MemberID   string    // "" for a patient upload
	Status     string    // current, superseded, entered-in-error
	Received   time.Time // when the exchange first stored the document
}

// Listing is one distinct content (identical bytes are stored and listed once) and the
// documents that hold it.
type Listing struct {
	Key         string // SHA-256, hex
	Size        int64
	ContentType string
	Copies      []Copy
}

// Members returns the distinct members that sent the content, in order.
func (l Listing) Members() []string {
	var ms []string
	for _, c := range l.Copies {
		if c.MemberID != "" && !slices.Contains(ms, c.MemberID) {
			ms = append(ms, c.MemberID)
		}
	}
	return ms
}

// Summary describes the sources for a list view, e.g. "2 copies from 2 organizations".
func (l Listing) Summary() string {
	return summary(len(l.Copies), len(l.Members()))
}

// summary is "n copies from m organizations" (the sending members, named as patients know
// them), singular where it should be.
func summary(copies, members int) string {
	cw, mw := "copies", "organizations"
	if copies == 1 {
		cw = "copy"
	}
	if members == 1 {
		mw = "organization"
	}
	return fmt.Sprintf("%d %s from %d %s", copies, cw, members, mw)
}

// Group lists the contents of the given documents once per distinct content, each with
// every one of these documents that holds it, ordered by key. A document's contents are
// those its current version names: an updated document's earlier bytes are not listed. It
// authorizes nothing: pass only document IDs the caller may see (from records), so Copies
// never names another.
func (s *Service) Group(ctx context.Context, documentIDs []string) ([]Listing, error) {
	const op = "documents.Service.Group"
	rows, err := s.pool.Query(ctx, `SELECT c.object_key, c.size, c.content_type, c.document_id, c.binary_id,
			coalesce(m.member_id, ''), m.status, m.created_at
		FROM documents_contents c JOIN documents_metadata m ON m.id = c.document_id
		WHERE c.document_id = ANY($1) AND c.current ORDER BY c.object_key, m.member_id, c.document_id`, documentIDs)
	if err != nil {
		return nil, db.Map(op, err)
	}
	var out []Listing
	var key, ct string
	var size int64
	var cp Copy
	_, err = pgx.ForEachRow(rows, []any{&key, &size, &ct, &cp.DocumentID, &cp.BinaryID, &cp.MemberID, &cp.Status, &cp.Received}, func() error {
		if len(out) == 0 || out[len(out)-1].Key != key {
			out = append(out, Listing{Key: key, Size: size, ContentType: ct})
		}
		l := &out[len(out)-1]
		l.Copies = append(l.Copies, cp)
		return nil
	})
	return out, db.Map(op, err)
}
