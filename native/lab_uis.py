"""This lab's web UIs: pgAdmin and mongo-express, configured as the compose file configures them.

Why the UI tests' installs (``native.servers.pgadmin``, ``native.servers.mongo_express``): they
are the compose file's versions (pgAdmin 9.8, mongo-express 1.0.2), cached once per machine, and
the browser tests already prove them against the consumer's rows. The demo adds only what a lab
needs on top: its own addresses, logins kept between runs, and a stop with the rest of the lab.

- pgAdmin gets its server list and its ``.pgpass`` from ``pgadmin/render_config.py``, the script
  the container runs, pointed at the lab's PostgreSQL and its login ``lab``: no password prompt.
- mongo-express gets the compose file's ``ME_CONFIG_*`` settings with the lab's FerretDB as the
  MongoDB URL (FerretDB has no users, so no credentials in it) and basic auth on.
- Logins are made on the first start and kept in ``<lab>/uis/`` (0600): the user names are
  ``.env.example``'s, as ``make up`` keeps them; only the secrets are generated, as ``make up``
  generates every ``change-me`` value.

Both run as the lab's children (``native.processes``), so Ctrl-C and ``make demo-down`` stop them
like the consumer, and a lab killed without clean-up has them stopped at its next start.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from native import lab_servers
from native.layout import LabError, Layout
from native.servers import mongo_express, pgadmin
from native.servers.mongo_express import MONGO_EXPRESS_VERSION, MongoExpress
from native.servers.pgadmin import PGADMIN_VERSION, Database, Login, PgAdmin

REPO = Path(__file__).resolve().parents[1]
# The name of the pre-registered server in pgAdmin's tree (compose: "streamlab (compose
# postgres)", from pgadmin/servers.json).
SERVER_NAME = "streamlab (demo postgres)"
INSTALL_TIMEOUT_S = 1800


def _env_example(name: str) -> str:
    value = dotenv_values(REPO / ".env.example").get(name)
    if not value:
        raise LabError(f"{name} is missing from .env.example")
    return value


def secret(path: Path) -> str:
    """The secret kept in ``path``, made (0600) on the first call."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(12) + "\n")
    return path.read_text().strip()


@dataclass(frozen=True)
class Logins:
    """Who logs in to each UI, and the file holding the password (shown in the table)."""

    pgadmin_email: str
    pgadmin_password_file: Path
    mongo_express_user: str
    mongo_express_password_file: Path


def logins(home: Layout) -> Logins:
    """The logins; creates ``<lab>/uis`` private (0700): it holds them, and pgAdmin's data."""
    home.uis.mkdir(parents=True, exist_ok=True, mode=0o700)
    home.uis.chmod(0o700)
    return Logins(
        _env_example("PGADMIN_DEFAULT_EMAIL"),
        home.uis / "pgadmin-password",
        _env_example("MONGO_EXPRESS_USERNAME"),
        home.uis / "mongo-express-password",
    )


def install() -> None:
    """Install what is missing, each with the servers' progress line; nothing on a warm start.

    Through the modules' command line (``python -m native.servers.pgadmin install``), in a
    session of its own, so Ctrl-C during a first run ends pip or npm too.
    """
    for what, module in (
        (f"pgAdmin {PGADMIN_VERSION}", pgadmin),
        (f"mongo-express {MONGO_EXPRESS_VERSION}", mongo_express),
    ):
        if not module.installed():
            lab_servers.run_step(
                f"installing {what} (first run only)",
                [sys.executable, "-m", module.__name__, "install"],
                os.environ,
                INSTALL_TIMEOUT_S,
            )


def pgadmin_instance(home: Layout, port: int, pg: Mapping[str, Any]) -> PgAdmin:
    """pgAdmin on ``port``, data in ``<lab>/uis/pgadmin``, the lab's PostgreSQL (``pg``, its
    connection parameters) pre-registered with the lab's login."""
    who = logins(home)
    database = Database(
        pg["host"], int(pg["port"]), pg["dbname"], pg["user"], pg["password"], SERVER_NAME
    )
    workdir = home.uis / "pgadmin"
    workdir.mkdir(parents=True, exist_ok=True)
    return PgAdmin(
        workdir,
        port,
        Login(who.pgadmin_email, secret(who.pgadmin_password_file)),
        database,
        pgadmin.COMPOSE_CONFIG,
    )


def mongo_express_instance(home: Layout, port: int, mongo_uri: str) -> MongoExpress:
    """mongo-express on ``port``, showing ``mongo_uri``, behind basic auth."""
    who = logins(home)
    workdir = home.uis / "mongo-express"
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        **mongo_express.COMPOSE_CONFIG,
        "ME_CONFIG_MONGODB_URL": mongo_uri,
        "ME_CONFIG_BASICAUTH_USERNAME": who.mongo_express_user,
        "ME_CONFIG_BASICAUTH_PASSWORD": secret(who.mongo_express_password_file),
        "ME_CONFIG_SITE_COOKIESECRET": secret(home.uis / "mongo-express-cookie-secret"),
        "ME_CONFIG_SITE_SESSIONSECRET": secret(home.uis / "mongo-express-session-secret"),
    }
    return MongoExpress(workdir, port, config)
