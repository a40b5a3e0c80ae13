package documents

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

// PatientSourced is the tag every patient upload carries: kept apart from members'
// clinical documents, never in a member's compartment.
var PatientSourced = fhir.Coding{System: OriginSystem, Code: "patient", Display: "Patient-sourced document"}

// PatientUpload is a patient's own document as the portal hands it over. The name the
// patient's browser sent is never used: not as a path, not as a download name.
type PatientUpload struct {
	IdempotencyKey string    // optional; a repeat with the same key returns the first document
	ContentType    string    // declared type, checked against the allow-list and sniffed
	TypeCode       string    // optional LOINC document type
	Body           io.Reader // at most Config.MaxBytes bytes
}

// PatientDocument is a stored patient upload.
type PatientDocument struct {
	ID       string
	PersonID string
	Tag      fhir.Coding // PatientSourced
	Content  Content
	Created  time.Time
}

// UploadPatientDocument stores person's own document: bytes to Blobs first, then the
// metadata (origin patient) in one transaction, with the idempotency key when given. It
// returns errs.TooLarge, errs.Unsupported or errs.Invalid for bad content and
// errs.Unavailable when the store is down (nothing written).
func (s *Service) UploadPatientDocument(ctx context.Context, person string, up PatientUpload) (PatientDocument, error) {
	const op = "documents.Service.UploadPatientDocument"
	if person == "" {
		return PatientDocument{}, errs.E(op, errs.Invalid, "no person")
	}
	scope := "person:" + person
	if up.IdempotencyKey != "" {
		if d, err := s.patientByKey(ctx, s.pool, person, scope, up.IdempotencyKey); err == nil || errs.CodeOf(err) != errs.NotFound {
			return d, err
		}
	}
	data, err := io.ReadAll(io.LimitReader(up.Body, s.cfg.MaxBytes+1))
	if err != nil {
		return PatientDocument{}, errs.E(op, errs.Invalid, "could not read the upload", err)
	}
	doc := PatientDocument{ID: store.NewID(), PersonID: person, Tag: PatientSourced}
	err = db.InTx(ctx, s.pool, func(tx db.Querier) error {
		sc, err := s.putBytes(ctx, tx, data, up.ContentType, "", nil)
		if err != nil {
			return err
		}
		sc.BinaryID = store.NewID()
		m := metaRow{ID: doc.ID, PersonID: person, Origin: "patient", TypeCode: up.TypeCode, Status: "current", Security: []string{}}
		if up.TypeCode != "" {
			m.TypeSystem = "http://loinc.org"
		}
		now := s.now()
		m.Date = &now
		if err := insertMeta(ctx, tx, m); err != nil {
			return err
		}
		if err := insertContent(ctx, tx, doc.ID, "", person, sc); err != nil {
			return err
		}
		if up.IdempotencyKey != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO documents_idempotency(scope, key, document_id) VALUES ($1, $2, $3)`, scope, up.IdempotencyKey, doc.ID); err != nil {
				return db.Map(op, err)
			}
		}
		doc.Content = Content{BinaryID: sc.BinaryID, DocumentID: doc.ID, PersonID: person, Key: sc.Key, Size: sc.Size, SHA1: sc.SHA1, ContentType: sc.ContentType}
		return nil
	})
	if errs.CodeOf(err) == errs.Conflict && up.IdempotencyKey != "" {
		return s.patientByKey(ctx, s.pool, person, scope, up.IdempotencyKey) // a concurrent first use won
	}
	if err != nil {
		return PatientDocument{}, errs.E(op, err)
	}
	return doc, nil
}

func (s *Service) patientByKey(ctx context.Context, q db.Querier, person, scope, key string) (PatientDocument, error) {
	var id string
	err := q.QueryRow(ctx, `SELECT document_id FROM documents_idempotency WHERE scope = $1 AND key = $2`, scope, key).Scan(&id)
	if err != nil {
		return PatientDocument{}, db.Map("documents.patientByKey", err)
	}
	docs, err := s.PatientDocuments(ctx, person, id)
	if err != nil {
		return PatientDocument{}, err
	}
	if len(docs) == 0 {
		return PatientDocument{}, errs.E("documents.patientByKey", errs.NotFound, "document not found")
	}
	return docs[0], nil
}

// PatientDocuments returns person's own uploads, newest first; with ids, only those. It
// never returns members' clinical documents, nor another person's uploads.
func (s *Service) PatientDocuments(ctx context.Context, person string, ids ...string) ([]PatientDocument, error) {
	const op = "documents.Service.PatientDocuments"
	rows, err := s.pool.Query(ctx, `SELECT m.id, c.binary_id, c.object_key, c.size, c.sha1, c.content_type, m.created_at
		FROM documents_metadata m JOIN documents_contents c ON c.document_id = m.id
		WHERE m.person_id = $1 AND m.origin = 'patient' AND (coalesce(cardinality($2::text[]), 0) = 0 OR m.id = ANY($2))
		ORDER BY m.created_at DESC, m.id`, person, ids)
	if err != nil {
		return nil, db.Map(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (PatientDocument, error) {
		d := PatientDocument{PersonID: person, Tag: PatientSourced}
		c := &d.Content
		err := r.Scan(&d.ID, &c.BinaryID, &c.Key, &c.Size, &c.SHA1, &c.ContentType, &d.Created)
		c.DocumentID, c.PersonID = d.ID, person
		return d, err
	})
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, db.Map(op, err)
	}
	return out, nil
}
