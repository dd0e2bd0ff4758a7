-- The guard before migration 20261207000003, for measuring it side by side with the one after
-- (scripts/bench_split.sh A_SQL, after guard_none.sql): the three foreign keys, checked per row,
-- in place of the statement triggers. NOT VALID: the rows already written are not re-checked
-- (they were checked).
ALTER TABLE tickets ADD CONSTRAINT tickets_tier_fkey FOREIGN KEY (tier_id, tier_capacity)
    REFERENCES ticket_tiers (id, capacity) NOT VALID;
ALTER TABLE tickets ADD CONSTRAINT tickets_booking_id_fkey FOREIGN KEY (booking_id)
    REFERENCES bookings (id) NOT VALID;
ALTER TABLE bookings ADD CONSTRAINT bookings_event_id_fkey FOREIGN KEY (event_id)
    REFERENCES events (id) NOT VALID;
