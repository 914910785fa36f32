#!/usr/bin/env bash
# Enrolment latency: requests holding 1, 4 and 8 lfw-dev portraits, ROUNDS of each, one at a
# time, against `visage serve` (release build, embedded storage, default settings). Prints one
# JSON line per request size: median and max milliseconds, median per image.
#   bench/enrol.sh [ROUNDS=20]      (VISAGE_LFW_DEV: the portraits, ../shared/data/lfw-dev)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-20}"
portraits="${VISAGE_LFW_DEV:-../shared/data/lfw-dev}"
. bench/serve.sh
start_visage "${VISAGE_BENCH_PORT:-8098}"
echo "enrol: $rounds requests each of 1, 4 and 8 images, $(nproc) cores" >&2
python3 bench/enrol.py latency "$base" "$key" "$portraits" "$rounds"
