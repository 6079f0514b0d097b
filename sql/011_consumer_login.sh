#!/bin/bash
# Compose only (the postgres image runs this once, after the *.sql files before it, on the first
# start with an empty data volume): the consumer's login, CONSUMER_POSTGRES_USER from .env, a
# member of quotes_writer, whose privileges 010_consumer_privileges.sql grants.
# The tests create their login the same way in native/servers/endpoints.py.
# psql variables (:'name') quote the values, so a password needs no escaping here.
set -euo pipefail

: "${CONSUMER_POSTGRES_USER:?set CONSUMER_POSTGRES_USER in .env}"
: "${CONSUMER_POSTGRES_PASSWORD:?set CONSUMER_POSTGRES_PASSWORD in .env}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v role="$CONSUMER_POSTGRES_USER" -v password="$CONSUMER_POSTGRES_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\gexec
SELECT format('GRANT quotes_writer TO %I', :'role')
\gexec
SQL
