-- no-transaction
-- Tickets keyed by their booking, step 3 of 3: the primary key (booking_id, id) serves every
-- look-up by booking, so this index only cost every ticket written one more insert.
DROP INDEX CONCURRENTLY IF EXISTS tickets_by_booking;
