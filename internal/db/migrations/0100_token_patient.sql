-- Token index rows carry their resource's compartment (patient_id, NULL for a resource in
-- none) and last_updated (fhir/store), as string rows carry last_updated (0096), so that a
-- patient's search with a token clause in the default order (_lastUpdated descending) walks
-- that patient's rows with the code, newest change first, off the index below alone and
-- checks the other clauses row by row until the page is full. Walked through
-- fhir_resources_patient_updated instead, it read all of a patient's resources of the type
-- and probed the token index for each (S4 by type: 516 rows read for 64 matches). Index rows
-- are rewritten with every version (which is also the only way a resource changes
-- compartment) and removed on delete, so the copies never go stale.
ALTER TABLE fhir_idx_token ADD COLUMN patient_id text, ADD COLUMN last_updated timestamptz;
UPDATE fhir_idx_token x SET patient_id = r.patient_id, last_updated = r.last_updated
	FROM fhir_resources r WHERE r.type = x.type AND r.id = x.id AND NOT r.deleted;
-- A row without its resource, or of a deleted one, matches nothing.
DELETE FROM fhir_idx_token WHERE last_updated IS NULL;
ALTER TABLE fhir_idx_token ALTER COLUMN last_updated SET NOT NULL;

-- code under "C", as fhir/store compares it in a compartment search (a per-row check must
-- not be able to use the (type, param, code, system) index, which has the database's
-- collation; see fhir/store values). Partial, so that no check that names no patient can use
-- it either. system is there to be checked without reading the table (sys|code, |code).
CREATE INDEX fhir_idx_token_patient ON fhir_idx_token
	(patient_id, type, param, code COLLATE "C", last_updated DESC, id) INCLUDE (system)
	WHERE patient_id IS NOT NULL;
ANALYZE fhir_idx_token;

SELECT concord_grant_app();
