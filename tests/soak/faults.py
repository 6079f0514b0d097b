"""The faults, one at a time; each undoes itself in ``finally``, whatever happens meanwhile.

Why these five: they are how the lab's deployment fails: a crashed container, a database
restarted, a database that hangs with its sockets open, a broker restart, and a replica frozen
past its session timeout (10 s, quotes_consumer/loop.py), so that the group moves on without it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from native import servers
from native.servers.process import run_dir
from tests.soak.replicas import Replicas

Pause = Callable[[float], None]  # waits, watching the replicas meanwhile


def kill_replica(replicas: Replicas, pause: Pause) -> str:
    victim = replicas.live()[0]
    victim.killed = True
    victim.kill()
    return f"SIGKILL {victim.name}; started {replicas.start().name}"


def stop_postgres(replicas: Replicas, pause: Pause) -> str:
    servers.down(["postgres"])
    try:
        pause(10)
    finally:
        servers.up(["postgres"])
    return "PostgreSQL stopped for 10s"


def ferretdb_pid() -> int:
    """From the pid file the harness writes when it spawns FerretDB; checked against the
    process's command line, so that a stale file never makes the soak stop another process."""
    pid = int((run_dir() / "ferretdb.pid").read_text())
    if b"ferretdb" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        raise RuntimeError(f"pid {pid} in {run_dir()}/ferretdb.pid is not FerretDB")
    return pid


def hang_ferretdb(replicas: Replicas, pause: Pause) -> str:
    pid = ferretdb_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        pause(15)
    finally:
        os.kill(pid, signal.SIGCONT)
    return f"FerretDB (pid {pid}) SIGSTOPped for 15s"


def restart_kafka(replicas: Replicas, pause: Pause) -> str:
    servers.down(["kafka"])
    try:
        pause(2)
    finally:
        servers.up(["kafka"])
    return "Kafka broker stopped, then started"


def hang_replica(replicas: Replicas, pause: Pause) -> str:
    victim = replicas.live()[-1]
    assert victim.proc is not None
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        pause(20)
    finally:
        victim.proc.send_signal(signal.SIGCONT)
    return f"{victim.name} SIGSTOPped for 20s"


FAULTS = {
    fault.__name__: fault
    for fault in (kill_replica, stop_postgres, hang_ferretdb, restart_kafka, hang_replica)
}
