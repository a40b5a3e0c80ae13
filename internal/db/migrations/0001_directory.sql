-- Member organizations, their assigning authorities and their registered client systems.
CREATE TABLE directory_members (
	id          text PRIMARY KEY,            -- short stable id, e.g. "riverside"
	name        text NOT NULL,
	system      text NOT NULL UNIQUE,        -- the member's MRN assigning authority, e.g. urn:oid:2.16.840.1.113883.3.1
	created_at  timestamptz NOT NULL DEFAULT now()
);

-- Further identifier namespaces a member may assert (v2 CX-4, FHIR Identifier.system), and
-- the MSH-3/MSH-4 values its HL7 v2 feeds use.
CREATE TABLE directory_authorities (
	system      text PRIMARY KEY,
	member_id   text NOT NULL REFERENCES directory_members(id)
);

CREATE TABLE directory_clients (
	client_id   text PRIMARY KEY,
	member_id   text NOT NULL REFERENCES directory_members(id),
	jwks        jsonb NOT NULL,               -- public keys only
	scopes      text[] NOT NULL,
	purposes    text[] NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	disabled_at timestamptz
);
CREATE INDEX ON directory_clients (member_id);

-- Assertion jti values seen per client, kept until the assertion would have expired.
CREATE TABLE directory_assertion_jtis (
	client_id   text NOT NULL,
	jti         text NOT NULL,
	expires_at  timestamptz NOT NULL,
	PRIMARY KEY (client_id, jti)
);
CREATE INDEX ON directory_assertion_jtis (expires_at);
