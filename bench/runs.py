"""One measurement each: the consumer (per mode), the naive reference, and the raw ceilings.

Every consumer run gets a fresh consumer group, dead-letter topic, PostgreSQL database (made from
``sql/*.sql``) and MongoDB database, and counts as finished only when the group's committed
offsets cover every record of the topic, which the consumer does only after PostgreSQL, MongoDB
and the dead-letter topic all accepted the batch; the stored counts are then checked (every
valid record in each active database, every invalid one in the dead-letter topic).

Throughput window: from the first batch's ``ingested_at`` (the consumer's clock right after its
first poll, read back from the database) to the moment the bench saw the last offsets committed
(polled every 50 ms). Interpreter start-up and the group join are reported apart, as start-up.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import cpu, stored
from bench.infra import Endpoints, Scratch
from bench.process import Child, WaitTimeout, consumer_env, wait_until
from bench.stored import Percentiles
from bench.workload import counts, publish_at_rate

MODES: dict[str, list[str]] = {
    "both": ["-m", "quotes_consumer"],
    "postgres": ["-m", "bench.one_sink", "postgres"],
    "mongo": ["-m", "bench.one_sink", "mongo"],
}
SINKS_OF = {"both": ("postgres", "mongo"), "postgres": ("postgres",), "mongo": ("mongo",)}
COMMIT_POLL_S = 0.05


@dataclass
class Context:
    """What every measurement needs: servers, scratch space, consumer settings, output."""

    endpoints: Endpoints
    scratch: Scratch
    logs: Path
    batch_size: int
    batch_timeout_ms: int
    partitions: int = 3
    progress: bool = True

    def bar(self, total: int, desc: str, unit: str = "rec") -> tqdm[Any]:
        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            unit_scale=True,
            leave=False,
            dynamic_ncols=True,
            disable=None if self.progress else True,  # None: only on a terminal
        )


@dataclass
class ConsumerResult:
    mode: str
    phase: str  # "full" (pre-loaded topic) or "rate" (published while consuming)
    records: int
    batch_timeout_ms: int
    seconds: float = math.nan
    startup_s: float = math.nan
    cpu_s: float = math.nan
    peak_rss_mb: float = math.nan
    kafka_to_write: dict[str, Percentiles] = field(default_factory=dict)
    poll_to_write: dict[str, Percentiles] = field(default_factory=dict)
    # From the first commit to the last, on a pre-loaded topic: who used the CPUs.
    cpu: cpu.CpuUsage | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else math.nan


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
) -> ConsumerResult:
    """Run the consumer over ``topic`` until all ``total`` records are committed.

    With ``rate``, the topic starts empty and the records are published at that rate once the
    consumer holds its partitions; otherwise the topic is already loaded.
    """
    timeout_ms = batch_timeout_ms or ctx.batch_timeout_ms
    result = ConsumerResult(mode, phase or ("rate" if rate else "full"), total, timeout_ms)
    scratch = ctx.scratch
    group = scratch.group("bench-group-")
    dlq = scratch.topic("bench-dlq-", 1)
    pg_db, mongo_db = scratch.pg_database(), scratch.mongo_database()
    env = consumer_env(
        ctx.endpoints,
        topic=topic,
        group=group,
        dlq_topic=dlq,
        pg_db=pg_db,
        mongo_db=mongo_db,
        batch_size=ctx.batch_size,
        batch_timeout_ms=timeout_ms,
    )
    argv = ["-m", "bench.profiled", str(profile_prefix)] if profile_prefix else MODES[mode]
    name = f"{result.phase}-{mode}-{total}-{group[-10:]}"
    child = Child(argv, env, ctx.logs / f"{name}.log").start()
    try:
        if rate:
            child.wait_for_log("assigned partitions", timeout_s=60)
            with ctx.bar(total, f"publish {rate:.0f}/s, {mode}") as bar:
                publish_at_rate(
                    ctx.endpoints.kafka, topic, total, ctx.partitions, rate, progress=bar
                )
        first: list[tuple[float, cpu.Snapshot]] = []

        def first_commit() -> None:
            if not rate:
                first.append((time.time(), cpu.snapshot(child.pid)))  # done_at is wall time

        done_at = _wait_committed(
            ctx, child, group, topic, total, f"consume {mode}", on_first=first_commit
        )
        if first and done_at - first[0][0] >= cpu.MIN_WINDOW_S:
            started, before = first[0]
            result.cpu = cpu.between(before, cpu.snapshot(child.pid), done_at - started)
        usage = child.stats()
    finally:
        code = child.stop()
    if code != 0:
        result.problems.append(f"consumer exited with {code}; log {child.log_path}")
    result.cpu_s, result.peak_rss_mb = usage.cpu_s, usage.peak_rss_mb

    valid, invalid = counts(total)
    firsts: list[float] = []
    for sink in SINKS_OF[mode]:
        if sink == "postgres":
            readback = stored.postgres(ctx.endpoints, pg_db)
        else:
            readback = stored.mongo(ctx.endpoints, mongo_db)
        if readback.count != valid:
            result.problems.append(f"{sink}: {readback.count} stored, {valid} expected")
        result.kafka_to_write[sink] = readback.kafka_to_write
        result.poll_to_write[sink] = readback.poll_to_write
        firsts.append(readback.first_ingested)
    dead = scratch.end_offsets(dlq, 1)
    if dead != invalid:
        result.problems.append(f"dead-letter topic: {dead} records, {invalid} expected")
    first = min(firsts)
    result.seconds = done_at - first
    result.startup_s = first - child.started_at
    scratch.release_databases()  # a 1M run leaves ~1 GB in FerretDB's files
    return result


def _wait_committed(
    ctx: Context,
    child: Child,
    group: str,
    topic: str,
    total: int,
    desc: str,
    timeout_s: float | None = None,
    on_first: Callable[[], None] | None = None,
) -> float:
    """Until the group committed every record; bounded by a generous floor of 300 records/s.
    ``on_first`` is called when the first commit is seen."""
    with ctx.bar(total, desc) as bar:

        def all_committed() -> bool:
            committed = ctx.scratch.committed(group, topic)
            if committed and not bar.n and on_first is not None:
                on_first()
            bar.update(committed - bar.n)
            return committed >= total

        return wait_until(
            f"{total} committed records ({desc})",
            all_committed,
            timeout_s=timeout_s or 120 + total / 300,
            every_s=COMMIT_POLL_S,
            while_alive=child,
        )


@dataclass(frozen=True)
class NaiveResult:
    records: int
    seconds: float
    cpu_s: float
    peak_rss_mb: float

    @property
    def throughput(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else math.nan


def naive_run(ctx: Context, topic: str, limit: int) -> NaiveResult:
    """The lab material's per-message consumer over the first ``limit`` records of ``topic``."""
    scratch = ctx.scratch
    group = scratch.group("bench-naive-")
    pg_db, mongo_db = scratch.pg_database(), scratch.mongo_database()
    env = consumer_env(
        ctx.endpoints,
        topic=topic,
        group=group,
        dlq_topic="unused",
        pg_db=pg_db,
        mongo_db=mongo_db,
        batch_size=ctx.batch_size,
        batch_timeout_ms=ctx.batch_timeout_ms,
    )
    argv = ["-m", "bench.naive", "--topic", topic, "--group", group]
    argv += ["--pg-db", pg_db, "--mongo-db", mongo_db, "--limit", str(limit)]
    child = Child(argv, env, ctx.logs / f"naive-{limit}-{group[-10:]}.log").start()
    deadline = time.monotonic() + 120 + limit / 20
    with ctx.bar(1, f"naive consumer, {limit} records", unit="run") as bar:
        while child.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        bar.update(1)
    code = child.stop()
    scratch.release_databases()
    lines = [line for line in child.log_path.read_text().splitlines() if line.startswith("{")]
    if code != 0 or not lines:
        raise RuntimeError(f"naive consumer failed ({code}):\n{child.log()}")
    data = json.loads(lines[-1])
    return NaiveResult(data["records"], data["seconds"], data["cpu_s"], data["peak_rss_mb"])


