#!/usr/bin/env bash
# Per-stage medians of the face pipeline (criterion), for one backend (and OpenVINO precision).
#   bench/stages.sh                 # onnxruntime (default backend)
#   bench/stages.sh tract
#   bench/stages.sh openvino bf16   # or f32; default auto
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-onnxruntime}
precision=${2:-auto}
name=$backend
[ "$backend" = openvino ] && name=$backend-$precision
scripts/models/fetch.sh
mark=$(bench/cpu.sh --mark)
VISAGE_BACKEND=$backend VISAGE_PRECISION=$precision \
  cargo bench -p visage-face --bench pipeline -- --noplot --save-baseline "stages-$name"
echo "stages: on $(bench/cpu.sh "$mark")"
python3 bench/medians.py "stages-$name"
