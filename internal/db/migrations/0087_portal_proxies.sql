-- Caregiver (proxy) access: a patient invites someone to see their record in the portal
-- (a parent, a spouse, a caregiver). The invitation is a one-time token of which only the
-- SHA-256 is kept; the caregiver accepts it signed in with their own login, which is then
-- recorded. Reads by a caregiver go through records as consent role "proxy" with purpose
-- PATRQT and are audited with the caregiver's login as the actor. The patient revokes at
-- any time; a revoked grant stops the caregiver's next request.
CREATE TABLE portal_proxies (
	id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	person_id         text NOT NULL,                      -- the patient the caregiver acts for
	patient_name      text NOT NULL DEFAULT '' CHECK (length(patient_name) <= 100),  -- shown to the caregiver
	granted_by        text NOT NULL,                      -- the patient's login, "iss|sub"
	caregiver_name    text NOT NULL CHECK (length(caregiver_name) BETWEEN 1 AND 100),  -- in the patient's words
	relationship      text NOT NULL CHECK (relationship IN ('parent', 'guardian', 'spouse', 'child', 'caregiver', 'other')),
	invite_hash       bytea UNIQUE CHECK (length(invite_hash) = 32),  -- NULL once accepted
	invite_expires_at timestamptz NOT NULL,
	proxy_login       text,                               -- the caregiver's login, "iss|sub", once accepted
	proxy_display     text NOT NULL DEFAULT '' CHECK (length(proxy_display) <= 100),
	created_at        timestamptz NOT NULL DEFAULT now(),
	accepted_at       timestamptz,
	revoked_at        timestamptz,
	CHECK ((proxy_login IS NULL) = (accepted_at IS NULL)),
	CHECK (invite_hash IS NULL OR proxy_login IS NULL)
);
CREATE INDEX ON portal_proxies (person_id);
CREATE INDEX ON portal_proxies (proxy_login) WHERE proxy_login IS NOT NULL;
CREATE UNIQUE INDEX ON portal_proxies (person_id, proxy_login) WHERE proxy_login IS NOT NULL AND revoked_at IS NULL;

-- concord_grant_app() grants UPDATE and DELETE on every table; secure messages are
-- append-only (0085), so the function now keeps their restriction itself: any migration
-- that calls it leaves concord_app only read_at and status to update there.
CREATE OR REPLACE FUNCTION concord_grant_app() RETURNS void
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
	r record;
BEGIN
	GRANT USAGE ON SCHEMA public TO concord_app;
	GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO concord_app;
	GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO concord_app;
	ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO concord_app;
	ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO concord_app;
	FOR r IN
		SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname LIKE 'audit\_%'
	LOOP
		EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM concord_app', r.relname);
	END LOOP;
	GRANT UPDATE ON audit_chain_head TO concord_app;
	IF to_regclass('schema_migrations') IS NOT NULL THEN
		REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_migrations FROM concord_app;
	END IF;
	IF to_regclass('portal_messages') IS NOT NULL THEN
		REVOKE UPDATE, DELETE, TRUNCATE ON portal_message_threads, portal_messages FROM concord_app;
		GRANT UPDATE (status) ON portal_message_threads TO concord_app;
		GRANT UPDATE (read_at) ON portal_messages TO concord_app;
	END IF;
	GRANT EXECUTE ON FUNCTION audit_ensure_partitions(timestamptz, integer) TO concord_app;
END
$$;

SELECT concord_grant_app();
