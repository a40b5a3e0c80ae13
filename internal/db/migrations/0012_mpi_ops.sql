-- Steward operations on the MPI: merges that can be undone exactly, cannot-link decisions
-- that automation honours, and the prior link state each history row needs for an unmerge.
CREATE TABLE mpi_merges (
	id         bigserial PRIMARY KEY,
	keep       uuid NOT NULL REFERENCES mpi_persons(id),
	lose       uuid NOT NULL REFERENCES mpi_persons(id),
	actor      text NOT NULL,
	at         timestamptz NOT NULL DEFAULT now(),
	undone_at  timestamptz,                          -- set by the unmerge
	undone_by  text,
	CHECK (keep <> lose)
);
CREATE INDEX ON mpi_merges (lose);

-- A steward's cannot-link decision: automation never puts source_id into person_id (or
-- into the person person_id was merged into).
CREATE TABLE mpi_cannot_link (
	source_id bigint NOT NULL REFERENCES mpi_source_records(id),
	person_id uuid NOT NULL REFERENCES mpi_persons(id),
	actor     text NOT NULL,
	at        timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (source_id, person_id)
);

ALTER TABLE mpi_link_history
	ADD COLUMN merge_id   bigint REFERENCES mpi_merges(id),
	ADD COLUMN prev_state text,                      -- link_state before this change
	ADD COLUMN prev_score double precision,          -- link_score before this change
	ADD COLUMN prev_rule  text;                      -- link_rule before this change
CREATE INDEX ON mpi_link_history (merge_id) WHERE merge_id IS NOT NULL;

-- On a database already past 0030 re-grant concord_app; on a fresh one 0030 grants later.
DO $$ BEGIN
	IF to_regproc('concord_grant_app') IS NOT NULL THEN PERFORM concord_grant_app(); END IF;
END $$;
