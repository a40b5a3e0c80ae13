-- Online matching reads each candidate's normalized comparison features (mpi/store
-- features.go, a compact versioned encoding written with the blocking keys) instead of
-- parsing and normalizing its FHIR demographics again. NULL: not computed (an unreadable
-- Patient, or a row written before this column); the matcher then falls back to the
-- demographics.
ALTER TABLE mpi_source_records ADD COLUMN features bytea;
