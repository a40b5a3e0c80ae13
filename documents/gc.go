package documents

import (
	"context"
	"time"

	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// GCStats reports one collection.
type GCStats struct {
	Scanned int // objects older than the grace period
	Removed int // orphans deleted
	Aborted int // stale multipart uploads aborted
}

// CollectGarbage removes orphan objects: objects no content row names, last modified more
// than the grace period ago (a crash between the S3 write and the metadata COMMIT leaves
// such an object). For each candidate it takes the key's advisory lock exclusively (intake
// holds it shared from before its write until its COMMIT, so an upload of the same bytes in
// flight is never undone), re-checks that no row names the key and that LastModified is
// still old, then deletes. It also aborts multipart uploads older than the grace period
// when Blobs can. It returns what it did before the first error.
func (s *Service) CollectGarbage(ctx context.Context) (GCStats, error) {
	const op = "documents.Service.CollectGarbage"
	var st GCStats
	cutoff := s.now().Add(-s.cfg.Grace)
	for info, err := range s.blobs.List(ctx, "", cutoff) {
		if err != nil {
			return st, errs.E(op, err)
		}
		st.Scanned++
		removed := false
		err := db.InTx(ctx, s.pool, func(tx db.Querier) error {
			removed = false
			var locked, used bool
			if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))`, info.Key).Scan(&locked); err != nil {
				return db.Map(op, err)
			}
			if !locked {
				return nil // an intake of these bytes is in flight
			}
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM documents_contents WHERE object_key = $1)`, info.Key).Scan(&used); err != nil {
				return db.Map(op, err)
			}
			if used {
				return nil
			}
			cur, err := s.blobs.Stat(ctx, info.Key)
			if errs.CodeOf(err) == errs.NotFound {
				return nil
			}
			if err != nil {
				return err
			}
			if !cur.LastModified.Before(cutoff) {
				return nil // written again since it was listed
			}
			if err := s.blobs.Delete(ctx, info.Key); err != nil {
				return err
			}
			removed = true
			return nil
		})
		if err != nil {
			return st, errs.E(op, err)
		}
		if removed {
			st.Removed++
			s.log.Info("document orphan removed", "key", info.Key)
		}
	}
	if a, ok := s.blobs.(interface {
		AbortStaleUploads(context.Context, time.Time) (int, error)
	}); ok {
		n, err := a.AbortStaleUploads(ctx, cutoff)
		st.Aborted = n
		if err != nil {
			return st, errs.E(op, err)
		}
	}
	return st, nil
}

// DanglingReferences counts the distinct objects that content rows name but Blobs lacks:
// it must be 0. It is Check without byte verification (one listing of the bucket and the
// content rows in batches), so it is for tests and `concord` maintenance, not requests.
func (s *Service) DanglingReferences(ctx context.Context) (int, error) {
	rep, err := s.Check(ctx, CheckOptions{})
	return int(rep.MissingObjects), err
}

// RunGC calls CollectGarbage every interval until ctx ends, logging what each run did.
// Run it in one goroutine per deployment or per replica: concurrent collectors are safe
// (each key is handled under its advisory lock), merely redundant.
func (s *Service) RunGC(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := s.CollectGarbage(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("document GC failed", "err", err, "removed", st.Removed)
			continue
		}
		s.log.Info("document GC", "scanned", st.Scanned, "removed", st.Removed, "aborted_uploads", st.Aborted)
	}
}
