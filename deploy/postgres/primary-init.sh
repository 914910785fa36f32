#!/bin/sh
# Runs once, when the primary's data directory is created (docker-entrypoint-initdb.d): a
# replication role, a physical slot so the primary keeps WAL the replica has not received,
# and a pg_hba line letting that role stream from the compose network.
set -eu
: "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
SELECT pg_create_physical_replication_slot('replica_1');
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
