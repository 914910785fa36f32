#!/usr/bin/env bash
# Installs Debian packages for the project's scripts: `scripts/setup/apt-install.sh PKG...`.
# Needs root and apt; without them it names the packages and fails. The servers some packages
# carry are not started by the install (a policy-rc.d forbids it meanwhile, unless one exists
# already): each script starts what it needs, where and how it needs it.
set -euo pipefail
[ $# -gt 0 ] || exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "apt-install: please install $* (Debian/Ubuntu: sudo apt-get install $*)" >&2
  exit 1
fi
echo "apt-install: installing $*" >&2
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
