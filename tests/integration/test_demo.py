"""``make demo``, as a person runs it: in the background, watched, Ctrl-C'd, started again.

The lab gets a directory of its own under /tmp and ports free at that moment, so it never
meets a person's lab or the test servers. It runs its own Kafka, ZooKeeper, PostgreSQL and
FerretDB (the harness's, with persistent data), so it is checked through its own addresses.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pymongo
import pytest

from native.layout import PORTS
from tests.integration.pipeline import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ARRIVAL_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 90.0


class Demo:
    """One lab directory, its ports, and ``make demo`` runs against it."""

    def __init__(self, root: Path, ports: dict[str, int]) -> None:
        self.root = root
        self.ports = ports
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "PRODUCER"},
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

    def start(self) -> tuple[subprocess.Popen[bytes], Path]:
        """``make demo`` in its own process group, as a terminal would run it."""
        self.runs += 1
        log = self.root.parent / f"{self.root.name}-run{self.runs}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["make", "--no-print-directory", "-C", str(REPO), "demo"],
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


def _free_ports(count: int) -> list[int]:
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


@pytest.fixture
def demo() -> Iterator[Demo]:
    # Not pytest's tmp_path: that is private to root (0700), and PostgreSQL runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="streamlab-lab-test-", dir="/tmp"))
    root.chmod(0o755)
    lab = Demo(root, dict(zip([p.name for p in PORTS], _free_ports(len(PORTS)), strict=True)))
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


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


def _wait_exit(proc: subprocess.Popen[bytes], log: Path) -> None:
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise AssertionError(
            f"make demo still running {STOP_TIMEOUT_S:.0f}s after the signal:\n{_text(log)}"
        ) from None


def _status_states(port: int) -> set[tuple[str, str]]:
    """(stage, state) pairs from the demo's status page data API; empty if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as response:
            return {(s["id"], s["state"]) for s in json.loads(response.read())["stages"]}
    except OSError:
        return set()


def test_make_demo_fills_both_databases_stops_cleanly_and_keeps_its_data(demo: Demo) -> None:
    began = time.monotonic()
    proc, log = demo.start()
    try:
        wait_for(
            "quotes in PostgreSQL and MongoDB",
            lambda: proc.poll() is None and demo.rows() > 0 and demo.documents() > 0,
            ARRIVAL_TIMEOUT_S,
            every_s=1.0,
        )
    except AssertionError as error:
        raise AssertionError(f"{error}; make demo said:\n{_text(log)}") from None
    arrival_s = time.monotonic() - began
    print(f"first quotes in both databases {arrival_s:.1f}s after `make demo`")
    output = _text(log)
    assert "[lab] new lab in" in output
    assert "producer: the Python stand-in" in output, "the lab says which producer runs"
    for address in (
        f"127.0.0.1:{demo.ports['kafka']}",
        f"127.0.0.1:{demo.ports['postgres']}",
        f"mongodb://127.0.0.1:{demo.ports['mongo']}/",
        f"http://127.0.0.1:{demo.ports['quotes-api']}/quotes",
        f"http://127.0.0.1:{demo.ports['status']}/",
    ):
        assert address in output, f"the table shows {address}"
    wait_for(
        "a status line with rows and documents",
        lambda: re.search(r"PostgreSQL: [1-9][\d,]* rows \| MongoDB: [1-9]", _text(log)),
        10,
    )
    wait_for(
        "the status page to show PostgreSQL and MongoDB flowing",
        lambda: _status_states(demo.ports["status"]) >= {("postgres", "ok"), ("mongo", "ok")},
        10,
    )

    # One stored quote, to find again after the restart, with its write time.
    with demo.pg() as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT source_partition, source_offset, ingested_at FROM quotes "
            "ORDER BY ingested_at, source_partition, source_offset LIMIT 1"
        )
        partition, offset, ingested_at = cursor.fetchone()
    conn.close()
    witness_id = f"quotes:{partition}:{offset}"

    # Ctrl-C, as a terminal sends it: to the whole foreground process group.
    os.killpg(proc.pid, signal.SIGINT)
    _wait_exit(proc, log)
    output = _text(log)
    assert "[lab] stopped" in output, output
    for name in ("status", "producer", "consumer", "quotes-api"):
        assert f"[lab] {name}: stopped" in output, f"{name} did not stop on its own:\n{output}"
    assert demo.leftovers() == [], "processes left after Ctrl-C"
    assert demo.rows() == 0, "PostgreSQL still answers after Ctrl-C"

    # A second start reuses the data: the same quote, untouched, and quotes keep coming.
    began = time.monotonic()
    proc, log = demo.start()
    try:
        wait_for("the second start", lambda: "[lab] lab up in" in _text(log), 60)
        print(f"second start up after {time.monotonic() - began:.1f}s")
        output = _text(log)
        assert "reusing its data" in output and "new lab" not in output, output
        with demo.pg() as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT ingested_at FROM quotes WHERE source_topic = 'quotes' "
                "AND source_partition = %s AND source_offset = %s",
                (partition, offset),
            )
            assert cursor.fetchone() == (ingested_at,), "the stored row survived unchanged"
            cursor.execute("SELECT count(*) FROM quotes")
            rows_at_restart = int(cursor.fetchone()[0])
        conn.close()
        client = demo.mongo()
        try:
            assert client["quotes"]["quotes"].find_one({"_id": witness_id}) is not None
        finally:
            client.close()
        wait_for("new quotes after the restart", lambda: demo.rows() > rows_at_restart, 30)

        # The inspection commands, against the running lab.
        counts = demo.make("demo-counts")
        assert counts.returncode == 0, counts.stderr
        assert re.search(r"postgres rows:\s+[1-9]", counts.stdout), counts.stdout
        assert re.search(r"mongo documents:\s+[1-9]", counts.stdout), counts.stdout
        topic = demo.make("demo-topic", "MESSAGES=3")
        assert topic.returncode == 0, topic.stderr
        assert "topic quotes: 3 partition(s)" in topic.stdout
        assert "latest 3 record(s)" in topic.stdout, topic.stdout
        dlq = demo.make("demo-dlq")
        assert dlq.returncode == 0, dlq.stderr
        assert "topic quotes.dlq: 1 partition(s)" in dlq.stdout, dlq.stdout
        psql = subprocess.run(
            [sys.executable, "-m", "native", "psql", "-Atc", "SELECT count(*) > 0 FROM quotes"],
            env=demo.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (psql.returncode, psql.stdout.strip()) == (0, "t"), psql.stderr
        mongo = subprocess.run(
            [sys.executable, "-m", "native", "mongo"],
            input="print('documents', db.quotes.count_documents({}) > 0)\n",
            env=demo.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (mongo.returncode, mongo.stdout.strip()) == (0, "documents True"), mongo.stderr
    finally:
        # `make demo-down`, from another shell, stops the lab running in the background.
        down = demo.make("demo-down", timeout_s=240)
        _wait_exit(proc, log)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "[lab] stopped" in _text(log)
    assert demo.leftovers() == [], "processes left after make demo-down"

    # make demo-reset asks first (no answer: nothing deleted); CONFIRM=yes deletes the data.
    refused = demo.make("demo-reset")
    assert refused.returncode != 0 and "Aborted." in refused.stdout, refused.stdout
    assert (demo.root / "lab.json").exists()
    reset = demo.make("demo-reset", "CONFIRM=yes")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert not demo.root.exists()
