-- Portal staff: which OIDC logins are clinicians or privacy officers, and at which member.
-- A login reaches the staff area only through a row here, made by an operator; never by
-- matching an email or a name.
CREATE TABLE portal_staff (
	issuer       text NOT NULL,
	subject      text NOT NULL,
	role         text NOT NULL CHECK (role IN ('clinician', 'officer')),
	member_id    text NOT NULL REFERENCES directory_members(id),
	display_name text NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (issuer, subject)
);
CREATE INDEX ON portal_staff (member_id);
