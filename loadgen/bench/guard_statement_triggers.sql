-- The guard of migration 20261207000003 (statement triggers) back in place of the foreign keys of
-- guard_foreign_keys.sql (scripts/bench_split.sh B_SQL); its functions stay from the migration.
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
CREATE TRIGGER tickets_references_on_insert AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS new_tickets
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_check_references();
CREATE TRIGGER tickets_references_on_update AFTER UPDATE ON tickets
    REFERENCING NEW TABLE AS new_tickets
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_check_references();
CREATE TRIGGER bookings_references_on_insert AFTER INSERT ON bookings
    REFERENCING NEW TABLE AS new_bookings
    FOR EACH STATEMENT EXECUTE FUNCTION bookings_check_references();
CREATE TRIGGER bookings_references_on_update AFTER UPDATE ON bookings
    REFERENCING NEW TABLE AS new_bookings
    FOR EACH STATEMENT EXECUTE FUNCTION bookings_check_references();
CREATE TRIGGER ticket_tiers_deleted BEFORE DELETE ON ticket_tiers
    FOR EACH ROW EXECUTE FUNCTION refuse_when_referenced('tickets', 'tier_id', 'tickets_tier_fkey');
CREATE TRIGGER ticket_tiers_rekeyed BEFORE UPDATE OF id, capacity ON ticket_tiers
    FOR EACH ROW WHEN (OLD.id <> NEW.id OR OLD.capacity <> NEW.capacity)
    EXECUTE FUNCTION refuse_when_referenced('tickets', 'tier_id', 'tickets_tier_fkey');
CREATE TRIGGER bookings_deleted BEFORE DELETE ON bookings
    FOR EACH ROW EXECUTE FUNCTION refuse_when_referenced('tickets', 'booking_id', 'tickets_booking_id_fkey');
CREATE TRIGGER bookings_rekeyed BEFORE UPDATE OF id ON bookings
    FOR EACH ROW WHEN (OLD.id <> NEW.id)
    EXECUTE FUNCTION refuse_when_referenced('tickets', 'booking_id', 'tickets_booking_id_fkey');
CREATE TRIGGER events_deleted BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION refuse_when_referenced('bookings', 'event_id', 'bookings_event_id_fkey');
CREATE TRIGGER events_rekeyed BEFORE UPDATE OF id ON events
    FOR EACH ROW WHEN (OLD.id <> NEW.id)
    EXECUTE FUNCTION refuse_when_referenced('bookings', 'event_id', 'bookings_event_id_fkey');
