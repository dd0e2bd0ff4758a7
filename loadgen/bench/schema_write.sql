-- The same booking (1 VIP + 1 FrontRow + 2 GA) written into this project's own schema, with all
-- its constraints and guards (migrations/), in one statement: the rows the booking service writes,
-- without the service. Numbers from sequences, so no two transactions collide; the booking id is
-- time first, as the booking service's (UUIDv7).
WITH b AS (
    INSERT INTO bookings (id, event_id, buyer_email, status, token_jti, queue_id, request_hash, total_cents)
    VALUES ((lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
            || '7' || substr(md5(random()::text), 1, 19))::uuid, :event::uuid, 'bench@example.com', 'confirmed', gen_random_uuid(),
            gen_random_uuid(), '\x00', 10000)
    RETURNING id
)
INSERT INTO tickets (booking_id, tier_id, tier_capacity, number)
SELECT b.id, t.tier_id, 1000000, nextval(t.numbers)
  FROM b, (VALUES (:vip::uuid, 'bench_vip_numbers'), (:front::uuid, 'bench_front_numbers'),
                  (:ga::uuid, 'bench_ga_numbers'), (:ga::uuid, 'bench_ga_numbers')) AS t (tier_id, numbers);
