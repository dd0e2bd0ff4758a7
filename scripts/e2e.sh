#!/usr/bin/env bash
# Browser tests: starts the real services on their own ports against their own database, runs the
# Playwright tests in headless Chromium, and stops the services.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_node
ensure_chromium

db=ticket_booking_e2e
psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "drop database if exists $db with (force)"
create_database "$db"
cargo build -q -p gateway -p booking -p queue-worker
bin=${CARGO_TARGET_DIR:-target}/debug

work=$(mktemp -d)
out=${TEST_OUTPUT:-test-output/e2e}
mkdir -p "$out"
export DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/$db
random_secrets
export ADMIN_TOKEN=e2e-admin-token-for-the-browser-tests
export ENTRY_KEYS_DIR=$work/keys ENTRY_PUBLIC_KEYS_DIR=$work/keys ENTRY_SIGNING_KID=e2e
export GATEWAY_ADDR=127.0.0.1:3300 BOOKING_ADDR=127.0.0.1:5300 WORKER_ADDR=127.0.0.1:5310
export BOOKING_URL=http://127.0.0.1:5300 CORS_ORIGINS=http://127.0.0.1:3300
$bin/gateway keygen >/dev/null

pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
$bin/gateway serve > "$out/gateway.log" 2>&1 & pids+=("$!")
$bin/booking > "$out/booking.log" 2>&1 & pids+=("$!")
$bin/queue-worker > "$out/queue-worker.log" 2>&1 & pids+=("$!")
# A second gateway on the same stores that asks every join for proof of work (a threshold of
# 0), for the test that the page solves it; the other tests use the first.
GATEWAY_ADDR=127.0.0.1:3301 PROOF_ADDRESS_JOINS_PER_SECOND=0 $bin/gateway serve > "$out/gateway-proof.log" 2>&1 & pids+=("$!")
wait_for http://127.0.0.1:3300/readyz
wait_for http://127.0.0.1:5300/readyz
wait_for http://127.0.0.1:3301/readyz

cd frontend/tests
npm ci --silent --no-audit --no-fund
GATEWAY_URL=http://127.0.0.1:3300 PROOF_GATEWAY_URL=http://127.0.0.1:3301 TEST_OUTPUT="$(cd ../.. && realpath "$out")" npm test
