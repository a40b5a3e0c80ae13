-- Token index rows carry their resource's compartment (patient_id, NULL for a resource in
-- none) and last_updated (fhir/store), as string rows carry last_updated (0096), so that a
-- patient's search with a token clause in the default order (_lastUpdated descending) walks
-- that patient's rows with the code, newest change first, off the index below alone and
-- checks the other clauses row by row until the page is full. Walked through
-- fhir_resources_patient_updated instead, it read all of a patient's resources of the type
-- and probed the token index for each (S4 by type: 516 rows read for 64 matches). Index rows
-- are rewritten with every version (which is also the only way a resource changes
-- compartment) and removed on delete, so the copies never go stale; the search still
-- re-checks them against fhir_resources (tokenWalk).
--
-- The table is rebuilt rather than altered: ADD COLUMN then an UPDATE of every row held an
-- exclusive lock on fhir_idx_token for minutes (4M rows: UPDATE 141 s, index 9 s) and left
-- the table twice its size in dead rows; a copy takes ~35 s and leaves none. Writers are
-- shut out for the copy (SHARE: their rows would be lost with the old table); readers only
-- by the swap and ANALYZE at the end (about a second for 4M rows). Nothing but its own
-- indexes and statistics depends on fhir_idx_token (no view, foreign key, trigger, policy or
-- function), and the three index names, the statistics object (0092) and the grants are the
-- same as before. Run VACUUM (ANALYZE) afterwards (README, Upgrading): until the visibility
-- map is set, the index-only walks read the table too.
LOCK TABLE fhir_idx_token IN SHARE MODE;

CREATE TABLE fhir_idx_token_new (
	type text NOT NULL, id text NOT NULL, param text NOT NULL,
	system text NOT NULL DEFAULT '', code text NOT NULL,
	patient_id text, last_updated timestamptz NOT NULL
);
-- A row without its resource, or of a deleted one, matches nothing: it is not copied.
INSERT INTO fhir_idx_token_new (type, id, param, system, code, patient_id, last_updated)
	SELECT x.type, x.id, x.param, x.system, x.code, r.patient_id, r.last_updated
	FROM fhir_idx_token x JOIN fhir_resources r ON r.type = x.type AND r.id = x.id
	WHERE NOT r.deleted;

-- Built under temporary names, renamed at the swap (index and statistics names share the
-- schema's namespace with the old table's until it is dropped).
CREATE INDEX fhir_idx_token_new_tpcs ON fhir_idx_token_new (type, param, code, system);
CREATE INDEX fhir_idx_token_new_row ON fhir_idx_token_new (type, id, param, code, system); -- 0076
-- code under "C", as fhir/store compares it in a compartment search (a per-row check must
-- not be able to use the (type, param, code, system) index, which has the database's
-- collation; see fhir/store values). Partial, so that no check that names no patient can use
-- it either. system is there to be checked without reading the table (sys|code, |code).
CREATE INDEX fhir_idx_token_new_patient ON fhir_idx_token_new
	(patient_id, type, param, code COLLATE "C", last_updated DESC, id) INCLUDE (system)
	WHERE patient_id IS NOT NULL;
CREATE STATISTICS fhir_idx_token_new_stats (mcv, dependencies) ON type, param, code FROM fhir_idx_token_new; -- 0092

DROP TABLE fhir_idx_token;
ALTER TABLE fhir_idx_token_new RENAME TO fhir_idx_token;
ALTER INDEX fhir_idx_token_new_tpcs RENAME TO fhir_idx_token_type_param_code_system_idx;
ALTER INDEX fhir_idx_token_new_row RENAME TO fhir_idx_token_row;
ALTER INDEX fhir_idx_token_new_patient RENAME TO fhir_idx_token_patient;
ALTER STATISTICS fhir_idx_token_new_stats RENAME TO fhir_idx_token_stats;

SELECT concord_grant_app();
ANALYZE fhir_idx_token;
