-- Fencing that survives a failed rebuild, event locks that cannot collide, and group commit.
--
-- * Inventory epochs come from a sequence. A sequence never rolls back, so a rebuild whose
--   transaction fails after Redis took its new epoch can never see that epoch handed out again:
--   reservations made under it stay fenced out for good.
-- * The event's advisory lock is keyed inside SQL by the event's unique short id, in a namespace
--   of its own (the two-integer form), so two events can never share a lock, made-up event ids
--   take no lock at all, and every binary — old or new — agrees on the key.
-- * `book_orders` writes a batch of bookings in one round trip and one commit; each order is
--   accepted or refused on its own (a subtransaction each), so one bad order never fails the batch.

CREATE SEQUENCE inventory_epoch_seq AS bigint;
SELECT setval('inventory_epoch_seq', greatest((SELECT max(inventory_epoch) FROM events), 0) + 1, false);

-- Takes the event's advisory lock until the transaction ends: shared for a booking or a
-- cancellation, exclusive for a rebuild of its Redis inventory. False, taking no lock, for an id
-- Postgres does not have. 1953066091 is 'tick' in ASCII: the namespace of the event locks.
CREATE FUNCTION lock_event(p_event uuid, p_exclusive boolean) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_short integer;
BEGIN
    SELECT short_id INTO v_short FROM events WHERE id = p_event;
    IF NOT FOUND THEN
        RETURN false;
    ELSIF p_exclusive THEN
        PERFORM pg_advisory_xact_lock(1953066091, v_short);
    ELSE
        PERFORM pg_advisory_xact_lock_shared(1953066091, v_short);
    END IF;
    RETURN true;
END
$$;

-- The one-booking function keeps its signature (binaries of the previous release call it during
-- a rolling deploy) but ignores the client's lock key and takes the lock by short id.
CREATE OR REPLACE FUNCTION book_tickets(
    p_lock_key bigint,
    p_booking uuid,
    p_event uuid,
    p_email text,
    p_token_jti uuid,
    p_queue uuid,
    p_idempotency_key text,
    p_request_hash bytea,
    p_total_cents bigint,
    p_epoch bigint,
    p_tiers uuid[],
    p_capacities integer[],
    p_numbers integer[]
) RETURNS TABLE (booked_at timestamptz, ticket_id uuid, ticket_tier uuid, ticket_number integer)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM lock_event(p_event, false);
    RETURN QUERY
    WITH b AS (
        INSERT INTO bookings (id, event_id, buyer_email, status, token_jti, queue_id,
                              idempotency_key, request_hash, total_cents)
        SELECT p_booking, p_event, p_email, 'confirmed', p_token_jti, p_queue,
               p_idempotency_key, p_request_hash, p_total_cents
          FROM events e WHERE e.id = p_event AND e.inventory_epoch = p_epoch
        RETURNING bookings.id, bookings.created_at
    ), t AS (
        INSERT INTO tickets (booking_id, tier_id, tier_capacity, number)
        SELECT b.id, x.tier, x.capacity, x.num
          FROM b CROSS JOIN unnest(p_tiers, p_capacities, p_numbers) AS x (tier, capacity, num)
        RETURNING tickets.id, tickets.tier_id, tickets.number
    )
    SELECT b.created_at, t.id, t.tier_id, t.number FROM b CROSS JOIN t;
END
$$;

-- A batch of orders, one array element per order (p_ticket_orders: the order's index in the batch,
-- from 1, repeated once per ticket, so the arrays of tickets stay flat). Returns each order's
-- outcome:
--   'booked'        with booked_at and one row per ticket
--   'fenced'        the event's inventory epoch moved past the order's (a rebuild ran)
--   'token_taken'   a booking with this token's jti exists already
--   'number_taken'  a ticket number is sold already or out of range (Redis drifted)
--   'refused:...'   any other error of this order alone (its SQLSTATE and constraint or message)
--
-- The whole batch is first written in two statements. Only if one order breaks a constraint is
-- that attempt rolled back and every order written on its own, each in a subtransaction, so one
-- bad order never fails the others. Fenced orders are simply not inserted, on either path.
CREATE FUNCTION book_orders(
    p_bookings uuid[],
    p_events uuid[],
    p_emails text[],
    p_token_jtis uuid[],
    p_queues uuid[],
    p_idempotency_keys text[],
    p_request_hashes bytea[],
    p_totals bigint[],
    p_epochs bigint[],
    p_ticket_orders integer[],
    p_ticket_tiers uuid[],
    p_ticket_capacities integer[],
    p_ticket_numbers integer[]
) RETURNS TABLE (order_index integer, outcome text, booked_at timestamptz, ticket_id uuid,
                 ticket_tier uuid, ticket_number integer)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n integer := coalesce(array_length(p_bookings, 1), 0);
    i integer;
    v_outcome text;
    v_created timestamptz;
    v_constraint text;
    -- One element per ticket written: its order's index, the booking's time, the ticket.
    v_orders integer[] := '{}';
    v_times timestamptz[] := '{}';
    v_ids uuid[] := '{}';
    v_tiers uuid[] := '{}';
    v_numbers integer[] := '{}';
    -- Orders that failed on the slow path, with their outcome.
    v_failed integer[] := '{}';
    v_failures text[] := '{}';
