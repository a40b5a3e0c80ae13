package documents

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/audit"
	"github.com/concord-hie/concord/fhir"
	"github.com/concord-hie/concord/fhir/store"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/jsonobj"
)

// DefaultMaxBytes bounds one document's content when Config.MaxBytes is zero.
const DefaultMaxBytes = 32 << 20

// DefaultGrace is how old an unreferenced object must be before CollectGarbage removes it.
const DefaultGrace = 24 * time.Hour

// Config tunes the document service.
type Config struct {
	// FHIRBase is the public FHIR base URL; stored attachments point at FHIRBase/Binary/{id}.
	FHIRBase string
	// MaxBytes bounds the decoded size of one content (errs.TooLarge beyond); 0 means
	// DefaultMaxBytes.
	MaxBytes int64
	// AllowedTypes are the accepted media types (without parameters); nil means
	// DefaultAllowedTypes. Archives are refused whatever it says, and a type without a
	// built-in signature check is accepted only when http.DetectContentType names it.
	AllowedTypes []string
	// Grace is the minimum age of an orphan object before it is collected; 0 means
	// DefaultGrace.
	Grace time.Duration
}

// AuditLog appends audit events durably (audit.Log satisfies it).
type AuditLog interface {
	Append(ctx context.Context, ev audit.Event) error
}

// Service keeps documents: bytes in Blobs, metadata in PostgreSQL, the FHIR resources in
// the FHIR store. It decides nothing about who may read what: callers authorize through
// records first (see Content and Open).
type Service struct {
	pool    *pgxpool.Pool
	fhir    *store.Store
	blobs   Blobs
	audit   AuditLog
	log     *slog.Logger
	cfg     Config
	allowed map[string]bool
	now     func() time.Time
}

