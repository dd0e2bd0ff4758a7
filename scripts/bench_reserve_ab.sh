#!/usr/bin/env bash
# Two texts of the reserve script side by side on a private Redis (BENCHMARKS.md, session 19):
# redis-benchmark sends each 200,000 EVALSHAs of a booking of 1 VIP + 1 FR + 2 GA with a fresh
# reservation id, 16 connections, in alternating rounds on a fresh inventory; the figure is
# Redis's own time inside the script a call (INFO commandstats), network and parsing left out.
#   bash scripts/bench_reserve_ab.sh BASE.lua NEW.lua
# Each text is the script as the services send it, its library spliced before it:
#   target/release/loadgen lua-script --file lua/reserve.lua > NEW.lua   (at each revision)
# ROUNDS and PORT may be set.
set -euo pipefail
base=${1:?the base script text}
new=${2:?the new script text}
rounds=${ROUNDS:-3}
port=${PORT:-6391}
redis-server --port "$port" --save "" --appendonly no --daemonize yes --logfile /dev/null
r() { redis-cli -p "$port" "$@"; }
trap 'r SHUTDOWN NOSAVE > /dev/null 2>&1 || true' EXIT
until r PING > /dev/null 2>&1; do sleep 0.1; done
declare -A sha=([base]=$(r SCRIPT LOAD "$(cat "$base")") [new]=$(r SCRIPT LOAD "$(cat "$new")"))
k="ev:{bench}"
for round in $(seq 1 "$rounds"); do
  order=(base new)
  [ $((round % 2)) = 0 ] && order=(new base)
  for side in "${order[@]}"; do
    r FLUSHDB > /dev/null
    r HSET "$k:inv" epoch 1 soldout 0 \
      VIP:cap 1000000000 VIP:next 0 VIP:avail 1000000000 \
      FR:cap 1000000000 FR:next 0 FR:avail 1000000000 \
      GA:cap 1000000000 GA:next 0 GA:avail 1000000000 > /dev/null
    r CONFIG RESETSTAT > /dev/null
    redis-benchmark -p "$port" -q -n 200000 -c 16 -r 1000000000 EVALSHA "${sha[$side]}" 7 \
      "$k:inv" "$k:used" "$k:holds" "$k:holdv" "$k:free:VIP" "$k:free:FR" "$k:free:GA" \
      "jti-__rand_int__" 30000 fingerprint attempt "" VIP 1 FR 1 GA 2 > /dev/null
    per_call=$(r INFO commandstats | tr -d '\r' | grep '^cmdstat_evalsha:' | grep -o 'usec_per_call=[0-9.]*')
    # The ledger of the run: every reservation holds its numbers (a repeated random id continues
    # its hold, so a few fewer than the calls).
    echo "round $round $side: ${per_call#usec_per_call=} us a call inside the script; GA held $(r HGET "$k:inv" GA:held), on sale $(r HGET "$k:inv" GA:avail)"
  done
done
