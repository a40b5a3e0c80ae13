-- Audit log (package audit): append-only, hash-chained, checkpointed, partitioned by month.
--
-- THE APPLICATION ROLE. This migration creates the role concord_app (NOLOGIN, if missing) and
-- the function concord_grant_app(). `concord serve` runs every connection as concord_app
-- (db.Options.AppRole), so concord_app must be able to use every table except the audit
-- tables, where it may only INSERT and SELECT (plus UPDATE of the one-row chain head).
--
--   * concord_grant_app() grants concord_app SELECT, INSERT, UPDATE, DELETE on all tables of
--     schema public and USAGE, SELECT, UPDATE on all sequences, sets the same as default
--     privileges for tables and sequences created later by the migrating role, and then
--     REVOKEs UPDATE, DELETE, TRUNCATE on every audit_* table (and partition) again. It also
--     takes write access on schema_migrations away from concord_app.
--   * A later migration that creates tables (consent_*, mpi_*, fhir_*, ...) is covered by the
--     default privileges, but should end with `SELECT concord_grant_app();` anyway: it is
--     idempotent and also covers tables created by another role or before this migration.
--
-- Partitions of audit_events are created by audit_ensure_partitions(from, months), a
-- SECURITY DEFINER function that concord_app may execute; it revokes UPDATE/DELETE/TRUNCATE
-- on each partition it creates. Old partitions are removed only by audit.Prune, which
-- refuses anything younger than 6 years and must run as the owning (migration) role.

DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'concord_app') THEN
		BEGIN
			CREATE ROLE concord_app NOLOGIN;
		EXCEPTION WHEN duplicate_object OR unique_violation THEN
			NULL; -- created concurrently by a migration of another database
		END;
	END IF;
END
$$;

-- One row per event. The columns are for searching; enc is the canonical binary encoding
-- that the chain hashes (hash = SHA-256(prev || seq as 8 bytes big-endian || enc)), and the
-- verifier checks that the columns say exactly what enc says.
CREATE TABLE audit_events (
	seq             bigint      NOT NULL,
	time            timestamptz NOT NULL,
	action          text        NOT NULL,
	outcome         text        NOT NULL,
	reason          text        NOT NULL,
	actor           text        NOT NULL,  -- user "iss|sub"
	client          text        NOT NULL,  -- OAuth client_id
	org             text        NOT NULL,  -- directory member id
	role            text        NOT NULL,
	purpose         text        NOT NULL,  -- v3-ActReason code
	patient         text        NOT NULL,  -- person ID
	resources       text[]      NOT NULL,  -- "Type/id"
	consent         text        NOT NULL,  -- deciding consent directive id
	consent_version bigint      NOT NULL,
	token_id        text        NOT NULL,  -- access token jti
	request_id      text        NOT NULL,
	source_ip       text        NOT NULL,
	query           text        NOT NULL,  -- query string, PHI values replaced by keyed HMACs
	break_glass     boolean     NOT NULL,
	share_link      boolean     NOT NULL,
	enc             bytea       NOT NULL,
	prev            bytea       NOT NULL,
	hash            bytea       NOT NULL
) PARTITION BY RANGE (time);
CREATE INDEX audit_events_seq ON audit_events (seq);
CREATE INDEX audit_events_patient ON audit_events (patient, time) WHERE patient <> '';
CREATE INDEX audit_events_actor ON audit_events (actor, time);
CREATE INDEX audit_events_org ON audit_events (org, time);

-- The chain head: the last appended seq and its hash. Appenders lock this row, so the chain
-- stays linear whether events come through the group committer or a caller's transaction.
CREATE TABLE audit_chain_head (
	id   boolean PRIMARY KEY DEFAULT true CHECK (id),
	seq  bigint NOT NULL,
	hash bytea  NOT NULL
);
INSERT INTO audit_chain_head (id, seq, hash) VALUES (true, 0, decode(repeat('00', 32), 'hex'));

-- Signed Merkle tree heads (RFC 6962) over events 1..size.
CREATE TABLE audit_checkpoints (
	id       bigint PRIMARY KEY,          -- 1, 2, 3, ... without gaps
	size     bigint NOT NULL,             -- events covered: seq 1..size
	root     bytea  NOT NULL,             -- RFC 6962 tree head over the event hashes
	head     bytea  NOT NULL,             -- the chain hash of event seq = size
	time     timestamptz NOT NULL,
	key_id   text   NOT NULL,
	sig      bytea  NOT NULL,             -- Ed25519 over the signed note (see audit.Checkpoint)
	frontier bytea  NOT NULL              -- compact Merkle range state, to continue from here
);

-- Where verification starts after Prune dropped old partitions: the last pruned seq, its
-- hash and the Merkle frontier at that point. Absent until the first prune.
CREATE TABLE audit_anchor (
	id        boolean PRIMARY KEY DEFAULT true CHECK (id),
	seq       bigint NOT NULL,
	hash      bytea  NOT NULL,
	frontier  bytea  NOT NULL,
	pruned_at timestamptz NOT NULL
);

-- audit_ensure_partitions creates the monthly partitions of audit_events for p_months
-- months starting with the month (UTC) of p_from, when missing.
CREATE FUNCTION audit_ensure_partitions(p_from timestamptz, p_months integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
	m    timestamp;
	name text;
BEGIN
	PERFORM pg_advisory_xact_lock(7311030);
	FOR i IN 0 .. p_months - 1 LOOP
		m := date_trunc('month', p_from AT TIME ZONE 'UTC') + make_interval(months => i);
		name := 'audit_events_' || to_char(m, 'YYYY_MM');
		IF to_regclass(name) IS NULL THEN
			EXECUTE format('CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
				name, m AT TIME ZONE 'UTC', (m + interval '1 month') AT TIME ZONE 'UTC');
			EXECUTE format('GRANT SELECT, INSERT ON %I TO concord_app', name);
			EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM concord_app', name);
		END IF;
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION audit_ensure_partitions(timestamptz, integer) FROM PUBLIC;

-- concord_grant_app: see the top of this file.
CREATE FUNCTION concord_grant_app() RETURNS void
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
	GRANT EXECUTE ON FUNCTION audit_ensure_partitions(timestamptz, integer) TO concord_app;
END
$$;

SELECT audit_ensure_partitions(now(), 2);
SELECT concord_grant_app();
