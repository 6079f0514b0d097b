"""``make demo`` run as a person runs it, for the tests: a lab directory of its own, free ports.

Shared by tests/integration/test_demo.py (start, Ctrl-C, restart, the inspection commands) and
tests/ui/test_demo_tour.py (the README's tour in a browser, against the same kind of lab).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pymongo

from native.layout import PORTS

REPO = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 90.0


class Demo:
    """One lab directory, its ports, and ``make demo`` runs against it."""

    def __init__(self, root: Path, ports: dict[str, int]) -> None:
        self.root = root
        self.ports = ports
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("PRODUCER", "UIS")},
            "STREAMLAB_LAB_DIR": str(root),
            **{port.env: str(ports[port.name]) for port in PORTS},
        }
        self.runs = 0

    def make(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO), *args],
            env=self.env,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        """``make demo ARGS`` in its own process group, as a terminal would run it."""
        self.runs += 1
        log = self.root.parent / f"{self.root.name}-run{self.runs}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["make", "--no-print-directory", "-C", str(REPO), "demo", *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return proc, log

    def pg(self) -> Any:
        password = (self.root / "servers" / "postgres" / "password").read_text().strip()
        return psycopg2.connect(
            host="127.0.0.1",
            port=self.ports["postgres"],
            dbname="quotes",
            user="lab",
            password=password,
            connect_timeout=3,
        )

    def rows(self) -> int:
        try:
            conn = self.pg()
        except (OSError, psycopg2.Error):
            return 0
        try:
            with conn, conn.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM quotes")
                return int(cursor.fetchone()[0])
        except psycopg2.Error:
            return 0
        finally:
            conn.close()

    def mongo(self) -> Any:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{self.ports['mongo']}/", serverSelectionTimeoutMS=2000
        )
        return client

    def documents(self) -> int:
        client = self.mongo()
        try:
            return int(client["quotes"]["quotes"].count_documents({}))
        except pymongo.errors.PyMongoError:
            return 0
        finally:
            client.close()

    def leftovers(self) -> list[str]:
        """Processes that still name the lab directory in their command line or environment."""
        marker = str(self.root).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z" and (marker in cmdline or marker in environ):
                    shown = cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]
                    found.append(f"{entry.name}: {shown}")
        return found


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def demo_lab() -> Iterator[Demo]:
    """A fresh lab directory with free ports; ``make demo-down`` and removal afterwards."""
    # Not pytest's tmp_path: that is private to root (0700), and PostgreSQL runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="streamlab-lab-test-", dir="/tmp"))
    root.chmod(0o755)
    lab = Demo(root, dict(zip([p.name for p in PORTS], free_ports(len(PORTS)), strict=True)))
    try:
        yield lab
    finally:
        subprocess.run(
            [sys.executable, "-m", "native", "down"],
            env=lab.env,
            cwd=REPO,
            capture_output=True,
            timeout=240,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)
        for log in root.parent.glob(f"{root.name}-run*.log"):
            log.unlink()


def text(log: Path) -> str:
    return log.read_text(errors="replace")


def wait_exit(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for ``make demo`` to end after a signal; kill its group and fail if it does not."""
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise AssertionError(
            f"make demo still running {STOP_TIMEOUT_S:.0f}s after the signal:\n{text(log)}"
        ) from None
