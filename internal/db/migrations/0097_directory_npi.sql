-- The member directory as standards.md §8 lists it.
--
-- npi: the member organization's NPI (http://hl7.org/fhir/sid/us-npi), set with concord
-- member add --npi or concord member set --npi; NULL when the directory holds none. The
-- application checks the Luhn check digit (directory.NormalizeNPI); the column checks the
-- form. One organization, one NPI: two members may not share it.
ALTER TABLE directory_members ADD COLUMN npi text CHECK (npi ~ '^[0-9]{10}$');
CREATE UNIQUE INDEX directory_members_npi_key ON directory_members (npi);

-- The endpoints a member publishes, registered by the operator (concord member endpoint
-- --type fhir|mllp|direct): its FHIR base, the MLLP address where it receives HL7 v2,
-- its Direct address. The exchange lists them as FHIR Endpoints and dials none of them.
-- Rest-hook origins stay in notify_endpoints, which the notifier enforces.
--   address        normalized by directory.ParseEndpoint: https://host[:port]/path,
--                  mllp://host:port, mailto:local@domain
--   payload_types  endpoint payload types as "system|code", at least one
--   status         endpoint-status; off retires an endpoint, which stays listed as off
CREATE TABLE directory_endpoints (
	member_id       text NOT NULL REFERENCES directory_members(id),
	connection_type text NOT NULL CHECK (connection_type IN ('hl7-fhir-rest', 'hl7v2-mllp', 'direct-project')),
	address         text NOT NULL CHECK (length(address) BETWEEN 1 AND 1024),
	payload_types   text[] NOT NULL CHECK (cardinality(payload_types) BETWEEN 1 AND 10),
	status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'error', 'off', 'test')),
	created_at      timestamptz NOT NULL DEFAULT now(),
	updated_at      timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (member_id, connection_type, address)
);

SELECT concord_grant_app();
