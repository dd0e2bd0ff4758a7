#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and integration tests against the real PostgreSQL and
# Redis, and the browser tests against the real services. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_stack

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
say "unit, integration, fault and scale-out tests"
# The fault tests run the service binaries as real processes.
cargo build -p gateway -p booking -p queue-worker
DATABASE_URL=${TEST_DATABASE_URL:-postgres://$PG_USER@$PG_HOST:$PG_PORT/postgres} cargo test --workspace
say "schemathesis against each service's OpenAPI document"
bash scripts/schemathesis.sh
say "browser tests"
bash scripts/e2e.sh
