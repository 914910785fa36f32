#!/usr/bin/env bash
# Re-embedding speed: COUNT lfw-dev portraits enrolled with MobileFaceNet (images kept) through
# `visage serve`, then `visage reembed --to sface --batch BATCH` timed with the service
# stopped. Prints one JSON line: twins made, seconds, milliseconds per twin.
#   bench/reembed.sh [COUNT=400] [BATCH=32]   (VISAGE_LFW_DEV: the portraits)
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-400}"
batch="${2:-32}"
portraits="${VISAGE_LFW_DEV:-../shared/data/lfw-dev}"
scripts/models/fetch.sh --mobilefacenet >&2
. bench/serve.sh
VISAGE_MODELS__RECOGNIZER=mobilefacenet VISAGE_STORAGE__STORE_IMAGES=true \
  start_visage "${VISAGE_BENCH_PORT:-8099}"
python3 bench/enrol.py fill "$base" "$key" "$portraits" "$count"
stop_visage keep
trap 'rm -rf "$data"' EXIT
echo "reembed: $(nproc) cores, --batch $batch" >&2
mark=$(bench/cpu.sh --mark)
started=$(date +%s.%N)
"$visage" reembed --data-dir "$data" --to sface --batch "$batch" >"$data/summary.json"
finished=$(date +%s.%N)
echo "reembed: on $(bench/cpu.sh "$mark")" >&2
python3 - "$data/summary.json" "$started" "$finished" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
seconds = float(sys.argv[3]) - float(sys.argv[2])
print(json.dumps({"twins": summary["done"], "failed": sum(summary["failed"].values()),
                  "seconds": round(seconds, 2), "ms_per_twin": round(1000 * seconds / max(summary["done"], 1), 2)}))
PY
