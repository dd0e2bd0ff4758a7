-- The waiting room's durable marks and its drain rate.
--
-- queue_arrivals / queue_admitted_through: the worker raises them about once a second from Redis
-- (see ticketing::queue::QueueMarks), so after Redis loses a line new arrivals are numbered above
-- every earlier one and no receipt of an entry that already reached the head is put back.
-- Places are integers below 2^53 (ticketing::queue::Place): bigint holds them exactly.
--
-- drain_per_minute: with the room turned off, how fast those still in line are let in, in
-- order; 0 = at once.
ALTER TABLE events
    ADD COLUMN queue_arrivals bigint NOT NULL DEFAULT 0 CHECK (queue_arrivals >= 0),
    ADD COLUMN queue_admitted_through bigint NOT NULL DEFAULT 0 CHECK (queue_admitted_through >= 0),
    ADD COLUMN drain_per_minute integer NOT NULL DEFAULT 0 CHECK (drain_per_minute BETWEEN 0 AND 1000000);
