-- The least write of one booking of 1 VIP + 1 FrontRow + 2 GA into minimal_schema.sql, in one
-- statement; numbers from sequences, so no two transactions collide. The booking id is time
-- first, as the booking service's (UUIDv7).
WITH b AS (
    INSERT INTO bookings (id, event_id, buyer_email, total_cents)
    VALUES ((lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
            || '7' || substr(md5(random()::text), 1, 19))::uuid, :event::uuid, 'bench@example.com', 10000)
    RETURNING id
)
INSERT INTO tickets (booking_id, tier_id, number)
SELECT b.id, t.tier_id, nextval(t.numbers)
  FROM b, (VALUES (:vip::uuid, 'bench_vip_numbers'), (:front::uuid, 'bench_front_numbers'),
                  (:ga::uuid, 'bench_ga_numbers'), (:ga::uuid, 'bench_ga_numbers')) AS t (tier_id, numbers);
