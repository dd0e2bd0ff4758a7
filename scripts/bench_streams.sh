#!/usr/bin/env bash
# Queue streams on one gateway (BENCHMARKS.md, "Queue streams"): COUNTS open streams from
# SOURCES loopback addresses (127.0.0.x) against as many pages polling at the cadence the
# gateway asks, in one run: the gateway's memory per stream (slope of its RSS), its CPU and
# Redis's commands over a WINDOW, and how long after the worker's decision each admission
# notice reached its stream (ADMIT of them).
# Both over HTTP/1.1 (a connection per page) and HTTP/2 (pages multiplexed, as behind a proxy).
# Results: test-output/bench-streams/summary.txt and streams-http1.json, streams-http2.json.
# BIN=debug runs the debug builds (a smoke run, not a measurement).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_stack

COUNTS=${COUNTS:-5000,10000,20000}
SOURCES=${SOURCES:-10}
WINDOW=${WINDOW:-20}
ADMIT=${ADMIT:-2000}
profile=${BIN:-release}
out=${OUT:-test-output/bench-streams}
mkdir -p "$out"
: > "$out/summary.txt"
summary=$out/summary.txt

# Two sockets per stream (the page's and the gateway's) in this one machine.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
flag=$([ "$profile" = release ] && echo --release || true)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
bin=$CARGO_TARGET_DIR/$profile
cargo build -q $flag -p gateway -p booking -p queue-worker -p loadgen

# A Redis of its own, so its command counter counts this run only.
redis_port=${REDIS_PORT:-6391}
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "$PWD/$out/redis.pid" --logfile "$PWD/$out/redis.log"
export REDIS_URL=redis://127.0.0.1:$redis_port

db=ticket_booking_bench_streams
psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qc "drop database if exists $db with (force)"
create_database "$db"
work=$(mktemp -d)
export DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/$db
# The crowd comes from a handful of addresses.
bench_services_env "$work" 3700 5700 5710
export STREAMS_PER_ADDRESS=1000000 STREAMS_MAX=1000000
$bin/gateway keygen >/dev/null
$bin/gateway migrate >/dev/null

pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"
  kill "$(cat "$out/redis.pid")" 2>/dev/null || true
}
trap cleanup EXIT
$bin/booking > "$out/booking.log" 2>&1 & pids+=("$!")
$bin/queue-worker > "$out/queue-worker.log" 2>&1 & pids+=("$!")
wait_for http://127.0.0.1:5700/readyz

note "machine: $(nproc) cores; $profile builds; file limit $(ulimit -n)"
report() {
python3 - "$1" <<'PY' | tee -a "$out/summary.txt"
import json, sys
r = json.load(open(sys.argv[1]))
p, s, n, q = r["polling"], r["streaming"], r["admission_notice_ms"], r["quiet"]
print(f"nobody watching: gateway CPU {100*q['gateway_cpu_share']:.1f} % of a core, "
      f"Redis {q['redis_commands_per_s']:.0f} commands/s")
print(f"{p['pages']} pages polling at the gateway's cadence: {p['polls_per_s']:.0f} polls/s, "
      f"gateway CPU {100*p['cost']['gateway_cpu_share']:.1f} % of a core, "
      f"Redis {p['cost']['redis_commands_per_s']:.0f} commands/s, {p['cost']['entry_checks_per_s']:.0f} entry reads/s")
print(f"{s['streams']} open streams: gateway CPU {100*s['cost']['gateway_cpu_share']:.1f} % of a core, "
      f"Redis {s['cost']['redis_commands_per_s']:.0f} commands/s, {s['cost']['entry_checks_per_s']:.0f} entry reads/s")
steps = ", ".join(f"{x['streams']}: {x['gateway_rss_kib']/1024:.1f} MiB" for x in s["rss_steps"])
print(f"gateway RSS {s['rss_before_kib']/1024:.1f} MiB before; {steps}")
print(f"memory per stream: {s['kib_per_stream_from_first_step']:.2f} KiB (slope between steps), "
      f"{s['kib_per_stream_from_none']:.2f} KiB (from none open)")
print(f"admission notices: {n['heard']} of {n['asked']} timed (+{n['found_by_a_check_first']} found by a "
      f"stream's own check first): p50 {n['p50']} ms, p99 {n['p99']} ms, max {n['max']} ms after the decision")
PY
}
for mode in http1 http2; do
  # A fresh gateway per mode: an allocator keeps what it freed, which would hide the next
  # mode's memory.
  $bin/gateway serve > "$out/gateway-$mode.log" 2>&1 & gateway_pid=$!; pids+=("$gateway_pid")
  wait_for http://127.0.0.1:3700/readyz
  note ""
  note "== $mode: pages $([ $mode = http1 ] && echo "each on its own connection, as browsers straight to the gateway" || echo "150 to a connection, as behind an HTTP/2 proxy")"
  $bin/loadgen streams --gateway http://127.0.0.1:3700 --gateway-pid "$gateway_pid" \
    --counts "$COUNTS" --sources "$SOURCES" --window "$WINDOW" --admit "$ADMIT" \
    $([ $mode = http2 ] && echo --http2) \
    --redis-url "$REDIS_URL" --out "$out/streams-$mode" > /dev/null
  report "$out/streams-$mode.json"
  kill "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true
done
