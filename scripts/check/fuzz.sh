#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer, the nightly toolchain) of the code that reads
# untrusted bytes; fuzz/fuzz_targets/ holds the targets, fuzz/corpus/ their small seed corpora.
#   scripts/check/fuzz.sh [SECONDS_PER_TARGET=60] [TARGET ...]
# Each target runs from a copy of its seeds (the repository's corpus is not rewritten) and
# prints libFuzzer's final figures: executions, coverage (cov: edges, ft: features), corpus.
# A crash stops the run with the input that caused it under fuzz/artifacts/: make it a
# regression test, then fix.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
shift || true
say() { echo "check/fuzz: $*" >&2; }

if ! cargo +nightly --version >/dev/null 2>&1; then
  say "the nightly toolchain is missing (rustup toolchain install nightly)"
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked --version 0.13.2 >&2
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
# Every target built once up front, timed (minutes from nothing; the runs then start at once).
started=$SECONDS
say "building the targets (a sanitizer build: minutes the first time)"
build_log=$(mktemp)
if ! cargo +nightly fuzz build >"$build_log" 2>&1; then
  tail -40 "$build_log" >&2
  say "the build failed"
  exit 1
fi
rm -f "$build_log"
say "built in $((SECONDS - started)) s"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$work/$target"
  cp -r "fuzz/corpus/$target/." "$work/$target/" 2>/dev/null || true
  say "$target: ${seconds} s from $(ls "$work/$target" | wc -l) seeds"
  cargo +nightly fuzz run "$target" "$work/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 2>"$work/$target.log" || {
      tail -40 "$work/$target.log" >&2
      say "$target: FAILED (the input is under fuzz/artifacts/$target/)"
      exit 1
    }
  grep -E "^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)" "$work/$target.log" \
    | sed "s/^/  $target: /" >&2 || true
  say "$target: $(ls "$work/$target" | wc -l) inputs in the corpus after the run"
done
say "no crash"
