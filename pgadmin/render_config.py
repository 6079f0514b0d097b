"""Render pgAdmin's server list and ``.pgpass`` from the environment; run at container start.

Why: ``pgadmin/servers.json`` in the repo says *where* the lab's database is (the compose
``postgres`` service) but holds no credentials, which live only in ``.env``. This script copies
the server list with ``Username``/``MaintenanceDB`` taken from ``POSTGRES_USER``/``POSTGRES_DB``
and writes the password into a ``.pgpass`` in the pgAdmin user's storage directory, where
pgAdmin (server mode) resolves a relative ``passfile``. The file is created 0600 because libpq
ignores a passfile that others can read.

It runs inside the ``dpage/pgadmin4`` image with that image's Python and standard library only,
before the image's own ``/entrypoint.sh`` (see ``entrypoint.sh``). The paths can be overridden by
environment variables so the unit tests can run it against a temporary directory, and
``PGADMIN_SERVER_HOST``/``PGADMIN_SERVER_PORT`` point the server at another address (the UI test's
native PostgreSQL, ``make demo``'s) and ``PGADMIN_SERVER_NAME`` renames it, so the demo's tree does
not say "compose"; compose sets none of them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE = "/pgadmin-config/servers.json"
DEFAULT_DATA_DIR = "/var/lib/pgadmin"


def storage_dir_name(email: str) -> str:
    """Mirror pgAdmin's own naming of a user's storage directory (``a@b.c`` -> ``a_b.c``)."""
    name = email
    if not name or name[0].isdigit():
        name = "pga_user_" + name
    return name.replace("@", "_").replace("/", "slash").replace("\\", "slash")


def pgpass_escape(value: str) -> str:
    r"""Escape ``\`` and ``:``, the two characters with a meaning in a .pgpass line."""
    return value.replace("\\", "\\\\").replace(":", "\\:")


def render_servers(
    template: Mapping[str, Any],
    user: str,
    database: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the server list with every server's login user and maintenance DB from the env.

    ``overrides`` (``Host``/``Port``/``Name``) replace the template's compose address and name;
    only a pgAdmin run outside compose (the UI test, ``make demo``) passes them.
    """
    servers: dict[str, Any] = {}
    for key, server in template["Servers"].items():
        servers[key] = {**server, **(overrides or {}), "Username": user, "MaintenanceDB": database}
    return {"Servers": servers}


def pgpass_text(servers: Mapping[str, Any], user: str, password: str) -> str:
    """One ``host:port:*:user:password`` line per registered server."""
    lines = []
    for server in servers["Servers"].values():
        fields = [str(server["Host"]), str(server["Port"]), "*", user, password]
        lines.append(":".join(pgpass_escape(field) if field != "*" else field for field in fields))
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(environ: Mapping[str, str]) -> int:
    """Render both files; return a process exit code with a one-line reason on failure."""
    missing = [
        name
        for name in ("PGADMIN_DEFAULT_EMAIL", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
        if not environ.get(name)
    ]
    if missing:
        print(f"render_config: missing environment: {', '.join(missing)}", file=sys.stderr)
        return 1
    data_dir = Path(environ.get("STREAMLAB_PGADMIN_DATA_DIR", DEFAULT_DATA_DIR))
    template_path = Path(environ.get("STREAMLAB_PGADMIN_TEMPLATE", DEFAULT_TEMPLATE))
    target = Path(environ.get("PGADMIN_SERVER_JSON_FILE", str(data_dir / "servers.json")))

    template = json.loads(template_path.read_text(encoding="utf-8"))
    overrides: dict[str, Any] = {}
    if environ.get("PGADMIN_SERVER_NAME"):
        overrides["Name"] = environ["PGADMIN_SERVER_NAME"]
    if environ.get("PGADMIN_SERVER_HOST"):
        overrides["Host"] = environ["PGADMIN_SERVER_HOST"]
    if environ.get("PGADMIN_SERVER_PORT"):
        if not environ["PGADMIN_SERVER_PORT"].isdigit():
            print("render_config: PGADMIN_SERVER_PORT must be a port number", file=sys.stderr)
            return 1
        overrides["Port"] = int(environ["PGADMIN_SERVER_PORT"])
    servers = render_servers(template, environ["POSTGRES_USER"], environ["POSTGRES_DB"], overrides)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(servers, indent=2) + "\n", encoding="utf-8")

    storage = data_dir / "storage" / storage_dir_name(environ["PGADMIN_DEFAULT_EMAIL"])
    pgpass = storage / ".pgpass"
    write_private(
        pgpass, pgpass_text(servers, environ["POSTGRES_USER"], environ["POSTGRES_PASSWORD"])
    )
    print(f"render_config: wrote {target} and {pgpass}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(os.environ))
