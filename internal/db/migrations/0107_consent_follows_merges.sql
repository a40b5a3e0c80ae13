-- Consent follows MPI merges (packages mpi and consent). A directive stays filed under the
-- person it was made for; what is in force for a person is the directives of its merge
-- family: the live person it resolves to (following retired_into) and every person retired
-- into that one, directly or through others. So after a merge the lost person's directives
-- govern the records that moved to the kept person (Decide lets any deny win), and an
-- unmerge gives each person back exactly its own, with nothing to re-point either way.
--
-- * mpi_person_family(p) is that family now; mpi_person_family_at(p, t) is the family at
--   transaction time t, from mpi_person_redirects, the history of every retired_into value
--   (consent.Store.LoadAt answers as-of questions with it).
-- * Every change of a person's retired_into bumps the consent version of every person in
--   the families before and after it, in the changing transaction (trigger
--   consent_versions_follow_merges), so no decision cached under an older version survives
--   a merge, an unmerge or an HL7 merge (mpi.store.Ops.RetireSource). Saving a directive
--   bumps its person's whole family likewise (consent.Store.Save).
-- Both triggers are ENABLE ALWAYS, so they fire under session_replication_role = replica.

CREATE INDEX mpi_persons_retired_into ON mpi_persons (retired_into) WHERE retired_into IS NOT NULL;

-- One row per period during which person_id redirected to into_id: [valid_from, valid_to).
CREATE TABLE mpi_person_redirects (
	person_id  uuid        NOT NULL REFERENCES mpi_persons(id),
	into_id    uuid        NOT NULL REFERENCES mpi_persons(id),
	valid_from timestamptz NOT NULL,
	valid_to   timestamptz,
	CHECK (valid_to IS NULL OR valid_to >= valid_from)
);
CREATE UNIQUE INDEX mpi_person_redirects_current ON mpi_person_redirects (person_id) WHERE valid_to IS NULL;
CREATE INDEX mpi_person_redirects_person ON mpi_person_redirects (person_id, valid_from);
CREATE INDEX mpi_person_redirects_into ON mpi_person_redirects (into_id, valid_from);

-- The redirects in place now. Their start: the merge that made them, else the HL7 merge
-- that emptied the person (RetireSource), else the person's creation (RetireSource creates
-- its retired persons already redirected).
INSERT INTO mpi_person_redirects (person_id, into_id, valid_from)
SELECT p.id, p.retired_into, coalesce(
	(SELECT max(m.at) FROM mpi_merges m WHERE m.lose = p.id AND m.keep = p.retired_into AND m.undone_at IS NULL),
	(SELECT max(h.at) FROM mpi_link_history h WHERE h.prev_person = p.id AND h.action = 'source-retired'),
	p.created_at)
FROM mpi_persons p WHERE p.retired_into IS NOT NULL;

CREATE FUNCTION mpi_person_redirects_record() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
	IF TG_OP = 'UPDATE' THEN
		IF OLD.retired_into IS NOT DISTINCT FROM NEW.retired_into THEN
			RETURN NULL;
		END IF;
		UPDATE mpi_person_redirects SET valid_to = clock_timestamp() WHERE person_id = OLD.id AND valid_to IS NULL;
	END IF;
	IF NEW.retired_into IS NOT NULL THEN
		INSERT INTO mpi_person_redirects (person_id, into_id, valid_from) VALUES (NEW.id, NEW.retired_into, clock_timestamp());
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER mpi_person_redirects_record AFTER INSERT OR UPDATE OF retired_into ON mpi_persons
	FOR EACH ROW EXECUTE FUNCTION mpi_person_redirects_record();
ALTER TABLE mpi_persons ENABLE ALWAYS TRIGGER mpi_person_redirects_record;

-- mpi_person_family returns p and every person of its merge family now: the live person p
-- resolves to and every person whose redirects lead to it (at most 64 hops either way, as
-- mpi.store follows them). p itself is always in the result, so a chain too long to follow
-- never drops p's own directives.
CREATE FUNCTION mpi_person_family(p uuid) RETURNS TABLE (person_id uuid)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
	WITH RECURSIVE up(id, nxt, depth) AS (
		SELECT m.id, m.retired_into, 0 FROM mpi_persons m WHERE m.id = p
		UNION ALL
		SELECT m.id, m.retired_into, u.depth + 1 FROM mpi_persons m JOIN up u ON m.id = u.nxt WHERE u.depth < 64
	), down(id, depth) AS (
		SELECT u.id, 0 FROM up u WHERE u.nxt IS NULL
		UNION ALL
		SELECT m.id, d.depth + 1 FROM mpi_persons m JOIN down d ON m.retired_into = d.id WHERE d.depth < 64
	)
	SELECT p WHERE p IS NOT NULL UNION SELECT d.id FROM down d
$$;

-- mpi_person_family_at is mpi_person_family as of transaction time t.
CREATE FUNCTION mpi_person_family_at(p uuid, t timestamptz) RETURNS TABLE (person_id uuid)
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
	WITH RECURSIVE up(id, depth) AS (
		SELECT p, 0 WHERE p IS NOT NULL
		UNION ALL
		SELECT r.into_id, u.depth + 1 FROM mpi_person_redirects r JOIN up u ON r.person_id = u.id
		WHERE r.valid_from <= t AND (r.valid_to IS NULL OR r.valid_to > t) AND u.depth < 64
	), root AS (
		SELECT u.id FROM up u ORDER BY u.depth DESC LIMIT 1
	), down(id, depth) AS (
		SELECT id, 0 FROM root
		UNION ALL
		SELECT r.person_id, d.depth + 1 FROM mpi_person_redirects r JOIN down d ON r.into_id = d.id
		WHERE r.valid_from <= t AND (r.valid_to IS NULL OR r.valid_to > t) AND d.depth < 64
	)
	SELECT p WHERE p IS NOT NULL UNION SELECT d.id FROM down d
$$;

-- consent_versions_follow_merges bumps, in person order, the consent version of every
-- person in the family OLD.retired_into belonged to and in the one NEW.id belongs to, both
-- as they are after the change (a merge: the whole joined family; an unmerge: both halves).
CREATE FUNCTION consent_versions_follow_merges() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
BEGIN
	INSERT INTO consent_versions (person_id, version)
	SELECT f.person_id, 1 FROM (
		SELECT person_id FROM mpi_person_family(NEW.id)
		UNION
		SELECT person_id FROM mpi_person_family(OLD.retired_into)
	) f ORDER BY f.person_id
	ON CONFLICT (person_id) DO UPDATE SET version = consent_versions.version + 1, updated_at = now();
	RETURN NULL;
END
$$;
CREATE TRIGGER consent_versions_follow_merges AFTER UPDATE OF retired_into ON mpi_persons
	FOR EACH ROW WHEN (OLD.retired_into IS DISTINCT FROM NEW.retired_into)
	EXECUTE FUNCTION consent_versions_follow_merges();
ALTER TABLE mpi_persons ENABLE ALWAYS TRIGGER consent_versions_follow_merges;

SELECT concord_grant_app();
