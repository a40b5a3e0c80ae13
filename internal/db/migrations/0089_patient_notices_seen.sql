-- The portal shows a patient their notifications (consent_patient_notifications: today,
-- every break-the-glass access to their record) until they mark each one read. seen_at is
-- that mark; sent_at stays for an e-mail or SMS sender.
ALTER TABLE consent_patient_notifications ADD COLUMN seen_at timestamptz;
CREATE INDEX consent_patient_notifications_unseen ON consent_patient_notifications (person_id, created_at) WHERE seen_at IS NULL;
