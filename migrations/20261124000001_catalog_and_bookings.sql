-- Venues, events with their waiting-room settings, ticket tiers, bookings and issued tickets.
--
-- Overselling is impossible in Postgres alone: every issued ticket carries a number that is
-- unique within its tier (partial unique index) and between 1 and the tier's capacity (a check
-- against the capacity carried through a composite foreign key). Redis decides which numbers are
-- free; Postgres refuses a duplicate or out-of-range one. No row is updated by every booking.

CREATE TABLE venues (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL CONSTRAINT venues_name_key UNIQUE
                    CONSTRAINT venues_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Compact id carried inside queue ids, so a poll finds its event without a lookup table.
    short_id             integer GENERATED ALWAYS AS IDENTITY CONSTRAINT events_short_id_key UNIQUE,
    name                 text NOT NULL CONSTRAINT events_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    venue_id             uuid NOT NULL REFERENCES venues (id),
    starts_at            timestamptz NOT NULL,
    on_sale_at           timestamptz NOT NULL,
    wr_enabled           boolean NOT NULL DEFAULT false,
    admission_per_minute integer NOT NULL DEFAULT 600 CHECK (admission_per_minute BETWEEN 1 AND 1000000),
    max_active           integer NOT NULL DEFAULT 1000 CHECK (max_active BETWEEN 1 AND 1000000),
    paused               boolean NOT NULL DEFAULT false,
    token_ttl_s          integer NOT NULL DEFAULT 600 CHECK (token_ttl_s BETWEEN 30 AND 86400),
    max_per_booking      integer NOT NULL DEFAULT 8 CHECK (max_per_booking BETWEEN 1 AND 100),
    -- Bumped by every rebuild of the event's Redis inventory; bookings commit only under the
    -- epoch they reserved in.
    inventory_epoch      bigint NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_by_start ON events (starts_at, id);

CREATE TABLE ticket_tiers (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id    uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    code        text NOT NULL CONSTRAINT ticket_tiers_code_format CHECK (code ~ '^[A-Za-z0-9_-]{1,32}$'),
    name        text NOT NULL CONSTRAINT ticket_tiers_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    price_cents bigint NOT NULL CHECK (price_cents BETWEEN 0 AND 100000000),
    capacity    integer NOT NULL CHECK (capacity BETWEEN 1 AND 1000000),
    position    integer NOT NULL,
    CONSTRAINT ticket_tiers_event_code_key UNIQUE (event_id, code),
    -- Target of the tickets' composite foreign key, which carries the capacity into the check.
    CONSTRAINT ticket_tiers_id_capacity_key UNIQUE (id, capacity)
);

CREATE TABLE bookings (
    id              uuid PRIMARY KEY,
    event_id        uuid NOT NULL REFERENCES events (id),
    buyer_email     text NOT NULL CONSTRAINT bookings_email_length CHECK (char_length(buyer_email) BETWEEN 3 AND 254),
    status          text NOT NULL CONSTRAINT bookings_status_check CHECK (status IN ('confirmed', 'cancelled')),
    -- One booking per entry token, even if Redis forgot the token was used.
    token_jti       uuid NOT NULL CONSTRAINT bookings_token_jti_key UNIQUE,
    queue_id        uuid NOT NULL,
    idempotency_key text CONSTRAINT bookings_idempotency_key_length CHECK (char_length(idempotency_key) <= 255),
    request_hash    bytea NOT NULL,
    total_cents     bigint NOT NULL CHECK (total_cents >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    cancelled_at    timestamptz
);
CREATE INDEX bookings_by_event ON bookings (event_id);

CREATE TABLE tickets (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    booking_id    uuid NOT NULL REFERENCES bookings (id),
    tier_id       uuid NOT NULL,
    tier_capacity integer NOT NULL,
    number        integer NOT NULL,
    status        text NOT NULL DEFAULT 'issued' CONSTRAINT tickets_status_check CHECK (status IN ('issued', 'void')),
    CONSTRAINT tickets_tier_fkey FOREIGN KEY (tier_id, tier_capacity) REFERENCES ticket_tiers (id, capacity),
    CONSTRAINT tickets_number_in_range CHECK (number BETWEEN 1 AND tier_capacity)
);
-- A number is sold at most once at a time; a cancelled (void) ticket frees its number.
CREATE UNIQUE INDEX tickets_tier_number_key ON tickets (tier_id, number) WHERE status = 'issued';
CREATE INDEX tickets_by_booking ON tickets (booking_id);
