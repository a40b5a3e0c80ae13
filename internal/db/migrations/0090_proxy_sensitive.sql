-- A patient may let one caregiver see sensitive information too (mental health, HIV,
-- substance use, sexual and reproductive health, violence). Off unless the patient turns
-- it on for that grant; 42 CFR Part 2 records still need their own consent.
ALTER TABLE portal_proxies ADD COLUMN include_sensitive boolean NOT NULL DEFAULT false;