BEGIN
    -- Each event's lock, shared, held to the end of the transaction; taken in one order so two
    -- batches (and the rebuilds queued between them) can never wait on each other in a cycle.
    PERFORM lock_event(e, false) FROM (SELECT DISTINCT e FROM unnest(p_events) AS e ORDER BY e) AS s;

    -- Rows are collected into arrays and returned only at the end: a row returned from inside a
    -- block that then fails would stay in the result.
    BEGIN
        WITH o AS (
            SELECT * FROM unnest(p_bookings, p_events, p_emails, p_token_jtis, p_queues,
                                 p_idempotency_keys, p_request_hashes, p_totals, p_epochs)
                   WITH ORDINALITY AS o (id, event, email, jti, queue, key, hash, total, epoch, ord)
        ), b AS (
            INSERT INTO bookings (id, event_id, buyer_email, status, token_jti, queue_id,
                                  idempotency_key, request_hash, total_cents)
            SELECT o.id, o.event, o.email, 'confirmed', o.jti, o.queue, o.key, o.hash, o.total
              FROM o JOIN events e ON e.id = o.event AND e.inventory_epoch = o.epoch
            RETURNING bookings.id, bookings.created_at
        ), t AS (
            INSERT INTO tickets (booking_id, tier_id, tier_capacity, number)
            SELECT b.id, x.tier, x.capacity, x.num
              FROM unnest(p_ticket_orders, p_ticket_tiers, p_ticket_capacities, p_ticket_numbers)
                   AS x (ord, tier, capacity, num)
              JOIN b ON b.id = p_bookings[x.ord]
            RETURNING tickets.booking_id, tickets.id, tickets.tier_id, tickets.number
        )
        SELECT coalesce(array_agg(o.ord::integer), '{}'), coalesce(array_agg(b.created_at), '{}'),
               coalesce(array_agg(t.id), '{}'), coalesce(array_agg(t.tier_id), '{}'),
               coalesce(array_agg(t.number), '{}')
          INTO v_orders, v_times, v_ids, v_tiers, v_numbers
          FROM t JOIN b ON b.id = t.booking_id JOIN o ON o.id = b.id;
    EXCEPTION WHEN OTHERS THEN
        v_orders := '{}'; v_times := '{}'; v_ids := '{}'; v_tiers := '{}'; v_numbers := '{}';
        FOR i IN 1 .. n LOOP
            BEGIN
                INSERT INTO bookings (id, event_id, buyer_email, status, token_jti, queue_id,
                                      idempotency_key, request_hash, total_cents)
                SELECT p_bookings[i], p_events[i], p_emails[i], 'confirmed', p_token_jtis[i],
                       p_queues[i], p_idempotency_keys[i], p_request_hashes[i], p_totals[i]
                  FROM events e WHERE e.id = p_events[i] AND e.inventory_epoch = p_epochs[i]
                RETURNING created_at INTO v_created;
                IF FOUND THEN
                    WITH t AS (
                        INSERT INTO tickets (booking_id, tier_id, tier_capacity, number)
                        SELECT p_bookings[i], x.tier, x.capacity, x.num
                          FROM unnest(p_ticket_orders, p_ticket_tiers, p_ticket_capacities,
                                      p_ticket_numbers) AS x (ord, tier, capacity, num)
                         WHERE x.ord = i
                        RETURNING tickets.id, tickets.tier_id, tickets.number
                    )
                    SELECT v_orders || array_agg(i), v_times || array_agg(v_created),
                           v_ids || array_agg(t.id), v_tiers || array_agg(t.tier_id),
                           v_numbers || array_agg(t.number)
                      INTO v_orders, v_times, v_ids, v_tiers, v_numbers FROM t;
                END IF;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
                v_outcome := CASE
                    WHEN v_constraint = 'bookings_token_jti_key' THEN 'token_taken'
                    WHEN v_constraint IN ('tickets_tier_number_key', 'tickets_number_in_range')
                         THEN 'number_taken'
                    ELSE 'refused:' || SQLSTATE || ' ' || coalesce(nullif(v_constraint, ''), SQLERRM) END;
                v_failed := v_failed || i;
                v_failures := v_failures || v_outcome;
            END;
        END LOOP;
    END;

    RETURN QUERY
        SELECT x.ord, 'booked'::text, x.created, x.id, x.tier, x.num
          FROM unnest(v_orders, v_times, v_ids, v_tiers, v_numbers) AS x (ord, created, id, tier, num)
        UNION ALL
        SELECT f.ord, f.outcome, NULL::timestamptz, NULL::uuid, NULL::uuid, NULL::integer
          FROM unnest(v_failed, v_failures) AS f (ord, outcome)
        UNION ALL
        SELECT g.ord, 'fenced'::text, NULL::timestamptz, NULL::uuid, NULL::uuid, NULL::integer
          FROM generate_series(1, n) AS g (ord)
         WHERE g.ord <> ALL (v_orders) AND g.ord <> ALL (v_failed);
END
$$;
