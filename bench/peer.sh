#!/usr/bin/env bash
# visage's end-to-end time per image over OpenCV's on the same images, models and one core,
# for every backend and OpenVINO precision.
#   bench/peer.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/models/fetch.sh
mark=$(bench/cpu.sh --mark)
venv=${VISAGE_CACHE_DIR:-$root/.cache}/bench-tools
if ! "$venv/bin/python" -c 'import cv2' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements.txt
fi
ours=()
# NAME:BACKEND:PRECISION
for run in onnxruntime:onnxruntime:auto openvino-f32:openvino:f32 openvino-bf16:openvino:bf16 tract:tract:auto; do
  IFS=: read -r name backend precision <<<"$run"
  VISAGE_BACKEND=$backend VISAGE_PRECISION=$precision \
    cargo bench -p visage-face --bench pipeline -- --noplot \
    --save-baseline "$name" end_to_end/embed_one_250x250_image
  ns=$("$venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"])' \
    "target/criterion/end_to_end/embed_one_250x250_image/$name/estimates.json")
  ours+=(--ours "$name=$ns")
done
echo "peer: on $(bench/cpu.sh "$mark")"
"$venv/bin/python" bench/peer_opencv.py "${ours[@]}"
