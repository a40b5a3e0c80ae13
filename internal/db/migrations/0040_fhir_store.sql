-- Every member's FHIR resources, as that member sent them, with full version history.
-- The regional (person-level) view is composed at read time through the MPI.
CREATE TABLE fhir_resources (
	type         text NOT NULL,
	id           text NOT NULL,
	version      integer NOT NULL,
	member_id    text NOT NULL REFERENCES directory_members(id),
	patient_id   text,                        -- the member's Patient this resource belongs to (its compartment)
	last_updated timestamptz NOT NULL,
	deleted      boolean NOT NULL DEFAULT false,
	body         bytea NOT NULL,              -- the stored JSON, byte for byte
	PRIMARY KEY (type, id)
);
CREATE INDEX fhir_resources_patient ON fhir_resources (patient_id, type) WHERE patient_id IS NOT NULL AND NOT deleted;
CREATE INDEX fhir_resources_member ON fhir_resources (member_id, type);

CREATE TABLE fhir_history (
	type         text NOT NULL,
	id           text NOT NULL,
	version      integer NOT NULL,
	member_id    text NOT NULL,
	last_updated timestamptz NOT NULL,
	deleted      boolean NOT NULL,
	body         bytea NOT NULL,
	PRIMARY KEY (type, id, version)
);

-- Search index rows extracted from each current version (fhir.Extract). One table per
-- parameter kind keeps the indexes narrow.
CREATE TABLE fhir_idx_token (
	type text NOT NULL, id text NOT NULL, param text NOT NULL,
	system text NOT NULL DEFAULT '', code text NOT NULL
);
CREATE INDEX ON fhir_idx_token (type, param, code, system);
CREATE INDEX ON fhir_idx_token (type, id);

CREATE TABLE fhir_idx_date (
	type text NOT NULL, id text NOT NULL, param text NOT NULL,
	lo timestamptz NOT NULL, hi timestamptz NOT NULL     -- [lo, hi)
);
CREATE INDEX ON fhir_idx_date (type, param, lo);
CREATE INDEX ON fhir_idx_date (type, id);

CREATE TABLE fhir_idx_string (
	type text NOT NULL, id text NOT NULL, param text NOT NULL,
	value text NOT NULL                                   -- folded: lower case, no accents
);
CREATE INDEX ON fhir_idx_string (type, param, value text_pattern_ops);
CREATE INDEX ON fhir_idx_string (type, id);

CREATE TABLE fhir_idx_ref (
	type text NOT NULL, id text NOT NULL, param text NOT NULL,
	ref_type text NOT NULL, ref_id text NOT NULL
);
CREATE INDEX ON fhir_idx_ref (ref_type, ref_id, type, param);
CREATE INDEX ON fhir_idx_ref (type, id);

-- A member's idempotency keys (Idempotency-Key header, Bundle.identifier): a repeat
-- returns the first response and writes nothing.
CREATE TABLE fhir_idempotency (
	member_id  text NOT NULL,
	key        text NOT NULL,
	status     integer NOT NULL,
	location   text NOT NULL DEFAULT '',
	body       bytea NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (member_id, key)
);
