#!/usr/bin/env bash
# Where a booking's time goes (issue 25; BENCHMARKS.md, "The write path, component by
# component"), in one run on this machine:
#   * rounds in turn of the HTTP booking ceiling (loadgen booking-ceiling, closed loop, each
#     booking 1 VIP + 1 FrontRow + 2 GA with a freshly signed token), pgbench writing the same
#     rows into this project's schema (loadgen/bench/schema_write.sql) and pgbench's least write
#     of them (minimal_write.sql), each round in another order; the figures are medians;
#   * during every HTTP round, each process's CPU (user + system, from /proc) per booking made:
#     Postgres (all its processes), the booking service, Redis, the gateway, the worker and the
#     load generator; and
#     Redis's commands per booking; during every pgbench round, Postgres's CPU per transaction
#     (one transaction is one booking), so Postgres's share of an HTTP booking compares with it;
#   * one more HTTP round under perf (not counted): a flamegraph per component (the booking
#     service, Postgres, Redis) in $OUT/flame-*.svg, drawn with inferno (installed with cargo
#     when missing), with B_SQL applied when it is set.
# ROUNDS, DURATION (a multiple of 5: the load generator reports progress every 5 s, and the
# CPU window ends at its last report), CONCURRENCY, ORDER and OUT may be set; PROFILE=0 skips the
# flamegraphs.
# A_SQL and B_SQL measure a reversible change side by side: with them set, the HTTP side runs
# twice a round, `http-a` after A_SQL and `http-b` after B_SQL (each run against the service's
# database just before), e.g. a function's setting and its reset.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_stack

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-16}
PROFILE=${PROFILE:-1}
# What each HTTP booking asks for: the rows the pgbench sides write (a booking and 4 tickets).
# Until session 22 the HTTP side booked one or two tiers of one or two tickets (2.0 tickets a
# booking against pgbench's 4), so it was measured against heavier baselines than itself.
ORDER=${ORDER:-VIP=1,FrontRow=1,GA=2}
out=${OUT:-test-output/bench-split}
mkdir -p "$out"
: > "$out/summary.txt"
summary=$out/summary.txt

root=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
bin=$CARGO_TARGET_DIR/release
cargo build -q --release -p gateway -p booking -p queue-worker -p loadgen
if [ "$PROFILE" = 1 ] && ! command -v inferno-flamegraph > /dev/null; then
  cargo install -q --locked inferno
fi

for side in least schema; do pg_write_prepare "$side"; done

db=ticket_booking_bench_split
psql_to postgres -qc "drop database if exists $db with (force)"
create_database "$db"
work=$(mktemp -d)
export DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/$db
bench_services_env "$work" 3800 5800 5810
export DATABASE_MAX_CONNECTIONS=$CONCURRENCY
"$bin/gateway" keygen > /dev/null
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$bin/gateway" serve > "$out/gateway.log" 2>&1 & pids+=("$!")
wait_for http://127.0.0.1:3800/readyz
"$bin/queue-worker" > "$out/queue-worker.log" 2>&1 & pids+=("$!")
"$bin/booking" > "$out/booking.log" 2>&1 & pids+=("$!")
booking_pid=$!
wait_for http://127.0.0.1:5800/readyz
redis_pid=$(pgrep -x redis-server | head -1)