@dataclass
class QuixResult:
    """One Quix Streams run (bench/quix_reference.py): like :class:`ConsumerResult`, fewer
    fields, since its rows carry no write time to compute latency from."""

    sink: str
    records: int
    seconds: float = math.nan
    startup_s: float = math.nan
    cpu_s: float = math.nan
    peak_rss_mb: float = math.nan
    finished: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else math.nan


def quix_run(
    ctx: Context, topic: str, total: int, sink: str, *, timeout_s: float | None = None
) -> QuixResult:
    """Quix Streams over ``topic`` into a fresh database, finished as a consumer run is.

    Finished when the group's committed offsets cover the topic (Quix commits at each
    checkpoint, after its sink wrote), then the stored rows or documents are counted. With
    ``timeout_s`` (the MongoDB sink, which upserts one document at a time), a run that is not
    finished by then is stopped and reported with the records committed so far.
    """
    result = QuixResult(sink, total)
    scratch = ctx.scratch
    group = scratch.group("bench-quix-")
    db = scratch.pg_database() if sink == "postgres" else scratch.mongo_database()
    env = consumer_env(
        ctx.endpoints,
        topic=topic,
        group=group,
        dlq_topic="unused",
        pg_db=db,
        mongo_db=db,
        batch_size=ctx.batch_size,
        batch_timeout_ms=ctx.batch_timeout_ms,
    )
    state = ctx.logs / f"quix-state-{group[-10:]}"
    argv = ["-m", "bench.quix_reference", "--sink", sink, "--topic", topic, "--group", group]
    argv += ["--db", db, "--state-dir", str(state)]
    child = Child(argv, env, ctx.logs / f"quix-{sink}-{total}-{group[-10:]}.log").start()
    try:
        try:
            done_at = _wait_committed(ctx, child, group, topic, total, f"Quix {sink}", timeout_s)
        except WaitTimeout:
            done_at = time.time()
            result.records = scratch.committed(group, topic)
            result.finished = False
            result.problems.append(
                f"stopped after {timeout_s:.0f} s with {result.records} of {total} committed"
            )
        usage = child.stats()
    finally:
        code = child.stop()
    if code != 0:
        result.problems.append(f"Quix exited with {code}; log {child.log_path}")
    result.cpu_s, result.peak_rss_mb = usage.cpu_s, usage.peak_rss_mb
    first = _first_record_at(child)
    stored_count = (
        stored.quix_postgres_count(ctx.endpoints, db)
        if sink == "postgres"
        else stored.mongo_count(ctx.endpoints, db)
    )
    valid, _ = counts(total)
    if result.finished and stored_count != valid:
        result.problems.append(f"{sink}: {stored_count} stored, {valid} expected")
    result.seconds = done_at - first
    result.startup_s = first - child.started_at
    scratch.release_databases()
    return result


def _first_record_at(child: Child) -> float:
    for line in child.log_path.read_text(errors="replace").splitlines():
        if line.startswith('{"first_record_at"'):
            return float(json.loads(line)["first_record_at"])
    raise RuntimeError(f"Quix printed no first_record_at:\n{child.log()}")
