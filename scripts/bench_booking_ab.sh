#!/usr/bin/env bash
# The booking service of this tree against the one of git rev $BASE_REV, side by side in one run
# on this machine (BENCHMARKS.md, "Retries and rebuilds"): loadgen booking-ceiling (closed loop)
# against each, with and without a flood of made-up event ids looked up at 2,000/s, in
# alternating rounds (each round runs both builds, in turn first), the same database, Redis,
# gateway and worker. The figures are each build's median over the rounds and their ratio.
# Results: test-output/bench-ab/summary.txt and the loadgen reports beside it.
# BASE_REV, ROUNDS, DURATION and CONCURRENCY may be set; REUSE_BIN=1 runs the binaries of the
# previous run again (test-output/bench-ab/bin) without building. BASE_REV=same runs this tree's
# booking service on both sides, to compare settings: NEW_ENV and BASE_ENV ("VAR=value ...") are
# each side's own environment, e.g. BASE_REV=same BASE_ENV="TOKIO_WORKER_THREADS=1".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_stack

BASE_REV=${BASE_REV:-ee089d1}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-16}
out=${OUT:-test-output/bench-ab}
mkdir -p "$out"
: > "$out/summary.txt"
summary=$out/summary.txt

root=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
target=$CARGO_TARGET_DIR/release
# This tree first, copied aside; then the base from a fresh worktree (its files are newer than
# this tree's build, so cargo rebuilds what differs; the dependencies' builds are shared).
bin=$out/bin
if [ "${REUSE_BIN:-0}" != 1 ]; then
  cargo build -q --release -p gateway -p booking -p queue-worker -p loadgen
  mkdir -p "$bin"
  for b in gateway booking queue-worker loadgen; do cp "$target/$b" "$bin/$b"; done
  if [ "$BASE_REV" = same ]; then
    cp "$target/booking" "$bin/booking-base"
  else
    base=$(mktemp -d)/base
    git worktree add -q --detach "$base" "$BASE_REV"
    (cd "$base" && cargo build -q --release -p booking)
    cp "$target/booking" "$bin/booking-base"
    git worktree remove --force "$base"
  fi
fi

