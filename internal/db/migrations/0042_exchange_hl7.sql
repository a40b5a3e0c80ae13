-- HL7 v2 messages already answered, keyed by (MSH-3, MSH-4, MSH-10) as standards.md §1
-- asks. The row is written in the transaction that stores the message's data (AA) or,
-- for a content error (AE), alone; a repeat gets the stored ACK and creates nothing.
-- AR answers (unsupported, cannot process now) are never stored: the sender resends.
CREATE TABLE exchange_hl7_messages (
	msh3        text NOT NULL,
	msh4        text NOT NULL,
	msh10       text NOT NULL,
	member_id   text NOT NULL REFERENCES directory_members(id),
	ack_code    text NOT NULL CHECK (ack_code IN ('AA', 'AE')),
	err_code    integer NOT NULL DEFAULT 0,
	err_loc     text NOT NULL DEFAULT '',
	ack_text    text NOT NULL DEFAULT '',
	resources   integer NOT NULL DEFAULT 0,  -- resources written for the message
	received_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (msh3, msh4, msh10)
);

-- A40/A34 merges inside a member's namespace: the retired Patient is marked inactive and
-- replaced-by the survivor, and its compartment is re-pointed to the survivor.
CREATE TABLE exchange_hl7_merges (
	id               bigserial PRIMARY KEY,
	member_id        text NOT NULL REFERENCES directory_members(id),
	survivor_patient text NOT NULL,
	retired_patient  text,                  -- NULL when the retired MRN was never sent to us
	repointed        integer NOT NULL DEFAULT 0,
	msh10            text NOT NULL,
	at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON exchange_hl7_merges (member_id, survivor_patient);
