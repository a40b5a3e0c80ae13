-- A DocumentReference updated with new attachment.data gets a new content row (a new
-- Binary) and keeps the rows of its earlier versions, as history: their Binary/{id} stays
-- readable, as the earlier versions in fhir_history name it, and their objects stay stored.
-- current says which rows the document's current version names. documents.Service reads
-- a document's content (ContentOfDocument, Group) from these rows only; before, it picked
-- among all of them, so a portal could open an earlier version's bytes.
--
-- Intake sets it on every write of a DocumentReference: true for the contents that version
-- names (inline data, or a url naming a Binary here), false for the document's other rows.
-- A row without a document (a Binary no DocumentReference names yet) and a patient's
-- upload (never updated) are current. Check and CollectGarbage still count every row: an
-- earlier version's object is kept like any other.
ALTER TABLE documents_contents ADD COLUMN current boolean NOT NULL DEFAULT true;

-- Existing rows: a member's document's row is current when the stored DocumentReference
-- names its Binary in some content[].attachment.url (FHIRBase/Binary/{id}, matched by its
-- end, as FHIRBase may have changed since). Rows of a document with no stored resource, or
-- a deleted one, stay current. json, not jsonb: the body is stored byte for byte, and jsonb
-- refuses some JSON (\u0000) that json keeps.
UPDATE documents_contents c SET current = false
FROM documents_metadata m, fhir_resources r, LATERAL (SELECT convert_from(r.body, 'UTF8')::json -> 'content' AS content) d
WHERE m.id = c.document_id AND m.origin = 'clinical'
	AND r.type = 'DocumentReference' AND r.id = m.id AND NOT r.deleted
	AND NOT EXISTS (
		SELECT 1 FROM json_array_elements(CASE WHEN json_typeof(d.content) = 'array' THEN d.content ELSE '[]' END) e(content)
		WHERE substring(e.content -> 'attachment' ->> 'url' from '(?:^|/)Binary/([^/?#]+)$') = c.binary_id);
