#!/usr/bin/env bash
# Fetch the models, build, and run the service on the embedded default (SQLite in ./data,
# port 8000). On the first run it creates an admin API key and prints it once.
#   scripts/serve.sh [extra `visage serve` flags]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup/system-packages.sh
scripts/models/fetch.sh
cargo build --release --locked -p visage-cli
visage=target/release/visage
data_dir="${VISAGE_STORAGE__DATA_DIR:-data}"
if [ -z "$("$visage" keys list --data-dir "$data_dir")" ]; then
  echo "serve: no API key yet; creating an admin key. Keep it: it is shown only now. Sign in with it at http://localhost:8000/console" >&2
  "$visage" keys create --data-dir "$data_dir" --name first-admin --role admin
fi
exec "$visage" serve --data-dir "$data_dir" "$@"
