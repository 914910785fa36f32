# Sourced by the service benchmarks: builds the release `visage` and starts `visage serve` on
# embedded storage in a fresh data directory, stopped and removed on exit.
#   start_visage PORT   sets visage (the binary), data, key (an admin key) and base (the URL);
#                       VISAGE_* variables set by the caller configure the service.
visage=target/release/visage

start_visage() {
  local port=$1
  scripts/models/fetch.sh >&2
  cargo build --release --locked -q -p visage-cli
  data="$(mktemp -d)"
  base="http://127.0.0.1:$port"
  export VISAGE_LOG=warn
  key="$("$visage" keys create --data-dir "$data" --name bench --role admin 2>/dev/null)"
  "$visage" serve --data-dir "$data" --listen "127.0.0.1:$port" 2>"$data/serve.log" &
  server=$!
  trap stop_visage EXIT
  for _ in $(seq 1 120); do
    if curl -sf "$base/health/ready" >/dev/null; then
      mark=$(bench/cpu.sh --mark)
      return
    fi
    sleep 0.5
  done
  cat "$data/serve.log" >&2
  exit 1
}

# Stops the service (the data directory stays until exit) and says what it ran on.
stop_visage() {
  if [ -n "${server:-}" ]; then
    echo "bench: on $(bench/cpu.sh "${mark:-}")" >&2
    kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  fi
  server=
  if [ "${1:-}" != keep ]; then rm -rf "$data"; fi
}
