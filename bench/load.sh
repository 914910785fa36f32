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
scripts/models/fetch.sh >&2
cargo build --release --locked -q -p visage-cli
visage=target/release/visage

data="$(mktemp -d)"
export VISAGE_LOG=warn
key="$("$visage" keys create --data-dir "$data" --name load --role admin 2>/dev/null)"
"$visage" serve --data-dir "$data" --listen "127.0.0.1:$port" 2>"$data/serve.log" &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null || { cat "$data/serve.log" >&2; exit 1; }

api() { curl -sf -H "Authorization: Bearer $key" "$@"; }
subject="$(api -H 'Content-Type: application/json' "http://127.0.0.1:$port/v1/subjects" \
  -d '{"external_id":"load-test","consent":{"given_by":"load test","purpose":"benchmark"}}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
api -F image=@tests/fixtures/lfw/Bob_Graham/Bob_Graham_0001.jpg \
  "http://127.0.0.1:$port/v1/subjects/$subject/faces" >/dev/null

echo "load: $duration s, $connections connections, $(nproc) cores, POST /v1/verify (250x250 JPEG, liveness reported)" >&2
VISAGE_LOAD_IMAGE=tests/fixtures/lfw/Bob_Graham/Bob_Graham_0005.jpg VISAGE_LOAD_KEY="$key" \
  wrk -t 2 -c "$connections" -d "${duration}s" --timeout 10s -s bench/verify.lua \
  "http://127.0.0.1:$port/v1/verify?subject_id=$subject" | tail -n 1
