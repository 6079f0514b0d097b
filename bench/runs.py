"""One run of a program over a topic, as a process of its own: the consumer (per mode),
Quix Streams, the naive reference. How each runs and when it counts as finished:
``bench/README.md``, *What is measured*.

Why a process of its own: the consumer ships as ``python -m quotes_consumer`` in a container, so
that is what is measured (interpreter start, imports, group join, its own GIL), and its CPU time
and peak memory are what the kernel counted for that process (:mod:`bench.cpu`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import cpu, stored
from bench.infra import REPO, Context, unique
from bench.results import SINKS_OF, Run
from bench.workload import counts, publish
from native.servers.process import stop_child, tail

# Variables the consumer reads; inherited ones are dropped so a developer's shell or .env
# cannot change what is measured.
CONSUMER_PREFIXES = ("KAFKA_", "POSTGRES_", "MONGO_", "CONSUMER_", "LOG_LEVEL")
POLL_S = 0.05  # how often a wait looks again: the throughput window's resolution


class WaitTimeout(RuntimeError):
    """:meth:`Child.wait_until` gave up; callers that can report a partial run catch this one."""


class Child:
    """One program (a consumer, Quix Streams or the naive one) over ``topic``, started at once as
    a process of its own with a fresh group and databases, its output in a log file.

    Every program reads the consumer's own settings (quotes_consumer/settings.py); the run sets
    only the few below, every other one stays at the consumer's default. ``cpu_s`` and
    ``peak_rss_mb`` are what the kernel counted for the process, read just before it is stopped.
    """

    def __init__(
        self,
        ctx: Context,
        name: str,
        argv: list[str],
        topic: str,
        dlq: str = "unused",
        batch_timeout_ms: int | None = None,
    ) -> None:
        self.ctx, self.topic, self.argv = ctx, topic, [sys.executable, *argv]
        self.group = ctx.scratch.group(f"bench-{name}-")
        self.dbs = {"postgres": ctx.scratch.pg_database(), "mongo": ctx.scratch.mongo_database()}
        self.cpu_s = self.peak_rss_mb = math.nan
        endpoints = ctx.endpoints
        env = {k: v for k, v in os.environ.items() if not k.startswith(CONSUMER_PREFIXES)}
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka,
            "KAFKA_TOPIC": topic,
            "KAFKA_GROUP_ID": self.group,
            "KAFKA_DLQ_TOPIC": dlq,
            "POSTGRES_HOST": endpoints.pg_host,
            "POSTGRES_PORT": str(endpoints.pg_port),
            "POSTGRES_DB": self.dbs["postgres"],
            "POSTGRES_USER": endpoints.pg_user,
            "POSTGRES_PASSWORD": endpoints.pg_password,
            "MONGO_URI": endpoints.mongo_uri,
            "MONGO_DB": self.dbs["mongo"],
            "CONSUMER_BATCH_SIZE": str(ctx.batch_size),
            "CONSUMER_BATCH_TIMEOUT_MS": str(batch_timeout_ms or ctx.batch_timeout_ms),
            "CONSUMER_METRICS_PORT": "0",  # any free port: runs never collide
            "CONSUMER_RETRY_MAX_BACKOFF_S": "2",
        }
        self.log_path = ctx.logs / f"{name}-{self.group[-10:]}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
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

    def wait_until(self, what: str, done: Callable[[], bool], timeout_s: float) -> float:
        """Poll ``done`` until true and return the time.time() it was seen; bounded in time,
        and given up at once if the child died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done():
                return time.time()
            if self.proc.poll() is not None:
                name = " ".join(self.argv[1:])
                raise RuntimeError(f"{name} exited ({self.proc.returncode}):\n{self.tail()}")
            time.sleep(POLL_S)
        raise WaitTimeout(f"timed out after {timeout_s:.0f}s waiting for {what}:\n{self.tail()}")

    def wait_committed(
        self,
        total: int,
        desc: str,
        on_first: Callable[[], None] | None = None,
        timeout_s: float = 0,
    ) -> float:
        """Until the group committed every record, calling ``on_first`` at the first commit seen;
        bounded by a generous floor of 300 records/s unless ``timeout_s`` says otherwise."""
        with self.ctx.bar(total, desc) as bar:

            def all_committed() -> bool:
                committed = self.ctx.scratch.committed(self.group, self.topic)
                if committed and not bar.n and on_first is not None:
                    on_first()
                bar.update(committed - bar.n)
                return committed >= total

            what = f"{total} committed records ({desc})"
            return self.wait_until(what, all_committed, timeout_s or 120 + total / 300)

    def stop(self, result: Run | None = None) -> int:
        """SIGTERM, as ``docker compose stop`` does; SIGKILL if it is ignored for 30 s. Its CPU
        time, peak memory and a failed exit go into ``result``."""
        if self.proc.poll() is None:
            _, self.cpu_s = cpu.parent_and_cpu_s(self.proc.pid)
            self.peak_rss_mb = cpu.peak_rss_mb(self.proc.pid)
        stop_child(self.proc, timeout_s=30)
        code = self.proc.wait()
        if result is not None:
            if code != 0:
                result.problems.append(f"{self.argv[2]} exited with {code}; log {self.log_path}")
            result.cpu_s, result.peak_rss_mb = self.cpu_s, self.peak_rss_mb
        return code

    def reported(self, key: str) -> dict[str, Any]:
        """The last JSON line the child printed that starts with ``key``: how the naive consumer
        and the Quix Streams program report to the bench."""
        for line in reversed(self.output().splitlines()):
            if line.startswith(f'{{"{key}"'):
                found: dict[str, Any] = json.loads(line)
                return found
        raise RuntimeError(f"{self.argv[2]} printed no {key}:\n{self.tail()}")

    def timed(self, result: Run, first: float, done_at: float) -> Run:
        """The run's window, from its first record to ``done_at``, and start-up before it; its
        databases are dropped (a 1M run leaves ~1 GB in FerretDB's files)."""
        result.seconds, result.startup_s = done_at - first, first - self.started_at
        self.ctx.scratch.release_databases()
        return result

    def tail(self) -> str:
        return tail(self.log_path, lines=25)


