#!/bin/bash
# The official postgres image's first start, in short: an empty data directory is initialised with
# POSTGRES_USER as the superuser and POSTGRES_PASSWORD as its password, POSTGRES_DB is created, the server listens on
# every address and asks clients for a password (scram-sha-256). Runs as the postgres user (compose's `user:`).
set -euo pipefail
if [[ "${1:-}" == postgres && ! -s "$PGDATA/PG_VERSION" ]]; then
    : "${POSTGRES_PASSWORD:?the stand-in postgres image needs POSTGRES_PASSWORD}"
    user="${POSTGRES_USER:-postgres}"
    database="${POSTGRES_DB:-$user}"
    initdb --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [[ "$database" != postgres ]]; then
        # On the Unix socket only, as the official image does, so no client connects before the database exists.
        pg_ctl --wait --silent --options="-c listen_addresses=''" start
        psql --username="$user" --dbname=postgres --set=ON_ERROR_STOP=1 --quiet \
            --command="CREATE DATABASE \"$database\""
        pg_ctl --wait --silent --mode=fast stop
    fi
    echo "docker-entrypoint: initialised $PGDATA for $user, database $database"
fi
exec "$@"
