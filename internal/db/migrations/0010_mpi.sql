-- The master patient index: persons (enterprise IDs), members' source patient records
-- linked to them, the history of every link change, and portal logins enrolled to persons.
CREATE TABLE mpi_persons (
	id           uuid PRIMARY KEY,
	created_at   timestamptz NOT NULL DEFAULT now(),
	retired_into uuid REFERENCES mpi_persons(id)      -- set when a merge retired this person
);

CREATE TABLE mpi_source_records (
	id           bigserial PRIMARY KEY,
	member_id    text NOT NULL REFERENCES directory_members(id),
	system       text NOT NULL,                       -- assigning authority of the MRN
	value        text NOT NULL,                       -- the MRN
	patient_id   text NOT NULL UNIQUE,                -- the member's FHIR Patient id
	person_id    uuid NOT NULL REFERENCES mpi_persons(id),
	link_state   text NOT NULL DEFAULT 'AUTO' CHECK (link_state IN ('AUTO', 'MANUAL')),
	link_score   double precision,
	link_rule    text NOT NULL DEFAULT '',
	model        text NOT NULL DEFAULT '',
	version      integer NOT NULL DEFAULT 1,
	demographics jsonb NOT NULL,                      -- as sent (normalized input of the matcher)
	updated_at   timestamptz NOT NULL DEFAULT now(),
	UNIQUE (system, value)
);
CREATE INDEX ON mpi_source_records (person_id);

CREATE TABLE mpi_link_history (
	id           bigserial PRIMARY KEY,
	source_id    bigint NOT NULL REFERENCES mpi_source_records(id),
	person_id    uuid,                                -- new person (NULL when unlinked)
	prev_person  uuid,
	action       text NOT NULL,                       -- create, link, relink, unlink, merge, unmerge
	state        text NOT NULL,
	score        double precision,
	evidence     jsonb,
	model        text NOT NULL DEFAULT '',
	actor        text NOT NULL DEFAULT 'system',
	at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON mpi_link_history (source_id, id);

-- A portal login reaches a person only through an explicit enrolment record.
CREATE TABLE mpi_logins (
	issuer      text NOT NULL,
	subject     text NOT NULL,
	person_id   uuid NOT NULL REFERENCES mpi_persons(id),
	enrolled_by text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (issuer, subject)
);