db=ticket_booking_bench_ab
psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qc "drop database if exists $db with (force)"
create_database "$db"
work=$(mktemp -d)
export DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/$db
bench_services_env "$work" 3700 5700 5710
export DATABASE_MAX_CONNECTIONS=$CONCURRENCY
"$bin/gateway" keygen >/dev/null

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# Every service migrates at start and refuses a database migrated past what it knows: the base
# starts first, on its own migrations; this tree's then add theirs.
# shellcheck disable=SC2086 # each side's settings are words on purpose
env BOOKING_ADDR=127.0.0.1:5701 ${BASE_ENV:-} "$bin/booking-base" > "$out/booking-base.log" 2>&1 & pids+=("$!")
base_pid=$!
wait_for http://127.0.0.1:5701/readyz
"$bin/gateway" serve > "$out/gateway.log" 2>&1 & pids+=("$!")
wait_for http://127.0.0.1:3700/readyz
"$bin/queue-worker" > "$out/queue-worker.log" 2>&1 & pids+=("$!")
# shellcheck disable=SC2086
env BOOKING_ADDR=127.0.0.1:5700 ${NEW_ENV:-} "$bin/booking" > "$out/booking-new.log" 2>&1 & pids+=("$!")
new_pid=$!
wait_for http://127.0.0.1:5700/readyz
# Redis's CPU over a run (its own user + system time), its script calls (counters reset
# first) and the booking service's CPU, per booking made: the share issue 25 asks of Redis (<= 60 us a booking). Not the
# command times of INFO commandstats: a script's time there includes the commands it calls,
# which are counted again under their own names.
redis_cpu() { redis_stats info cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ {s += $2} END {printf "%.6f", s}'; }
# A process's CPU so far (user + system, seconds), from /proc.
process_cpu() { awk -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz}' "/proc/$1/stat"; }
run() { # run NAME PORT [flood]
  redis_stats config resetstat > /dev/null
  local cpu_before service_pid service_before
  service_pid=$([ "$2" = 5700 ] && echo "$new_pid" || echo "$base_pid")
  service_before=$(process_cpu "$service_pid")
  cpu_before=$(redis_cpu)
  "$bin/loadgen" booking-ceiling --mode closed --concurrency "$CONCURRENCY" --duration "$DURATION" \
    --gateway http://127.0.0.1:3700 --booking "http://127.0.0.1:$2" --keys-dir "$ENTRY_KEYS_DIR" \
    --kid bench --database-url "$DATABASE_URL" ${3:+--lookup-flood 2000} --out "$out/$1" > "$out/$1.txt"
  local booked cpu_after scripts service_after
  cpu_after=$(redis_cpu)
  service_after=$(process_cpu "$service_pid")
  booked=$(field "$out/$1.json" "[e for e in r['endpoints'] if e['endpoint']=='POST /api/bookings'][0]['requests']")
  scripts=$(redis_stats info commandstats | tr -d '\r' \
    | awk -F'[:=,]' '/^cmdstat_evalsha:/ {c = $3} END {print c + 0}')
  python3 -c "import sys; b = max(1, int(sys.argv[1])); print(sys.argv[5], f'{(float(sys.argv[3]) - float(sys.argv[2])) * 1e6 / b:.1f}', f'{int(sys.argv[4]) / b:.2f}', f'{(float(sys.argv[7]) - float(sys.argv[6])) * 1e6 / b:.1f}')" \
    "$booked" "$cpu_before" "$cpu_after" "$scripts" "$1" "$service_before" "$service_after" >> "$out/redis.txt"
  field "$out/$1.json" "[e for e in r['endpoints'] if e['endpoint']=='POST /api/bookings'][0]['throughput_per_s']"
}

note "machine: $(nproc) cores; concurrency $CONCURRENCY; ${DURATION}s per run; base $BASE_REV${BASE_ENV:+ ($BASE_ENV)}, this tree $(git rev-parse --short HEAD)${NEW_ENV:+ ($NEW_ENV)}"
: > "$out/rounds.txt"
: > "$out/redis.txt"
for round in $(seq 1 "$ROUNDS"); do
  order=$([ $((round % 2)) = 1 ] && echo "new base" || echo "base new")
  for flood in "" flood; do
    for which in $order; do
      port=$([ "$which" = new ] && echo 5700 || echo 5701)
      rate=$(run "$which-${flood:-plain}-$round" "$port" "$flood")
      echo "$round $which ${flood:-plain} $rate" | tee -a "$out/rounds.txt"
    done
  done
done
note "$(python3 - "$out/rounds.txt" <<'PY'
import collections, statistics, sys
r = collections.defaultdict(list)
for line in open(sys.argv[1]):
    n, which, load, v = line.split()
    r[(which, load)].append(float(v))
for load in ("plain", "flood"):
    new, base = statistics.median(r[("new", load)]), statistics.median(r[("base", load)])
    print(f"bookings/s {load:5}: this tree {new:.0f}, base {base:.0f} (medians of {len(r[('new', load)])} rounds) = {new / base:.3f}x")
for which in ("new", "base"):
    ratio = statistics.median(f / p for f, p in zip(r[(which, "flood")], r[(which, "plain")]))
    print(f"flood ratio ({which}): {ratio:.2f}")
PY
)"
note "$(python3 - "$out/redis.txt" <<'PY'
import collections, statistics, sys
r = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, usec, scripts, service = line.split()
    which, load = name.split('-')[:2]
    r[(which, load)].append((float(usec), float(scripts), float(service)))
for which in ("new", "base"):
    runs = r[(which, "plain")]
    if runs:
        print(f"per booking ({which}, no flood): Redis {statistics.median(u for u, _, _ in runs):.1f} us of CPU, "
              f"{statistics.median(s for _, s, _ in runs):.2f} script calls; the booking service "
              f"{statistics.median(c for _, _, c in runs):.1f} us of CPU (whole run: minting is the "
              f"load generator's; medians of {len(runs)} runs)")
PY
)"
note "ledger after the runs: $(grep -c BROKEN "$out"/*-[0-9]*.txt | awk -F: '{s+=$2} END {print (s ? s " checks BROKEN" : "every check holds")}')"
