-- References checked once per statement, not once per row (issue 25: no hot-row key locks per
-- ticket).
--
-- A foreign key checks every inserted row on its own: a query of the parent table per row, each
-- taking a key-share lock on the parent. A booking of 4 tickets made 9 such checks, 5 of them on
-- the same few hot rows (the event and its tiers), which every concurrent writer locks too, so
-- each lock became a MultiXact. Side by side (pgbench writing one booking of 4 tickets into this
-- schema, 4 alternating rounds), the same schema without these three foreign keys wrote 1.35x
-- the bookings a second.
--
-- The guarantees stay, checked per statement over the rows it wrote (transition tables):
--   * every ticket's (tier_id, tier_capacity) is a tier with that capacity, so with the
--     number's range check and the unique (tier_id, number) of issued tickets, no tier can ever
--     have more issued tickets than its capacity, whatever a writer inserts or updates;
--   * every ticket's booking exists, every booking's event exists;
--   * what is referenced cannot be deleted, nor its key changed, while anything refers to it.
-- A statement locks each distinct parent it refers to once (FOR KEY SHARE, in key order, as
-- the foreign keys did per row): a delete or a key change of that parent waits for the writer
-- and then sees what it wrote. The parents' BEFORE triggers run after their row's lock is taken
-- (Postgres locks the row for BEFORE UPDATE/DELETE row triggers), each query with a snapshot
-- taken then, so a delete racing a sale in flight waits for it and then refuses.
--
-- ticket_tiers keeps its unique (id, capacity): it makes capacity a key column, so a change of
-- a tier's capacity takes the exclusive row lock that conflicts with the writers' key-share.
-- The errors keep the foreign keys' SQLSTATE (23503) and names, which the booking service and
-- the guard's test (no_writer_oversells_through_any_path) read.

ALTER TABLE tickets DROP CONSTRAINT tickets_tier_fkey;
ALTER TABLE tickets DROP CONSTRAINT tickets_booking_id_fkey;
ALTER TABLE bookings DROP CONSTRAINT bookings_event_id_fkey;

-- Each parent is looked up by its key inside a LATERAL subquery (a locking subquery is never
-- flattened into a join), so the plan is an index look-up per distinct key whatever size the
-- planner believes the tables are: a plan chosen while a table looks empty (just created or
-- truncated) is kept for the session. An earlier form, `WHERE id IN (SELECT ...)`, was planned
-- as a scan there and ran at 0.19x the foreign keys' speed as the table grew.
CREATE FUNCTION tickets_check_references() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_tier uuid;
    v_capacity integer;
    v_booking uuid;
BEGIN
    -- Each query locks every parent it finds and returns the first row that has none.
    SELECT n.tier_id, n.tier_capacity INTO v_tier, v_capacity
      FROM (SELECT DISTINCT tier_id, tier_capacity FROM new_tickets ORDER BY 1, 2) AS n
      LEFT JOIN LATERAL (SELECT t.id FROM ticket_tiers t
                          WHERE t.id = n.tier_id AND t.capacity = n.tier_capacity
                            FOR KEY SHARE) AS p ON true
     WHERE p.id IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'a ticket names tier % with capacity %, and no such tier exists',
                        v_tier, v_capacity
              USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'tickets_tier_fkey',
                    TABLE = 'tickets';
    END IF;
    SELECT n.booking_id INTO v_booking
      FROM (SELECT DISTINCT booking_id FROM new_tickets ORDER BY 1) AS n
      LEFT JOIN LATERAL (SELECT b.id FROM bookings b WHERE b.id = n.booking_id
                            FOR KEY SHARE) AS p ON true
     WHERE p.id IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'a ticket names booking %, which does not exist', v_booking
              USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'tickets_booking_id_fkey',
                    TABLE = 'tickets';
    END IF;
    RETURN NULL;
END
$$;

-- One trigger per event: a trigger with transition tables names one event.
CREATE TRIGGER tickets_references_on_insert AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS new_tickets
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_check_references();
CREATE TRIGGER tickets_references_on_update AFTER UPDATE ON tickets
    REFERENCING NEW TABLE AS new_tickets
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_check_references();

CREATE FUNCTION bookings_check_references() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_event uuid;
BEGIN
    SELECT n.event_id INTO v_event
      FROM (SELECT DISTINCT event_id FROM new_bookings ORDER BY 1) AS n
      LEFT JOIN LATERAL (SELECT e.id FROM events e WHERE e.id = n.event_id
                            FOR KEY SHARE) AS p ON true
     WHERE p.id IS NULL
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'a booking names event %, which does not exist', v_event
              USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'bookings_event_id_fkey',
                    TABLE = 'bookings';
    END IF;
    RETURN NULL;
END
$$;


CREATE TRIGGER bookings_references_on_insert AFTER INSERT ON bookings
    REFERENCING NEW TABLE AS new_bookings
    FOR EACH STATEMENT EXECUTE FUNCTION bookings_check_references();
CREATE TRIGGER bookings_references_on_update AFTER UPDATE ON bookings
    REFERENCING NEW TABLE AS new_bookings
    FOR EACH STATEMENT EXECUTE FUNCTION bookings_check_references();

-- The parents' side: a referenced row is neither deleted nor given another key. One function
-- for the three parents, told by TG_ARGV the child table, its column and the constraint's name;
-- an update that keeps the key does not call it (the triggers' WHEN).
CREATE FUNCTION refuse_when_referenced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_referenced boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I = $1)', TG_ARGV[0], TG_ARGV[1])
       INTO v_referenced USING OLD.id;
    IF v_referenced THEN
        RAISE EXCEPTION '% % is still referenced from %', TG_TABLE_NAME, OLD.id, TG_ARGV[0]
              USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_ARGV[2],
                    TABLE = TG_ARGV[0];
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;

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
