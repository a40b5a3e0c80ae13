-- The SHA-256 of the request each idempotency key (fhir_idempotency) was first used with,
-- so a key reused with a different request is refused (422) instead of answered with the
-- first reply while the new data is silently dropped. Keys remembered before this
-- migration have no row here and replay as before.
CREATE TABLE exchange_idempotency_requests (
	member_id      text NOT NULL,
	key            text NOT NULL,
	request_sha256 bytea NOT NULL CHECK (length(request_sha256) = 32),
	PRIMARY KEY (member_id, key)
);
SELECT concord_grant_app();
