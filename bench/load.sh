#!/usr/bin/env bash
# Load test: 1:1 verifications against a running `visage serve` (release build, embedded
# storage, liveness reported) for DURATION seconds with CONNECTIONS concurrent clients.
# Prints one JSON line: throughput, p50/p95/p99 latency, errors.
#   bench/load.sh [DURATION=60] [CONNECTIONS=4]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-60}"
connections="${2:-4}"
port="${VISAGE_LOAD_PORT:-8097}"

if ! command -v wrk >/dev/null; then
  echo "load: installing wrk (Debian package)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y -q wrk >/dev/null; else sudo apt-get install -y -q wrk >/dev/null; fi
fi
. bench/serve.sh
start_visage "$port"

api() { curl -sf -H "Authorization: Bearer $key" "$@"; }
subject="$(api -H 'Content-Type: application/json' "$base/v1/subjects" \
  -d '{"external_id":"load-test","consent":{"given_by":"load test","purpose":"benchmark"}}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
api -F image=@tests/fixtures/lfw/Bob_Graham/Bob_Graham_0001.jpg \
  "$base/v1/subjects/$subject/faces" >/dev/null

echo "load: $duration s, $connections connections, $(nproc) cores, POST /v1/verify (250x250 JPEG, liveness reported)" >&2
VISAGE_LOAD_IMAGE=tests/fixtures/lfw/Bob_Graham/Bob_Graham_0005.jpg VISAGE_LOAD_KEY="$key" \
  wrk -t 2 -c "$connections" -d "${duration}s" --timeout 10s -s bench/verify.lua \
  "$base/v1/verify?subject_id=$subject" | tail -n 1
