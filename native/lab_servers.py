"""This lab's servers: ``native.servers``' Kafka + ZooKeeper, PostgreSQL, FerretDB and NiFi.

Why through their command line (``python -m native.servers``) and not by importing them:
the package reads its ports and run directory from the environment once, at import, and must
keep its test defaults. A child process with the lab's environment gets the lab's ports and
directory, and ``STREAMLAB_KEEP_DATA=1`` keeps Kafka's and ZooKeeper's data, which the tests'
cluster throws away at every start. The servers run in their own sessions and outlive that
child; ``python -m native.servers down`` stops them in reverse order (Kafka before ZooKeeper, so
the broker deregisters cleanly and the next start finds no stale registration).

A first run downloads and builds (Kafka jars with Maven, FerretDB with Go, NiFi with Maven),
which takes minutes without a word from Maven or Go: :func:`run_step` passes the servers' own
lines through and adds a line every 15 s with the time spent and how much the download and
build caches grew, so a person can see it is working.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from native.layout import HOST, LabError, Layout

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "nifi" / "deploy.py"
SERVERS = [sys.executable, "-m", "native.servers"]
NIFI = [sys.executable, "-m", "native.servers.nifi"]
TICK_S = 15.0


def log(message: str) -> None:
    print(f"[lab] {message}", flush=True)


def environment(layout: Layout, ports: Mapping[str, int]) -> dict[str, str]:
    """The servers' settings for this lab: its directory, its ports, its data kept."""
    env = {k: v for k, v in os.environ.items() if k not in ("STREAMLAB_NIFI_HOME",)}
    env.update(
        {
            "STREAMLAB_RUN": str(layout.servers),
            "STREAMLAB_ZOOKEEPER_PORT": str(ports["zookeeper"]),
            "STREAMLAB_KAFKA_PORT": str(ports["kafka"]),
            "STREAMLAB_POSTGRES_PORT": str(ports["postgres"]),
            "STREAMLAB_FERRETDB_PORT": str(ports["mongo"]),
            "STREAMLAB_NIFI_PORT": str(ports["nifi"]),
            "STREAMLAB_KEEP_DATA": "1",
            # Marks every process of this lab, so a leftover can be found by its environment.
            "STREAMLAB_LAB_DIR": str(layout.root),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _cache_dirs() -> list[Path]:
    """Where first-run downloads and builds land: the project's cache, Maven's and Go's."""
    dirs = [
        Path(os.environ.get("STREAMLAB_CACHE", Path.home() / ".cache" / "streamlab")),
        Path(os.environ.get("STREAMLAB_MAVEN_REPO", Path.home() / ".m2" / "repository")),
    ]
    if shutil.which("go"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["go", "env", "GOMODCACHE", "GOCACHE"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            ).stdout
            dirs += [Path(line) for line in out.splitlines() if line.strip()]
    return dirs


def _size(paths: list[Path]) -> int:
    total = 0
    for root in paths:
        for folder, _dirs, files in os.walk(root):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(folder, name)).st_size
    return total


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def run_step(what: str, cmd: list[str], env: Mapping[str, str], timeout_s: float) -> str:
    """Run one set-up command, showing its lines as they come and a progress line every 15 s.

    Returns its output. In its own session, so Ctrl-C reaches only the lab, which then ends
    the whole step (Maven or Go included) instead of leaving a build running.
    """
    proc = subprocess.Popen(
        cmd,
        env=dict(env),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def relay() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            print(f"  {line.rstrip()}", flush=True)

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    began = time.monotonic()
    caches: list[Path] | None = None
    size_at_start = 0
    try:
        while True:
            try:
                proc.wait(timeout=TICK_S)
                break
            except subprocess.TimeoutExpired:
                pass
            elapsed = time.monotonic() - began
            if elapsed > timeout_s:
                _kill_group(proc)
                raise LabError(f"{what} did not finish within {timeout_s:.0f}s")
            if caches is None:  # measured only once a step is slow: a warm start never pays
                caches = _cache_dirs()
                size_at_start = _size(caches)
                log(
                    f"{what}: still working after {elapsed:.0f}s (a first run downloads and builds)"
                )
                continue
            grown = (_size(caches) - size_at_start) / 1e6
            log(f"{what}: still working after {elapsed:.0f}s; caches grew by {grown:.0f} MB since")
    except BaseException:
        _kill_group(proc)
        raise
    reader.join(timeout=5)
    if proc.returncode != 0:
        raise LabError(f"{what} failed (exit {proc.returncode}); its output is above")
    return "".join(lines)


def start(layout: Layout, ports: Mapping[str, int]) -> None:
    """Kafka + ZooKeeper, PostgreSQL and FerretDB, each on the lab's port with the lab's data."""
    run_step("starting the servers", [*SERVERS, "up"], environment(layout, ports), 1800)


def stop(layout: Layout, ports: Mapping[str, int]) -> None:
    run_step("stopping the servers", [*SERVERS, "down"], environment(layout, ports), 180)


def postgres_password(layout: Layout) -> str:
    try:
        return layout.postgres_password_file.read_text().strip()
    except OSError:
        raise LabError(
            f"no PostgreSQL password in {layout.postgres_password_file}: start the lab first"
        ) from None


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


def silent(layout: Layout, ports: Mapping[str, int], nifi: bool) -> list[tuple[str, Path]]:
    """The servers of a running lab that no longer accept connections, each with its log.

    By port rather than by pid file, so it holds whatever the harness does inside."""
    run = layout.servers
    checks = [
        ("ZooKeeper", ports["zookeeper"], run / "zookeeper.log"),
        ("Kafka", ports["kafka"], run / "kafka.log"),
        ("PostgreSQL", ports["postgres"], run / "postgres" / "server.log"),
        ("FerretDB", ports["mongo"], run / "ferretdb.log"),
    ]
    held = {name for harness, name in HELD_NAMES.items() if held_mark(layout, harness).exists()}
    if nifi:
        checks.append(("NiFi", ports["nifi"], nifi_home(layout) / "logs" / "nifi-app.log"))
    return [
        (name, log_file)
        for name, port, log_file in checks
        if name not in held and not _listening(port)
    ]


# --- a database stopped on purpose (make demo-stop) -----------------------------------------------

# The compose service a person names (`docker compose stop postgres`) -> the harness's server.
STOPPABLE = {"postgres": "postgres", "mongo": "ferretdb"}
HELD_NAMES = {"postgres": "PostgreSQL", "ferretdb": "FerretDB"}  # as silent() names them


def held_mark(layout: Layout, server: str) -> Path:
    """Present while a person keeps ``server`` stopped: the lab's watch then lets it be silent."""
    return layout.pids / f"{server}.stopped"


def stop_one(layout: Layout, ports: Mapping[str, int], service: str) -> None:
    """``make demo-stop SERVICE=postgres``: what ``docker compose stop postgres`` is to compose.

    The mark goes down first, so the lab's watch never takes the stop for a crash."""
    server = _stoppable(service)
    held_mark(layout, server).touch()
    run_step(f"stopping {service}", [*SERVERS, "stop", server], environment(layout, ports), 120)


def start_one(layout: Layout, ports: Mapping[str, int], service: str) -> None:
    """``make demo-start SERVICE=postgres``: start it again, with its data; the watch resumes."""
    server = _stoppable(service)
    run_step(f"starting {service}", [*SERVERS, "start", server], environment(layout, ports), 300)
    held_mark(layout, server).unlink(missing_ok=True)


def release_all(layout: Layout) -> None:
    """A new start starts every server: no mark from an earlier run holds."""
    for server in STOPPABLE.values():
        held_mark(layout, server).unlink(missing_ok=True)


def _stoppable(service: str) -> str:
    if service not in STOPPABLE:
        raise LabError(f"SERVICE={service!r}: make demo-stop and demo-start take postgres or mongo")
    return STOPPABLE[service]


# --- NiFi ----------------------------------------------------------------------------------------


def nifi_home(layout: Layout) -> Path:
    return layout.servers / "nifi"


def nifi_credentials(layout: Layout) -> tuple[str, str]:
    data = json.loads((nifi_home(layout) / "credentials.json").read_text())
    return str(data["username"]), str(data["password"])


def start_nifi(layout: Layout, ports: Mapping[str, int]) -> None:
    """Start the native NiFi and deploy the shipped flow with ``nifi/deploy.py``, as nifi-init."""
    env = environment(layout, ports)
    run_step("starting NiFi", [*NIFI, "start", "--timeout", "600"], env, 2400)
    username, password = nifi_credentials(layout)
    env.update(
        {
            "NIFI_API_URL": f"https://{HOST}:{ports['nifi']}/nifi-api",
            "NIFI_USERNAME": username,
            "NIFI_PASSWORD": password,
            # The instance's own certificate: deploy.py verifies NiFi instead of trusting all.
            "NIFI_CA_CERT": str(nifi_home(layout) / "conf" / "nifi-cert.pem"),
            "QUOTES_API_URL": f"http://{HOST}:{ports['quotes-api']}/quotes?count=10",
            "KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{ports['kafka']}",
            "KAFKA_TOPIC": "quotes",
        }
    )
    run_step("deploying the NiFi flow", [sys.executable, str(DEPLOY)], env, 600)


def stop_nifi(layout: Layout, ports: Mapping[str, int]) -> None:
    run_step("stopping NiFi", [*NIFI, "stop"], environment(layout, ports), 120)