def consumer_run(
    ctx: Context,
    topic: str,
    total: int,
    mode: str,
    *,
    rate: float | None = None,
    batch_timeout_ms: int | None = None,
    profile_prefix: Path | None = None,
    phase: str | None = None,
) -> Run:
    """Run the consumer over ``topic`` until all ``total`` records are committed.

    With ``rate``, the topic starts empty and the records are published at that rate once the
    consumer holds its partitions; otherwise the topic is already loaded, and the CPU use from
    the first commit to the last is measured.
    """
    timeout_ms = batch_timeout_ms or ctx.batch_timeout_ms
    result = Run(mode, total, phase or ("rate" if rate else "full"), timeout_ms)
    argv = ["-m", "quotes_consumer"] if mode == "both" else ["-m", "bench.service", "--only", mode]
    if profile_prefix:
        argv = ["-m", "bench.service", "--profile", str(profile_prefix)]
    dlq = ctx.scratch.topic("bench-dlq-", 1)
    child = Child(ctx, f"{result.phase}-{mode}-{total}", argv, topic, dlq, timeout_ms)
    first: list[tuple[float, cpu.Snapshot]] = []  # wall time and CPU at the first commit seen
    try:
        if rate:
            child.wait_until("the group join", lambda: "assigned partitions" in child.output(), 60)
            with ctx.bar(total, f"publish {rate:.0f}/s, {mode}") as bar:
                publish(ctx.endpoints.kafka, topic, total, ctx.partitions, rate=rate, progress=bar)

        def at_first_commit() -> None:
            if not rate:
                first.append((time.time(), cpu.snapshot(child.proc.pid)))

        done_at = child.wait_committed(total, f"consume {mode}", at_first_commit)
        if first and done_at - first[0][0] >= cpu.MIN_WINDOW_S:
            started, before = first[0]
            result.cpu = cpu.between([(before, cpu.snapshot(child.proc.pid))], done_at - started)
    finally:
        child.stop(result)

    valid, invalid = counts(total)
    firsts: list[float] = []
    for sink in SINKS_OF[mode]:
        read = stored.postgres if sink == "postgres" else stored.mongo
        readback = read(ctx.endpoints, child.dbs[sink])
        if readback.count != valid:
            result.problems.append(f"{sink}: {readback.count} stored, {valid} expected")
        result.kafka_to_write[sink] = readback.kafka_to_write
        result.poll_to_write[sink] = readback.poll_to_write
        firsts.append(readback.first_ingested)
    dead = ctx.scratch.end_offsets(dlq, 1)
    if dead != invalid:
        result.problems.append(f"dead-letter topic: {dead} records, {invalid} expected")
    return child.timed(result, min(firsts), done_at)


def quix_run(ctx: Context, topic: str, total: int, sink: str, *, timeout_s: float = 0) -> Run:
    """Quix Streams (``bench/quix_reference.py``) over ``topic`` into a fresh database.

    Finished as a consumer run is (Quix commits at each checkpoint, after its sink wrote), then
    the stored rows or documents are counted. With ``timeout_s`` (the MongoDB sink, which
    upserts one document at a time), a run not finished by then is stopped and reported with
    the records committed so far.
    """
    result = Run(sink, total)
    state = ctx.logs / unique("quix-state-")
    argv = ["-m", "bench.quix_reference", "--sink", sink, "--state-dir", str(state)]
    child = Child(ctx, f"quix-{sink}-{total}", argv, topic)
    try:
        done_at = child.wait_committed(total, f"Quix {sink}", timeout_s=timeout_s)
    except WaitTimeout:
        done_at = time.time()
        result.records = ctx.scratch.committed(child.group, topic)
        result.finished = False
        result.problems.append(
            f"stopped after {timeout_s:.0f} s with {result.records} of {total} committed"
        )
    finally:
        child.stop(result)
    first = float(child.reported("first_record_at")["first_record_at"])
    stored_count = stored.quix_count(ctx.endpoints, sink, child.dbs[sink])
    valid, _ = counts(total)
    if result.finished and stored_count != valid:
        result.problems.append(f"{sink}: {stored_count} stored, {valid} expected")
    return child.timed(result, first, done_at)


def naive_run(ctx: Context, topic: str, limit: int) -> Run:
    """The lab material's per-message consumer (``bench/naive.py``) over the first ``limit``
    records of ``topic``; it times itself, as it commits nothing the bench could watch."""
    child = Child(ctx, f"naive-{limit}", ["-m", "bench.naive", "--limit", str(limit)], topic)
    with ctx.bar(1, f"naive consumer, {limit} records", unit="run") as bar:
        with contextlib.suppress(subprocess.TimeoutExpired):  # then stopped, and failed
            child.proc.wait(timeout=120 + limit / 20)
        bar.update(1)
    code = child.stop()
    ctx.scratch.release_databases()
    if code != 0:
        raise RuntimeError(f"naive consumer failed ({code}):\n{child.tail()}")
    data = child.reported("records")
    timed = {name: data[name] for name in ("seconds", "cpu_s", "peak_rss_mb")}
    return Run("naive", data["records"], **timed)
