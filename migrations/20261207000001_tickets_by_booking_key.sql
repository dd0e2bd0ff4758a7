-- no-transaction
-- Tickets keyed by their booking, step 1 of 3 (issue 25: only the indexes a query uses, keys
-- that insert in order). Every read of tickets asks by booking (a booking's tickets, its
-- cancellation, the hold sweeper's check) or by tier (the partial unique index on
-- (tier_id, number), which also serves the counts per tier); none asks by a ticket's id. So the
-- random ticket id's own index and `tickets_by_booking` become one primary key,
-- (booking_id, id), and the booking service's booking ids are UUIDv7 (time first): new rows
-- land at the right edge of that key and of `bookings_pkey` instead of on random pages.
-- Built without blocking writes on a live table (hence outside a transaction, alone in its file).
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS tickets_booking_ticket_key ON tickets (booking_id, id);
