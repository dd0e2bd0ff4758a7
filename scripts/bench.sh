#!/usr/bin/env bash
# The benchmark of BENCHMARKS.md: every figure measured in the same run as its baseline, on this
# machine. Starts release builds of the services on their own ports and database, then runs
#   1. pgbench: the least write a booking needs        vs  loadgen booking-ceiling (closed loop)
#  1b. bookings with made-up event ids looked up at 2,000/s vs without, in FLOOD_ROUNDS (4)
#      alternating rounds; then bookings under an unknown-id flood vs under an equal flood of
#      the known event's look-ups, at EQUAL_FLOOD_RATE (5,000/s) each, nothing throttling either
#      (BENCH_FLOOD_ONLY=1 runs this section alone)
#  1c. scripts/bench_split.sh: HTTP bookings beside pgbench writing the same rows into this
#      schema and the least write, in SPLIT_ROUNDS (3) rounds; CPU per booking per process and a
#      flamegraph per component (test-output/bench/split)
#   2. the original app's SKIP LOCKED algorithm         at the same concurrency
#   3. loadgen booking-ceiling open loop at half the measured ceiling (p99)
#   4. redis-benchmark of the reserve script (sold out) vs  loadgen sold-out-storm and wrk, with
#      and without the booking service's sold-out memory
#  4b. loadgen proof-joins: joins/s with proof of work on (pre-solved) vs off, same run
#   5. redis-benchmark of the queue entry script (poll) vs  loadgen queue-storm
#   6. Redis memory for 1,000,000 waiting visitors (private redis-server)
#   7. loadgen on-sale (visitors from $VISITORS, default 20000)
#   8. loadgen opening: $OPENING_COUNT (default 1,000,000) pre-queued through the join script
#      while visitors keep joining over HTTP (run before 7)
# Results: test-output/bench/summary.txt and the loadgen JSON/HTML reports beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

CONCURRENCY=${CONCURRENCY:-16}
DURATION=${DURATION:-20}
VISITORS=${VISITORS:-20000}
OPENING_COUNT=${OPENING_COUNT:-1000000}
OPENING_LEAD=${OPENING_LEAD:-45}
out=test-output/bench
mkdir -p "$out"
summary=$out/summary.txt
: > "$summary"

ensure_postgres
ensure_redis
# Tens of thousands of visitors need as many sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build -q --release -p gateway -p booking -p queue-worker -p loadgen
bin=${CARGO_TARGET_DIR:-target}/release

db=ticket_booking_bench
psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qc "drop database if exists $db with (force)"
create_database "$db"
work=$(mktemp -d)
export DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/$db
# Every load comes from one address here (wrk polls one queue id).
bench_services_env "$work" 3500 5500 5510
export DATABASE_MAX_CONNECTIONS=$CONCURRENCY
$bin/gateway keygen >/dev/null
$bin/gateway migrate >/dev/null

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
$bin/gateway serve > "$out/gateway.log" 2>&1 & pids+=("$!")
$bin/booking > "$out/booking.log" 2>&1 & pids+=("$!")
# The same service that asks Redis on every sold-out refusal, for the side-by-side in section 4.
# wrk sends one token over and over: the per-token limit is lifted so it answers 409, not 429.
BOOKING_ADDR=127.0.0.1:5501 SOLD_OUT_MEMORY_MS=0 BOOKING_PER_TOKEN_PER_SECOND=1000000 $bin/booking > "$out/booking-no-memory.log" 2>&1 & pids+=("$!")
# The same service committing each booking on its own (no group commit), for section 1.
BOOKING_ADDR=127.0.0.1:5502 BOOKING_WRITE_BATCH=1 $bin/booking > "$out/booking-no-batch.log" 2>&1 & pids+=("$!")
$bin/queue-worker > "$out/queue-worker.log" 2>&1 & pids+=("$!")
# A gateway that asks every join for proof of work, for section 4b. Its difficulty is low because
# the load generator solves every challenge before the timed phase and the gateway's check is one
# hash whatever the difficulty; 8 bits keeps the untimed solving short.
GATEWAY_ADDR=127.0.0.1:3501 PROOF_ADDRESS_JOINS_PER_SECOND=0 PROOF_DIFFICULTY=8 $bin/gateway serve > "$out/gateway-proof.log" 2>&1 & pids+=("$!")
wait_for http://127.0.0.1:3500/readyz
wait_for http://127.0.0.1:3501/readyz
wait_for http://127.0.0.1:5500/readyz
wait_for http://127.0.0.1:5501/readyz
wait_for http://127.0.0.1:5502/readyz
lg() { $bin/loadgen "$@" --gateway http://127.0.0.1:3500 --booking http://127.0.0.1:5500 \
  --keys-dir "$ENTRY_KEYS_DIR" --kid bench --database-url "$DATABASE_URL"; }

