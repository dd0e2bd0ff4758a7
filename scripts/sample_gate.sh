#!/usr/bin/env bash
# Samples what the stock gate sees, every 0.5 s, for the next event created with headroom_pct
# HEADROOM (10: the rehearsal's stock-gate room): per line Redis's time (s), GA's avail and
# held, what admitted buyers count against GA fresh / stale undelivered / stale after delivery
# (hundredths, `admd`), the event's stale and conversion counts and admissions so far (`stats`),
# and how many hold an admission slot. How BENCHMARKS' session-21 section found what held GA's
# last tickets. Usage: scripts/sample_gate.sh SECONDS > file (bench_stock_room.sh starts it
# beside the rehearsal when SAMPLE_GATE=1).
set -uo pipefail
duration=${1:-400}
headroom=${HEADROOM:-10}
cli() { redis-cli -h "${REDIS_HOST:-127.0.0.1}" -p "${REDIS_PORT:-6379}" "$@"; }
# The event opens after this script starts (the rehearsal creates it with a lead): the one with
# this headroom opening within two minutes of the start (tests leave events opening years ahead).
started_ms=$(cli time | python3 -c 'import sys; s, us = sys.stdin.read().split()[:2]; print(int(s) * 1000 + int(us) // 1000)')
event=""
end=$((SECONDS + duration))
while [ -z "$event" ] && [ $SECONDS -lt $end ]; do
  # One pipelined pass: each room's headroom and opening, two lines a key, in the keys' order.
  keys=$(cli --scan --pattern 'ev:*:cfg')
  if [ -n "$keys" ]; then
    event=$(paste <(echo "$keys") <(printf 'HMGET %s headroom_pct on_sale_ms\n' $keys | cli | paste - -) \
      | awk -v h="$headroom" -v t="$started_ms" '$2 == h && $3 + 0 > t && $3 + 0 < t + 120000 { sub(/:cfg$/, "", $1); print $1; exit }')
  fi
  [ -n "$event" ] || sleep 1
done
[ -n "$event" ] || exit 0
echo "# $event on_sale_ms $(cli hget "$event:cfg" on_sale_ms)"
echo "# t inv[GA:avail GA:held] admd[GA GA^ GA~] stats[last_admit_ms stale_n^ stale_back_n^ stale_n~ stale_back_n~ booked_total conv_booked conv_refused admitted_total] adm"
while [ $SECONDS -lt $end ]; do
  echo "$(cli time | head -1)" \
    "inv[$(cli hmget "$event:inv" GA:avail GA:held | tr '\n' ' ')]" \
    "admd[$(cli hmget "$event:admd" GA 'GA^' 'GA~' | tr '\n' ' ')]" \
    "stats[$(cli hmget "$event:stats" last_admit_ms 'stale_n^' 'stale_back_n^' 'stale_n~' \
      'stale_back_n~' booked_total conv_booked conv_refused admitted_total | tr '\n' ' ')]" \
    "adm=$(cli zcard "$event:adm")"
  sleep 0.5
done
