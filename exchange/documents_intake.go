package exchange

import (
	"context"
	"sync"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/records"
)

// ingestDocument is Ingest's hook for DocumentReference and Binary: when the document
// service is configured, inline bytes go to S3 (before any row), the metadata rows join tx,
// and w is rewritten to store the resource without data under a server-assigned id. Other
// types, or no document service, leave w as it is.
//
// A DocumentReference that replaces another of the member's (relatesTo replaces) stores a
// new version of its target, status superseded, in tx: that write is kept for tx's
// auditWrites (supersededWrites), which records it as an update with the request's own
// writes, so it commits with its audit event or not at all.
func (s *Server) ingestDocument(ctx context.Context, tx db.Querier, member directory.Member, w *store.Write) error {
	if s.Documents == nil {
		return nil
	}
	switch w.Resource.ResourceType {
	case "DocumentReference", "Binary":
	default:
		return nil
	}
	if w.ID == "" {
		w.ID = store.NewID()
	}
	in := w.Resource
	if len(w.Security) > 0 {
		// The document's metadata row records its labels: the ingest labels (rules, Part 2
		// program) with the sender's, as the stored resource will carry them.
		stamped, err := in.Stamp(fhir.Stamp{Security: w.Security})
		if err != nil {
			return err
		}
		in = stamped
	}
	res, err := s.Documents.IngestResource(ctx, tx, documents.Intake{MemberID: member.ID, PatientID: w.PatientID, ID: w.ID, Resource: in,
		Superseded: func(st store.Stored) { s.superseded.add(ctx, tx, st) }})
	if err != nil {
		return err
	}
	w.Resource = res
	return nil
}

// auditSuperseded records in w, as updates, the superseded versions that ingestDocument
// stored in tx (and forgets them): auditWrites calls it first, so every path that ingests
// a replacing DocumentReference audits its target with the writes it records itself.
func (s *Server) auditSuperseded(tx db.Querier, w *records.Writes) {
	for _, st := range s.superseded.take(tx) {
		w.Stored(audit.Update, st)
	}
}

// supersededWrites holds, per open transaction, the DocumentReferences the document
// service stored again as superseded in it, until that transaction's auditWrites takes
// them. The intake functions (Ingest, IngestAs, ingestUpdate) are not given the caller's
// records.Writes; every write path ends in auditWrites with the same tx, so the
// transaction is what joins the document service's write to the request's audit event.
//
// An entry whose transaction fails before auditWrites is dropped when the context it was
// added under ends. That context is the one the transaction runs in (no intake path
// derives a shorter one): once it has ended, pgx neither runs a statement nor sends COMMIT
// in that transaction, so a dropped entry's write cannot commit either.
type supersededWrites struct {
	mu   sync.Mutex
	byTx map[db.Querier][]store.Stored
}

// add keeps st, a version stored in tx under ctx, for take(tx).
func (sw *supersededWrites) add(ctx context.Context, tx db.Querier, st store.Stored) {
	st.Body = nil // the audit needs type, id and patient only
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.byTx == nil {
		sw.byTx = map[db.Querier][]store.Stored{}
	}
	if _, ok := sw.byTx[tx]; !ok {
		context.AfterFunc(ctx, func() { sw.take(tx) })
	}
	sw.byTx[tx] = append(sw.byTx[tx], st)
}

// take returns and forgets what add kept for tx.
func (sw *supersededWrites) take(tx db.Querier) []store.Stored {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sts := sw.byTx[tx]
	delete(sw.byTx, tx)
	return sts
}
