#!/usr/bin/env bash
# 1:N search speed at the given gallery sizes (the criterion-free benchmark of visage-index: one
# JSON line per size, kernel and thread count), then the CPU it ran on.
#   bench/search.sh [SIZES...]      default: 100000 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- 100000 1000000
mark=$(bench/cpu.sh --mark)
cargo bench -p visage-index --bench search --locked -- "$@"
echo "search: on $(bench/cpu.sh "$mark")"
