#!/usr/bin/env bash
# Runs the whole system: PostgreSQL and Redis (installed and started if needed), the database
# created, migrated and seeded, every service built and started. Ctrl-C stops them all.
# Safe to run again: a previous run's services are stopped first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_stack
create_database ticket_booking

PROFILE=${PROFILE:-release}
say "building the services ($PROFILE)"
cargo build --profile "$PROFILE" -p gateway -p booking -p queue-worker
bin=target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

mkdir -p .run/logs .run/keys
# Stop what a previous run left running.
for pidfile in .run/*.pid; do
  [ -e "$pidfile" ] || continue
  kill "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
done

[ -s .run/admin-token ] || head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > .run/admin-token
export ADMIN_TOKEN=${ADMIN_TOKEN:-$(cat .run/admin-token)}
export DATABASE_URL=${DATABASE_URL:-postgres://$PG_USER@$PG_HOST:$PG_PORT/ticket_booking}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export ENTRY_KEYS_DIR=${ENTRY_KEYS_DIR:-.run/keys}
export ENTRY_PUBLIC_KEYS_DIR=${ENTRY_PUBLIC_KEYS_DIR:-$ENTRY_KEYS_DIR}
export ENTRY_SIGNING_KID=${ENTRY_SIGNING_KID:-dev}
# Each secret is made once and kept; one added by a newer version is appended to an older file.
touch .run/secrets
for name in QUEUE_ID_SECRET ACCESS_CODE_SECRET PROOF_SECRET; do
  grep -q "^$name=" .run/secrets || echo "$name=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')" >> .run/secrets
done
# Receipt keys are kid:secret (the first signs; see .env.example).
grep -q '^QUEUE_RECEIPT_KEYS=' .run/secrets ||
  echo "QUEUE_RECEIPT_KEYS=k1:$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')" >> .run/secrets
set -a; source .run/secrets; set +a

"$bin/gateway" keygen
say "migrating and seeding"
"$bin/gateway" seed

pids=()
stop_all() {
  trap - INT TERM EXIT
  say "stopping"
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -f .run/*.pid
}
trap stop_all INT TERM EXIT

start() {
  local name=$1; shift
  "$@" >> ".run/logs/$name.log" 2>&1 &
  pids+=("$!")
  echo "$!" > ".run/$name.pid"
}
start gateway "$bin/gateway" serve
start booking "$bin/booking"
start queue-worker "$bin/queue-worker"

wait_for http://127.0.0.1:3000/readyz
wait_for http://127.0.0.1:5000/readyz
cat <<TXT

  Buyers:      http://127.0.0.1:3000/
  Operator:    http://127.0.0.1:3000/admin.html   (admin token: $ADMIN_TOKEN)
  Catalog API: http://127.0.0.1:3000/api/events
  Booking API: http://127.0.0.1:5000/api/openapi.json
  Metrics:     http://127.0.0.1:3000/metrics  http://127.0.0.1:5000/metrics  http://127.0.0.1:5100/metrics
  Logs:        .run/logs/

  Ctrl-C stops every service.
TXT
# Any service exiting stops the rest, so a half-running system is never left behind.
wait -n "${pids[@]}" || true
