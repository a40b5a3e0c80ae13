-- A caregiver or guardian grant may end on its own: a relative given access for a hospital
-- stay, a parent registered for a child until the child's 18th birthday, a guardian until a
-- court's review date. From ends_at on, the grant is no access, exactly like a revoked one
-- (the caregiver's next request is their own again), and a pending invitation whose grant
-- has ended can no longer be accepted. NULL: no end date, as every earlier grant.
ALTER TABLE portal_proxies ADD COLUMN ends_at timestamptz NULL CHECK (ends_at IS NULL OR ends_at > created_at);
