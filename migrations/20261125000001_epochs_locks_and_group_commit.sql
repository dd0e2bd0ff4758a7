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

-- 1953066091 is 'tick' in ASCII: the namespace of the event locks among advisory locks.
CREATE FUNCTION lock_event_shared(p_event uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_short integer;
BEGIN
    SELECT short_id INTO v_short FROM events WHERE id = p_event;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(1953066091, v_short);
    RETURN true;
END
$$;

CREATE FUNCTION lock_event_exclusive(p_event uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_short integer;
BEGIN
    SELECT short_id INTO v_short FROM events WHERE id = p_event;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(1953066091, v_short);
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
    PERFORM lock_event_shared(p_event);
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
-- repeated once per ticket, so the arrays of tickets stay flat). For each order, in the batch's
-- order, returns its outcome:
--   'booked'        with booked_at and one row per ticket
--   'fenced'        the event's inventory epoch moved past the order's (a rebuild ran)
--   'token_taken'   a booking with this token's jti exists already
--   'number_taken'  a ticket number is sold already or out of range (Redis drifted)
-- Any other error fails the whole call, as it would fail one order alone.
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
    i integer;
    v_outcome text;
    v_created timestamptz;
    v_ids uuid[];
    v_tiers uuid[];
    v_numbers integer[];
    v_constraint text;
    v_locked uuid[] := '{}';
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_bookings, 1), 0) LOOP
        -- Shared locks are taken once per event and held to the end of the transaction.
        IF NOT p_events[i] = ANY (v_locked) THEN
            PERFORM lock_event_shared(p_events[i]);
            v_locked := v_locked || p_events[i];
        END IF;
        -- Rows returned are collected only once the order's subtransaction succeeded: a row
        -- sent from inside a block that then fails would stay in the result.
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
                SELECT array_agg(t.id), array_agg(t.tier_id), array_agg(t.number)
                  INTO v_ids, v_tiers, v_numbers FROM t;
                v_outcome := 'booked';
            ELSE
                v_outcome := 'fenced';
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME;
            v_outcome := CASE
                WHEN v_constraint = 'bookings_token_jti_key' THEN 'token_taken'
                WHEN v_constraint IN ('tickets_tier_number_key', 'tickets_number_in_range')
                     THEN 'number_taken'
                ELSE 'refused:' || SQLSTATE || ' ' || coalesce(nullif(v_constraint, ''), SQLERRM) END;
        END;
        IF v_outcome = 'booked' THEN
            RETURN QUERY SELECT i, v_outcome, v_created, x.id, x.tier, x.num
                           FROM unnest(v_ids, v_tiers, v_numbers) AS x (id, tier, num);
        ELSE
            RETURN QUERY SELECT i, v_outcome, NULL::timestamptz, NULL::uuid, NULL::uuid, NULL::integer;
        END IF;
    END LOOP;
END
$$;
