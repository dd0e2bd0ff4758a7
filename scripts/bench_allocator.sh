#!/usr/bin/env bash
# What giving freed memory back costs (BENCHMARKS.md, "Memory given back"): one gateway binary run
# twice side by side, idle workers collecting at most once a second (ALLOCATOR_COLLECT_MS=1000,
# the default) and never (0); loadgen queue-storm against each in alternating rounds, the same
# database, Redis and worker. Then each gateway's resident memory before and after a wave of
# 4,000 connections that send half a head or nothing (closed by the header-read timeout).
# Results: test-output/bench-allocator/summary.txt. ROUNDS and DURATION may be set; BIN=debug
# runs the debug builds (a smoke run, not a measurement).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_stack

ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-10}
profile=${BIN:-release}
out=${OUT:-test-output/bench-allocator}
mkdir -p "$out"
: > "$out/summary.txt"
summary=$out/summary.txt

flag=$([ "$profile" = release ] && echo --release || true)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
bin=$CARGO_TARGET_DIR/$profile
cargo build -q $flag -p gateway -p booking -p queue-worker -p loadgen

db=ticket_booking_bench_allocator
psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qc "drop database if exists $db with (force)"
create_database "$db"
work=$(mktemp -d)
export DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/$db
bench_services_env "$work" 3700 5700 5710
export HTTP_HEADER_READ_TIMEOUT_MS=3000 HTTP_CONNECTIONS_PER_ADDRESS=100000
"$bin/gateway" keygen >/dev/null
"$bin/gateway" migrate >/dev/null

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ALLOCATOR_COLLECT_MS=1000 "$bin/gateway" serve > "$out/gateway-collect.log" 2>&1 & pids+=("$!")
collect_pid=$!
GATEWAY_ADDR=127.0.0.1:3701 WORKER_ADDR=127.0.0.1:5711 ALLOCATOR_COLLECT_MS=0 \
  "$bin/gateway" serve > "$out/gateway-keep.log" 2>&1 & pids+=("$!")
keep_pid=$!
"$bin/booking" > "$out/booking.log" 2>&1 & pids+=("$!")
"$bin/queue-worker" > "$out/queue-worker.log" 2>&1 & pids+=("$!")
wait_for http://127.0.0.1:5700/readyz
wait_for http://127.0.0.1:3700/readyz
wait_for http://127.0.0.1:3701/readyz
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

note "machine: $(nproc) cores; $profile builds"
note "== polls/s, collecting (1 s) vs never, alternating rounds of queue-storm (64 clients, ${DURATION}s)"
: > "$out/polls.txt"
storm() {
  "$bin/loadgen" queue-storm --gateway "http://127.0.0.1:$([ "$1" = collect ] && echo 3700 || echo 3701)" \
    --concurrency 64 --duration "$2" --out "$out/storm-$1-$3" --keys-dir "$ENTRY_KEYS_DIR" \
    --kid bench --database-url "$DATABASE_URL" --booking http://127.0.0.1:5700 > /dev/null
}
storm collect 4 warm; storm keep 4 warm
polls_of() { # side round: one timed storm, its polls/s
  storm "$1" "$DURATION" "$2"
  field "$out/storm-$1-$2.json" "round([e for e in r['endpoints'] if e['endpoint'].startswith('GET')][0]['throughput_per_s'])"
}
alternating_rounds "$ROUNDS" collect keep "$out/polls.txt" polls_of
note "collect/keep polls/s per round, and the median: $(ratios_and_median "$out/polls.txt" collect keep)"

note "== resident memory (KiB) around a wave of 2,000 half heads and 2,000 silent connections"
for which in collect keep; do
  pid=$([ "$which" = collect ] && echo "$collect_pid" || echo "$keep_pid")
  port=$([ "$which" = collect ] && echo 3700 || echo 3701)
  before=$(rss "$pid")
  python3 - "$port" <<'EOF'
import socket, sys, time
port = int(sys.argv[1])
held = []
for i in range(4000):
    s = socket.create_connection(("127.0.0.1", port))
    if i < 2000:
        s.sendall(b"GET /api/events HTTP/1.1\r\nhost: gateway\r\nx-slowly: ")
    held.append(s)
time.sleep(6)  # past the 3 s header-read timeout: the gateway closed them all
for s in held:
    s.close()
EOF
  sleep 5
  note "$which: $before before, $(rss "$pid") after"
done
