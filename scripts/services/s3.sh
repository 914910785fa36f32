#!/usr/bin/env bash
# An S3 server for the tests: moto in server mode (PyPI `moto[server]`, pinned below), in a
# private venv under .tools/, on 127.0.0.1:${VISAGE_TEST_S3_PORT:-9000}. A server already
# answering there is reused. moto accepts any credentials and keeps everything in memory;
# each test creates a bucket of its own.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
port=${VISAGE_TEST_S3_PORT:-9000}
endpoint="http://127.0.0.1:$port"
venv="$root/.tools/moto"
MOTO_VERSION=5.2.5

say() { printf 'services/s3: %s\n' "$*" >&2; }

# An S3 ListBuckets answer (moto does not check signatures).
s3_up() {
  python3 - "$endpoint" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/", timeout=2) as response:
    body = response.read()
sys.exit(0 if b"ListAllMyBucketsResult" in body else 1)
PY
}

if s3_up; then
  say "reusing the S3 server at $endpoint"
  exit 0
fi
if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c "import moto; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
  say "installing moto[server]==$MOTO_VERSION into $venv"
  python3 -m venv "$venv" || { say "python3 -m venv failed (Debian: apt-get install python3-venv)"; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
say "starting moto at $endpoint (log: .tools/moto.log)"
# Detached, so it outlives this script like the other test services.
setsid nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$root/.tools/moto.log" 2>&1 < /dev/null &
for _ in $(seq 1 90); do s3_up && break; sleep 1; done
s3_up || { say "moto did not come up at $endpoint; see .tools/moto.log"; exit 1; }
say "S3 server ready at $endpoint"
