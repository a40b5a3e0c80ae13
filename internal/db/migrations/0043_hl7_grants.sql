-- The HL7 v2 tables of 0041 and 0042 for the application role (concord serve runs as
-- concord_app; see 0030). Default privileges already cover them; this is explicit and
-- idempotent, as 0030 asks of every migration that creates tables.
SELECT concord_grant_app();
