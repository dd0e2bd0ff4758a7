# Shared by the scripts: make sure the machine has what the system needs, installing from
# the OS packages only what is missing, and starting PostgreSQL and Redis if they are not running.
# Debian/Ubuntu as root (or with sudo); on macOS use Homebrew (see README).

PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "missing: $* (install it with your package manager)" >&2
    return 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_rust() {
  if command -v cargo >/dev/null; then return; fi
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH" && return
  say "installing the Rust toolchain (rustup)"
  command -v curl >/dev/null || apt_install curl ca-certificates
  command -v cc >/dev/null || apt_install build-essential
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  export PATH="$HOME/.cargo/bin:$PATH"
}

ensure_postgres() {
  command -v pg_isready >/dev/null || apt_install postgresql postgresql-client
  if pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then return; fi
  say "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null; then
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  elif command -v brew >/dev/null; then
    brew services start postgresql
  fi
  for _ in $(seq 1 50); do pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && return; sleep 0.2; done
  echo "PostgreSQL did not start on $PG_HOST:$PG_PORT" >&2
  return 1
}

# Local development trusts loopback connections for the postgres user; a fresh Debian install
# authenticates them by password, so the first run switches loopback to trust (once).
ensure_postgres_access() {
  if psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -Atqc 'select 1' >/dev/null 2>&1; then return; fi
  local hba
  hba=$(as_root su postgres -c "psql -Atqc 'show hba_file'")
  say "allowing local trust connections in $hba"
  as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  as_root su postgres -c "psql -Atqc 'select pg_reload_conf()'" >/dev/null
}

ensure_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
  say "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return; sleep 0.2; done
  echo "Redis did not start on 127.0.0.1:6379" >&2
  return 1
}

ensure_node() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
}

ensure_chromium() {
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || apt_install chromium
}

create_database() {
  local name=$1
  if ! psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -Atqc "select 1 from pg_database where datname = '$name'" | grep -q 1; then
    say "creating database $name"
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -qc "create database \"$name\""
  fi
}

# Waits for an HTTP endpoint to answer 200.
wait_for() {
  local url=$1
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "timed out waiting for $url" >&2
  return 1
}

# A benchmark's services: fresh secrets, keys under $1, the gateway, booking service and worker on
# ports $2, $3 and $4, and the per-client limits and proof-of-work thresholds lifted (a load
# generator sends from one address, or a few).
bench_services_env() {
  local work=$1 gateway=$2 booking=$3 worker=$4
  random_secrets
  export ADMIN_TOKEN=bench-admin-token LOG_LEVEL=warn
  export ENTRY_KEYS_DIR=$work/keys ENTRY_PUBLIC_KEYS_DIR=$work/keys ENTRY_SIGNING_KID=bench
  export GATEWAY_ADDR=127.0.0.1:$gateway BOOKING_ADDR=127.0.0.1:$booking WORKER_ADDR=127.0.0.1:$worker
  export BOOKING_URL=http://127.0.0.1:$booking
  export JOIN_PER_VISITOR_PER_SECOND=1000000 JOIN_PER_ADDRESS_PER_SECOND=1000000
  export POLL_PER_QUEUE_ID_PER_SECOND=1000000 POLL_PER_ADDRESS_PER_SECOND=1000000
  export PROOF_ADDRESS_JOINS_PER_SECOND=1000000 PROOF_JOINS_PER_SECOND=1000000
  # The network ceiling (per /24) and the event's join rate ask for proofs too: off here, or a
  # crowd from 127.0.0.1 joining at 400/s gets 428 (a rehearsal lost 7,136 of 12,000 joins).
  export PROOF_NETWORK_JOINS_PER_SECOND=0 PROOF_EVENT_JOINS_PER_SECOND=1000000
  export HTTP_CONNECTIONS_PER_ADDRESS=1000000
}

