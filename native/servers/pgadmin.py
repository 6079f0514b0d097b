"""pgAdmin 4 run natively in server mode, configured by the lab's own ``pgadmin/`` files.

Why: a learner's first look at the rows the consumer wrote is pgAdmin's Query Tool, reached
through the server the compose stack pre-registers (``pgadmin/servers.json``) and the ``.pgpass``
``pgadmin/render_config.py`` writes. The UI test runs the same pieces outside Docker: the
compose file's pgAdmin version from PyPI, in a virtualenv cached per machine, with the server
list and password file rendered by the very script the container runs at start.

The container's entrypoint turns ``PGADMIN_CONFIG_*`` variables into a ``config_distro.py``;
here that file is written to the instance's own folder and named by ``CONFIG_DISTRO_FILE_PATH``
(which pgAdmin reads), so the shared install is never modified. Then the same two
``setup.py`` steps the entrypoint runs: ``setup-db`` creates the login, ``load-servers``
registers the server list.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from native.servers.cache import build_once, cache_dir, install_command
from native.servers.process import HarnessError, log, run, stop_child, wait_until

PGADMIN_VERSION = "9.8"  # docker-compose.yml: dpage/pgadmin4:9.8
REPO = Path(__file__).resolve().parents[2]  # the lab's pgadmin/: server list, render_config.py
# Every package of the virtualenv, pinned (pgAdmin's own requirements are ranges).
REQUIREMENTS = Path(__file__).resolve().parent / "pgadmin" / "requirements.txt"
START_TIMEOUT_S = 90
# The compose file's own pgAdmin settings that are not secrets or addresses
# (docker-compose.yml, service pgadmin), for a run outside compose that cannot read it:
# ``make demo`` has no Compose. The demo's browser walk checks they still agree with the file.
COMPOSE_CONFIG = {"PGADMIN_CONFIG_MASTER_PASSWORD_REQUIRED": "False"}


def _home() -> Path:
    return cache_dir() / f"pgadmin4-{PGADMIN_VERSION}"


def installed() -> bool:
    """Whether :func:`install` has nothing left to do (the lab then skips its progress step)."""
    return (_home() / ".complete").exists()


def install() -> Path:
    """The virtualenv holding pgAdmin, created once per machine; returns its ``python``."""
    home = _home()
    python = home / "venv" / "bin" / "python"

    def create() -> None:
        log(f"installing pgAdmin {PGADMIN_VERSION} into {home} (first run only)")
        shutil.rmtree(home, ignore_errors=True)
        run([sys.executable, "-m", "venv", str(home / "venv")])
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        run([*pip, "-r", str(REQUIREMENTS)])

    build_once(home, create)
    return python


def package_dir(python: Path) -> Path:
    """The folder holding ``pgAdmin4.py`` and ``setup.py`` inside the virtualenv."""
    found = sorted(python.parent.parent.glob("lib/python3*/site-packages/pgadmin4/pgAdmin4.py"))
    if not found:
        raise HarnessError(f"pgAdmin4.py not found under {python.parent.parent}: reinstall")
    return found[0].parent


@dataclass(frozen=True)
class Login:
    email: str
    password: str


@dataclass(frozen=True)
class Database:
    """What the rendered server entry points at (compose: the ``postgres`` service)."""

    host: str
    port: int
    dbname: str
    user: str
    password: str
    # The server's name in pgAdmin's tree; None keeps pgadmin/servers.json's.
    name: str | None = None


class PgAdmin:
    """One pgAdmin instance with its own data folder, on ``127.0.0.1:port``."""

    def __init__(
        self,
        workdir: Path,
        port: int,
        login: Login,
        database: Database,
        compose_config: dict[str, str] | None = None,
    ) -> None:
        """``compose_config``: the compose file's ``PGADMIN_CONFIG_*`` variables, applied as the
        image's entrypoint applies them (``PGADMIN_CONFIG_X: v`` becomes ``X = v``)."""
        self.workdir = workdir
        self.port = port
        self.login = login
        self.database = database
        self.compose_config = compose_config or {}
        self.data_dir = workdir / "pgadmin-data"
        self.log_path = workdir / "pgadmin.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The server's and ``setup.py``'s environment: nothing inherited but ``PATH``."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "CONFIG_DISTRO_FILE_PATH": str(self.workdir / "config_distro.py"),
            "PGADMIN_SETUP_EMAIL": self.login.email,
            "PGADMIN_SETUP_PASSWORD": self.login.password,
        }

    def _write_config(self) -> None:
        """What the image's entrypoint and the compose file configure, for a native run."""
        settings = {
            "SERVER_MODE": True,
            "DATA_DIR": str(self.data_dir),
            "DEFAULT_SERVER": "127.0.0.1",
            "DEFAULT_SERVER_PORT": self.port,
            # A closed network: no update check, no Gravatar, no console noise.
            "UPGRADE_CHECK_ENABLED": False,
            "SHOW_GRAVATAR_IMAGE": False,
            "CONSOLE_LOG_LEVEL": 30,
        }
        lines = [f"{key} = {value!r}\n" for key, value in settings.items()]
        prefix = "PGADMIN_CONFIG_"
        for name, value in self.compose_config.items():
            if not name.startswith(prefix) or not name[len(prefix) :].isidentifier():
                raise HarnessError(f"not a pgAdmin configuration variable: {name}")
            lines.append(f"{name[len(prefix) :]} = {value}\n")  # raw, as the entrypoint does
        (self.workdir / "config_distro.py").write_text("".join(lines))

    def _render_servers(self) -> Path:
        """Run ``pgadmin/render_config.py`` as the container does, for this instance."""
        servers_json = self.data_dir / "servers.json"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGADMIN_DEFAULT_EMAIL": self.login.email,
            "POSTGRES_USER": self.database.user,
            "POSTGRES_PASSWORD": self.database.password,
            "POSTGRES_DB": self.database.dbname,
            "PGADMIN_SERVER_HOST": self.database.host,
            "PGADMIN_SERVER_PORT": str(self.database.port),
            "STREAMLAB_PGADMIN_DATA_DIR": str(self.data_dir),
            "STREAMLAB_PGADMIN_TEMPLATE": str(REPO / "pgadmin" / "servers.json"),
            "PGADMIN_SERVER_JSON_FILE": str(servers_json),
        }
        if self.database.name:
            env["PGADMIN_SERVER_NAME"] = self.database.name
        run([sys.executable, str(REPO / "pgadmin" / "render_config.py")], env=env)
        return servers_json

    def prepare(self, python: Path) -> list[str]:
        """Everything the image's entrypoint does before it serves; returns the server command.

        As the entrypoint: the configuration and the server list's ``.pgpass`` at every start,
        the login and the server list only on the first (an existing configuration database
        keeps them, with whatever a user changed since).
        """
        package = package_dir(python)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        env = self.env
        first_start = not (self.data_dir / "pgadmin4.db").exists()
        servers_json = self._render_servers()
        if first_start:
            setup = [str(python), str(package / "setup.py")]
            run([*setup, "setup-db"], env=env, cwd=self.workdir)
            user = ["--user", self.login.email]
            run([*setup, "load-servers", str(servers_json), *user], env=env, cwd=self.workdir)
        return [str(python), str(package / "pgAdmin4.py")]

    def start(self) -> PgAdmin:
        command = self.prepare(install())
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until("pgAdmin", self.ping, START_TIMEOUT_S, self.log_path, self.proc)
        return self

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/misc/ping", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        stop_child(self.proc)


def main(argv: list[str] | None = None) -> int:
    return install_command("native.servers.pgadmin", install, argv)


if __name__ == "__main__":
    sys.exit(main())
