-- The SHA-256 of the Patient JSON that HL7 v2 intake last wrote for each of a member's
-- Patients. A message whose PID maps to the same JSON (every ORU of a known patient)
-- does not write a new Patient version or re-run MPI matching: nothing changed.
CREATE TABLE exchange_hl7_patients (
	patient_id  text PRIMARY KEY,
	sha256      bytea NOT NULL
);
SELECT concord_grant_app();
