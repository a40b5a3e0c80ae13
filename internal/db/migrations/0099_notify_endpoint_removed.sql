-- A rest-hook origin removed with concord member endpoint --url URL --remove keeps its row
-- as the record of the removal, as directory_endpoints does: removed_at is when the
-- operator removed it (NULL while it is registered). A removed origin is absent to every
-- reader: no Subscription may name it, the dispatcher sends nothing there and it is not
-- listed among the member's endpoints. Registering it again makes it live and clears
-- removed_at; created_at stays the first registration.
ALTER TABLE notify_endpoints ADD COLUMN removed_at timestamptz;
