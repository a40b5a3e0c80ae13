-- A client's token generation (migration 0101) becomes a random UUID that only the database
-- assigns, so that a value never comes back. Under 0101 it did: the generation was taken
-- from a sequence by a BEFORE UPDATE trigger only, so
--   * an INSERT kept a supplied value: a client deleted and inserted again under its ID,
--     with new keys and token_generation = <old value>, made its old tokens verify again;
--   * TRUNCATE ... RESTART IDENTITY reset the sequence (it was OWNED BY the column), and
--     reloaded rows took 1, 2, 3, ... again;
--   * setval() on the sequence (concord_app holds UPDATE on every sequence, 0030) rewound
--     it, so the next change handed out an old value again;
--   * under session_replication_role = replica (pg_restore --disable-triggers) the
--     trigger did not fire, so a change left the generation, and the tokens, as they were.
--
-- Now:
--   * token_generation is a uuid from gen_random_uuid() (122 random bits): there is no
--     counter to reset or rewind, and the sequence is gone (dropped with the old column);
--   * the trigger fires BEFORE INSERT OR UPDATE and assigns a new value on every INSERT and
--     on every UPDATE that changes the row in any column, token_generation included: a
--     supplied value is never kept (an UPDATE that only writes the generation gets a new
--     one, which is the way to end a client's tokens without changing anything else). An
--     UPDATE that changes nothing keeps the value, so tokens stay valid;
--   * the trigger is ENABLE ALWAYS, so it fires under session_replication_role = replica
--     too. Only the table's owner can switch it off (ALTER TABLE ... DISABLE TRIGGER).
--     Triggers fire in name order: this one must stay the last BEFORE trigger on the table,
--     so that it sees the row as it will be stored.
--
-- Replacing the column gives every client a new generation, so every access token issued
-- before this migration is refused (Verify also refuses a gen claim that is not a UUID
-- string, as those tokens' integer one): clients simply ask for a new token, and tokens
-- live at most 300 s anyway.
DROP TRIGGER directory_clients_token_generation ON directory_clients;
DROP FUNCTION directory_clients_next_generation();
-- Drops the column's CHECK and the sequence OWNED BY it too.
ALTER TABLE directory_clients DROP COLUMN token_generation;
-- The default is volatile, so each existing row gets its own value.
ALTER TABLE directory_clients ADD COLUMN token_generation uuid NOT NULL DEFAULT gen_random_uuid();

CREATE FUNCTION directory_clients_new_generation() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF TG_OP = 'UPDATE' AND NEW IS NOT DISTINCT FROM OLD THEN
		RETURN NEW; -- nothing changed, not even the generation
	END IF;
	NEW.token_generation := gen_random_uuid();
	RETURN NEW;
END
$$;
CREATE TRIGGER directory_clients_token_generation BEFORE INSERT OR UPDATE ON directory_clients
	FOR EACH ROW EXECUTE FUNCTION directory_clients_new_generation();
ALTER TABLE directory_clients ENABLE ALWAYS TRIGGER directory_clients_token_generation;

SELECT concord_grant_app();
