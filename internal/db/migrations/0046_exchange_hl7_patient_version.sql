-- The Patient version HL7 v2 intake wrote next to its hash: intake skips the Patient
-- write only while the Patient is live at that version, so a FHIR delete or update since
-- makes the next message write it again instead of pointing at a gone or changed
-- Patient. Rows from before have no version and are rewritten once.
ALTER TABLE exchange_hl7_patients ADD COLUMN version integer;
