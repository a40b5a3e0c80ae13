-- Portal share links: a patient lets whoever holds a link read their lab results (all of
-- them, or one) until it expires or they revoke it. Only the SHA-256 of the link's token is
-- kept, so neither a database dump nor an operator can open a link. Reads through a link go
-- through records (consent role "share", purpose PATRQT) and are audited with share_link.
CREATE TABLE portal_share_links (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	person_id    text NOT NULL,
	token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
	scope        text NOT NULL CHECK (scope IN ('labs', 'lab')),
	resource_id  text,  -- the one Observation of scope 'lab'
	note         text NOT NULL DEFAULT '' CHECK (length(note) <= 200),  -- the patient's own words: never logged
	first_name   text NOT NULL DEFAULT '' CHECK (length(first_name) <= 100),  -- shown on the shared page
	created_by   text NOT NULL,  -- the patient's login, "iss|sub"
	created_at   timestamptz NOT NULL DEFAULT now(),
	expires_at   timestamptz NOT NULL,
	revoked_at   timestamptz,
	use_count    integer NOT NULL DEFAULT 0,
	last_used_at timestamptz,
	CHECK ((scope = 'lab') = (resource_id IS NOT NULL)),
	CHECK (expires_at > created_at AND expires_at <= created_at + interval '7 days')
);
CREATE INDEX ON portal_share_links (person_id, expires_at);

SELECT concord_grant_app();