// New returns the document service. audit receives integrity alerts; log may be nil.
func New(pool *pgxpool.Pool, fhirStore *store.Store, blobs Blobs, auditLog AuditLog, log *slog.Logger, cfg Config) *Service {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.AllowedTypes == nil {
		cfg.AllowedTypes = DefaultAllowedTypes
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	allowed := make(map[string]bool, len(cfg.AllowedTypes))
	for _, t := range cfg.AllowedTypes {
		allowed[strings.ToLower(t)] = true
	}
	return &Service{pool: pool, fhir: fhirStore, blobs: blobs, audit: auditLog, log: log, cfg: cfg, allowed: allowed, now: time.Now}
}

// Blobs returns the byte store the service writes to.
func (s *Service) Blobs() Blobs { return s.blobs }

// Tags and labels the service writes.
const (
	// OriginSystem tags a document's origin: code "patient" marks a patient's own upload.
	OriginSystem = "https://concord.example/fhir/document-origin"
)

// Intake is one DocumentReference or Binary arriving from a member, about to be stored
// under ID in the FHIR store.
type Intake struct {
	MemberID  string
	PatientID string // the member's Patient whose compartment holds it; "" for a Binary
	ID        string // the id the resource will be stored under; required
	Resource  *fhir.Resource
	// Superseded, when not nil, is called with each of the member's DocumentReferences
	// that the intake stored a new version of in tx (status superseded) because this one
	// replaces it. That write is the caller's as much as its own: one that audits its
	// writes records these as updates in the same transaction.
	Superseded func(store.Stored)
}

// IngestResource handles the document side of storing a DocumentReference or a Binary in
// tx, and returns the resource to store in its place (other types come back unchanged).
//
// For every content of a DocumentReference with inline data, and for a Binary with data,
// the bytes are decoded, checked (size limit, allowed type and its signature, no archive,
// compressed stream or executable anywhere in them, the sender's size and SHA-1 hash when
// given) and written to Blobs under their SHA-256 before any row: the metadata and content
// rows are written in tx, and the returned resource carries attachment.url =
// FHIRBase/Binary/{id}, size and hash (SHA-1) but no data. An attachment whose url names a
// Binary of the same member is linked to it; if that Binary is not stored yet, the
// transaction must store it before COMMIT or the COMMIT fails.
// relatesTo replaces marks the member's target DocumentReference superseded (in the FHIR
// store too: a new version, reported to in.Superseded); the target must be current (or
// superseded by this document already: a resend), else errs.Conflict at
// DocumentReference.relatesTo[i].target, before any byte is written. Errors:
// errs.Invalid, errs.TooLarge, errs.Unsupported for bad input; errs.Conflict for a
// replacement of a document that is superseded or entered in error; errs.Unavailable
// when the object store is down (nothing was written).
func (s *Service) IngestResource(ctx context.Context, tx db.Querier, in Intake) (*fhir.Resource, error) {
	const op = "documents.Service.IngestResource"
	if in.ID == "" {
		return nil, errs.E(op, errs.Internal, "document intake needs the id to store under")
	}
	switch in.Resource.ResourceType {
	case "DocumentReference":
		return s.ingestDocumentReference(ctx, tx, in)
	case "Binary":
		return s.ingestBinary(ctx, tx, in)
	}
	return in.Resource, nil
}

type codeable struct {
	Coding []fhir.Coding `json:"coding"`
}

type reference struct {
	Reference string `json:"reference"`
}

// docFields is the part of a DocumentReference the metadata rows need.
type docFields struct {
	Status    string      `json:"status"`
	Type      *codeable   `json:"type"`
	Category  []codeable  `json:"category"`
	Date      string      `json:"date"`
	Author    []reference `json:"author"`
	RelatesTo []struct {
		Code   string    `json:"code"`
		Target reference `json:"target"`
	} `json:"relatesTo"`
}

type attachmentFields struct {
	ContentType string `json:"contentType"`
	Data        string `json:"data"`
	URL         string `json:"url"`
	Size        *int64 `json:"size"`
	Hash        string `json:"hash"`
}

// storedContent is a content whose bytes are in Blobs.
type storedContent struct {
	BinaryID    string
	Idx         int
	Key         string
	Size        int64
	SHA1        string
	ContentType string
}

func (s *Service) binaryURL(id string) string { return s.cfg.FHIRBase + "/Binary/" + id }

// localBinary returns X when u is Binary/X or FHIRBase/Binary/X.
func (s *Service) localBinary(u string) (string, bool) {
	rest, ok := strings.CutPrefix(u, s.cfg.FHIRBase+"/")
	if !ok {
		rest = u
	}
	id, ok := strings.CutPrefix(rest, "Binary/")
	if !ok || id == "" || strings.ContainsAny(id, "/?#") {
		return "", false
	}
	return id, true
}

func (s *Service) ingestDocumentReference(ctx context.Context, tx db.Querier, in Intake) (*fhir.Resource, error) {
	const op = "documents.Service.ingestDocumentReference"
	var df docFields
	if err := json.Unmarshal(in.Resource.Bytes(), &df); err != nil {
		return nil, errs.E(op, errs.Invalid, "malformed DocumentReference", err)
	}
	top, err := jsonobj.Parse(in.Resource.Bytes())
	if err != nil {
		return nil, errs.E(op, errs.Invalid, "malformed DocumentReference", err)
	}
	// What it replaces must be the member's current documents. Checked here, before any
	// byte goes to Blobs, so a refused replacement leaves no object behind; supersede
	// decides again under the target's row lock.
	replaces, err := s.replacements(df, in.ID)
	if err != nil {
		return nil, err
	}
	for _, r := range replaces {
		if _, err := s.replaceable(ctx, tx, in.MemberID, r, in.ID, false); err != nil {
			return nil, err
		}
	}
	var contents []json.RawMessage
	if raw := top.Get("content"); raw != nil {
		if err := json.Unmarshal(raw, &contents); err != nil {
			return nil, errs.E(op, errs.Invalid, "malformed DocumentReference.content", err)
		}
	}
	type link struct {
		binaryID string
		idx      int
	}
	var stored []storedContent
	var links []link
	named := []string{} // the Binary ids this version's contents name
	for i, raw := range contents {
		c, err := jsonobj.Parse(raw)
		if err != nil {
			return nil, errs.E(op, errs.Invalid, "malformed DocumentReference.content", err)
		}
		araw := c.Get("attachment")
		if araw == nil {
			continue
		}
		var af attachmentFields
		if err := json.Unmarshal(araw, &af); err != nil {
			return nil, errs.E(op, errs.Invalid, "malformed attachment", err)
		}
		att, err := jsonobj.Parse(araw)
		if err != nil {
			return nil, errs.E(op, errs.Invalid, "malformed attachment", err)
		}
		switch {
		case af.Data != "":
			sc, err := s.putData(ctx, tx, af)
			if err != nil {
				e := errs.E(op, err)
				e.Path = "DocumentReference.content[" + itoa(i) + "].attachment"
				return nil, e
			}
			sc.Idx = i
			// A resend of the document with the same bytes at the same place keeps its
			// Binary, so an unchanged DocumentReference stays unchanged (no new version).
			reused, err := s.contentAt(ctx, tx, in, sc)
			if err != nil {
				return nil, err
			}
			if reused != "" {
				sc.BinaryID = reused
			} else {
				sc.BinaryID = store.NewID()
				stored = append(stored, sc)
			}
			named = append(named, sc.BinaryID)
			att = att.Del("data").Set("contentType", jsonOf(sc.ContentType)).Set("url", jsonOf(s.binaryURL(sc.BinaryID))).
				Set("size", jsonOf(sc.Size)).Set("hash", jsonOf(sc.SHA1))
		case af.URL != "":
			id, ok := s.localBinary(af.URL)
			if !ok {
				continue // an external URL: no bytes here to keep
			}
			links = append(links, link{id, i})
			named = append(named, id)
			att = att.Set("url", jsonOf(s.binaryURL(id)))
		default:
			continue
		}
		contents[i] = c.Set("attachment", att.Encode()).Encode()
	}
	if len(contents) > 0 {
		b, _ := json.Marshal(contents)
		top = top.Set("content", b)
	}
	// A document another has replaced stays superseded when its sender resends it as
	// current (an EHR resending what it has): only a replacement changes that status.
	if df.Status == "current" {
		var replaced bool
		err := tx.QueryRow(ctx, `SELECT superseded_by IS NOT NULL FROM documents_metadata WHERE id = $1 AND member_id = $2`,
			in.ID, in.MemberID).Scan(&replaced)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, db.Map(op, err)
		}
		if replaced {
			df.Status = "superseded"
			top = top.Set("status", jsonOf("superseded"))
		}
	}
	out, err := fhir.Parse(top.Encode())
	if err != nil {
		return nil, errs.E(op, errs.Internal, err)
	}

	// The objects are in Blobs; now the rows.
	m := metaRow{ID: in.ID, MemberID: in.MemberID, PatientID: in.PatientID, Origin: "clinical", Status: df.Status}
	m.fill(df, in.Resource.Meta)
	if err := insertMeta(ctx, tx, m); err != nil {
		return nil, err
	}
	for _, sc := range stored {
		if err := insertContent(ctx, tx, in.ID, in.MemberID, "", sc); err != nil {
			return nil, err
		}
	}
	for _, l := range links {
		if err := s.linkBinary(ctx, tx, in.MemberID, in.ID, l.binaryID, l.idx); err != nil {
			return nil, err
		}
	}
	if err := markCurrent(ctx, tx, in.ID, named); err != nil {
		return nil, err
	}
	for _, r := range replaces {
		st, err := s.supersede(ctx, tx, in.MemberID, r, in.ID)
		if err != nil {
			return nil, err
		}
		if st.ID != "" && in.Superseded != nil {
			in.Superseded(st)
		}
	}
	return out, nil
}

