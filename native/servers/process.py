"""A server as a process: its run folder, its start in a session of its own, its wait, its stop.

Every module of this package starts its server through these, so each server logs to
``<run>/<name>.log``, leaves its pid in ``<run>/<name>.pid`` and is stopped the same way.
Server data and logs live under ``$STREAMLAB_RUN`` (default ``/tmp/streamlab-<uid>``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"


class HarnessError(RuntimeError):
    """A server could not be installed or started; the message says which and where to look."""


def run_dir() -> Path:
    """Server data, logs and pid files.

    Outside the home directory on purpose: PostgreSQL refuses to run as root, so its cluster is
    owned by the ``postgres`` user, who must be able to reach the folder.
    """
    path = Path(os.environ.get("STREAMLAB_RUN", f"/tmp/streamlab-{os.getuid()}"))
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def log(message: str) -> None:
    print(f"[harness] {message}", flush=True)


def is_listening(port: int, host: str = HOST) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(
    what: str,
    ready: Callable[[], bool],
    timeout_s: float,
    logfile: Path,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll ``ready`` until it holds or the deadline passes; a failure points at the log.

    With ``process``, a server that exits while starting fails at once instead of at the
    deadline.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if process is not None and process.poll() is not None:
            raise HarnessError(
                f"{what} exited with {process.returncode} while starting; "
                f"last lines of {logfile}:\n{tail(logfile)}"
            )
        time.sleep(0.3)
    raise HarnessError(
        f"{what} not ready after {timeout_s:.0f}s; last lines of {logfile}:\n{tail(logfile)}"
    )


def tail(logfile: Path, lines: int = 15) -> str:
    return (
        "\n".join(logfile.read_text(errors="replace").splitlines()[-lines:])
        if logfile.exists()
        else ""
    )


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a setup command; on failure raise with its output instead of a traceback."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise HarnessError(
            f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout}{result.stderr}"
        )
    return result


def answer(cmd: list[str], env: dict[str, str] | None = None, timeout_s: float = 30) -> str | None:
    """What a short command prints, stripped; None if it cannot start, runs past ``timeout_s``,
    fails or prints nothing. For asking a binary its version: a missing, truncated or
    wrong-architecture one answers None instead of raising."""
    try:
        result = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def spawn(name: str, cmd: list[str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a long-running server in its own session, logging to ``<run>/<name>.log``."""
    logfile = run_dir() / f"{name}.log"
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
    (run_dir() / f"{name}.pid").write_text(str(proc.pid))
    return proc


def stop_child(proc: subprocess.Popen[bytes] | None, timeout_s: float = 20.0) -> None:
    """Stop a server this process started: SIGTERM, SIGKILL after the timeout."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def terminate(name: str, timeout_s: float = 20.0) -> None:
    """Stop a server started by :func:`spawn`: SIGTERM its group, SIGKILL after the timeout."""
    pidfile = run_dir() / f"{name}.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink()
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # A server this very process started stays a zombie, still in its group, until it is
        # reaped: without this a restart from a soak or a test waited out the whole timeout.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def java() -> str:
    """The JVM for Kafka, ZooKeeper and NiFi: ``$JAVA_HOME/bin/java``, else ``java`` on the PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise HarnessError("java not found: install a JDK 17 (apt-get install openjdk-17-jdk)")
    return found
