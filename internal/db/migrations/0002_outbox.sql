-- Transactional outbox: side effects (notifications, forwards) are written in the same
-- transaction as the change that causes them and delivered at least once.
CREATE TABLE outbox_events (
	id           bigserial PRIMARY KEY,
	topic        text NOT NULL,
	key          text NOT NULL,               -- e.g. the person or resource the event is about (an ID, never PHI)
	payload      jsonb NOT NULL,              -- IDs and codes only
	created_at   timestamptz NOT NULL DEFAULT now(),
	delivered_at timestamptz,
	attempts     integer NOT NULL DEFAULT 0,
	next_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_pending ON outbox_events (next_at) WHERE delivered_at IS NULL;