// markCurrent records that the contents named (Binary ids) are document docID's content
// now and its other content rows are earlier versions': those stay, as history (their
// Binary/{id} is still readable and their objects kept), but ContentOfDocument and Group
// no longer return them. A named Binary not stored yet (linked later in tx) is current
// when its row is written. tx must hold docID's metadata row (insertMeta), so that
// concurrent writes of one document mark its rows in the order they commit.
func markCurrent(ctx context.Context, tx db.Querier, docID string, named []string) error {
	_, err := tx.Exec(ctx, `UPDATE documents_contents SET current = coalesce(binary_id = ANY($2), false)
		WHERE document_id = $1 AND current IS DISTINCT FROM coalesce(binary_id = ANY($2), false)`, docID, named)
	return db.Map("documents.markCurrent", err)
}

// replacement is relatesTo[Idx] of a DocumentReference: code replaces, naming Target.
type replacement struct {
	Target string // the id of the DocumentReference replaced
	Idx    int
}

// replacements returns the DocumentReferences that df, to be stored as id, replaces
// (relatesTo replaces; appends and transforms leave their target as it is). A target
// that is not DocumentReference/{id} or FHIRBase/DocumentReference/{id}, or is id itself,
// is errs.Invalid.
func (s *Service) replacements(df docFields, id string) ([]replacement, error) {
	var rs []replacement
	for i, r := range df.RelatesTo {
		if r.Code != "replaces" {
			continue
		}
		target, ok := strings.CutPrefix(r.Target.Reference, "DocumentReference/")
		if !ok {
			target, ok = strings.CutPrefix(r.Target.Reference, s.cfg.FHIRBase+"/DocumentReference/")
		}
		if !ok || target == "" || target == id {
			e := errs.E("documents.Service.replacements", errs.Invalid, "relatesTo.target must be DocumentReference/{id}")
			e.Path = "DocumentReference.relatesTo[" + itoa(i) + "].target"
			return nil, e
		}
		rs = append(rs, replacement{Target: target, Idx: i})
	}
	return rs, nil
}

