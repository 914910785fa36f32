#!/usr/bin/env bash
# Starts (or reuses) the servers the tests talk to: PostgreSQL at 127.0.0.1:5432 with trust
# authentication for user postgres and a database `test`, Redis at 127.0.0.1:6379, and an S3
# server (moto) at 127.0.0.1:9000 (scripts/services/s3.sh). A running server is used as it is;
# an installed but stopped one is started; on a machine without it (and with root and apt) the
# Debian package is installed and set up for local tests only.
set -euo pipefail

say() { printf 'services/up: %s\n' "$*" >&2; }

postgres_up() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }

if ! postgres_up; then
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    say "PostgreSQL is not running at 127.0.0.1:5432 and not installed: installing it"
    "$(dirname "$0")/../setup/apt-install.sh" postgresql
    # A fresh test server: trust for loopback connections only, as the tests expect.
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      sed -i 's/^\(host\s\+all\s\+all\s\+127\.0\.0\.1\/32\s\+\)\S\+/\1trust/' "$hba"
    done
  fi
  say "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null; then
    for cluster in /etc/postgresql/*/main; do
      version=$(basename "$(dirname "$cluster")")
      pg_ctlcluster "$version" main start || true
    done
  else
    service postgresql start
  fi
  for _ in $(seq 1 30); do postgres_up && break; sleep 1; done
  postgres_up || { say "PostgreSQL did not come up at 127.0.0.1:5432"; exit 1; }
fi

if ! psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
  say "PostgreSQL runs but user postgres cannot connect from 127.0.0.1 without a password (the tests need trust authentication there)"
  exit 1
fi
if [ -z "$(psql -h 127.0.0.1 -U postgres -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'test'")" ]; then
  psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test'
fi
say "PostgreSQL ready at 127.0.0.1:5432"

# Redis: the API tests share one at 127.0.0.1:6379 (each under a key prefix of its own) and
# start throwaway redis-server processes of their own for the outage test.
redis_up() { command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }

if ! command -v redis-server >/dev/null; then
  "$(dirname "$0")/../setup/apt-install.sh" redis-server redis-tools
fi
if ! redis_up; then
  say "starting Redis"
  # The packaged service where there is an init system; else a daemon on loopback, no persistence.
  service redis-server start >/dev/null 2>&1 || true
  for _ in $(seq 1 10); do redis_up && break; sleep 1; done
  if ! redis_up; then
    redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes \
      --logfile /tmp/visage-test-redis.log
    for _ in $(seq 1 30); do redis_up && break; sleep 1; done
  fi
  redis_up || { say "Redis did not come up at 127.0.0.1:6379"; exit 1; }
fi
say "Redis ready at 127.0.0.1:6379"
"$(dirname "$0")/s3.sh"