note "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; concurrency $CONCURRENCY; ${DURATION}s per run"
note ""
if [ "${BENCH_FLOOD_ONLY:-0}" != 1 ]; then
note "== 1. booking ceiling vs the least write (pgbench), concurrency $CONCURRENCY"
event=$(psql -h "$PG_HOST" -U "$PG_USER" -d "$db" -Atq <<SQL
INSERT INTO venues (name) VALUES ('Bench') ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name;
INSERT INTO events (name, venue_id, starts_at, on_sale_at) SELECT 'pgbench', id, now() + interval '30 days', now() FROM venues WHERE name = 'Bench' RETURNING id;
SQL
)
vip=$(psql -h "$PG_HOST" -U "$PG_USER" -d "$db" -Atqc "INSERT INTO ticket_tiers (event_id, code, name, price_cents, capacity, position) VALUES ('$event', 'VIP', 'VIP', 100, 1000000, 0) RETURNING id")
ga=$(psql -h "$PG_HOST" -U "$PG_USER" -d "$db" -Atqc "INSERT INTO ticket_tiers (event_id, code, name, price_cents, capacity, position) VALUES ('$event', 'GA', 'GA', 100, 1000000, 1) RETURNING id")
psql -h "$PG_HOST" -U "$PG_USER" -d "$db" -qc "CREATE SEQUENCE bench_vip_numbers MAXVALUE 1000000; CREATE SEQUENCE bench_ga_numbers MAXVALUE 1000000;"
pgbench -h "$PG_HOST" -U "$PG_USER" -n -M prepared -c "$CONCURRENCY" -j 2 -T "$DURATION" \
  -D event="$event" -D vip="$vip" -D ga="$ga" -f loadgen/bench/least_write.sql "$db" > "$out/pgbench.txt" 2>&1
pgbench_tps=$(awk '/^tps/ {print $3; exit}' "$out/pgbench.txt")
note "pgbench least write:            $pgbench_tps transactions/s"
lg booking-ceiling --mode closed --concurrency "$CONCURRENCY" --duration "$DURATION" --out "$out/booking-ceiling" > "$out/booking-ceiling.txt"
ceiling=$(field "$out/booking-ceiling.json" "[e for e in r['endpoints'] if e['endpoint']=='POST /api/bookings'][0]['throughput_per_s']")
created=$(field "$out/booking-ceiling.json" "[e for e in r['endpoints'] if e['endpoint']=='POST /api/bookings'][0]['outcomes'].get('201',0)")
note "booking service (closed loop):  $ceiling bookings/s ($created created)"
note "ratio to pgbench least write:   $(python3 -c "print(f'{$ceiling/$pgbench_tps:.2f}')")"
note "orders per group commit:        $(curl -s http://127.0.0.1:5500/metrics | awk '/^booking_write_batch_size_sum/ {s=$2} /^booking_write_batch_size_count/ {c=$2} END {printf "%.1f on average (%d commits)", s/c, c}')"
$bin/loadgen booking-ceiling --mode closed --concurrency "$CONCURRENCY" --duration "$DURATION" --out "$out/booking-no-batch" \
  --gateway http://127.0.0.1:3500 --booking http://127.0.0.1:5502 --keys-dir "$ENTRY_KEYS_DIR" --kid bench \
  --database-url "$DATABASE_URL" > "$out/booking-no-batch.txt"