// contentAt returns the Binary id of the member's document in.ID content that already
// holds sc's bytes (object key), content type and position, or "" when there is none (a
// new document, or new bytes).
func (s *Service) contentAt(ctx context.Context, tx db.Querier, in Intake, sc storedContent) (string, error) {
	var id string
	err := tx.QueryRow(ctx, `SELECT binary_id FROM documents_contents
		WHERE document_id = $1 AND member_id = $2 AND idx = $3 AND object_key = $4 AND content_type = $5
		ORDER BY created_at DESC, binary_id LIMIT 1`, in.ID, in.MemberID, sc.Idx, sc.Key, sc.ContentType).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return id, db.Map("documents.Service.contentAt", err)
}

func (s *Service) ingestBinary(ctx context.Context, tx db.Querier, in Intake) (*fhir.Resource, error) {
	const op = "documents.Service.ingestBinary"
	var af attachmentFields
	if err := json.Unmarshal(in.Resource.Bytes(), &af); err != nil {
		return nil, errs.E(op, errs.Invalid, "malformed Binary", err)
	}
	if af.Data == "" {
		e := errs.E(op, errs.Invalid, "a Binary needs data")
		e.Path = "Binary.data"
		return nil, e
	}
	sc, err := s.putData(ctx, tx, af)
	if err != nil {
		e := errs.E(op, err)
		e.Path = "Binary"
		return nil, e
	}
	sc.BinaryID = in.ID
	// A DocumentReference earlier in the transaction may be waiting for this Binary.
	var docID string
	var idx int
	err = tx.QueryRow(ctx, `DELETE FROM documents_pending WHERE binary_id = $1 AND member_id = $2 RETURNING document_id, idx`, in.ID, in.MemberID).Scan(&docID, &idx)
	if err != nil && errs.CodeOf(db.Map(op, err)) != errs.NotFound {
		return nil, db.Map(op, err)
	}
	sc.Idx = idx
	if err := insertContent(ctx, tx, docID, in.MemberID, "", sc); err != nil {
		return nil, err
	}
	top, err := jsonobj.Parse(in.Resource.Bytes())
	if err != nil {
		return nil, errs.E(op, errs.Invalid, "malformed Binary", err)
	}
	top = top.Del("data").Set("contentType", jsonOf(sc.ContentType))
	out, err := fhir.Parse(top.Encode())
	if err != nil {
		return nil, errs.E(op, errs.Internal, err)
	}
	return out, nil
}

