#!/bin/sh
# The streaming replica of docker-compose.yml, in the official postgres image, run as the
# postgres user. First start (empty volume): copy the primary with pg_basebackup -R,
# which writes standby.signal and primary_conninfo, so the server starts as a hot standby
# streaming from the primary. Later starts: just start it (it resumes streaming).
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_HOST:=db}"
: "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD}"
# libpq reads it for pg_basebackup and, since the server inherits it, for the WAL
# receiver too: the password never lands in postgresql.auto.conf.
export PGPASSWORD="$REPLICATION_PASSWORD"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h "$PRIMARY_HOST" -p 5432 -q; do
    echo "replica: waiting for $PRIMARY_HOST"
    sleep 1
  done
  echo "replica: copying $PRIMARY_HOST (pg_basebackup -R)"
  # pg_basebackup wants an empty directory; a half-done copy from a failed first start
  # is not worth keeping.
  find "$PGDATA" -mindepth 1 -delete
  pg_basebackup -h "$PRIMARY_HOST" -p 5432 -U replicator -D "$PGDATA" -R -X stream -c fast
  chmod 0700 "$PGDATA"
fi
exec postgres -c hot_standby=on -c hot_standby_feedback=on
