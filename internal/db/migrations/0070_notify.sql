-- Notifications out: rosters of attributed patients, the endpoint origins each member has
-- registered, FHIR Subscriptions (Backport rest-hook) and the per-subscription
-- notifications the dispatcher delivers from outbox_events.

-- A roster is a member's Group of its own Patients; entries reach persons through the MPI
-- (mpi_source_records.patient_id).
CREATE TABLE notify_rosters (
	group_id    text PRIMARY KEY,                  -- the stored Group's id
	member_id   text NOT NULL REFERENCES directory_members(id),
	created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE notify_roster_entries (
	group_id    text NOT NULL REFERENCES notify_rosters(group_id) ON DELETE CASCADE,
	member_id   text NOT NULL REFERENCES directory_members(id),
	patient_id  text NOT NULL,                     -- one of the member's own Patients
	PRIMARY KEY (group_id, patient_id)
);
CREATE INDEX ON notify_roster_entries (patient_id);

-- Endpoint origins a member may subscribe with, compared exactly (scheme, host, port).
CREATE TABLE notify_endpoints (
	member_id   text NOT NULL REFERENCES directory_members(id),
	origin      text NOT NULL,                     -- scheme://host:port, lower case
	created_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (member_id, origin)
);

CREATE TABLE notify_subscriptions (
	id          text PRIMARY KEY,
	member_id   text NOT NULL REFERENCES directory_members(id),
	topic       text NOT NULL,
	filter      text NOT NULL DEFAULT '',          -- backport-filter-criteria, as sent
	endpoint    text NOT NULL,
	headers     jsonb NOT NULL DEFAULT '[]',       -- channel.header lines
	payload     text NOT NULL DEFAULT 'id-only',
	status      text NOT NULL CHECK (status IN ('requested', 'active', 'error', 'off')),
	events      bigint NOT NULL DEFAULT 0,         -- events-since-subscription-start
	body        jsonb NOT NULL,                    -- the Subscription as accepted
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON notify_subscriptions (member_id);

-- One row per notification to send: a handshake (event_number 0) or an event. An outbox
-- event reaches a subscription at most once (UNIQUE), however often fan-out is retried.
CREATE TABLE notify_deliveries (
	id              bigserial PRIMARY KEY,
	subscription_id text NOT NULL REFERENCES notify_subscriptions(id) ON DELETE CASCADE,
	kind            text NOT NULL CHECK (kind IN ('handshake', 'event-notification', 'heartbeat')),
	event_number    bigint NOT NULL,
	outbox_id       bigint REFERENCES outbox_events(id),
	focus           text NOT NULL DEFAULT '',      -- e.g. Encounter/{id}; an ID, never PHI
	event_at        timestamptz NOT NULL DEFAULT now(),
	delivered_at    timestamptz,
	attempts        integer NOT NULL DEFAULT 0,
	next_at         timestamptz NOT NULL DEFAULT now(),
	last_status     integer,                       -- HTTP status of the last attempt, 0 for no answer
	UNIQUE (subscription_id, outbox_id)
);
CREATE INDEX notify_deliveries_pending ON notify_deliveries (next_at) WHERE delivered_at IS NULL;
CREATE INDEX ON notify_deliveries (subscription_id, event_number);