# Every process's CPU ticks (user + system, its own and its reaped children's) by pid, with its
# name: a snapshot before and after a run, diffed per pid and summed per name (a process that
# ends between them counts through its parent). Clock ticks are 10 ms: over 5 s, fine.
cpu_snapshot() {
  python3 - <<'PY'
import os
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        stat = open(f'/proc/{pid}/stat').read()
    except OSError:
        continue
    name = stat[stat.index('(') + 1:stat.rindex(')')]
    fields = stat[stat.rindex(')') + 2:].split()
    # utime + stime, and cutime + cstime: the time of children that ended and were reaped,
    # which for the postmaster is the backends of connections closed meanwhile (pgbench's).
    print(pid, name.replace(' ', '_'), sum(int(f) for f in fields[11:15]))
PY
}
# The whole machine's CPU ticks (/proc/stat's first line) and the booking service's writes so
# far (its batch-size histogram's count and sum): a snapshot; machine_use diffs two of them.
machine_snapshot() {
  head -1 /proc/stat
  curl -fsS http://127.0.0.1:5800/metrics | grep -E '^booking_write_batch_size_(count|sum) ' || true
}
# machine_use BEFORE AFTER: "busy SHARE" (of all cores, idle and iowait left out) and "batch
# MEAN" (orders a write): whether the closed loop keeps the cores busy, and how.
machine_use() {
  python3 - "$@" <<'PY'
import sys
def read(path):
    lines = open(path).read().split('\n')
    ticks = [int(x) for x in lines[0].split()[1:]]
    m = dict(l.split() for l in lines[1:] if l.strip())
    return ticks, m
(tb, mb), (ta, ma) = read(sys.argv[1]), read(sys.argv[2])
d = [a - b for a, b in zip(ta, tb)]
print('busy', f'{1 - (d[3] + d[4]) / max(sum(d), 1):.3f}')
key = 'booking_write_batch_size_'
if key + 'count' in ma and key + 'count' in mb:
    writes = float(ma[key + 'count']) - float(mb[key + 'count'])
    orders = float(ma[key + 'sum']) - float(mb[key + 'sum'])
    print('batch', f'{orders / max(writes, 1):.2f}')
PY
}
# cpu_per_booking BEFORE AFTER BOOKINGS: "name us" per process name, µs of CPU per booking.
cpu_per_booking() {
  python3 - "$@" "$(getconf CLK_TCK)" <<'PY'
import collections, sys
before, after, booked, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
read = lambda path: {(p, n): int(t) for p, n, t in (line.split() for line in open(path))}
b, a = read(before), read(after)
spent = collections.Counter()
# A process that started in between (a pool's new connection) counts from zero.
for key, ticks in a.items():
    spent[key[1]] += ticks - b.get(key, 0)
# The load generator too (its window starts after it minted its tokens): what the load itself
# costs the same two cores. Processes that spent nothing are left out.
for name in ('postgres', 'booking', 'redis-server', 'gateway', 'queue-worker', 'loadgen'):
    if spent[name]:
        print(name, f'{spent[name] * 1e6 / hz / max(booked, 1):.1f}')
PY
}
# Redis's commands over the same window as the CPU (counters reset at its start): per booking,
# each command's calls and the µs Redis timed inside it ("name calls us"). A script's time
# includes the commands it calls, which are also counted under their own names, and every time
# is wall time: on two busy cores it includes the moments Redis was preempted (the slow log saw
# single HGETs take 140 µs), so the calls are the figure to read; Redis's CPU is in cpu.txt.
redis_per_booking() { # redis_per_booking COMMANDSTATS BOOKINGS
  python3 - "$@" <<'PY'
import re, sys
booked = max(int(sys.argv[2]), 1)
for line in open(sys.argv[1]):
    m = re.match(r'cmdstat_([^:]+):calls=(\d+),usec=(\d+)', line)
    if m:
        print(m.group(1), f'{int(m.group(2)) / booked:.2f}', f'{int(m.group(3)) / booked:.1f}')
PY
}
# The load generator's progress line at SECOND ("bookings: 5 s of 10 s, 6260 requests, ...",
# on its stderr): waits for it, then prints its request count.
requests_at() { # requests_at FILE SECOND PID: PID the load generator (gone without it: fail)
  until grep -q "^bookings: $2 s of" "$1" 2>/dev/null; do
    kill -0 "$3" 2> /dev/null || { echo "no progress line at $2 s in $1" >&2; return 1; }
    sleep 0.05
  done
  sed -n "s/^bookings: $2 s of [0-9]* s, \([0-9]*\) requests.*/\1/p" "$1" | head -1
}
http() { # http SIDE ROUND: one timed closed-loop run, its bookings/s; CPU per booking kept
  local name=$1-$2 first last
  "$bin/loadgen" booking-ceiling --mode closed --concurrency "$CONCURRENCY" --duration "$DURATION" \
    --order "$ORDER" \
    --gateway http://127.0.0.1:3800 --booking http://127.0.0.1:5800 --keys-dir "$ENTRY_KEYS_DIR" \
    --kid bench --database-url "$DATABASE_URL" --out "$out/$name" > "$out/$name.txt" \
    2> "$out/$name.progress" &
  local load=$!
  # The CPU between the progress lines at 5 s and at the end of the timed phase: not the
  # tokens minted before it, nor the ledger's queries after it. Every booking is one request.
  # Inside $(...) errexit is off: a missing progress line must fail the run, not yield garbage
  # (a load generator that spent its tokens early once gave one booking for the whole phase).
  first=$(requests_at "$out/$name.progress" 5 "$load") || return 1
  cpu_snapshot > "$out/$name.cpu-before"
  machine_snapshot > "$out/$name.machine-before"
  redis_stats config resetstat > /dev/null
  last=$(requests_at "$out/$name.progress" "$DURATION" "$load") || return 1
  cpu_snapshot > "$out/$name.cpu-after"
  machine_snapshot > "$out/$name.machine-after"
  redis_stats info commandstats > "$out/$name.redis-commands"
  wait "$load"
  cpu_per_booking "$out/$name.cpu-before" "$out/$name.cpu-after" $((last - first)) | sed "s/^/$1 /" >> "$out/cpu.txt"
  redis_per_booking "$out/$name.redis-commands" $((last - first)) | sed "s/^/$1 /" >> "$out/redis-commands.txt"
  machine_use "$out/$name.machine-before" "$out/$name.machine-after" | sed "s/^/$1 /" >> "$out/machine.txt"
  field "$out/$name.json" "[e for e in r['endpoints'] if e['endpoint']=='POST /api/bookings'][0]['throughput_per_s']"
}
pgbench_side() { # pgbench_side SIDE ROUND: pg_write, and Postgres's CPU per transaction kept
  local figure transactions
  cpu_snapshot > "$out/$1-$2.cpu-before"
  figure=$(pg_write "$@") || return 1
  sleep 0.5 # pgbench's backends end after it does; the postmaster reaps them
  cpu_snapshot > "$out/$1-$2.cpu-after"
  # The whole run, connections included: pgbench's own CPU is not Postgres's (left out; it has
  # ended by the second snapshot).
  transactions=$(awk '/^number of transactions actually processed/ {print $NF}' "$out/pgbench-$1-$2.txt")
  cpu_per_booking "$out/$1-$2.cpu-before" "$out/$1-$2.cpu-after" "$transactions" \
    | awk -v side="$1" '$1 == "postgres" {print side, $0}' >> "$out/cpu.txt"
  echo "$figure"
}
measure() { # measure SIDE ROUND
  case $1 in
    http-a) psql_to "$db" -qc "$A_SQL" && http "$@" ;;
    http-b) psql_to "$db" -qc "$B_SQL" && http "$@" ;;
    http) http "$@" ;;
    *) pgbench_side "$@" ;;
  esac
}

