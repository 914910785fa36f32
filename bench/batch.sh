#!/usr/bin/env bash
# Time per face at batch sizes 1-16 on OpenVINO (the default backend), f32 and bf16: the
# measurement behind embedding one face per inference (docs/performance.md#batches).
#   bench/batch.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/models/fetch.sh >&2
venv=${VISAGE_CACHE_DIR:-$root/.cache}/bench-batch
if ! "$venv/bin/python" -c 'import openvino, cv2' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements.txt openvino==2026.4.1
fi
"$venv/bin/python" bench/batch_openvino.py
