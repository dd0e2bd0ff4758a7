#!/usr/bin/env bash
# Background work follows the sales, not the catalog (BENCHMARKS.md, "A catalog of 100,000
# events"), in one run on this machine, release builds, a private redis-server (so its CPU is
# this benchmark's alone):
#   A. 10 sales with a crowd each (loadgen on-sale, started together), the catalog holding only
#      them: the queue-worker's, Redis's and Postgres's CPU and Postgres's transactions/s over a
#      window in the middle of the sales.
#   C. a fresh database of $CATALOG (default 100,000) events (future sales, none on sale, 3
#      tiers each), the services and Redis started afresh, no crowd: the same figures
#      (Postgres's transactions/s from the services alone).
#   B. then 10 new sales with the same crowds beside that catalog, measured the same way.
#   D. the in-process catalogs: gateway and booking service memory (RSS) before and after
#      $TOUCH (default 20,000) distinct events are read through them, and what the booking
#      service's refresh of known event ids costs Postgres at this catalog size.
# A and C+B each run on a fresh database, Redis and services, so what one phase's sales leave
# behind (lines of visitors who left, sales in their opening window) is not counted in the
# other's: B is A's 10 sales beside the catalog, nothing else.
# Results: test-output/bench-catalog/summary.txt and the loadgen reports beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_rust
ensure_postgres
ensure_postgres_access

CATALOG=${CATALOG:-100000}
TOUCH=${TOUCH:-20000}
VISITORS=${VISITORS:-1500}
ARRIVAL=${ARRIVAL:-30}
WINDOW=${WINDOW:-30}
out=${OUT:-test-output/bench-catalog}
mkdir -p "$out"
: > "$out/summary.txt"
: > "$out/measures.txt"
summary=$out/summary.txt

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q --release -p gateway -p booking -p queue-worker -p loadgen
bin=$CARGO_TARGET_DIR/release

db=ticket_booking_bench_catalog
fresh_database() {
  psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qc "drop database if exists $db with (force)"
  create_database "$db"
  $bin/gateway migrate >/dev/null
}
work=$(mktemp -d)
redis_port=6391
export REDIS_URL=redis://127.0.0.1:$redis_port
export DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/$db
bench_services_env "$work" 3800 5800 5810
export BOOKING_PER_TOKEN_PER_SECOND=1000000
$bin/gateway keygen >/dev/null

pids=()
stop_all() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
}
cleanup() { stop_all; rm -rf "$work"; }
trap cleanup EXIT
# start PHASE: a fresh private Redis and the three services.
start() {
  redis-server --port $redis_port --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    > "$out/redis-$1.log" 2>&1 & redis_pid=$!; pids+=("$redis_pid")
  sleep 0.5
  $bin/gateway serve > "$out/gateway-$1.log" 2>&1 & gateway_pid=$!; pids+=("$gateway_pid")
  $bin/booking > "$out/booking-$1.log" 2>&1 & booking_pid=$!; pids+=("$booking_pid")
  $bin/queue-worker > "$out/queue-worker-$1.log" 2>&1 & worker_pid=$!; pids+=("$worker_pid")
  wait_for http://127.0.0.1:3800/readyz
  wait_for http://127.0.0.1:5800/readyz
  wait_for http://127.0.0.1:5810/readyz
}

