#!/bin/sh
# Runs once, when the official postgres image initialises the primary's data directory
# (/docker-entrypoint-initdb.d): the role the replica copies and streams with, and the
# pg_hba.conf line that lets it (the image's own "host all all all" does not cover
# replication connections). The server restarts after init scripts, so the line applies.
set -eu
: "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set=pw="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'pw';
SQL
echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
