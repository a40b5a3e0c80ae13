-- The content of each HL7 v2 message answered, so that a message that reuses a control ID
-- (MSH-10) for different content is refused (AE 205) instead of answered with the first
-- message's ACK and silently dropped: a sender's counter reset lost data that way. The
-- digest is SHA-256 over the message's segments with MSH-7 (its time) left out, since an
-- engine that resends may stamp it anew (hl7v2.Message.Digest). NULL for rows from before:
-- their repeats are answered as before, from the stored ACK.
ALTER TABLE exchange_hl7_messages ADD COLUMN digest bytea NULL;
