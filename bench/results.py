"""What one benchmark run measured: the shape of ``latest.json``, and the medians taken from it.

Why medians: on a 2-core machine that also runs the three servers, single runs scatter by tens of
percent; the median of several runs is stable. Every derived ratio (x naive, share of a ceiling,
1M vs 100k) is computed from these medians, never from a lucky single run.

Why the file is read by walking the dataclasses' type hints: the dataclasses are the one
description of the file; a reader that named every field again would be a second one, and
would drift from the first. Fields a file written before a measurement existed lacks keep
their defaults, so old results still render.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.cpu import CpuUsage
from bench.stored import Percentiles
from bench.workload import Published

# The consumer's modes and the sinks each writes: "both" is ``python -m quotes_consumer``, the
# others ``python -m bench.service --only SINK``, the same service with the other sink a no-op.
SINKS_OF: dict[str, tuple[str, ...]] = {
    "both": ("postgres", "mongo"),
    "postgres": ("postgres",),
    "mongo": ("mongo",),
}


@dataclass
class Run:
    """One run of a program over a topic: the consumer (``mode`` both, postgres or mongo), Quix
    Streams (``mode``: the sink it wrote), Kafka Connect (``connect``) or the naive consumer
    (``mode`` naive). What a program does not give stays nan or empty: Quix's rows carry no
    write time for latency, and the naive one times itself."""

    mode: str
    records: int
    phase: str = "full"  # "full" (pre-loaded topic), "rate" (published while consuming) or "big"
    batch_timeout_ms: int = 0
    seconds: float = math.nan
    startup_s: float = math.nan
    cpu_s: float = math.nan
    peak_rss_mb: float = math.nan
    kafka_to_write: dict[str, Percentiles] = field(default_factory=dict)
    poll_to_write: dict[str, Percentiles] = field(default_factory=dict)
    # From the first commit to the last, on a pre-loaded topic: who used the CPUs.
    cpu: CpuUsage | None = None
    finished: bool = True  # False: stopped at its time limit (Quix's MongoDBSink)
    problems: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Records per second over the run's window (nan when nothing was timed)."""
        return self.records / self.seconds if self.seconds > 0 else math.nan

    @property
    def from_start(self) -> float:
        """Records per second from the process's start, its start-up included."""
        return self.records / (self.seconds + self.startup_s) if self.seconds > 0 else math.nan


def median(values: Iterable[float]) -> float:
    found = [v for v in values if not math.isnan(v)]
    return statistics.median(found) if found else math.nan


@dataclass
class SizeResult:
    """Everything measured on one pre-loaded topic of ``size`` records."""

    size: int
    publish: Published
    naive_limit: int
    consumer: dict[str, list[Run]] = field(default_factory=dict)
    naive: list[Run] = field(default_factory=list)
    ceilings: dict[str, list[float]] = field(default_factory=dict)
    quix: list[Run] = field(default_factory=list)  # PostgreSQLSink
    concurrent_cpu: list[CpuUsage] = field(default_factory=list)  # of the concurrent ceiling
    connect: list[Run] = field(default_factory=list)  # Kafka Connect, both sinks
    connect_bytes: list[float] = field(default_factory=list)  # mean record: ours, its envelope

    def median_throughput(self, mode: str) -> float:
        return median(r.throughput for r in self.consumer.get(mode, []))

    def median_ceiling(self, name: str) -> float:
        return median(self.ceilings.get(name, []))

    @property
    def naive_rate(self) -> float:
        return median(n.throughput for n in self.naive)

    @property
    def quix_rate(self) -> float:
        return median(q.throughput for q in self.quix)

    def smallest_ceiling(self, mode: str = "both") -> tuple[str, float]:
        """The slowest server the mode uses: Kafka, plus the mode's sinks."""
        found = [(name, self.median_ceiling(name)) for name in ("kafka", *SINKS_OF[mode])]
        found = [(name, value) for name, value in found if not math.isnan(value)]
        return min(found, key=lambda item: item[1]) if found else ("none", math.nan)

    def serial_bound(self, mode: str = "both") -> float:
        """Best case for a consumer that reads a batch, then writes the mode's sinks at once:
        a batch costs the read plus the slowest sink."""
        kafka = self.median_ceiling("kafka")
        sinks = [self.median_ceiling(name) for name in SINKS_OF[mode]]
        if any(math.isnan(v) or v <= 0 for v in [kafka, *sinks]):
            return math.nan
        return 1 / (1 / kafka + 1 / min(sinks))


@dataclass
class Results:
    command: str
    started: datetime
    repeats: int
    batch_size: int
    batch_timeout_ms: int
    partitions: int
    rate: float
    environment: dict[str, str]
    sizes: list[SizeResult] = field(default_factory=list)
    latency: dict[str, list[Run]] = field(default_factory=dict)
    profile: dict[str, Any] | None = None
    profile_run: Run | None = None
    finished: datetime | None = None
    quix_mongo: Run | None = None  # one MongoDBSink run on a small topic
    big_records: Run | None = None  # both sinks over records of big_record_bytes
    big_record_bytes: int = 0

    def default_latency(self) -> tuple[str, list[Run]] | None:
        """The fixed-rate runs with both sinks and the default batch timeout: the latency
        targets are judged on them."""
        for label, runs in self.latency.items():
            if (
                runs
                and runs[0].mode == "both"
                and runs[0].batch_timeout_ms == self.batch_timeout_ms
            ):
                return label, runs
        return None


def to_json(results: Results) -> str:
    return json.dumps(dataclasses.asdict(results), indent=1, default=str)


def from_json(text: str) -> Results:
    """Rebuild :class:`Results` from ``latest.json``, to render a report without measuring."""
    loaded: Results = _load(Results, json.loads(text))
    return loaded


def _load(kind: Any, data: Any) -> Any:
    """``data``, parsed from JSON, as an instance of the type ``kind``."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if data is None:
        return None
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        fields = [f.name for f in dataclasses.fields(kind) if f.name in data]
        return kind(**{name: _load(hints[name], data[name]) for name in fields})
    if origin is types.UnionType:  # X | None
        return _load(next(arg for arg in args if arg is not type(None)), data)
    if origin is list:
        return [_load(args[0], item) for item in data]
    if origin is dict:
        return {key: _load(args[1], value) for key, value in data.items()}
    return datetime.fromisoformat(data) if kind is datetime else data
