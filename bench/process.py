"""The consumer as a real child process, and what the kernel says it cost.

Why a subprocess and /proc: the consumer ships as ``python -m quotes_consumer`` in a container,
so that is what is measured (interpreter start, imports, group join, its own GIL), and CPU time
and peak memory are read from the kernel's accounting of that process (``/proc/<pid>/stat``
utime+stime over all its threads, ``/proc/<pid>/status`` VmHWM), not estimated from inside.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.infra import REPO, Context

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Variables the consumer reads; inherited ones are dropped so a developer's shell or .env
# cannot change what is measured.
CONSUMER_PREFIXES = ("KAFKA_", "POSTGRES_", "MONGO_", "CONSUMER_", "LOG_LEVEL")


POLL_S = 0.05  # how often a wait looks again: the throughput window's resolution


class WaitTimeout(RuntimeError):
    """:meth:`Child.wait_until` gave up; callers that can report a partial run catch this one."""


@dataclass(frozen=True)
class ProcStats:
    cpu_s: float
    peak_rss_mb: float


def parent_and_cpu_s(pid: int) -> tuple[int, float]:
    """The process's parent, and its CPU seconds so far (user+system, all threads), from one
    read of ``/proc/<pid>/stat``. OSError when the process is gone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])  # proc(5): 4, 14, 15
    return ppid, (utime + stime) / CLOCK_TICKS


def read_proc(pid: int) -> ProcStats:
    """CPU seconds (user+system, all threads) and the resident-set high-water mark."""
    _, cpu_s = parent_and_cpu_s(pid)
    peak_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak_kb = int(line.split()[1])
    return ProcStats(cpu_s, peak_kb / 1024)


def consumer_env(
    ctx: Context,
    topic: str,
    group: str,
    dbs: dict[str, str],
    dlq_topic: str = "unused",
    batch_timeout_ms: int | None = None,
) -> dict[str, str]:
    """Every setting the consumer reads, spelled out (see quotes_consumer/settings.py); ``dbs``
    names the PostgreSQL and the MongoDB database. The naive and Quix programs read the same."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(CONSUMER_PREFIXES)}
    endpoints = ctx.endpoints
    return {
        **inherited,
        "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka,
        "KAFKA_TOPIC": topic,
        "KAFKA_GROUP_ID": group,
        "KAFKA_DLQ_TOPIC": dlq_topic,
        "KAFKA_AUTO_OFFSET_RESET": "earliest",
        "POSTGRES_HOST": endpoints.pg_host,
        "POSTGRES_PORT": str(endpoints.pg_port),
        "POSTGRES_DB": dbs["postgres"],
        "POSTGRES_USER": endpoints.pg_user,
        "POSTGRES_PASSWORD": endpoints.pg_password,
        "MONGO_URI": endpoints.mongo_uri,
        "MONGO_DB": dbs["mongo"],
        "MONGO_COLLECTION": "quotes",
        "CONSUMER_BATCH_SIZE": str(ctx.batch_size),
        "CONSUMER_BATCH_TIMEOUT_MS": str(batch_timeout_ms or ctx.batch_timeout_ms),
        "CONSUMER_MAX_RECORD_BYTES": "65536",
        "CONSUMER_METRICS_PORT": "0",  # any free port: runs never collide
        "CONSUMER_UNHEALTHY_AFTER_S": "60",
        "CONSUMER_RETRY_MAX_BACKOFF_S": "2",
        "CONSUMER_WRITE_TIMEOUT_S": "15",
        "LOG_LEVEL": "INFO",
    }


class Child:
    """One child process (a consumer, Quix Streams or the naive one), started at once, with its
    output in a log file; ``usage`` is what the kernel counted for it, read just before it is
    stopped."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = [sys.executable, *argv]
        self.log_path = log_path
        self.usage = ProcStats(math.nan, math.nan)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            self.started_at = time.time()  # comparable with database timestamps
            # cwd is the repository, so ``-m bench.<entry>`` finds this package.
            self.proc = subprocess.Popen(
                self.argv,
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log(self, last_lines: int = 25) -> str:
        """The output's last lines, for an error message."""
        return "\n".join(self.output().splitlines()[-last_lines:])

    def wait_until(self, what: str, done: Callable[[], bool], timeout_s: float) -> float:
        """Poll ``done`` until true and return the time.time() it was seen; bounded in time,
        and given up at once if the child died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done():
                return time.time()
            if self.proc.poll() is not None:
                name = " ".join(self.argv[1:])
                raise RuntimeError(f"{name} exited ({self.proc.returncode}):\n{self.log()}")
            time.sleep(POLL_S)
        raise WaitTimeout(f"timed out after {timeout_s:.0f}s waiting for {what}:\n{self.log()}")

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, as ``docker compose stop`` does; SIGKILL if it is ignored."""
        if self.proc.poll() is None:
            self.usage = read_proc(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)
