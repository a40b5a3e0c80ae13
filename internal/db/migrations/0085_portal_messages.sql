-- Portal secure messages: a thread between one patient (person) and one member organization
-- (the clinic), and its messages. Subjects and bodies are the patient's or clinician's own
-- words (PHI): never logged. Messages are append-only: concord_app may INSERT and SELECT,
-- and UPDATE only a thread's status and a message's read_at; triggers refuse any other
-- UPDATE and every DELETE, so a later concord_grant_app() that grants UPDATE/DELETE on all
-- tables again cannot make messages editable.
CREATE TABLE portal_message_threads (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	person_id  text NOT NULL,
	member_id  text NOT NULL,
	subject    text NOT NULL CHECK (length(subject) BETWEEN 1 AND 120),
	status     text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON portal_message_threads (person_id, created_at DESC);
CREATE INDEX ON portal_message_threads (member_id, created_at DESC);

CREATE TABLE portal_messages (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	thread_id    bigint NOT NULL REFERENCES portal_message_threads (id),
	author_kind  text NOT NULL CHECK (author_kind IN ('patient', 'clinician')),
	author_login text NOT NULL,  -- "iss|sub"
	author_name  text NOT NULL DEFAULT '' CHECK (length(author_name) <= 200),
	body         text NOT NULL CHECK (length(body) BETWEEN 1 AND 4000),
	created_at   timestamptz NOT NULL DEFAULT now(),
	read_at      timestamptz  -- when the other side first opened it
);
CREATE INDEX ON portal_messages (thread_id, id);

CREATE FUNCTION portal_messages_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
	END IF;
	IF TG_TABLE_NAME = 'portal_messages' THEN
		IF (NEW.id, NEW.thread_id, NEW.author_kind, NEW.author_login, NEW.author_name, NEW.body, NEW.created_at)
			IS DISTINCT FROM (OLD.id, OLD.thread_id, OLD.author_kind, OLD.author_login, OLD.author_name, OLD.body, OLD.created_at) THEN
			RAISE EXCEPTION 'only read_at of a portal message may change' USING ERRCODE = 'insufficient_privilege';
		END IF;
	ELSIF (NEW.id, NEW.person_id, NEW.member_id, NEW.subject, NEW.created_at)
		IS DISTINCT FROM (OLD.id, OLD.person_id, OLD.member_id, OLD.subject, OLD.created_at) THEN
		RAISE EXCEPTION 'only status of a portal message thread may change' USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER portal_messages_append_only BEFORE UPDATE OR DELETE ON portal_messages
	FOR EACH ROW EXECUTE FUNCTION portal_messages_append_only();
CREATE TRIGGER portal_message_threads_append_only BEFORE UPDATE OR DELETE ON portal_message_threads
	FOR EACH ROW EXECUTE FUNCTION portal_messages_append_only();

SELECT concord_grant_app();
REVOKE UPDATE, DELETE, TRUNCATE ON portal_message_threads, portal_messages FROM concord_app;
GRANT UPDATE (status) ON portal_message_threads TO concord_app;
GRANT UPDATE (read_at) ON portal_messages TO concord_app;
