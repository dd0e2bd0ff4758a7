-- Neither guard of a ticket's references in place: drops the statement triggers of migration
-- 20261207000003 and the foreign keys it replaced, whichever are there. The start of both sides
-- of that migration's side-by-side measurement (scripts/bench_split.sh, BENCHMARKS.md):
--   A_SQL="$(cat loadgen/bench/guard_none.sql loadgen/bench/guard_foreign_keys.sql)"
--   B_SQL="$(cat loadgen/bench/guard_none.sql; awk '/^CREATE TRIGGER/,/;$/' migrations/20261207000003_reference_checks_per_statement.sql)"
-- B re-creates the triggers from the migration itself (their functions stay from it).
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