// putData decodes, checks and stores one attachment's inline bytes.
func (s *Service) putData(ctx context.Context, tx db.Querier, af attachmentFields) (storedContent, error) {
	const op = "documents.Service.putData"
	if int64(len(af.Data))/4*3 > s.cfg.MaxBytes+3 {
		return storedContent{}, errs.E(op, errs.TooLarge, "the document is larger than allowed")
	}
	data, err := base64.StdEncoding.DecodeString(af.Data)
	if err != nil {
		return storedContent{}, errs.E(op, errs.Invalid, "attachment data is not valid base64", err)
	}
	return s.putBytes(ctx, tx, data, af.ContentType, af.Hash, af.Size)
}

// putBytes checks data, the whole body, before any byte reaches Blobs (so a refused
// document leaves nothing behind), and writes it to Blobs (see storeObject) under a shared
// advisory lock on its key that tx holds until it ends, so the collector cannot remove the
// object between this write and tx's COMMIT.
func (s *Service) putBytes(ctx context.Context, tx db.Querier, data []byte, declared, senderHash string, senderSize *int64) (storedContent, error) {
	const op = "documents.Service.putBytes"
	if int64(len(data)) > s.cfg.MaxBytes {
		return storedContent{}, errs.E(op, errs.TooLarge, "the document is larger than allowed")
	}
	if len(data) == 0 {
		return storedContent{}, errs.E(op, errs.Invalid, "the document is empty")
	}
	ct, err := checkContent(op, s.allowed, declared, data)
	if err != nil {
		return storedContent{}, err
	}
	sum := sha256.Sum256(data)
	s1 := sha1.Sum(data)
	sc := storedContent{Key: hex.EncodeToString(sum[:]), Size: int64(len(data)), SHA1: base64.StdEncoding.EncodeToString(s1[:]), ContentType: ct}
	if senderSize != nil && *senderSize != sc.Size {
		return storedContent{}, errs.E(op, errs.Invalid, "attachment.size does not match the data")
	}
	if senderHash != "" && senderHash != sc.SHA1 {
		return storedContent{}, errs.E(op, errs.Invalid, "attachment.hash (SHA-1, base64) does not match the data")
	}
	if err := s.storeObject(ctx, tx, sc.Key, data, ct); err != nil {
		return storedContent{}, err
	}
	return sc, nil
}

// storeObject writes data under key, holding the key's shared lock in tx. It writes even
// when an object is already there: identical bytes share one object (content addressing),
// but the object under the key is only right if nothing damaged it since, and a check that
// the size matches cannot tell. Put verifies data against key and replaces the object
// whole (never a partial one, see Blobs.Put), so an acknowledged upload is always
// readable, and a resend of the same bytes repairs an object that bit rot or a bad restore
// broke for every document naming it. Put also refreshes LastModified, so the collector,
// which re-checks the age under the exclusive lock, never counts a just-sent object as an
// old orphan. The price is one upload of the bytes per intake, duplicates included.
func (s *Service) storeObject(ctx context.Context, tx db.Querier, key string, data []byte, ct string) error {
	const op = "documents.Service.storeObject"
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))`, key); err != nil {
		return db.Map(op, err)
	}
	if err := s.blobs.Put(ctx, key, bytes.NewReader(data), int64(len(data)), ct); err != nil {
		return errs.E(op, err)
	}
	return nil
}

// linkBinary attaches the member's stored, unattached Binary to a document, or records
// that the transaction still owes it.
func (s *Service) linkBinary(ctx context.Context, tx db.Querier, member, docID, binaryID string, idx int) error {
	const op = "documents.Service.linkBinary"
	tag, err := tx.Exec(ctx, `UPDATE documents_contents SET document_id = $1, idx = $2
		WHERE binary_id = $3 AND member_id = $4 AND (document_id IS NULL OR document_id = $1)`, docID, idx, binaryID, member)
	if err != nil {
		return db.Map(op, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM documents_contents WHERE binary_id = $1)`, binaryID).Scan(&exists); err != nil {
		return db.Map(op, err)
	}
	if exists { // another member's, or already another document's
		e := errs.E(op, errs.Invalid, "attachment.url names a Binary this document cannot use")
		e.Path = "DocumentReference.content.attachment.url"
		return e
	}
	_, err = tx.Exec(ctx, `INSERT INTO documents_pending(binary_id, document_id, idx, member_id) VALUES ($1, $2, $3, $4)`, binaryID, docID, idx, member)
	return db.Map(op, err)
}

