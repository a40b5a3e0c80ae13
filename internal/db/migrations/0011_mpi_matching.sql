-- Online matching: blocking keys shared by every replica, and the steward's review queue.
CREATE TABLE mpi_block_keys (
	hash      bigint NOT NULL,        -- mpi.BlockKey.Hash (coarse)
	fine      bigint NOT NULL,        -- mpi.BlockKey.Fine (used when the coarse block is over the cap)
	source_id bigint NOT NULL REFERENCES mpi_source_records(id) ON DELETE CASCADE
);
CREATE INDEX mpi_block_keys_hash ON mpi_block_keys (hash);
CREATE INDEX mpi_block_keys_fine ON mpi_block_keys (fine);
CREATE INDEX mpi_block_keys_source ON mpi_block_keys (source_id);

CREATE TABLE mpi_review_items (
	id          bigserial PRIMARY KEY,
	source_id   bigint NOT NULL REFERENCES mpi_source_records(id),
	candidate   uuid NOT NULL REFERENCES mpi_persons(id),   -- the best-scoring other person
	runner_up   uuid REFERENCES mpi_persons(id),
	kind        text NOT NULL CHECK (kind IN ('review', 'possible-duplicate')),
	score       double precision NOT NULL,
	evidence    jsonb NOT NULL,
	guards      text NOT NULL DEFAULT '',
	model       text NOT NULL,
	status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'linked', 'kept-apart')),
	created_at  timestamptz NOT NULL DEFAULT now(),
	resolved_at timestamptz,
	resolved_by text
);
CREATE INDEX mpi_review_open ON mpi_review_items (created_at) WHERE status = 'open';
