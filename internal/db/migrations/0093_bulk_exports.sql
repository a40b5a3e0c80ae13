-- Bulk Data exports (Group/{id}/$export) a member system has kicked off. A job holds what
-- was asked and the roster as it stood at kick-off, never exported data: each NDJSON file
-- is composed when it is downloaded, so consent is decided (and the disclosure audited)
-- per patient at that moment, and a revocation after kick-off keeps the patient out of
-- every file fetched after it. Jobs expire; expired rows are deleted by later kick-offs.
CREATE TABLE bulk_exports (
	id               text PRIMARY KEY,
	member_id        text NOT NULL,
	client_id        text NOT NULL,
	group_id         text NOT NULL,
	request          text NOT NULL,
	types            text[] NOT NULL,
	since            timestamptz,
	transaction_time timestamptz NOT NULL,
	patients         text[] NOT NULL,
	expires          timestamptz NOT NULL
);
CREATE INDEX bulk_exports_expires ON bulk_exports (expires);