// replaceable reads the member's document r.Target, which the document by names in
// relatesTo[r.Idx] as the one it replaces, and reports whether by supersedes it now
// (true: it is current) or has already (false: a resend of by, or its update, which only
// lists it again). With lock, the target's metadata row stays locked (FOR UPDATE) until tx
// ends, so no other replacement of it can commit in between. A target that is not the
// member's is errs.Invalid. One that is not current, superseded by another document or
// entered in error (and not superseded by by), is errs.Conflict: an MHD replacement must
// replace the current version, so two current replacements of one document never arise.
func (s *Service) replaceable(ctx context.Context, tx db.Querier, member string, r replacement, by string, lock bool) (bool, error) {
	const op = "documents.Service.replaceable"
	q := `SELECT status, superseded_by FROM documents_metadata WHERE id = $1 AND member_id = $2`
	if lock {
		q += ` FOR UPDATE`
	}
	var status string
	var supersededBy *string
	err := tx.QueryRow(ctx, q, r.Target, member).Scan(&status, &supersededBy)
	path := "DocumentReference.relatesTo[" + itoa(r.Idx) + "].target"
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		e := errs.E(op, errs.Invalid, "relatesTo.target is not one of the sending member's documents")
		e.Path = path
		return false, e
	case err != nil:
		return false, db.Map(op, err)
	case supersededBy != nil && *supersededBy == by:
		return false, nil
	case status == "current" && supersededBy == nil:
		return true, nil
	}
	// The ids are the member's own documents' ids, no PHI.
	msg := "DocumentReference/" + r.Target + " is not current; replace the current document"
	switch {
	case supersededBy != nil:
		msg = "DocumentReference/" + r.Target + " is superseded by DocumentReference/" + *supersededBy + "; replace the current document"
	case status == "entered-in-error":
		msg = "DocumentReference/" + r.Target + " is entered-in-error and cannot be replaced"
	case status == "superseded":
		msg = "DocumentReference/" + r.Target + " is superseded; replace the current document"
	}
	e := errs.E(op, errs.Conflict, msg)
	e.Path = path
	return false, e
}

// supersede marks the member's document r.Target as replaced by by, in the metadata and
// in the stored DocumentReference (a new version with status superseded), and lists it
// among what by replaces. It decides under the target's row lock (replaceable): a target
// superseded by by already (a resend of by) keeps its status, no version is written, and
// by only lists it; one superseded by another document, or entered in error, is
// errs.Conflict and nothing is written. It returns the target's new version, or a zero
// Stored when it wrote none.
func (s *Service) supersede(ctx context.Context, tx db.Querier, member string, r replacement, by string) (store.Stored, error) {
	const op = "documents.Service.supersede"
	supersedes, err := s.replaceable(ctx, tx, member, r, by, true)
	if err != nil {
		return store.Stored{}, err
	}
	target := r.Target
	if _, err := tx.Exec(ctx, `UPDATE documents_metadata SET replaces = array_append(replaces, $1)
		WHERE id = $2 AND NOT ($1 = ANY (replaces))`, target, by); err != nil {
		return store.Stored{}, db.Map(op, err)
	}
	if !supersedes {
		return store.Stored{}, nil
	}
	if _, err := tx.Exec(ctx, `UPDATE documents_metadata SET status = 'superseded', superseded_by = $1 WHERE id = $2`, by, target); err != nil {
		return store.Stored{}, db.Map(op, err)
	}
	st, err := s.fhir.Get(ctx, tx, "DocumentReference", target)
	if err != nil {
		return store.Stored{}, err
	}
	top, err := jsonobj.Parse(st.Body)
	if err != nil {
		return store.Stored{}, errs.E(op, errs.Internal, err)
	}
	res, err := fhir.Parse(top.Set("status", jsonOf("superseded")).Encode())
	if err != nil {
		return store.Stored{}, errs.E(op, errs.Internal, err)
	}
	return s.fhir.Put(ctx, tx, store.Write{Resource: res, ID: target, MemberID: member, PatientID: st.PatientID, At: s.now()})
}

