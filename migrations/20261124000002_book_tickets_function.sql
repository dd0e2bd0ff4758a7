-- One round trip per booking: take the event's advisory lock in shared mode, then insert the
-- booking and its tickets only while the event's inventory epoch is still the one the numbers
-- were reserved under. A VOLATILE function gives each statement in it a fresh snapshot, so the
-- epoch is read after the lock is held: a rebuild (which holds the lock exclusively and bumps
-- the epoch) either sees this booking or fences it out. Returns no rows when fenced out.
CREATE FUNCTION book_tickets(
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
    PERFORM pg_advisory_xact_lock_shared(p_lock_key);
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
