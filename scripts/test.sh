#!/usr/bin/env bash
# The whole test suite, as CI runs it: models, formatting, lints, tests.
# Services the tests need are started here (or reused when already running).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/fetch-models.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
