#!/usr/bin/env bash
# visage's end-to-end time per image over OpenCV's on the same images, models and one core.
#   bench/peer.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/models/fetch.sh
venv=${VISAGE_CACHE_DIR:-$root/.cache}/bench-tools
if ! "$venv/bin/python" -c 'import cv2' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements.txt
fi
ours=()
for backend in onnxruntime tract; do
  VISAGE_BACKEND=$backend cargo bench -p visage-face --bench pipeline -- --noplot \
    --save-baseline "$backend" end_to_end/embed_one_250x250_image
  ns=$("$venv/bin/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"])' \
    "target/criterion/end_to_end/embed_one_250x250_image/$backend/estimates.json")
  ours+=(--ours "$backend=$ns")
done
"$venv/bin/python" bench/peer_opencv.py "${ours[@]}"
