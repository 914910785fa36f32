#!/usr/bin/env bash
# The OpenAPI document against the server that serves it: starts `visage serve` on a free
# loopback port with a temporary data directory (SQLite) and an admin key, and runs
# schemathesis (PyPI, pinned below, in .tools/schemathesis) on its /openapi.json with every
# check (all on by default in schemathesis 4) and a bounded number of examples per operation;
# then stops the server. One check is narrowed where the document cannot describe the input
# (an image must be a photograph): schemathesis.toml and schemathesis_hooks.py beside this
# script say how and why.
#
#   scripts/check/schemathesis.sh                  # the service binary: $VISAGE_BIN, else
#                                                  # target/debug/visage, else a debug build
#   SCHEMATHESIS_MAX_EXAMPLES=50 scripts/check/schemathesis.sh   # more examples (default 20)
#   SCHEMATHESIS_TIME_LIMIT=900 scripts/check/schemathesis.sh    # seconds for the run (600)
#   scripts/check/schemathesis.sh --seed 1         # extra arguments go to `schemathesis run`
#
# Exit status 0 when every check passed; 1 on any failure, or when the server does not start
# or the run does not finish in time. The report (JUnit XML) and the server's log are kept in
# .tools/schemathesis-report/.
set -euo pipefail
# A relative VISAGE_BIN is relative to where the script was called from.
if [ -n "${VISAGE_BIN:-}" ]; then VISAGE_BIN=$(realpath -m "$VISAGE_BIN"); fi
cd "$(dirname "$0")/../.."
root=$PWD
venv=$root/.tools/schemathesis
report=$root/.tools/schemathesis-report
SCHEMATHESIS_VERSION=4.32.5
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-20}
time_limit=${SCHEMATHESIS_TIME_LIMIT:-600}

say() { printf 'check/schemathesis: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q " $SCHEMATHESIS_VERSION\$"; then
  say "installing schemathesis==$SCHEMATHESIS_VERSION into $venv (PyPI)"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

scripts/models/fetch.sh
if [ -n "${VISAGE_BIN:-}" ]; then
  bin=$VISAGE_BIN
else
  bin=${CARGO_TARGET_DIR:-$root/target}/debug/visage
  [ -x "$bin" ] || cargo build --locked -q -p visage-cli
fi
[ -x "$bin" ] || die "no visage binary at $bin"

work=$(mktemp -d -t visage-schemathesis.XXXXXX)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true; fi
  mkdir -p "$report"
  [ -f "$work/visage.log" ] && cp "$work/visage.log" "$report/visage.log"
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api=http://127.0.0.1:$port
# The caller's VISAGE_* settings stay out: the check is of the document against the defaults.
unset_visage=()
for var in $(compgen -e | grep '^VISAGE_' || true); do unset_visage+=(-u "$var"); done
key=$(env "${unset_visage[@]}" "$bin" keys create --data-dir "$work/data" --name schemathesis --role admin)
env "${unset_visage[@]}" VISAGE_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
  --models-dir "$root/models" >"$work/visage.log" 2>&1 &
server=$!
say "visage ($bin) starting on $api"
for _ in $(seq 1 240); do
  curl -fsS -o /dev/null "$api/health/ready" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$work/visage.log" >&2; die "visage stopped during start-up"; }
  sleep 0.5
done
curl -fsS -o /dev/null "$api/health/ready" || { cat "$work/visage.log" >&2; die "visage not ready after 120 s"; }

say "schemathesis run $api/openapi.json: all checks, at most $max_examples examples per operation, ${time_limit} s at most"
status=0
# Hypothesis (schemathesis' generator) keeps its own files with the other tools, out of the tree.
export HYPOTHESIS_STORAGE_DIRECTORY=$root/.tools/hypothesis
# The hooks keep the run from revoking its own key (schemathesis_hooks.py says why).
export SCHEMATHESIS_OWN_KEY_ID=${key#vsg_}
SCHEMATHESIS_OWN_KEY_ID=${SCHEMATHESIS_OWN_KEY_ID%%_*}
timeout --kill-after=10 "$time_limit" "$venv/bin/schemathesis" --config-file "$root/scripts/check/schemathesis.toml" \
  run "$api/openapi.json" \
  --header "Authorization: Bearer $key" \
  --max-examples "$max_examples" \
  --workers 1 \
  --request-timeout 30 \
  --report junit --report-dir "$report" \
  --no-color \
  "$@" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  die "schemathesis did not finish within $time_limit s"
fi
[ "$status" -eq 0 ] && say "every check passed" || say "failures above (report: $report)"
exit $((status == 0 ? 0 : 1))
