#!/bin/bash
# First start: initdb, the superuser and database of POSTGRES_*, then the init scripts.
set -euo pipefail
if [[ "${1:-postgres}" == postgres || "${1:-}" == -* ]]; then
  [[ "${1:-}" == postgres ]] && shift
  if [[ "$(id -u)" == 0 ]]; then
    mkdir -p "$PGDATA" && chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    exec gosu postgres bash "$0" postgres "$@"
  fi
  user=${POSTGRES_USER:-postgres}
  if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    pwfile=$(mktemp)
    echo "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > "$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=trust -D "$PGDATA"
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
    if [[ -n "${POSTGRES_DB:-}" && "${POSTGRES_DB}" != postgres ]]; then
      psql -v ON_ERROR_STOP=1 --username "$user" -p "${PGPORT:-5432}" --dbname postgres \
        -c "CREATE DATABASE \"$POSTGRES_DB\""
    fi
    for script in /docker-entrypoint-initdb.d/*.sql; do
      [[ -e "$script" ]] || continue
      psql -v ON_ERROR_STOP=1 --username "$user" -p "${PGPORT:-5432}" --dbname "${POSTGRES_DB:-postgres}" -f "$script"
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
  fi
  exec postgres -c listen_addresses='*' "$@"
fi
exec "$@"
