-- Audit anchor (package audit): signed, and written only by the owning role.
--
-- audit_anchor says where the chain starts after audit.Prune dropped old partitions. Until
-- now Verify trusted the row as it stood, so anyone able to write it could delete the oldest
-- events, however young, and write an anchor computed from their public chain hashes. Prune
-- now signs a statement with the checkpoint key (see audit.anchor): the last pruned seq, its
-- chain hash, the Merkle root over events 1..seq, the latest time among the pruned events and
-- the time of pruning. Verify rejects an anchor whose statement does not verify, or whose
-- events were younger than the six-year minimum retention when pruned.
--
-- Existing rows cannot be signed here (SQL has no key) and are not trusted for being there:
-- the new columns stay NULL, and Verify accepts such an anchor only when a checkpoint of its
-- size, signed at least six years before the prune, has its Merkle root and chain hash.
-- Otherwise `concord audit verify` reports bad-anchor. The next Prune re-checks the old anchor
-- the same way before it writes a signed one.
ALTER TABLE audit_anchor
	ADD COLUMN root   bytea,        -- RFC 6962 tree head over the event hashes 1..seq
	ADD COLUMN newest timestamptz,  -- the latest event time among the pruned events
	ADD COLUMN key_id text,         -- audit.KeyID of the signing key
	ADD COLUMN sig    bytea,        -- Ed25519 over the signed statement
	ADD CONSTRAINT audit_anchor_signed_whole CHECK (
		(root IS NULL AND newest IS NULL AND key_id IS NULL AND sig IS NULL) OR
		(root IS NOT NULL AND newest IS NOT NULL AND key_id IS NOT NULL AND sig IS NOT NULL));

-- Prune runs as the owning (migrating) role; the application never writes the anchor. Take
-- INSERT away from concord_app as well as UPDATE, DELETE and TRUNCATE, and keep it away
-- when later migrations call concord_grant_app(), which grants INSERT on every table. The
-- function is otherwise as 0087 left it.
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
	REVOKE INSERT ON audit_anchor FROM concord_app;
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
