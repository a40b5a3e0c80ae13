-- A privacy officer may register a parent or legal guardian for a patient who cannot invite
-- one (a child, an adult under guardianship) after checking the documents; evidence is the
-- officer's reference to what was checked (a filing number), never the document itself.
ALTER TABLE portal_proxies ADD COLUMN evidence text NOT NULL DEFAULT '' CHECK (length(evidence) <= 64);