no_batch=$(field "$out/booking-no-batch.json" "[e for e in r['endpoints'] if e['endpoint']=='POST /api/bookings'][0]['throughput_per_s']")
note "same, BOOKING_WRITE_BATCH=1:    $no_batch bookings/s (one commit per booking; group commit is $(python3 -c "print(f'{$ceiling/$no_batch:.2f}')")x)"
note "ledger after the runs:          $(grep -c BROKEN "$out/booking-ceiling.txt" "$out/booking-no-batch.txt" | awk -F: '{s+=$2} END {print (s ? s " checks BROKEN" : "every check holds")}')"
fi

note ""
note "== 1b. bookings while made-up event ids are looked up at a fixed 2,000/s"
# Samples of sessions waiting on an advisory lock, every 50 ms through the rounds, from one psql
# session (a psql started per sample cost the runs it overlapped a fifth of a core).
printf '%s\n' "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and wait_event = 'advisory';" '\watch 0.05' \
  | psql -h "$PG_HOST" -U "$PG_USER" -d "$db" -Atq > "$out/advisory-waits.txt" 2>/dev/null &
sampler=$!
# The machine's speed drifts from run to run by more than the flood costs (session 5: the runs
# without it just before and just after differed by 17 %), so the flood is measured in
# alternating rounds, each with and without it, in turn first, and the ratio is the median of
# the rounds'.
closed_loop_run() { # closed_loop_run NAME [LOADGEN ARGS...]: one timed run, its bookings/s
  local name=$1
  shift
  lg booking-ceiling --mode closed --concurrency "$CONCURRENCY" --duration "$DURATION" \
    "$@" --out "$out/$name" > "$out/$name.txt"
  field "$out/$name.json" "[e for e in r['endpoints'] if e['endpoint']=='POST /api/bookings'][0]['throughput_per_s']"
}
bookings_of() { # side round: one timed run, with the flood or without, its bookings/s
  closed_loop_run "booking-$1-$2" $([ "$1" = flood ] && echo --lookup-flood 2000)
}
alternating_rounds "${FLOOD_ROUNDS:-4}" flood plain "$out/flood-rounds.txt" bookings_of
kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
cp "$out/booking-flood-1.json" "$out/booking-flood.json"
note "bookings with / without the flood, per round: $(ratios_and_median "$out/flood-rounds.txt" flood plain)"
note "ledger after the flood rounds:  $(grep -c BROKEN "$out"/booking-flood-*.txt "$out"/booking-plain-*.txt | awk -F: '{s+=$2} END {print (s ? s " checks BROKEN" : "every check holds")}')"
note "look-ups answered:              $(field "$out/booking-flood.json" "[e for e in r['endpoints'] if 'unknown' in e['endpoint']][0]['outcomes']")"
note "sessions waiting on an advisory lock: max $(grep -E '^[0-9]+$' "$out/advisory-waits.txt" | sort -n | tail -1) in $(grep -cE '^[0-9]+$' "$out/advisory-waits.txt") samples"
# The booking service limits no look-up (only a token's bookings), so the flood is unthrottled;
# the two kinds go at one rate so the bookings beside them compare: an unknown id must cost no
# more than a known one answered from the caches.
equal_rate=${EQUAL_FLOOD_RATE:-5000}
note ""
note "== 1b. bookings beside $equal_rate look-ups a second of made-up ids vs of the known event"
bookings_beside() { # side round: bookings/s beside $equal_rate look-ups/s of `unknown` or `known` ids
  closed_loop_run "booking-beside-$1-$2" --lookup-flood "$equal_rate" --flood-ids "$1"
}
alternating_rounds "${FLOOD_ROUNDS:-4}" unknown known "$out/equal-flood-rounds.txt" bookings_beside
note "bookings beside $equal_rate unknown / known look-ups a second, per round: $(ratios_and_median "$out/equal-flood-rounds.txt" unknown known)"
for side in unknown known; do
  note "$side look-ups answered (round 1): $(field "$out/booking-beside-$side-1.json" "[(e['outcomes'], e['throughput_per_s'], e['p99_ms']) for e in r['endpoints'] if '{$side}' in e['endpoint']][0]")"
done
note "ledger after the equal floods:  $(grep -c BROKEN "$out"/booking-beside-*.txt | awk -F: '{s+=$2} END {print (s ? s " checks BROKEN" : "every check holds")}')"
if [ "${BENCH_FLOOD_ONLY:-0}" = 1 ]; then exit 0; fi

