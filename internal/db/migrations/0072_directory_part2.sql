-- 42 CFR Part 2: a member that is (or runs) a federally assisted substance-use disorder
-- program. Every record it sends is labelled ETH, R, 42CFRPart2 and NORDSCLCD at ingest
-- (consent.Part2ProgramLabels), whatever its codes; release then needs the patient's
-- consent naming the recipient and carries the §2.32 notice.
ALTER TABLE directory_members ADD COLUMN part2_program boolean NOT NULL DEFAULT false;
