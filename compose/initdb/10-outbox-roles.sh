#!/bin/bash
# Creates the local stack's least-privilege roles, once, when the postgres
# container initialises an empty data directory (docker-entrypoint-initdb.d):
#   outbox_relay   what `outbox-relay run` logs in as (DML on the outbox only,
#                  granted by `outbox-relay migrate --grant-relay outbox_relay`)
#   outbox_writer  for services writing events (USAGE on the schema, INSERT
#                  on the events: `migrate --grant-writer outbox_writer`)
# Neither may create anything; only the superuser (POSTGRES_USER), which the
# migrate service uses, changes the schema. The passwords come from
# OUTBOX_RELAY_PASSWORD and OUTBOX_WRITER_PASSWORD (docker-compose.yml),
# passed as psql variables so that no quoting in them can break the SQL.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v relay_pw="${OUTBOX_RELAY_PASSWORD:?}" -v writer_pw="${OUTBOX_WRITER_PASSWORD:?}" <<'SQL'
CREATE ROLE outbox_relay LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'relay_pw';
CREATE ROLE outbox_writer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'writer_pw';
-- PostgreSQL 15 no longer lets PUBLIC create in schema public; revoked anyway
-- so that an older image behaves the same.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