note "machine: $(nproc) cores; concurrency $CONCURRENCY (pgbench -c$CONCURRENCY -j2); ${DURATION}s per run; $(git rev-parse --short HEAD)"
: > "$out/rounds.txt"
: > "$out/cpu.txt"
: > "$out/redis-commands.txt"
: > "$out/machine.txt"
sides=(http schema least)
if [ -n "${A_SQL:-}" ] && [ -n "${B_SQL:-}" ]; then sides=(http-a http-b schema least); fi
for round in $(seq 1 "$ROUNDS"); do
  # Each round starts one side later, so no side always runs first on a drifting machine.
  shift=$(((round - 1) % ${#sides[@]}))
  order="${sides[*]:$shift} ${sides[*]:0:$shift}"
  for side in $order; do
    figure=$(measure "$side" "$round")
    echo "$round $side $figure" >> "$out/rounds.txt"
    note "round $round $side: $figure"
  done
done
note "$(python3 - "$out/rounds.txt" "$out/cpu.txt" "$out/redis-commands.txt" "$out/machine.txt" <<'PY'
import collections, statistics, sys
r = collections.defaultdict(list)
for line in open(sys.argv[1]):
    n, side, v = line.split()
    r[side].append(float(v))
m = {side: statistics.median(v) for side, v in r.items()}
print(f"medians of {len(r['least'])} rounds: " + ", ".join(f"{side} {v:.0f}/s" for side, v in m.items()))
for side in (s for s in m if s.startswith('http')):
    print(f"{side} / least write: {m[side] / m['least']:.3f}x (aim >= 0.6x); / this schema's pgbench: "
          f"{m[side] / m['schema']:.3f}x (aim >= 1.0x)")
print(f"this schema / least write: {m['schema'] / m['least']:.3f}x")
if 'http-a' in r:
    ratios = [b / a for a, b in zip(r['http-a'], r['http-b'])]
    print(f"http-b / http-a per round: {', '.join(f'{x:.3f}' for x in ratios)}; median {statistics.median(ratios):.3f}")
cpu = collections.defaultdict(list)
for line in open(sys.argv[2]):
    side, name, us = line.split()
    cpu[(side, name)].append(float(us))
for side in sorted({s for s, _ in cpu}):
    when = "between 5 s and the end of each run" if side.startswith("http") else "per transaction, the whole run"
    print(f"CPU per booking, {side} (medians, {when}): " + ", ".join(
        f"{name} {statistics.median(v):.0f} us" for (s, name), v in cpu.items() if s == side))
use = collections.defaultdict(list)
for line in open(sys.argv[4]):
    side, name, v = line.split()
    use[(side, name)].append(float(v))
for side in sorted({s for s, _ in use}):
    print(f"the machine during {side} (medians): " + ", ".join(
        f"{'cores busy' if name == 'busy' else 'orders a write'} {statistics.median(v):.3g}"
        for (s, name), v in sorted(use.items()) if s == side))
calls = collections.defaultdict(list)
for line in open(sys.argv[3]):
    side, name, n, us = line.split()
    calls[(side, name)].append((float(n), float(us)))
for side in sorted({s for s, _ in calls}):
    print(f"Redis per booking, {side} (medians; calls, us inside): " + ", ".join(
        f"{name} {statistics.median(n for n, _ in v):.2f} / {statistics.median(u for _, u in v):.1f} us"
        for (s, name), v in sorted(calls.items()) if s == side and statistics.median(n for n, _ in v) >= 0.01))
PY
)"
note "ledger after the HTTP rounds: $(grep -c BROKEN "$out"/http*-[0-9]*.txt | awk -F: '{s+=$2} END {print (s ? s " checks BROKEN" : "every check holds")}')"

if [ "$PROFILE" = 1 ]; then
  # One more run under perf, not counted: sampling costs the processes it samples. DWARF
  # unwinding, as neither the release build nor Debian's servers keep frame pointers.
  if [ -n "${B_SQL:-}" ]; then psql_to "$db" -qc "$B_SQL"; fi
  "$bin/loadgen" booking-ceiling --mode closed --concurrency "$CONCURRENCY" --duration $((DURATION + 4)) \
    --order "$ORDER" \
    --gateway http://127.0.0.1:3800 --booking http://127.0.0.1:5800 --keys-dir "$ENTRY_KEYS_DIR" \
    --kid bench --database-url "$DATABASE_URL" --out "$out/http-profiled" > "$out/http-profiled.txt" &
  load=$!
  sleep 2
  postgres_pids=$(pgrep -x postgres | paste -sd, -)
  perfs=()
  for part in "booking:$booking_pid" "redis:$redis_pid" "postgres:$postgres_pids"; do
    perf record -q -F 99 --call-graph dwarf,16384 -p "${part#*:}" -o "$out/perf-${part%%:*}.data" \
      -- sleep "$DURATION" > /dev/null 2>&1 & perfs+=("$!")
  done
  wait "${perfs[@]}" "$load"
  for part in booking redis postgres; do
    perf script -i "$out/perf-$part.data" 2> /dev/null | inferno-collapse-perf > "$out/flame-$part.folded"
    inferno-flamegraph --minwidth 0.2 --title "$part: booking-ceiling, $CONCURRENCY clients ($(git rev-parse --short HEAD))" \
      < "$out/flame-$part.folded" > "$out/flame-$part.svg"
    rm -f "$out/perf-$part.data"
    note "flamegraph: $out/flame-$part.svg ($(awk '{s += $NF} END {printf "%.0f", s / 1e6}' "$out/flame-$part.folded") ms of CPU sampled over ${DURATION} s)"
  done
fi
