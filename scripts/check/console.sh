#!/usr/bin/env bash
# The web console in a real browser: Debian's Chromium (installed when missing) driven by npm
# playwright-core, with axe-core for accessibility, against `visage serve` on port 0 with a
# fresh data directory and a fake camera fed from fixture photos (tests/console/run.mjs).
#
#   scripts/check/console.sh          # the binary: $VISAGE_BIN, else target/debug/visage,
#                                     # else a debug build
#
# Screenshots of every page (and the server's log) go to $CONSOLE_SCREENSHOTS, by default
# target/console-screenshots; the run prints where.
set -euo pipefail
if [ -n "${VISAGE_BIN:-}" ]; then VISAGE_BIN=$(realpath -m "$VISAGE_BIN"); fi
cd "$(dirname "$0")/../.."

say() { printf 'check/console: %s\n' "$*" >&2; }

if [ ! -x /usr/bin/chromium ]; then
  scripts/setup/apt-install.sh chromium fonts-dejavu-core
fi
command -v npm >/dev/null || scripts/setup/system-packages.sh
# The lock file pins playwright-core and axe-core; reinstall only when it changed.
stamp=tests/console/node_modules/.installed-lock.json
if ! cmp -s tests/console/package-lock.json "$stamp"; then
  say "installing playwright-core and axe-core (npm ci)"
  (cd tests/console && npm ci --no-audit --no-fund --silent)
  cp tests/console/package-lock.json "$stamp"
fi
scripts/models/fetch.sh
bin=${VISAGE_BIN:-${CARGO_TARGET_DIR:-target}/debug/visage}
[ -x "$bin" ] || cargo build --locked -q -p visage-cli
VISAGE_BIN=$bin node tests/console/run.mjs
