-- A patient's resources of one type, newest change first: a compartment search in the
-- default order (_lastUpdated descending, then id) walks this index and stops at the end
-- of the page instead of reading and sorting every one of the patient's resources of that
-- type (S4: one patient's 708 clinical notes, 50 a page). fhir/store sorts _lastUpdated on
-- the column itself so that this index matches the ORDER BY; the same shape as
-- fhir_resources_patient_date (0075) for _sort=-date.
CREATE INDEX fhir_resources_patient_updated ON fhir_resources
	(patient_id, type, last_updated DESC, id)
	WHERE patient_id IS NOT NULL AND NOT deleted;

-- fhir_resources_patient (patient_id, type) is a prefix of the index above, with the same
-- predicate: it serves nothing the new one does not, and costs every write.
DROP INDEX fhir_resources_patient;
