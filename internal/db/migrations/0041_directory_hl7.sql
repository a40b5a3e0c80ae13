-- HL7 v2 senders: which MSH-3/MSH-4 values each member's feeds use, which source addresses
-- and client-certificate names identify a member's MLLP connection, and which v2 assigning
-- authority namespace IDs (CX-4.1 without a universal ID, e.g. "SIMULATOR MRN") stand for
-- one of the member's identifier systems.
CREATE TABLE directory_hl7_senders (
	member_id   text NOT NULL REFERENCES directory_members(id),
	msh3        text NOT NULL DEFAULT '',   -- '' = any sending application
	msh4        text NOT NULL,              -- HD namespace ID, universal ID, or the raw field
	PRIMARY KEY (msh4, msh3)
);
CREATE INDEX ON directory_hl7_senders (member_id);

CREATE TABLE directory_hl7_addresses (
	member_id   text NOT NULL REFERENCES directory_members(id),
	cidr        cidr NOT NULL,
	PRIMARY KEY (member_id, cidr)
);

CREATE TABLE directory_hl7_cert_names (
	name        text PRIMARY KEY,           -- certificate CN or DNS SAN
	member_id   text NOT NULL REFERENCES directory_members(id)
);

CREATE TABLE directory_hl7_namespaces (
	namespace   text PRIMARY KEY,           -- CX-4.1 as sent
	member_id   text NOT NULL REFERENCES directory_members(id),
	system      text NOT NULL REFERENCES directory_authorities(system)
);
