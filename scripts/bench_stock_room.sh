#!/usr/bin/env bash
# The inventory-aware room's benchmark (BENCHMARKS.md, "Inventory-aware room"), side by side in
# one run on this machine:
#   1. loadgen stock-sale: one crowd replayed against three rooms (hold on admission, stock gate,
#      rate only): admitted buyers refused for stock, time until a buyer who gets nothing is told.
#   2. poll throughput of this gateway against the gateway before the stock gate (git rev
#      $BASE_REV, built in its own worktree): loadgen queue-storm against each, alternating
#      rounds, the same database, Redis and worker.
#   3. loadgen rehearsal: an on-sale night as crowds behave (8,000 pre-queued, 4,000 more at
#      150/s, 20 % leave while waiting, 5 % of those admitted never book, no wishes: 1-4 GA, one
#      in ten adds a VIP) against 3,000 GA and 300 VIP at 3,000 admissions/min, max_active 1,000,
#      token TTL 120 s, replayed against the stock gate and a rate-only room: sell-out times,
#      admissions a minute, the longest stall, refusals for stock, the first wait range.
#   4. loadgen slowed-backend: adaptive admission against a booking service Postgres slows down
#      (every booking row made to cost DELAY_MS more for a minute, between 30 s calm and 40 s
#      recovery), visitors arriving at 110/s against a set rate of 6,000/min, target p95 500 ms,
#      replayed against a room with adaptive admission on and one with it off: the bookings' p95
#      per phase and in the worst ten seconds once the controller acted, 503s, the recovery.
# Results: test-output/bench-stock/summary.txt and the loadgen reports beside it.
# VISITORS, ROUNDS, DURATION and BASE_REV may be set, SECTIONS="1 2" chooses, REHEARSAL_ARGS and
# SLOWED_ARGS pass more to sections 3 and 4 (REHEARSAL_ARGS="--rooms gate --max-duration 90": the
# stock gate's room only, 90 s), SAMPLE_GATE=1 samples the gate's room (scripts/sample_gate.sh);
# BIN=debug runs the debug builds (a smoke run, not a measurement).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_stack

BASE_REV=${BASE_REV:-aadacea}
VISITORS=${VISITORS:-3000}
ROUNDS=${ROUNDS:-3}
SECTIONS=${SECTIONS:-1 2 3 4}
DELAY_MS=${DELAY_MS:-60}
DURATION=${DURATION:-10}
profile=${BIN:-release}
out=${OUT:-test-output/bench-stock}
mkdir -p "$out"
: > "$out/summary.txt"
summary=$out/summary.txt
# The rehearsal's 12,000 pages may all poll at the opening: as many sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

flag=$([ "$profile" = release ] && echo --release || true)
root=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
target=$CARGO_TARGET_DIR/$profile
cargo build -q $flag -p gateway -p booking -p queue-worker -p loadgen
# This tree's binaries are copied aside: the base build below writes the same paths.
bin=$out/bin
mkdir -p "$bin"
for b in gateway booking queue-worker loadgen; do cp "$target/$b" "$bin/$b"; done
# The gateway before the stock gate, from its own worktree (the same target dir shares the
# dependencies' builds), for section 2.
if [[ " $SECTIONS " == *" 2 "* ]]; then
  base=$(mktemp -d)/base
  git worktree add -q --detach "$base" "$BASE_REV"
  (cd "$base" && cargo build -q $flag -p gateway)
  cp "$target/gateway" "$out/gateway-base"
  git worktree remove --force "$base"
fi

db=ticket_booking_bench_stock
# The base gateway has a database of its own: it refuses one that migrations it does not know
# have run on. Its polls need only its event rows and the shared Redis.
for name in $db ${db}_base; do
  psql -h "$PG_HOST" -U "$PG_USER" -d postgres -qc "drop database if exists $name with (force)"
  create_database "$name"
done
work=$(mktemp -d)
export DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/$db
# Every load comes from one address.
bench_services_env "$work" 3600 5600 5610
export BOOKING_PER_TOKEN_PER_SECOND=1000000
$bin/gateway keygen >/dev/null
$bin/gateway migrate >/dev/null

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
$bin/gateway serve > "$out/gateway.log" 2>&1 & pids+=("$!")
if [[ " $SECTIONS " == *" 2 "* ]]; then
  GATEWAY_ADDR=127.0.0.1:3601 DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/${db}_base \
    "$out/gateway-base" serve > "$out/gateway-base.log" 2>&1 & pids+=("$!")
  wait_for http://127.0.0.1:3601/readyz
fi
$bin/booking > "$out/booking.log" 2>&1 & pids+=("$!")
$bin/queue-worker > "$out/queue-worker.log" 2>&1 & pids+=("$!")
wait_for http://127.0.0.1:3600/readyz
wait_for http://127.0.0.1:5600/readyz
lg() { $bin/loadgen "$@" --booking http://127.0.0.1:5600 --keys-dir "$ENTRY_KEYS_DIR" \
  --kid bench --database-url "$DATABASE_URL"; }

note "machine: $(nproc) cores; $profile builds; base gateway: $BASE_REV"
note ""
if [[ " $SECTIONS " == *" 1 "* ]]; then
note "== 1. stock-sale: $VISITORS visitors per room, 2,400 GA + 300 VIP, 3,000 admissions/min, max_active 300, 10 % book another tier"
lg stock-sale --gateway http://127.0.0.1:3600 --visitors "$VISITORS" --out "$out/stock-sale" > "$out/stock-sale.txt"
for i in 0 1 2; do
  note "$(field "$out/stock-sale.json" "(lambda x: f\"{x['room']['name']:32} admitted {x['admitted']:5}  refused for stock {x['refused_for_stock_wish']} (wish) + {x['refused_for_stock_switched']} (another tier) = {100*x['refused_share']:.2f} %  booked {x['booked']:5}  got nothing {x['got_nothing']:5}, told after median {x['told_median_s']} s, p90 {x['told_p90_s']} s\")(r['stock_sale'][$i])")"
