-- The least a booking needs, as its own schema: a booking row and its tickets, primary keys and
-- one foreign key (a ticket's booking), a ticket number unique within its tier through the
-- primary key. The anchor scripts/bench_guard.sh compares this project's schema against.
CREATE TABLE bookings (
    id          uuid PRIMARY KEY,
    event_id    uuid NOT NULL,
    buyer_email text NOT NULL,
    total_cents bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE tickets (
    booking_id uuid NOT NULL REFERENCES bookings (id),
    tier_id    uuid NOT NULL,
    number     integer NOT NULL,
    PRIMARY KEY (tier_id, number)
);
