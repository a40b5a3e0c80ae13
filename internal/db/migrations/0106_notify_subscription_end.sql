-- Subscription.end is enforced. ends_at is the instant the member asked the subscription
-- to stop (NULL: it has no end). From then on fan-out numbers no event for it and the
-- dispatcher claims none of its deliveries (a handshake included); the dispatcher sets its
-- status to off (R4: "too many errors have occurred or the subscription has expired"),
-- and reads show off at once. A new Subscription whose end has already passed is refused.
ALTER TABLE notify_subscriptions ADD COLUMN ends_at timestamptz;

-- Existing subscriptions take their end from the Subscription as accepted (body.end).
-- fhir.Parse admitted only FHIR instants there, which always carry a zone, so the cast
-- does not depend on the session's time zone. One that cannot be read all the same is
-- taken as ended now: it stops rather than run on without the end it was given.
DO $$
DECLARE
	r record;
BEGIN
	FOR r IN SELECT id, body->>'end' AS e FROM notify_subscriptions WHERE coalesce(body->>'end', '') <> '' ORDER BY id LOOP
		BEGIN
			UPDATE notify_subscriptions SET ends_at = r.e::timestamptz WHERE id = r.id;
		EXCEPTION WHEN data_exception THEN
			UPDATE notify_subscriptions SET ends_at = now() WHERE id = r.id;
		END;
	END LOOP;
END
$$;

UPDATE notify_subscriptions SET status = 'off', updated_at = now()
	WHERE ends_at <= now() AND status IN ('requested', 'active');
