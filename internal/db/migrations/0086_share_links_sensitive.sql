-- A share link of all lab results leaves out sensitive ones (HIV, mental health, sexual and
-- reproductive health, violence, substance use, restricted) unless the patient chose to
-- include them when making it. Links made before this column existed leave them out too:
-- a link can only show less than before, never more.
ALTER TABLE portal_share_links ADD COLUMN include_sensitive boolean NOT NULL DEFAULT false;
