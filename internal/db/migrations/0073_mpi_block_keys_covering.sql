-- Online matching reads only (hash or fine) -> source_id from mpi_block_keys: with the
-- source id in the index, counting a block and fetching its records are index-only scans
-- instead of one heap page per entry. Identifier keys have no refined key (fine = 0), so
-- the fine index leaves them out.
DROP INDEX mpi_block_keys_hash;
CREATE INDEX mpi_block_keys_hash ON mpi_block_keys (hash) INCLUDE (source_id);
DROP INDEX mpi_block_keys_fine;
CREATE INDEX mpi_block_keys_fine ON mpi_block_keys (fine) INCLUDE (source_id) WHERE fine <> 0;
