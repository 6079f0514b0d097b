#!/bin/sh
# Wraps the pgAdmin image's own /entrypoint.sh so the compose postgres server is registered and
# its password known before pgAdmin starts: nobody has to click "Register server" or type the
# database password.
#
# Why a wrapper: the password lives only in .env (never in the repo), and libpq insists that a
# passfile be private to its owner (mode 0600), which a bind-mounted file from the host is not.
# So render_config.py writes the server list and a 0600 .pgpass from the environment on every
# start (a changed password in .env is picked up by `docker compose up -d pgadmin`), then the
# image's entrypoint runs unchanged, as the image's own non-root user.
set -eu

python_bin=/venv/bin/python3
[ -x "$python_bin" ] || python_bin=python3

"$python_bin" /pgadmin-config/render_config.py
exec /entrypoint.sh "$@"
