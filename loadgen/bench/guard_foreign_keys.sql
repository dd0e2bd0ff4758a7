-- The guard before migration 20261207000003, for measuring it side by side with the one after
-- (scripts/bench_split.sh A_SQL): the three foreign keys, checked per row, in place of the
-- statement triggers. NOT VALID: the rows already written are not re-checked (they were checked).
DROP TRIGGER IF EXISTS tickets_references_on_insert ON tickets;
DROP TRIGGER IF EXISTS tickets_references_on_update ON tickets;
DROP TRIGGER IF EXISTS bookings_references_on_insert ON bookings;
DROP TRIGGER IF EXISTS bookings_references_on_update ON bookings;
DROP TRIGGER IF EXISTS ticket_tiers_deleted ON ticket_tiers;
DROP TRIGGER IF EXISTS ticket_tiers_rekeyed ON ticket_tiers;
DROP TRIGGER IF EXISTS bookings_deleted ON bookings;
DROP TRIGGER IF EXISTS bookings_rekeyed ON bookings;
DROP TRIGGER IF EXISTS events_deleted ON events;
DROP TRIGGER IF EXISTS events_rekeyed ON events;
ALTER TABLE tickets DROP CONSTRAINT IF EXISTS tickets_tier_fkey;
ALTER TABLE tickets DROP CONSTRAINT IF EXISTS tickets_booking_id_fkey;
ALTER TABLE bookings DROP CONSTRAINT IF EXISTS bookings_event_id_fkey;
ALTER TABLE tickets ADD CONSTRAINT tickets_tier_fkey FOREIGN KEY (tier_id, tier_capacity)
    REFERENCES ticket_tiers (id, capacity) NOT VALID;
ALTER TABLE tickets ADD CONSTRAINT tickets_booking_id_fkey FOREIGN KEY (booking_id)
    REFERENCES bookings (id) NOT VALID;
ALTER TABLE bookings ADD CONSTRAINT bookings_event_id_fkey FOREIGN KEY (event_id)
    REFERENCES events (id) NOT VALID;
