package exchange

import (
	"context"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
)

// ingestDocument is Ingest's hook for DocumentReference and Binary: when the document
// service is configured, inline bytes go to S3 (before any row), the metadata rows join tx,
// and w is rewritten to store the resource without data under a server-assigned id. Other
// types, or no document service, leave w as it is.
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
	res, err := s.Documents.IngestResource(ctx, tx, documents.Intake{MemberID: member.ID, PatientID: w.PatientID, ID: w.ID, Resource: in})
	if err != nil {
		return err
	}
	w.Resource = res
	return nil
}