done
note "ledger: $(field "$out/stock-sale.json" "'holds' if all(c['holds'] for c in r['invariants']) else 'BROKEN: ' + '; '.join(c['promise'] for c in r['invariants'] if not c['holds'])")"
note ""
fi
if [[ " $SECTIONS " == *" 2 "* ]]; then
note "== 2. polls/s, this gateway vs $BASE_REV's, alternating rounds of queue-storm (64 clients, ${DURATION}s)"
storm() { lg queue-storm --gateway "http://127.0.0.1:$([ "$1" = new ] && echo 3600 || echo 3601)" \
  --concurrency 64 --duration "$2" --out "$out/storm-$1-$3" > /dev/null; }
# Warm both (connection pools, caches, the allocator) before anything is timed.
storm new 4 warm; storm base 4 warm
polls_of() { # side round: one timed storm, its polls/s
  storm "$1" "$DURATION" "$2"
  field "$out/storm-$1-$2.json" "round([e for e in r['endpoints'] if e['endpoint'].startswith('GET')][0]['throughput_per_s'])"
}
alternating_rounds "$ROUNDS" new base "$out/polls.txt" polls_of
note "new/base polls/s per round, and the median: $(ratios_and_median "$out/polls.txt" new base)"
fi
if [[ " $SECTIONS " == *" 3 "* ]]; then
note ""
note "== 3. rehearsal: 8,000 pre-queued + 4,000 at 150/s, 20 % leave while waiting, 5 % never book, no wishes; 3,000 GA + 300 VIP, 3,000/min, max_active 1,000, TTL 120 s"
# SAMPLE_GATE=1: what the stock gate sees every 0.5 s, into gate-samples.txt (scripts/sample_gate.sh).
if [ "${SAMPLE_GATE:-0}" = 1 ]; then
  bash scripts/sample_gate.sh 400 > "$out/gate-samples.txt" 2>&1 & pids+=("$!")
fi
lg rehearsal --gateway http://127.0.0.1:3600 ${REHEARSAL_ARGS:-} --out "$out/rehearsal" > "$out/rehearsal.txt"
# REHEARSAL_ARGS may name fewer rooms (--rooms gate).
for i in $(field "$out/rehearsal.json" "' '.join(map(str, range(len(r['rehearsal']))))"); do
  note "$(field "$out/rehearsal.json" "(lambda x: f\"{x['room']['name']:28} GA sold out {x['ga_sold_out_s']} s, VIP {x['vip_sold_out_s']} s; admissions {x['measured_per_minute'] and round(x['measured_per_minute'])}/min of {x['set_per_minute']}; longest stall {x['longest_stall_s']:.1f} s; refused for stock {x['refused_for_stock']} of {x['admitted']} admitted ({100*x['refused_share']:.1f} % of those who tried; {x['refused_after_ga_sold_out']} after GA sold out, {x['refused_admitted_after_ga_sold_out']} of them admitted after it); first range held {x['first_range_held_share'] and round(100*x['first_range_held_share'])} %, median error {x['first_estimate_median_error'] and round(100*x['first_estimate_median_error'])} %, {x['jumps_beyond_range']} jumps beyond it (notes {x['jumps_by_note']}, at {x['jumps_at_s']} s), {x['told_tiers_gone']} told no time could be promised (tiers_gone), {x['told_beyond_stock']} told the stock would likely be gone first (beyond_stock; {x['told_beyond_stock_booked']} of them booked); GA left by the second {x['ga_left_by_s']}\")(r['rehearsal'][$i])")"
done
note "ledger: $(field "$out/rehearsal.json" "'holds' if all(c['holds'] for c in r['invariants']) else 'BROKEN: ' + '; '.join(c['promise'] for c in r['invariants'] if not c['holds'])")"
fi
if [[ " $SECTIONS " == *" 4 "* ]]; then
note ""
note "== 4. slowed backend: 110 visitors/s, set rate 6,000/min, every booking row +${DELAY_MS} ms in Postgres in the slowed phase (30 s calm, 60 s slowed, 40 s after unless SLOWED_ARGS says otherwise), target p95 500 ms, floor 600/min"
lg slowed-backend --gateway http://127.0.0.1:3600 --delay-ms "$DELAY_MS" ${SLOWED_ARGS:-} --out "$out/slowed" > "$out/slowed.txt"
for i in 0 1; do
  note "$(field "$out/slowed.json" "(lambda x: x['room']['name'] + ': ' + '; '.join(f\"{p['name']} p95 {p['p95_ms'] and round(p['p95_ms'])} ms, 503s {100*p['share_503']:.1f} %, admissions {p['admissions_per_minute'] and round(p['admissions_per_minute'])}/min\" for p in x['phases']) + f\"; slowed after 10 s: p95 {x['slowed_settled_p95_ms'] and round(x['slowed_settled_p95_ms'])} ms, worst 10 s {x['slowed_worst_10s_p95_ms'] and round(x['slowed_worst_10s_p95_ms'])} ms; lowest rate {x['lowest_effective_per_minute']}/min; back at the set rate {x['recovered_after_s']} s after the delay\")(r['slowed_backend'][$i])")"
done
note "ledger: $(field "$out/slowed.json" "'holds' if all(c['holds'] for c in r['invariants']) else 'BROKEN: ' + '; '.join(c['promise'] for c in r['invariants'] if not c['holds'])")"
fi
