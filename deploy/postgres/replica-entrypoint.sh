#!/bin/sh
# Streaming replica: on first start, clone the primary with pg_basebackup (-R writes
# standby.signal and primary_conninfo, -S uses the slot primary-init.sh made), then run as a
# read-only hot standby. Later starts reuse the data directory and resume streaming.
set -eu
: "${PRIMARY_HOST:?set PRIMARY_HOST}"
: "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h "$PRIMARY_HOST" -p 5432 -q; do
    echo "replica: waiting for $PRIMARY_HOST"
    sleep 2
  done
  # The password reaches libpq through the environment, never the command line.
  PGPASSWORD=$REPLICATION_PASSWORD su-exec postgres \
    pg_basebackup -h "$PRIMARY_HOST" -p 5432 -U replicator -D "$PGDATA" -R -X stream -S replica_1
fi
exec su-exec postgres postgres -c hot_standby=on
