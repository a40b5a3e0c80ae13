-- Break-the-glass (package records, BreakGlassStore). A declaration lets one caller (a
-- member's system, or a user at that member) read one person's record for purpose BTG
-- until expires_at, whatever their directives say, except a dissent that names BTG.
-- Every declaration opens a review task for the privacy officers and queues a
-- notification for the patient, in the same transaction. reason_text is the clinician's
-- own words: it is kept here for the review and never logged.

CREATE TABLE consent_break_glass (
	id          uuid        PRIMARY KEY,
	person_id   uuid        NOT NULL REFERENCES mpi_persons(id),
	member_id   text        NOT NULL,
	client_id   text        NOT NULL DEFAULT '',  -- OAuth client of the declaring system
	actor       text        NOT NULL DEFAULT '',  -- user "iss|sub"; '' for a system
	reason_code text        NOT NULL,
	reason_text text        NOT NULL CHECK (length(reason_text) BETWEEN 1 AND 1000),
	declared_at timestamptz NOT NULL,
	expires_at  timestamptz NOT NULL CHECK (expires_at > declared_at AND expires_at <= declared_at + interval '60 minutes'),
	request_id  text        NOT NULL DEFAULT ''
);
CREATE INDEX consent_break_glass_caller ON consent_break_glass (person_id, member_id, client_id, actor, expires_at);

-- Officer review queue: one task per declaration (kind 'break-glass').
CREATE TABLE consent_review_tasks (
	id             bigserial   PRIMARY KEY,
	kind           text        NOT NULL CHECK (kind IN ('break-glass')),
	break_glass_id uuid        REFERENCES consent_break_glass(id),
	person_id      uuid        NOT NULL REFERENCES mpi_persons(id),
	status         text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
	created_at     timestamptz NOT NULL DEFAULT now(),
	closed_at      timestamptz,
	closed_by      text,
	CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
CREATE INDEX consent_review_tasks_open ON consent_review_tasks (created_at) WHERE status = 'open';

-- Patient notifications waiting to be sent (portal and e-mail senders read this queue).
CREATE TABLE consent_patient_notifications (
	id             bigserial   PRIMARY KEY,
	person_id      uuid        NOT NULL REFERENCES mpi_persons(id),
	kind           text        NOT NULL CHECK (kind IN ('break-glass')),
	break_glass_id uuid        REFERENCES consent_break_glass(id),
	created_at     timestamptz NOT NULL DEFAULT now(),
	sent_at        timestamptz
);
CREATE INDEX consent_patient_notifications_unsent ON consent_patient_notifications (created_at) WHERE sent_at IS NULL;

-- On a database migrated before 0030 this runs first and 0030 grants; on one migrated
-- after, grant here (concord_grant_app is idempotent).
DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'concord_grant_app') THEN
		PERFORM concord_grant_app();
	END IF;
END
$$;