note ""
note "== 1c. the write path component by component (scripts/bench_split.sh: HTTP bookings, pgbench into this schema and the least write, CPU per booking per process, flamegraphs)"
OUT=$out/split CONCURRENCY=$CONCURRENCY ROUNDS=${SPLIT_ROUNDS:-3} bash scripts/bench_split.sh > "$out/split.log" 2>&1
grep -v '^round ' "$out/split/summary.txt" | tee -a "$summary"

note ""
note "== 2. the original algorithm (3 x SELECT FOR UPDATE SKIP LOCKED + UPDATE), concurrency $CONCURRENCY"
lg original --concurrency "$CONCURRENCY" --duration "$DURATION" --out "$out/original" > "$out/original.txt"
original=$(field "$out/original.json" "r['endpoints'][0]['throughput_per_s']")
note "original algorithm:             $original transactions/s"
note "booking service / original:     $(python3 -c "print(f'{$ceiling/$original:.1f}')")x"

note ""
half=$(python3 -c "print(int($ceiling/2))")
note "== 3. open loop at half the ceiling ($half/s)"
lg booking-ceiling --mode open --rate "$half" --duration "$DURATION" --out "$out/booking-half" > "$out/booking-half.txt"
note "p50/p95/p99/max ms:             $(field "$out/booking-half.json" "'/'.join(str(round(e[k],2)) for e in r['endpoints'] for k in ['p50_ms','p95_ms','p99_ms','max_ms'])")"

note ""
note "== 4. sold-out rejections"
lg sold-out-storm --concurrency 64 --duration "$DURATION" --out "$out/sold-out" > "$out/sold-out.txt"
note "booking service:                $(field "$out/sold-out.json" "round(r['endpoints'][0]['throughput_per_s'])") rejections/s (p99 $(field "$out/sold-out.json" "r['endpoints'][0]['p99_ms']") ms)"
# The script as the service sends it, its library before it (lua/reserve.lua alone fails at its
# first library call, an error reply redis-benchmark would count as an answer).
reserve=$(redis-cli SCRIPT LOAD "$($bin/loadgen lua-script --file lua/reserve.lua)")
redis-cli HSET "ev:{bench}:inv" epoch 1 soldout 1 GA:cap 1 GA:next 1 GA:avail 0 >/dev/null
so_event=$(field "$out/sold-out.json" "r['event_id']")
so_token=$(lg mint --event "$so_event")
cat > "$out/sold-out.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"event_id":"$so_event","tiers":{"GA":1},"buyer_email":"storm@example.com"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $so_token"
LUA
command -v wrk >/dev/null || apt_install wrk
wrk -t2 -c64 -d"${DURATION}s" --latency -s "$out/sold-out.lua" http://127.0.0.1:5500/api/bookings > "$out/wrk-sold-out.txt"
note "booking service, wrk client:    $(awk '/Requests\/sec/ {print $2}' "$out/wrk-sold-out.txt") rejections/s (p99 $(awk '$1 == "99%" {print $2}' "$out/wrk-sold-out.txt"))"
wrk -t2 -c64 -d"${DURATION}s" --latency -s "$out/sold-out.lua" http://127.0.0.1:5501/api/bookings > "$out/wrk-sold-out-no-memory.txt"
note "same, SOLD_OUT_MEMORY_MS=0:      $(awk '/Requests\/sec/ {print $2}' "$out/wrk-sold-out-no-memory.txt") rejections/s (p99 $(awk '$1 == "99%" {print $2}' "$out/wrk-sold-out-no-memory.txt"))"
# A fresh entry token per request (a new signature each, as a crowd of buyers sends them): the
# sold-out memory answers requests without an Idempotency-Key before checking the signature.
$bin/loadgen mint --event "$so_event" --count 20000 --keys-dir "$ENTRY_KEYS_DIR" --kid bench > "$out/fresh-tokens.txt"
cat > "$out/sold-out-fresh.lua" <<LUA
local tokens = {}
for line in io.lines("$out/fresh-tokens.txt") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i % #tokens + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[i]},
    '{"event_id":"$so_event","tiers":{"GA":1},"buyer_email":"storm@example.com"}')
