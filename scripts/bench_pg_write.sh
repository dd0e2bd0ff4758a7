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
sides="least schema${BASE_MIGRATION:+ base}"
for side in $sides; do pg_write_prepare "$side"; done
note "machine: $(nproc) cores; pgbench -c$CONCURRENCY -j2, ${DURATION}s per run; $(git rev-parse --short HEAD)${BASE_MIGRATION:+; base: the migrations before $BASE_MIGRATION}"
alternating_rounds "$ROUNDS" schema least "$out/schema-least.txt" pg_write
note "this schema / the least write, per round and the median: $(ratios_and_median "$out/schema-least.txt" schema least)"
if [ -n "$BASE_MIGRATION" ]; then
  alternating_rounds "$ROUNDS" schema base "$out/schema-base.txt" pg_write
  note "this schema / the base schema, per round and the median: $(ratios_and_median "$out/schema-base.txt" schema base)"
fi
# What each side wrote is what it claims: four tickets per booking.
for side in $sides; do
  rows=$(psql_to "bench_pg_write_$side" -Atqc "select (select count(*) from tickets) = 4 * (select count(*) from bookings)")
  note "$side: four tickets per booking: $rows"
done
