-- A client system's token generation: every access token names the generation of its client
-- at issue (claim gen), and every verification (directory.Tokens.Verify, on each FHIR
-- request) reads the client's row by its primary key and refuses the token unless the client
-- is still registered, not disabled, of the member the token names, at the same generation,
-- and still registered for the token's scopes and purpose. So disabling a client, cutting
-- its scopes or purposes, changing its keys or moving it ends its outstanding tokens for the
-- next request, not up to 300 s later.
--
-- The generation is bumped here, not by the application, because operators change
-- registrations with plain SQL (UPDATE directory_clients SET disabled_at = now() ...):
-- any UPDATE that changes the row takes a new value from one sequence. Values are never
-- reused, even across clients, so a client deleted and registered again under the same ID
-- does not bring its old tokens back, and re-enabling a disabled client does not either.
-- A member has no disabled state of its own: a whole member is cut off by disabling (or
-- deleting) all its clients, each of which gets a new generation; a member cannot be
-- deleted while it has clients (foreign key).
CREATE SEQUENCE directory_client_generation;
ALTER TABLE directory_clients ADD COLUMN token_generation bigint NOT NULL
	DEFAULT nextval('directory_client_generation') CHECK (token_generation > 0);
ALTER SEQUENCE directory_client_generation OWNED BY directory_clients.token_generation;

CREATE FUNCTION directory_clients_next_generation() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
	NEW.token_generation := nextval('directory_client_generation');
	RETURN NEW;
END
$$;
CREATE TRIGGER directory_clients_token_generation BEFORE UPDATE ON directory_clients
	FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION directory_clients_next_generation();

SELECT concord_grant_app();