end
LUA
wrk -t2 -c64 -d"${DURATION}s" --latency -s "$out/sold-out-fresh.lua" http://127.0.0.1:5500/api/bookings > "$out/wrk-sold-out-fresh.txt"
note "same, a fresh token per request: $(awk '/Requests\/sec/ {print $2}' "$out/wrk-sold-out-fresh.txt") rejections/s (p99 $(awk '$1 == "99%" {print $2}' "$out/wrk-sold-out-fresh.txt"))"
redis-benchmark -q -n 400000 -c 64 EVALSHA "$reserve" 5 "ev:{bench}:inv" "ev:{bench}:used" "ev:{bench}:holds" "ev:{bench}:holdv" "ev:{bench}:free:GA" jti 0 fingerprint attempt "" GA 1 > "$out/redis-reserve.txt"
note "redis-benchmark, same script:   $(tr '\r' '\n' < "$out/redis-reserve.txt" | grep -o '[0-9.]* requests per second' | tail -1)"

redis-cli DEL "ev:{bench}:inv" >/dev/null

note ""
proof_joins=${PROOF_JOINS:-$([ "${BENCH_QUICK:-0}" = 1 ] && echo 30000 || echo 100000)}
note "== 4b. joins with proof of work on (proofs solved before the timed phase) vs off, $proof_joins joins each, in 10 alternating rounds"
lg proof-joins --proof-gateway http://127.0.0.1:3501 --joins "$proof_joins" --rounds 10 --concurrency 64 --out "$out/proof-joins" > "$out/proof-joins.txt"
note "joins/s, proof off / on:        $(field "$out/proof-joins.json" "'%.0f / %.0f' % (r['proof_joins']['off_per_s'], r['proof_joins']['on_per_s'])")"
note "with proof / without:           $(field "$out/proof-joins.json" "'%.2f (rounds %.2f-%.2f)' % (r['proof_joins']['ratio'], *r['proof_joins']['round_ratio_range'])") (joins not answered 202: $(field "$out/proof-joins.json" "r['proof_joins']['not_accepted']"))"

if [ "${BENCH_QUICK:-0}" = 1 ]; then cat "$summary"; exit 0; fi

note ""
note "== 5. queue joins and polls"
lg queue-storm --concurrency 64 --duration "$DURATION" --out "$out/queue-storm" > "$out/queue-storm.txt"
note "joins:                          $(field "$out/queue-storm.json" "round([e for e in r['endpoints'] if 'queue' in e['endpoint'] and e['endpoint'].startswith('POST')][0]['throughput_per_s'])")/s"
note "polls:                          $(field "$out/queue-storm.json" "round([e for e in r['endpoints'] if e['endpoint'].startswith('GET')][0]['throughput_per_s'])")/s (p99 $(field "$out/queue-storm.json" "[e for e in r['endpoints'] if e['endpoint'].startswith('GET')][0]['p99_ms']") ms)"
qs_event=$(field "$out/queue-storm.json" "r['event_id']")
qid=$(curl -s -X POST -H 'content-type: application/json' -d '{"visitor_id":"wrk-poller"}' "http://127.0.0.1:3500/api/events/$qs_event/queue" | python3 -c 'import json,sys; print(json.load(sys.stdin)["queue_id"])')
wrk -t2 -c64 -d"${DURATION}s" --latency "http://127.0.0.1:3500/api/queue/$qid" > "$out/wrk-poll.txt"
note "polls, wrk client:              $(awk '/Requests\/sec/ {print $2}' "$out/wrk-poll.txt")/s (p99 $(awk '$1 == "99%" {print $2}' "$out/wrk-poll.txt"))"
# With its library, as for the reserve script above.
entry=$(redis-cli SCRIPT LOAD "$($bin/loadgen lua-script --file lua/queue_entry.lua)")
k="ev:{qbench}"
redis-cli HSET "$k:cfg" enabled 1 token_ttl_s 600 on_sale_ms 0 alive_window_s 60 gen 1 >/dev/null
entry_keys=(17 "$k:cfg" "$k:wait" "$k:seq" "$k:alive:0" "$k:alive:1" "$k:adm" "$k:gone" "$k:tok:x" "$k:inv" "$k:stats" "$k:admsec" "$k:restored" "$k:wish" "$k:parked" "$k:admw" "$k:leaving" "$k:want:GA")
redis-cli EVALSHA "$entry" "${entry_keys[@]}" join benchqueueid0001 1 "" GA >/dev/null
redis-benchmark -q -n 400000 -c 64 EVALSHA "$entry" "${entry_keys[@]}" poll benchqueueid0001 "" "" GA > "$out/redis-poll.txt"
note "redis-benchmark, same script:   $(tr '\r' '\n' < "$out/redis-poll.txt" | grep -o '[0-9.]* requests per second' | tail -1)"
redis-cli DEL "ev:{bench}:inv" >/dev/null
redis-cli --scan --pattern "ev:{qbench}:*" | xargs -r redis-cli DEL >/dev/null

