-- Consent directives (package consent). Every save inserts a new version and closes the
-- previous one (valid_to), so any decision can be re-evaluated as of a past time; nothing is
-- updated in place except valid_to. Saving a patient's directive bumps that person's
-- consent_versions row in the same transaction (cached decisions are keyed by it); saving a
-- regional default policy bumps consent_policy_version, which every cached decision also
-- carries. Table privileges for concord_app come from concord_grant_app() in 0030.

CREATE TABLE consent_versions (
	person_id  uuid PRIMARY KEY REFERENCES mpi_persons(id),
	version    bigint NOT NULL CHECK (version > 0),
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row, the version of the regional default policies.
CREATE TABLE consent_policy_version (
	id         boolean PRIMARY KEY DEFAULT true CHECK (id),
	version    bigint NOT NULL CHECK (version > 0),
	updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE consent_directives (
	directive_id text        NOT NULL,
	version      integer     NOT NULL CHECK (version > 0),
	person_id    uuid        REFERENCES mpi_persons(id),  -- NULL for a default policy
	kind         text        NOT NULL CHECK (kind IN ('patient', 'default')),
	status       text        NOT NULL,
	title        text        NOT NULL DEFAULT '',         -- default policies: name for explanations
	resource     jsonb       NOT NULL,                    -- the R4 Consent as consent.FormatConsent wrote it
	valid_from   timestamptz NOT NULL,                    -- transaction time this version became current
	valid_to     timestamptz,                             -- when the next version replaced it; NULL while current
	saved_by     text        NOT NULL,                    -- user or client ID, never a name
	PRIMARY KEY (directive_id, version),
	CHECK ((kind = 'patient') = (person_id IS NOT NULL)),
	CHECK (valid_to IS NULL OR valid_to >= valid_from)
);
CREATE UNIQUE INDEX consent_directives_current ON consent_directives (directive_id) WHERE valid_to IS NULL;
CREATE INDEX consent_directives_person ON consent_directives (person_id, valid_from);
CREATE INDEX consent_directives_defaults ON consent_directives (valid_from) WHERE person_id IS NULL;
