-- Documents: the bytes live in S3 under their SHA-256 (documents.Blobs); these tables hold
-- what points at them. The object is always written before the row that names it, in the
-- transaction that stores the DocumentReference, so a crash leaves at most an orphan object
-- (removed by documents.Service.CollectGarbage), never a row naming a missing object.

-- One row per document: a DocumentReference a member sent, or a patient's own upload.
CREATE TABLE documents_metadata (
	id           text PRIMARY KEY,                 -- the DocumentReference id
	member_id    text REFERENCES directory_members(id), -- the sending member; NULL for a patient upload
	patient_id   text,                             -- the member's Patient (its compartment)
	person_id    text,                             -- the uploading person, for patient uploads
	origin       text NOT NULL CHECK (origin IN ('clinical', 'patient')),
	type_system  text NOT NULL DEFAULT '',
	type_code    text NOT NULL DEFAULT '',          -- LOINC document type
	category     text NOT NULL DEFAULT '',
	author       text NOT NULL DEFAULT '',          -- reference, never a name
	doc_date     timestamptz,
	status       text NOT NULL CHECK (status IN ('current', 'superseded', 'entered-in-error')),
	security     text[] NOT NULL DEFAULT '{}',      -- meta.security codes
	replaces     text[] NOT NULL DEFAULT '{}',      -- relatesTo replaces targets
	superseded_by text,
	created_at   timestamptz NOT NULL DEFAULT now(),
	CHECK ((origin = 'clinical') = (member_id IS NOT NULL)),
	CHECK ((origin = 'patient') = (person_id IS NOT NULL))
);
CREATE INDEX ON documents_metadata (patient_id) WHERE patient_id IS NOT NULL;
CREATE INDEX ON documents_metadata (person_id) WHERE person_id IS NOT NULL;

-- One row per stored content: a DocumentReference.content[i] with bytes, or a Binary.
-- binary_id is the id in [base]/Binary/{id}. Identical bytes share one object_key.
CREATE TABLE documents_contents (
	binary_id    text PRIMARY KEY,
	document_id  text REFERENCES documents_metadata(id), -- NULL: a Binary no DocumentReference names yet
	idx          integer NOT NULL DEFAULT 0,        -- position in DocumentReference.content
	member_id    text REFERENCES directory_members(id),
	person_id    text,
	object_key   text NOT NULL CHECK (object_key ~ '^[0-9a-f]{64}$'),
	size         bigint NOT NULL CHECK (size >= 0),
	sha1         text NOT NULL,                     -- base64 SHA-1 (FHIR R4 Attachment.hash)
	content_type text NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON documents_contents (object_key);
CREATE INDEX ON documents_contents (document_id);

-- A DocumentReference that names a Binary of the same transaction that is not stored yet
-- (bundle entries in any order). The Binary's intake resolves the row; a row left at
-- COMMIT fails the transaction (foreign-key violation: the attachment points at nothing).
CREATE TABLE documents_pending (
	binary_id   text PRIMARY KEY,
	document_id text NOT NULL REFERENCES documents_metadata(id),
	idx         integer NOT NULL,
	member_id   text NOT NULL
);

CREATE FUNCTION documents_pending_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM documents_pending WHERE binary_id = NEW.binary_id) THEN
		RAISE EXCEPTION 'DocumentReference names Binary that was not stored' USING ERRCODE = '23503';
	END IF;
	RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER documents_pending_resolved AFTER INSERT ON documents_pending
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION documents_pending_check();

-- Idempotency keys of uploads through documents.Service (patient uploads, direct calls).
CREATE TABLE documents_idempotency (
	scope       text NOT NULL,                      -- "member:<id>" or "person:<id>"
	key         text NOT NULL,
	document_id text NOT NULL REFERENCES documents_metadata(id),
	created_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (scope, key)
);