note ""
note "== 6. Redis memory for 1,000,000 waiting visitors (join script, 16-byte queue ids)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes >/dev/null
sleep 0.5
r() { redis-cli -p "$port" "$@"; }
entry=$(r SCRIPT LOAD "$(cat lua/queue_entry.lua)")
k="ev:{mem}"
# on_sale_ms far ahead: every join lands in the pre-queue, with a drawn lot (the biggest place
# scores); the same bytes as after the opening, where places are arrival numbers.
r HSET "$k:cfg" enabled 1 token_ttl_s 600 on_sale_ms 99999999999999 alive_window_s 60 gen 1 >/dev/null
entry_keys=(17 "$k:cfg" "$k:wait" "$k:seq" "$k:alive:0" "$k:alive:1" "$k:adm" "$k:gone" "$k:tok:x" "$k:inv" "$k:stats" "$k:admsec" "$k:restored" "$k:wish" "$k:parked" "$k:admw" "$k:leaving" "$k:want:GA")
before=$(r INFO memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
# __rand_int__ makes each join a new 16-byte id (q + 12 digits + padding); a few of the
# million draws repeat, so the count of distinct visitors is reported.
redis-benchmark -p "$port" -q -n 1000000 -r 100000000 -c 32 -P 16 EVALSHA "$entry" "${entry_keys[@]}" join "q__rand_int__xyz" 7 "" GA > /dev/null
after=$(r INFO memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
waiting=$(r ZCARD "$k:wait")
r SHUTDOWN NOSAVE >/dev/null 2>&1 || true
note "waiting visitors:               $waiting"
note "memory:                         $(( (after - before) / 1024 / 1024 )) MiB ($(( (after - before) / waiting )) bytes per visitor)"

note ""
note "== 8. the opening: $OPENING_COUNT pre-queued (join script), 300 arrivals/s over HTTP across on_sale_at"
lg opening --count "$OPENING_COUNT" --arrivals-per-second 300 --lead "$OPENING_LEAD" --out "$out/opening" > "$out/opening.txt"
note "first admission after on_sale:  $(field "$out/opening.json" "r['first_admission_after_on_sale_ms']") ms"
note "pre-queue seeded:               $(field "$out/opening.json" "r['pre_queued']") in $(field "$out/opening.json" "round(r['seeding_s'], 1)") s ($(field "$out/opening.json" "r['bytes_per_visitor']") bytes of Redis per visitor)"
note "later joiners behind it:        $(field "$out/opening.json" "r['every_later_joiner_behind_the_pre_queue']") ($(field "$out/opening.json" "r['arrivals_after_opening']") after, $(field "$out/opening.json" "r['arrivals_before_opening']") before)"
note "SLOWLOG over 10 ms:             $(field "$out/opening.json" "r['slowlog_entries_over_10ms']") (slowest command $(field "$out/opening.json" "r['slowest_command_us']") us; admission step bound $(field "$out/opening.json" "r['admission_step_bound']") entries)"

note ""
note "== 7. on-sale replay, $VISITORS visitors in a burst, 6000 admissions/min"
lg on-sale --visitors "$VISITORS" --admission-per-minute 6000 --max-active 5000 --vip 300 --front-row 1000 --ga 4000 --max-duration 300 --out "$out/on-sale" > "$out/on-sale.txt" || true
note "$(field "$out/on-sale.json" "r['on_sale']")"
note "invariants hold:                $(field "$out/on-sale.json" "all(c['holds'] for c in r.get('invariants', [{'holds': False}]))")"
cat "$summary"
