-- Patient link-changed notifications (topic .../patient-link-changed) carry, per
-- recipient, the action and the regional person links of its Patient before and after
-- (IDs and codes only, never another member's Patient ids), and remember which resource's
-- disclosure decided consent for that recipient, so $events decides it again on the same
-- resource. Encounter notifications leave both empty.
ALTER TABLE notify_deliveries
	ADD COLUMN context     jsonb,                        -- notify.LinkContext; NULL for other topics
	ADD COLUMN consent_ref text NOT NULL DEFAULT '';     -- Type/id read to decide consent; '' means the focus
