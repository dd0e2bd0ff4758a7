#!/usr/bin/env bash
# Postgres's share of a booking (BENCHMARKS.md, "Postgres's share of a booking"): pgbench
# writing one booking of 1 VIP + 1 FrontRow + 2 GA (a booking row and four ticket rows, one
# statement) into two or three databases, side by side in alternating rounds on this machine:
#   least   the least write: a schema of primary keys and one foreign key (loadgen/bench/minimal_schema.sql)
#   schema  this project's schema, every migration applied (its guards included)
#   base    with BASE_MIGRATION set (a migration's number): this project's schema without that
#           migration and those after it, to measure a schema change against the schema before
# Each database's schema comes from the SQL files themselves (psql, in order), so no service is
# built. Results: test-output/bench-pg-write/summary.txt.
# ROUNDS, DURATION, CONCURRENCY and BASE_MIGRATION may be set.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_postgres
ensure_postgres_access

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-16}
BASE_MIGRATION=${BASE_MIGRATION:-}
out=${OUT:-test-output/bench-pg-write}
mkdir -p "$out"
summary=$out/summary.txt
: > "$summary"
psql_to() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -v ON_ERROR_STOP=1 -d "$@"; }

prepare() { # prepare SIDE: a fresh database bench_pg_write_SIDE with its schema and one event
  local db=bench_pg_write_$1
  psql_to postgres -qc "drop database if exists $db with (force)"
  create_database "$db"
  if [ "$1" = least ]; then
    psql_to "$db" -qf loadgen/bench/minimal_schema.sql
    psql_to "$db" -Atqc "select concat_ws(' ', gen_random_uuid(), gen_random_uuid(),
      gen_random_uuid(), gen_random_uuid())" > "$out/$1.ids"
  else
    for file in migrations/*.sql; do
      if [ "$1" = base ] && [[ ! "$(basename "$file")" < "$BASE_MIGRATION" ]]; then break; fi
      psql_to "$db" -qf "$file"
    done
    psql_to "$db" -Atq > "$out/$1.ids" <<SQL
WITH v AS (INSERT INTO venues (name) VALUES ('Bench') RETURNING id),
     e AS (INSERT INTO events (name, venue_id, starts_at, on_sale_at)
           SELECT 'pgbench', id, now() + interval '30 days', now() FROM v RETURNING id),
     t AS (INSERT INTO ticket_tiers (event_id, code, name, price_cents, capacity, position)
           SELECT e.id, x.code, x.code, 100, 1000000, x.pos FROM e,
                  (VALUES ('VIP', 0), ('FrontRow', 1), ('GA', 2)) AS x (code, pos)
           RETURNING code, id)
SELECT (SELECT id FROM e) || ' ' || (SELECT id FROM t WHERE code = 'VIP') || ' '
    || (SELECT id FROM t WHERE code = 'FrontRow') || ' ' || (SELECT id FROM t WHERE code = 'GA');
SQL
  fi
  psql_to "$db" -qc "CREATE SEQUENCE bench_vip_numbers MAXVALUE 1000000;
    CREATE SEQUENCE bench_front_numbers MAXVALUE 1000000; CREATE SEQUENCE bench_ga_numbers MAXVALUE 1000000;"
}

write() { # write SIDE ROUND: one timed pgbench, its transactions/s
  local db=bench_pg_write_$1 script=loadgen/bench/schema_write.sql
  [ "$1" = least ] && script=loadgen/bench/minimal_write.sql
  # Every run starts from empty tables and fresh numbers: equal for every side and round, and a
  # tier's million numbers never run out however many rounds there are.
  psql_to "$db" -qc "TRUNCATE tickets, bookings; ALTER SEQUENCE bench_vip_numbers RESTART;
    ALTER SEQUENCE bench_front_numbers RESTART; ALTER SEQUENCE bench_ga_numbers RESTART;"
  read -r event vip front ga < "$out/$1.ids"
  pgbench -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -n -M prepared -c "$CONCURRENCY" -j 2 \
    -T "$DURATION" -D event="$event" -D vip="$vip" -D front="$front" -D ga="$ga" \
    -f "$script" "$db" > "$out/pgbench-$1-$2.txt" 2>&1
  awk '/^tps/ {printf "%.0f\n", $3; exit}' "$out/pgbench-$1-$2.txt"
}

sides="least schema${BASE_MIGRATION:+ base}"
for side in $sides; do prepare "$side"; done
note "machine: $(nproc) cores; pgbench -c$CONCURRENCY -j2, ${DURATION}s per run; $(git rev-parse --short HEAD)${BASE_MIGRATION:+; base: the migrations before $BASE_MIGRATION}"
alternating_rounds "$ROUNDS" schema least "$out/schema-least.txt" write
note "this schema / the least write, per round and the median: $(ratios_and_median "$out/schema-least.txt" schema least)"
if [ -n "$BASE_MIGRATION" ]; then
  alternating_rounds "$ROUNDS" schema base "$out/schema-base.txt" write
  note "this schema / the base schema, per round and the median: $(ratios_and_median "$out/schema-base.txt" schema base)"
fi
# What each side wrote is what it claims: four tickets per booking.
for side in $sides; do
  rows=$(psql_to "bench_pg_write_$side" -Atqc "select (select count(*) from tickets) = 4 * (select count(*) from bookings)")
  note "$side: four tickets per booking: $rows"
done
