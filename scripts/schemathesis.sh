#!/usr/bin/env bash
# API fuzzing: starts the real services on their own ports against their own fresh database and
# runs Schemathesis against each service's OpenAPI document. Fails when a request gets a 5xx, or
# a response (status, body) that the document does not describe. Safe to run again.
#   MAX_EXAMPLES=50  test cases per operation      SEED=<n>  replay one run's inputs
#   CHECKS=all       also the stricter checks (e.g. schema-valid requests must be accepted)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# Pinned so a new release's extra checks cannot fail an unchanged tree; bump on purpose.
SCHEMATHESIS_VERSION=4.32.5
HYPOTHESIS_VERSION=6.170.17
venv=.run/venv

ensure_stack

pins=("schemathesis==$SCHEMATHESIS_VERSION" "hypothesis==$HYPOTHESIS_VERSION")
if [ "$("$venv/bin/pip" freeze 2>/dev/null | grep -cxF -e "${pins[0]}" -e "${pins[1]}")" != 2 ]; then
  say "installing ${pins[*]} into $venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}"
fi

db=ticket_booking_fuzz
psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "drop database if exists $db with (force)"
create_database "$db"
cargo build -q -p gateway -p booking -p queue-worker
bin=${CARGO_TARGET_DIR:-target}/debug

services=(gateway booking queue-worker)
pids=()
work=$(mktemp -d)
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
out=${TEST_OUTPUT:-test-output/schemathesis}
rm -rf "$out/gateway" "$out/booking"
mkdir -p "$out"
export DATABASE_URL=postgres://$PG_USER@$PG_HOST:$PG_PORT/$db
random_secrets
export ADMIN_TOKEN=fuzz-admin-token
export ENTRY_KEYS_DIR=$work/keys ENTRY_PUBLIC_KEYS_DIR=$work/keys ENTRY_SIGNING_KID=fuzz
export GATEWAY_ADDR=127.0.0.1:3400 BOOKING_ADDR=127.0.0.1:5400 WORKER_ADDR=127.0.0.1:5410
export BOOKING_URL=http://127.0.0.1:5400 CORS_ORIGINS=http://127.0.0.1:3400
# The fuzzer sends hundreds of joins and polls a second from one address, many with the same
# visitor or queue id; a 429 or a 428 would hide what the handler behind them does. (The 428 is
# documented, and fuzzed proofs are checked whether or not one is asked for.)
export JOIN_PER_VISITOR_PER_SECOND=100000 JOIN_PER_ADDRESS_PER_SECOND=100000
export POLL_PER_QUEUE_ID_PER_SECOND=100000 POLL_PER_ADDRESS_PER_SECOND=100000
export PROOF_ADDRESS_JOINS_PER_SECOND=100000 PROOF_JOINS_PER_SECOND=100000
export ADMIN_PER_ADDRESS_PER_SECOND=100000
$bin/gateway keygen >/dev/null
$bin/gateway seed >/dev/null

$bin/gateway serve > "$out/gateway.log" 2>&1 & pids+=("$!")
$bin/booking > "$out/booking.log" 2>&1 & pids+=("$!")
$bin/queue-worker > "$out/queue-worker.log" 2>&1 & pids+=("$!")
wait_for http://127.0.0.1:3400/readyz
wait_for http://127.0.0.1:5400/readyz

json_field() { "$venv/bin/python" -c "import json, sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

# Random ids almost never name a real event, queue entry or token, so the fuzzer would only ever
# see 401 and 404. One event with its waiting room off admits a join at once, which gives a real
# queue id and a real entry token; the configs below feed them to the generated requests.
event=$(curl -fsS -X POST http://127.0.0.1:3400/api/admin/events \
  -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
  -d '{"name": "Fuzz night", "venue_name": "Fuzz hall", "starts_at": "2030-01-01T20:00:00Z",
       "waiting_room": {"enabled": false, "admission_per_minute": 600, "max_active": 1000,
                        "paused": false, "token_ttl_s": 3600},
       "tiers": [{"code": "GA", "name": "General", "price_cents": 2500, "capacity": 500},
                 {"code": "VIP", "name": "VIP", "price_cents": 9000, "capacity": 20}]}' |
  json_field id)
entry=$(curl -fsS -X POST "http://127.0.0.1:3400/api/events/$event/queue" -H 'Content-Type: application/json' -d '{}')
queue_id=$(json_field queue_id <<<"$entry")
entry_token=$(json_field token <<<"$entry")
if [ "$entry_token" = None ]; then
  echo "joining an event whose waiting room is off gave no entry token: $entry" >&2
  exit 1
fi
# Schemathesis keeps the failures it found (for `schemathesis replay`) under .run, not the tree.
cache="[cache]
directory = \"$PWD/.run/schemathesis\""
cat > "$work/gateway.toml" <<TOML
$cache
[dictionaries.events]
values = ["$event"]
[dictionaries.queues]
values = ["$queue_id"]

[parameters]
"path.event_id" = { dictionary = "events", probability = 0.5 }
"path.queue_id" = { dictionary = "queues", probability = 0.5 }
TOML
cat > "$work/booking.toml" <<TOML
$cache
[dictionaries.events]
values = ["$event"]
[dictionaries.emails]
values = ["fuzz@example.com"]

[parameters]
"path.event_id" = { dictionary = "events", probability = 0.5 }
"body.event_id" = { dictionary = "events", probability = 0.7 }
"body.buyer_email" = { dictionary = "emails", probability = 0.5 }
TOML

# One worker: with two, Hypothesis parses lambdas' source from two threads at once, and
# CPython 3.11's AST constructor keeps its recursion depth per interpreter, not per thread
# (python/cpython#106905), so a run could fail with "AST constructor recursion depth mismatch"
# for no fault of the services.
# Every check that compares a response with the document, plus no 5xx ever.
checks=${CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance}
fuzz() {
  local name=$1 base=$2; shift 2
  say "schemathesis: $name ($base/api/openapi.json)"
  "$venv/bin/schemathesis" --config-file "$work/$name.toml" run "$base/api/openapi.json" \
    --url "$base" \
    --checks "$checks" \
    --max-examples "${MAX_EXAMPLES:-50}" \
    --request-timeout 10 \
    --workers 1 \
    --generation-database none \
    ${SEED:+--seed "$SEED"} \
    --report junit --report-dir "$out/$name" \
    --no-color \
    "$@"
}

failed=()
fuzz gateway http://127.0.0.1:3400 -H "Authorization: Bearer $ADMIN_TOKEN" || failed+=(gateway)
fuzz booking http://127.0.0.1:5400 -H "Authorization: Bearer $entry_token" || failed+=(booking)

if [ ${#failed[@]} -gt 0 ]; then
  for service in "${services[@]}"; do
    echo "---- last lines of $out/$service.log"
    tail -n 20 "$out/$service.log"
  done
  echo "schemathesis found failures in: ${failed[*]} (reports in $out/)" >&2
  exit 1
fi
say "schemathesis: no failures"
