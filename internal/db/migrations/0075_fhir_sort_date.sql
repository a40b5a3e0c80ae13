-- The "date" search parameter's bounds of each resource, as Unix microseconds, kept on the
-- resource row (fhir/store computes them from the same index rows it writes to
-- fhir_idx_date): date_lo is the earliest lo, date_hi the latest hi, NULL without a date.
-- _sort=date / -date then reads the row instead of one fhir_idx_date lookup per candidate,
-- and a patient's resources of one type can be walked newest first through the index below
-- and stop at the page's end instead of sorting all of them (S3: a patient's labs).
ALTER TABLE fhir_resources ADD COLUMN date_lo bigint, ADD COLUMN date_hi bigint;

UPDATE fhir_resources r SET date_lo = d.lo, date_hi = d.hi
FROM (SELECT type, id, (extract(epoch FROM min(lo)) * 1000000)::bigint AS lo,
		(extract(epoch FROM max(hi)) * 1000000)::bigint AS hi
	FROM fhir_idx_date WHERE param = 'date' GROUP BY type, id) d
WHERE r.type = d.type AND r.id = d.id;

-- The expression is fhir/store's descending sort key (sortNoneDesc for no date), verbatim.
CREATE INDEX fhir_resources_patient_date ON fhir_resources
	(patient_id, type, (COALESCE(date_hi, -4611686018427387903)) DESC, id)
	WHERE patient_id IS NOT NULL AND NOT deleted;