// metaRow is one documents_metadata row. Writing it again (an update of the
// DocumentReference) replaces its fields; earlier contents stay, as history (see
// markCurrent).
type metaRow struct {
	ID, MemberID, PatientID, PersonID, Origin string
	TypeSystem, TypeCode, Category, Author    string
	Date                                      *time.Time
	Status                                    string
	Security                                  []string
}

func (m *metaRow) fill(df docFields, meta fhir.Meta) {
	if df.Type != nil && len(df.Type.Coding) > 0 {
		m.TypeSystem, m.TypeCode = df.Type.Coding[0].System, df.Type.Coding[0].Code
	}
	if len(df.Category) > 0 && len(df.Category[0].Coding) > 0 {
		m.Category = df.Category[0].Coding[0].Code
	}
	if len(df.Author) > 0 {
		m.Author = df.Author[0].Reference
	}
	if t, err := time.Parse(time.RFC3339Nano, df.Date); err == nil {
		m.Date = &t
	}
	m.Security = []string{}
	for _, c := range meta.Security {
		m.Security = append(m.Security, c.Code)
	}
	if m.Status == "" {
		m.Status = "current"
	}
}

func insertMeta(ctx context.Context, tx db.Querier, m metaRow) error {
	var member, patient, person *string
	if m.MemberID != "" {
		member = &m.MemberID
	}
	if m.PatientID != "" {
		patient = &m.PatientID
	}
	if m.PersonID != "" {
		person = &m.PersonID
	}
	tag, err := tx.Exec(ctx, `INSERT INTO documents_metadata(id, member_id, patient_id, person_id, origin, type_system, type_code,
			category, author, doc_date, status, security)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (id) DO UPDATE SET patient_id = EXCLUDED.patient_id, type_system = EXCLUDED.type_system,
			type_code = EXCLUDED.type_code, category = EXCLUDED.category, author = EXCLUDED.author,
			doc_date = EXCLUDED.doc_date, status = EXCLUDED.status, security = EXCLUDED.security
		WHERE documents_metadata.origin = EXCLUDED.origin AND documents_metadata.member_id IS NOT DISTINCT FROM EXCLUDED.member_id`,
		m.ID, member, patient, person, m.Origin, m.TypeSystem, m.TypeCode, m.Category, m.Author, m.Date, m.Status, m.Security)
	if err != nil {
		return db.Map("documents.insertMeta", err)
	}
	if tag.RowsAffected() != 1 { // the id is another member's document
		return errs.E("documents.insertMeta", errs.NotFound, "resource not found")
	}
	return nil
}

func insertContent(ctx context.Context, tx db.Querier, docID, member, person string, sc storedContent) error {
	var doc, mem, per *string
	if docID != "" {
		doc = &docID
	}
	if member != "" {
		mem = &member
	}
	if person != "" {
		per = &person
	}
	_, err := tx.Exec(ctx, `INSERT INTO documents_contents(binary_id, document_id, idx, member_id, person_id, object_key, size, sha1, content_type)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, sc.BinaryID, doc, sc.Idx, mem, per, sc.Key, sc.Size, sc.SHA1, sc.ContentType)
	return db.Map("documents.insertContent", err)
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
