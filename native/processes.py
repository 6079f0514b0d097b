"""The lab's own child processes (quotes API, producer, consumer): started, found and stopped.

Why pid files with start times: ``make demo-down`` runs in another shell than the lab, and the
lab may have been killed without cleaning up, so the processes must be found from disk. A pid
alone could by then name an unrelated program (pids are reused), so each pid file also holds
the process's start time from ``/proc``, and nothing is signalled unless both match.

Each child runs in its own session: Ctrl-C in the terminal reaches only the lab's control
process, which then stops the children in a deliberate order (producer before consumer before
servers) instead of all of them dying at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from native.layout import Layout


@dataclass(frozen=True)
class Identity:
    """A process as the kernel knows it: pid plus start time (clock ticks since boot)."""

    pid: int
    started: int


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def identity(pid: int) -> Identity | None:
    fields = _stat(pid)
    return None if fields is None else Identity(pid, int(fields[19]))


def is_running(who: Identity) -> bool:
    """Alive, not a zombie, and the same process that was recorded."""
    fields = _stat(who.pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == who.started


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group: a child and whatever it started."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def pidfile(layout: Layout, name: str) -> Path:
    return layout.pids / f"{name}.pid"


def record(path: Path, pid: int) -> None:
    who = identity(pid)
    if who is not None:
        path.write_text(f"{who.pid} {who.started}\n")


def recorded(path: Path) -> Identity | None:
    """The process a pid file names, if that very process still runs."""
    try:
        pid, started = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return None
    who = Identity(pid, started)
    return who if is_running(who) else None


def spawn(
    layout: Layout, name: str, cmd: Sequence[str], env: Mapping[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    """Start a child in its own session, output to ``logs/<name>.log``, pid in ``pids/``."""
    log = layout.logs / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(cmd),
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    record(pidfile(layout, name), proc.pid)
    return proc


def _wait_group(pgid: int, timeout_s: float, proc: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not group_members(pgid):  # zombies do not count: they are gone but not yet reaped
            if proc is not None:  # reap our own child, or it would linger as a zombie
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            return True
        time.sleep(0.1)
    return False


def stop(
    layout: Layout,
    name: str,
    first: signal.Signals = signal.SIGTERM,
    timeout_s: float = 20.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> str | None:
    """Stop a recorded child and its process group; say how, or None if it was not running.

    ``first`` is the signal it handles cleanly (SIGINT for the producer, SIGTERM for the
    rest); SIGKILL follows only after ``timeout_s``.
    """
    path = pidfile(layout, name)
    who = recorded(path)
    if who is None:
        path.unlink(missing_ok=True)
        if proc is not None:
            proc.poll()
        return None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(who.pid, first)
    how = "stopped"
    if not _wait_group(who.pid, timeout_s, proc):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(who.pid, signal.SIGKILL)
        _wait_group(who.pid, 10.0, proc)
        how = f"killed (ignored {first.name} for {timeout_s:.0f}s)"
    path.unlink(missing_ok=True)
    return how