# The services refuse to start without their secrets (or with the `change-me` placeholder):
# scripts that start them for a test or a benchmark give them fresh random ones.
random_secrets() {
  export QUEUE_ID_SECRET=${QUEUE_ID_SECRET:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')}
  export ACCESS_CODE_SECRET=${ACCESS_CODE_SECRET:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')}
  export QUEUE_RECEIPT_KEYS=${QUEUE_RECEIPT_KEYS:-k1:$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')}
  export PROOF_SECRET=${PROOF_SECRET:-$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')}
}

# What every script that builds or runs the services needs: Rust, PostgreSQL reachable as
# $PG_USER, and Redis, installed and started where missing.
ensure_stack() {
  ensure_rust
  ensure_postgres
  ensure_postgres_access
  ensure_redis
}

# A benchmark's summary line: printed, and kept in $summary.
note() { echo "$*" | tee -a "${summary:?set summary to the summary file}"; }

# redis-cli against the benchmarks' Redis (REDIS_HOST, REDIS_PORT; the shared one by default).
redis_stats() { redis-cli -h "${REDIS_HOST:-127.0.0.1}" -p "${REDIS_PORT:-6379}" "$@"; }

# One value out of a loadgen report: `field FILE EXPR`, EXPR a Python expression over `r`.
field() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# Measures two sides in alternating rounds: `alternating_rounds ROUNDS A B FILE MEASURE` calls
# `MEASURE SIDE ROUND` (it prints one figure) for A and B each round, each round in the other
# order so neither always runs first on a drifting machine, and keeps "ROUND SIDE FIGURE" lines
# in FILE. The machine's speed drifts between runs by more than most differences we measure.
alternating_rounds() {
  local rounds=$1 a=$2 b=$3 file=$4 measure=$5 round side figure
  : > "$file"
  for round in $(seq 1 "$rounds"); do
    for side in $([ $((round % 2)) = 1 ] && echo "$a $b" || echo "$b $a"); do
      figure=$("$measure" "$side" "$round")
      echo "$round $side $figure" >> "$file"
      note "round $round $side: $figure"
    done
  done
}

# A/B per round of `alternating_rounds`' FILE, then the median: "a/b = r, ... | median m".
ratios_and_median() {
  python3 - "$1" "$2" "$3" <<'PY'
import collections, statistics, sys
path, a, b = sys.argv[1:]
r = collections.defaultdict(dict)
for line in open(path):
    n, side, v = line.split()
    r[n][side] = float(v)
rounds = sorted(r, key=int)
ratios = [r[n][a] / r[n][b] for n in rounds]
print(', '.join(f'{r[n][a]:.0f}/{r[n][b]:.0f} = {x:.3f}' for n, x in zip(rounds, ratios)),
      '| median', f'{statistics.median(ratios):.3f}')
PY
}

# pgbench writing one booking of 1 VIP + 1 FrontRow + 2 GA (scripts/bench_pg_write.sh,
# scripts/bench_split.sh). Sides: `least` (loadgen/bench/minimal_schema.sql), `schema` (every
# migration) and `base` (the migrations before $BASE_MIGRATION). The caller sets $out,
# $CONCURRENCY and $DURATION.
psql_to() { psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -v ON_ERROR_STOP=1 -d "$@"; }

pg_write_prepare() { # pg_write_prepare SIDE: a fresh database bench_pg_write_SIDE with its schema and one event
  local db=bench_pg_write_$1
  psql_to postgres -qc "drop database if exists $db with (force)"
  create_database "$db"
  if [ "$1" = least ]; then
    psql_to "$db" -qf loadgen/bench/minimal_schema.sql
    psql_to "$db" -Atqc "select concat_ws(' ', gen_random_uuid(), gen_random_uuid(),
      gen_random_uuid(), gen_random_uuid())" > "$out/$1.ids"
  else
    for file in migrations/*.sql; do
      if [ "$1" = base ] && [[ ! "$(basename "$file")" < "$BASE_MIGRATION" ]]; then break; fi
      psql_to "$db" -qf "$file"
    done
    psql_to "$db" -Atq > "$out/$1.ids" <<SQL
WITH v AS (INSERT INTO venues (name) VALUES ('Bench') RETURNING id),
     e AS (INSERT INTO events (name, venue_id, starts_at, on_sale_at)
           SELECT 'pgbench', id, now() + interval '30 days', now() FROM v RETURNING id),
     t AS (INSERT INTO ticket_tiers (event_id, code, name, price_cents, capacity, position)
           SELECT e.id, x.code, x.code, 100, 1000000, x.pos FROM e,
                  (VALUES ('VIP', 0), ('FrontRow', 1), ('GA', 2)) AS x (code, pos)
           RETURNING code, id)
SELECT (SELECT id FROM e) || ' ' || (SELECT id FROM t WHERE code = 'VIP') || ' '
    || (SELECT id FROM t WHERE code = 'FrontRow') || ' ' || (SELECT id FROM t WHERE code = 'GA');
SQL
  fi
  psql_to "$db" -qc "CREATE SEQUENCE bench_vip_numbers MAXVALUE 1000000;
    CREATE SEQUENCE bench_front_numbers MAXVALUE 1000000; CREATE SEQUENCE bench_ga_numbers MAXVALUE 1000000;"
}

pg_write() { # pg_write SIDE ROUND: one timed pgbench, its transactions/s
  local db=bench_pg_write_$1 script=loadgen/bench/schema_write.sql
  [ "$1" = least ] && script=loadgen/bench/minimal_write.sql
  # Every run starts from empty tables and fresh numbers: equal for every side and round, and a
  # tier's million numbers never run out however many rounds there are.
  psql_to "$db" -qc "TRUNCATE tickets, bookings; ALTER SEQUENCE bench_vip_numbers RESTART;
    ALTER SEQUENCE bench_front_numbers RESTART; ALTER SEQUENCE bench_ga_numbers RESTART;"
  read -r event vip front ga < "$out/$1.ids"
  pgbench -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -n -M prepared -c "$CONCURRENCY" -j 2 \
    -T "$DURATION" -D event="$event" -D vip="$vip" -D front="$front" -D ga="$ga" \
    -f "$script" "$db" > "$out/pgbench-$1-$2.txt" 2>&1
  awk '/^tps/ {printf "%.0f\n", $3; exit}' "$out/pgbench-$1-$2.txt"
}