# CPU seconds of the given processes (utime + stime), and of every Postgres process.
ticks() { for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{s += $1} END {print s}'; }
pg_ticks() { ticks $(pgrep -u postgres postgres); }
xacts() { psql -h "$PG_HOST" -U "$PG_USER" -d postgres -Atqc \
  "select xact_commit + xact_rollback from pg_stat_database where datname = '$db'"; }
hz=$(getconf CLK_TCK)
# measure LABEL: the window's figures, one line.
measure() {
  local w0 r0 p0 g0 b0 x0 w1 r1 p1 g1 b1 x1
  w0=$(ticks $worker_pid); r0=$(ticks $redis_pid); p0=$(pg_ticks); g0=$(ticks $gateway_pid)
  b0=$(ticks $booking_pid); x0=$(xacts)
  sleep "$WINDOW"
  w1=$(ticks $worker_pid); r1=$(ticks $redis_pid); p1=$(pg_ticks); g1=$(ticks $gateway_pid)
  b1=$(ticks $booking_pid); x1=$(xacts)
  python3 - "$1" "$WINDOW" "$hz" $w0 $w1 $r0 $r1 $p0 $p1 $g0 $g1 $b0 $b1 $x0 $x1 <<'PY' | tee -a "$out/measures.txt"
import sys
label, window, hz = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
v = [float(x) for x in sys.argv[4:]]
cpu = lambda a, b: (b - a) / hz / window * 100
print(f"{label}: worker {cpu(v[0], v[1]):.1f} %, redis {cpu(v[2], v[3]):.1f} %, postgres {cpu(v[4], v[5]):.1f} %, "
      f"gateway {cpu(v[6], v[7]):.1f} %, booking {cpu(v[8], v[9]):.1f} %, postgres {(v[11] - v[10]) / window:.1f} transactions/s")
PY
}
# sales LABEL: 10 loadgen on-sale runs side by side, measured in the middle.
sales() {
  local lg=()
  for i in $(seq 1 10); do
    $bin/loadgen on-sale --visitors "$VISITORS" --arrival-rate "$ARRIVAL" --abandon 0.2 \
      --admission-per-minute 1200 --max-active 300 --vip 100 --front-row 200 --ga 1000 \
      --max-duration $((WINDOW + 40)) --gateway http://127.0.0.1:3800 --booking http://127.0.0.1:5800 \
      --keys-dir "$ENTRY_KEYS_DIR" --kid bench --database-url "$DATABASE_URL" \
      --out "$out/$1-sale-$i" > "$out/$1-sale-$i.txt" 2>&1 &
    lg+=("$!")
  done
  sleep 15
  measure "$1"
  wait "${lg[@]}" || true
}

note "machine: $(nproc) cores; ${WINDOW}s windows; 10 sales of $VISITORS visitors arriving at $ARRIVAL/s each"
note "== A. the 10 sales alone"
fresh_database
start A
sales A
note "$(tail -1 "$out/measures.txt")"
stop_all

note "== C. a database of $CATALOG events, services and Redis started afresh, no crowd"
fresh_database
psql -h "$PG_HOST" -U "$PG_USER" -d "$db" -q <<SQL
INSERT INTO venues (name) VALUES ('Catalog Hall') ON CONFLICT (name) DO NOTHING;
WITH v AS (SELECT id FROM venues WHERE name = 'Catalog Hall'),
     e AS (
       INSERT INTO events (name, venue_id, starts_at, on_sale_at)
       SELECT 'catalog ' || g, v.id, now() + interval '60 days' + g * interval '1 minute',
              now() + interval '30 days' + g * interval '1 minute'
         FROM generate_series(1, $CATALOG) AS g, v
       RETURNING id)
INSERT INTO ticket_tiers (event_id, code, name, price_cents, capacity, position)
SELECT e.id, t.code, t.code, 1000, t.capacity, t.position
  FROM e, (VALUES ('VIP', 50, 0), ('FrontRow', 150, 1), ('GA', 800, 2)) AS t (code, capacity, position);
ANALYZE events; ANALYZE ticket_tiers;
SQL
note "catalog: $(psql -h "$PG_HOST" -U "$PG_USER" -d "$db" -Atqc 'select count(*) from events') events"
start C
sleep 10
measure C
note "$(tail -1 "$out/measures.txt")"
note "worker's hot set: $(curl -s http://127.0.0.1:5810/healthz)"

note "== B. 10 new sales, the same crowds, beside the catalog"
sales B
note "$(tail -1 "$out/measures.txt")"
note "ledger after the sales: $(grep -c BROKEN "$out"/[AB]-sale-*.txt | awk -F: '{s+=$2} END {print (s ? s " checks BROKEN" : "every check holds")}')"

note "== D. the in-process catalogs after $TOUCH distinct events are read"
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
g0=$(rss $gateway_pid); b0=$(rss $booking_pid)
psql -h "$PG_HOST" -U "$PG_USER" -d "$db" -Atqc "select id from events order by random() limit $TOUCH" > "$work/ids"
# Eight clients at a time; each read fills the gateway's directory or the booking service's cache.
xargs -P 8 -I{} sh -c 'curl -s -o /dev/null http://127.0.0.1:3800/api/events/{}; curl -s -o /dev/null http://127.0.0.1:5800/api/events/{}/availability' < "$work/ids"
g1=$(rss $gateway_pid); b1=$(rss $booking_pid)
note "gateway RSS ${g0} -> ${g1} KiB, booking RSS ${b0} -> ${b1} KiB"
refresh_ms=$(psql -h "$PG_HOST" -U "$PG_USER" -d "$db" -Atqc \
  "explain (analyze, format json) select id, short_id from events where short_id > (select max(short_id) from events) - 1000" \
  | python3 -c 'import json, sys; p = json.load(sys.stdin)[0]; print(round(p["Execution Time"], 2), "ms,", p["Plan"]["Actual Rows"], "rows")')
note "known-id refresh at this size (booking, at most 10 a second): $refresh_ms"
