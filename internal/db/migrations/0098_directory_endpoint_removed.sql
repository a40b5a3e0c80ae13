-- A published endpoint can be removed (concord member endpoint --remove), not only set off.
-- The row stays as the record of the removal, as updated_at records the last change:
-- removed_at is when the operator removed it (NULL while it is published). A removed
-- endpoint is gone from the directory (no Endpoint, no reference from its Organization);
-- registering it again publishes it anew and clears removed_at. The demo seeds a member's
-- endpoints only where no row exists, so it does not bring back a removed one.
ALTER TABLE directory_endpoints ADD COLUMN removed_at timestamptz;
