-- Disputed accesses: a patient reports an entry of their access log they do not recognise;
-- a privacy officer reviews it and closes it with a resolution the patient then sees. The
-- entry is named by its audit event's seq (the chain's own order), never copied. The
-- patient's reason and the officer's resolution are their own words: never logged.
CREATE TABLE portal_access_disputes (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	person_id   text NOT NULL,
	audit_seq   bigint NOT NULL,
	reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
	created_by  text NOT NULL,          -- the patient's login, "iss|sub"
	created_at  timestamptz NOT NULL DEFAULT now(),
	status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
	closed_at   timestamptz,
	closed_by   text,
	resolution  text CHECK (length(resolution) <= 1000),
	UNIQUE (person_id, audit_seq),
	CHECK ((status = 'closed') = (closed_at IS NOT NULL AND resolution IS NOT NULL))
);
CREATE INDEX ON portal_access_disputes (created_at) WHERE status = 'open';

SELECT concord_grant_app();
