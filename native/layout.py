"""Where the native lab lives: its data directory and its ports, chosen once and then kept.

Why kept: the lab's data outlives a run (that is the point of it), and PostgreSQL writes its port
into its own configuration when the cluster is created. So the ports are chosen the first time
(the compose file's host port when it is free, so the README's addresses just work; else the
lab's own port; else any free one) and saved in ``lab.json``; every later start uses them and
stops with one line naming the port if another program holds it.

The directory defaults to ``/var/tmp/streamlab-lab-<uid>``: ``/var/tmp`` survives reboots, and,
unlike a home directory, the ``postgres`` user can reach it (PostgreSQL refuses to run as root,
so when root starts the lab the cluster belongs to ``postgres``). ``STREAMLAB_LAB_DIR`` moves it.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
ENV_DIR = "STREAMLAB_LAB_DIR"


class LabError(RuntimeError):
    """Something a person must fix; ``str()`` is the one line that says what and how."""


@dataclass(frozen=True)
class Port:
    """One port of the lab: the compose file's host port for the same service, if it has one."""

    name: str
    compose: int | None
    own: int
    what: str

    @property
    def env(self) -> str:
        """The variable that picks this port when the lab is created."""
        return f"STREAMLAB_LAB_{self.name.upper().replace('-', '_')}_PORT"


# Own ports sit apart from the compose ports and from the test harness's (12181, 19092, 15432,
# 27217, 18443), so the lab, the compose stack and a test run can all be up at once.
PORTS: tuple[Port, ...] = (
    Port("zookeeper", None, 22181, "ZooKeeper"),
    Port("kafka", 9092, 29192, "Kafka"),
    Port("postgres", 5432, 25432, "PostgreSQL"),
    Port("mongo", 27017, 37017, "FerretDB (MongoDB protocol)"),
    Port("quotes-api", 8090, 28090, "the quotes API"),
    Port("nifi", 8443, 28443, "NiFi"),
    Port("metrics", None, 28000, "the consumer's /healthz and /metrics"),
    Port("status", 8088, 28088, "the status page"),
    Port("pgadmin", 5050, 25050, "pgAdmin"),
    Port("mongo-express", 8081, 28081, "mongo-express"),
)
UI_PORTS = ("pgadmin", "mongo-express")  # not needed by `make demo UIS=0`
BY_NAME = {port.name: port for port in PORTS}


def port_is_free(port: int) -> bool:
    """True if a server could bind 127.0.0.1:port now (a listener on 0.0.0.0 also blocks it).

    SO_REUSEADDR, as the servers set it: connections closed a moment ago (TIME_WAIT, e.g. from
    the lab's previous run) do not keep a port from a new listener, only a live listener does.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def any_free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _override(port: Port, environ: Mapping[str, str]) -> int | None:
    raw = environ.get(port.env, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise LabError(f"{port.env}={raw!r} is not a port number (1-65535)")
    return int(raw)


def choose_ports(
    saved: Mapping[str, int] | None,
    environ: Mapping[str, str],
    is_free: Callable[[int], bool] = port_is_free,
    pick_free: Callable[[], int] = any_free_port,
) -> dict[str, int]:
    """The lab's ports: the saved ones, or, for a new lab, a fresh choice for each.

    A new lab takes, per port: ``STREAMLAB_LAB_<NAME>_PORT``; else the compose port if free;
    else the lab's own port if free; else any free port. A saved lab keeps its ports, and an
    override that disagrees with them is refused rather than silently ignored.
    """
    chosen: dict[str, int] = {}
    for port in PORTS:
        wanted = _override(port, environ)
        if saved is not None and port.name in saved:
            if wanted is not None and wanted != saved[port.name]:
                raise LabError(
                    f"{port.env}={wanted} but this lab was created with {port.name} on port "
                    f"{saved[port.name]}: unset {port.env}, or run `make demo-reset` to start over"
                )
            chosen[port.name] = int(saved[port.name])
        elif wanted is not None:
            chosen[port.name] = wanted
        elif port.compose is not None and is_free(port.compose):
            chosen[port.name] = port.compose
        elif is_free(port.own) and port.own not in chosen.values():
            chosen[port.name] = port.own
        else:
            chosen[port.name] = pick_free()
    clashes = sorted({p for p in chosen.values() if list(chosen.values()).count(p) > 1})
    if clashes:
        names = [name for name, p in chosen.items() if p in clashes]
        raise LabError(f"ports {clashes} are given to several services ({', '.join(names)})")
    return chosen


@dataclass(frozen=True)
class Layout:
    """The lab's directory and what lives in it."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "lab.json"

    @property
    def servers(self) -> Path:
        """The harness's run directory (``STREAMLAB_RUN``) for this lab's servers."""
        return self.root / "servers"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def control_pid(self) -> Path:
        """The pid of the ``up`` process that owns the running lab."""
        return self.pids / "lab.pid"

    @property
    def postgres_password_file(self) -> Path:
        return self.servers / "postgres" / "password"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    @property
    def uis(self) -> Path:
        """pgAdmin's and mongo-express's data, configuration and generated logins."""
        return self.root / "uis"

    def saved_ports(self) -> dict[str, int] | None:
        if not self.config.exists():
            return None
        try:
            return {str(k): int(v) for k, v in json.loads(self.config.read_text())["ports"].items()}
        except (ValueError, KeyError, TypeError) as error:
            raise LabError(f"{self.config} is damaged ({error}): run `make demo-reset`") from None

    def save_ports(self, ports: Mapping[str, int]) -> None:
        self.config.write_text(json.dumps({"ports": dict(ports)}, indent=2) + "\n")

    def create(self) -> None:
        """Make the folders; 0755 so the ``postgres`` user can reach its cluster inside."""
        for path in (self.root, self.logs, self.pids, self.servers):
            path.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)


def default_root(environ: Mapping[str, str] = os.environ) -> Path:
    raw = environ.get(ENV_DIR, "").strip()
    return Path(raw).resolve() if raw else Path(f"/var/tmp/streamlab-lab-{os.getuid()}")


def layout(environ: Mapping[str, str] = os.environ) -> Layout:
    return Layout(default_root(environ))
