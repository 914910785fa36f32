#!/usr/bin/env bash
# Per-stage medians of the face pipeline (criterion), for one backend.
#   bench/stages.sh                 # onnxruntime (default backend)
#   bench/stages.sh tract
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-onnxruntime}
scripts/models/fetch.sh
VISAGE_BACKEND=$backend cargo bench -p visage-face --bench pipeline -- --noplot --save-baseline "stages-$backend"
python3 bench/medians.py "stages-$backend"
