-- Tickets keyed by their booking (issue 25: only the indexes a query uses, keys that insert in
-- order). Every read of tickets asks by booking (a booking's tickets, its cancellation, the hold
-- sweeper's check) or by tier (the partial unique index on (tier_id, number), which also serves
-- the counts per tier); none asks by a ticket's id. So the random ticket id's own index and
-- `tickets_by_booking` become one primary key, (booking_id, id), and the booking service's
-- booking ids are UUIDv7 (time first): new rows land at the right edge of that key and of
-- `bookings_pkey` instead of on random pages. Nothing refers to tickets by key, and no query of
-- any release changes.
--
-- One transaction, because every service migrates at start and the migrator holds its lock
-- meanwhile: a CREATE INDEX CONCURRENTLY waits for the other services' migrators, which wait for
-- it (tried: they timed out). On a large live table, build the index first by hand without
-- blocking writes, `CREATE UNIQUE INDEX CONCURRENTLY tickets_booking_ticket_key ON tickets
-- (booking_id, id)`, and this migration takes it as the key under a brief lock.
DO $$
BEGIN
    IF to_regclass('tickets_booking_ticket_key') IS NULL THEN
        CREATE UNIQUE INDEX tickets_booking_ticket_key ON tickets (booking_id, id);
    END IF;
END
$$;
ALTER TABLE tickets DROP CONSTRAINT tickets_pkey;
ALTER TABLE tickets ADD CONSTRAINT tickets_pkey PRIMARY KEY USING INDEX tickets_booking_ticket_key;
DROP INDEX tickets_by_booking;
