"""Turn the measurements into the Markdown report and the PNG chart.

Why medians with ranges: on a 2-core machine that also runs the three servers, single runs
scatter by tens of percent; the median of several runs is stable, and the min-max range next to
it says how far to trust it. Every derived ratio (x naive, share of the ceiling, 1M vs 100k) is
computed from medians, never from a lucky single run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.cpu import CONSUMER, GROUPS, MIN_WINDOW_S, CpuUsage
from bench.runs import SINKS_OF, ConsumerResult, NaiveResult, QuixResult
from bench.stored import Percentiles
from bench.workload import INVALID_EVERY, Published
from quotes_consumer.settings import SPEC

CONSUMER_DEFAULTS = {setting.name: setting.default for setting in SPEC}
QUIX_COMMIT_INTERVAL_S = 5.0  # Quix Streams 3.28's Application default, which the bench keeps

# Issue 11's targets, then the ones kept from earlier issues.
TARGET_CONCURRENT_SHARE = 0.85  # consumer, both sinks / concurrent raw-write ceiling
TARGET_X_QUIX = 2.0  # consumer, PostgreSQL only / Quix Streams PostgreSQLSink
TARGET_P50_MS = 15.0
TARGET_P99_MS = 100.0
TARGET_RSS_MB = 150.0
TARGET_1M_DRIFT = 0.15
TARGET_X_NAIVE = 20.0
TARGET_CEILING_SHARE = 0.70
CEILING_NAMES = {
    "kafka": "Kafka read",
    "postgres": "PostgreSQL insert",
    "postgres_values": "PostgreSQL execute_values",
    "mongo": "MongoDB insert",
    "concurrent": "both databases at once",
}
NOT_MEASURED = "not measured"


@dataclass
class SizeResult:
    size: int
    publish: Published
    naive_limit: int
    consumer: dict[str, list[ConsumerResult]] = field(default_factory=dict)
    naive: list[NaiveResult] = field(default_factory=list)
    ceilings: dict[str, list[float]] = field(default_factory=dict)
    quix: list[QuixResult] = field(default_factory=list)  # PostgreSQLSink; absent in old JSON
    concurrent_cpu: list[CpuUsage] = field(default_factory=list)  # of the concurrent ceiling

    def median_throughput(self, mode: str) -> float:
        return median(r.throughput for r in self.consumer.get(mode, []))

    def median_ceiling(self, name: str) -> float:
        return median(self.ceilings.get(name, []))

    def smallest_ceiling(self, mode: str = "both") -> tuple[str, float]:
        """The slowest server the mode uses: Kafka, plus the mode's sinks."""
        found = [(name, self.median_ceiling(name)) for name in ("kafka", *SINKS_OF[mode])]
        found = [(name, value) for name, value in found if not math.isnan(value)]
        return min(found, key=lambda item: item[1]) if found else ("none", math.nan)

    def serial_bound(self, mode: str = "both") -> float:
        """Best case for the consumer's batch cycle: read, then write the mode's sinks at once.

        The sinks are written in parallel, so a batch costs the read plus the slowest sink.
        """
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
    latency: dict[str, list[ConsumerResult]] = field(default_factory=dict)
    profile: dict[str, Any] | None = None
    profile_run: ConsumerResult | None = None
    finished: datetime | None = None
    quix_mongo: QuixResult | None = None  # one MongoDBSink run on a small topic
    big_records: ConsumerResult | None = None  # both sinks over records of big_record_bytes
    big_record_bytes: int = 0


def results_from_json(data: dict[str, Any]) -> Results:
    """Rebuild :class:`Results` from ``latest.json``, to render a report without measuring."""

    def consumer(item: dict[str, Any]) -> ConsumerResult:
        nested = ("kafka_to_write", "poll_to_write", "cpu")
        fields = {k: v for k, v in item.items() if k not in nested}
        usage = item.get("cpu")
        return ConsumerResult(
            **fields,
            kafka_to_write={k: Percentiles(**v) for k, v in item["kafka_to_write"].items()},
            poll_to_write={k: Percentiles(**v) for k, v in item["poll_to_write"].items()},
            cpu=CpuUsage(**usage) if usage else None,
        )

    sizes = [
        SizeResult(
            size=item["size"],
            publish=Published(**item["publish"]),
            naive_limit=item["naive_limit"],
            consumer={m: [consumer(r) for r in runs] for m, runs in item["consumer"].items()},
            naive=[NaiveResult(**n) for n in item["naive"]],
            ceilings=item["ceilings"],
            quix=[QuixResult(**q) for q in item.get("quix", [])],
            concurrent_cpu=[CpuUsage(**u) for u in item.get("concurrent_cpu", [])],
        )
        for item in data["sizes"]
    ]
    finished = data.get("finished")
    quix_mongo, big = data.get("quix_mongo"), data.get("big_records")
    return Results(
        command=data["command"],
        started=datetime.fromisoformat(data["started"]),
        repeats=data["repeats"],
        batch_size=data["batch_size"],
        batch_timeout_ms=data["batch_timeout_ms"],
        partitions=data["partitions"],
        rate=data["rate"],
        environment=data["environment"],
        sizes=sizes,
        latency={k: [consumer(r) for r in runs] for k, runs in data["latency"].items()},
        profile=data.get("profile"),
        profile_run=consumer(data["profile_run"]) if data.get("profile_run") else None,
        finished=datetime.fromisoformat(finished) if finished else None,
        quix_mongo=QuixResult(**quix_mongo) if quix_mongo else None,
        big_records=consumer(big) if big else None,
        big_record_bytes=data.get("big_record_bytes", 0),
    )


# --- Numbers ----------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    found = [v for v in values if not math.isnan(v)]
    return statistics.median(found) if found else math.nan


def spread(values: Sequence[float]) -> str:
    found = [v for v in values if not math.isnan(v)]
    if len(found) < 2:
        return ""
    return f" ({_num(min(found))}-{_num(max(found))})"


def _num(value: float, digits: int = 0) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def median_percentiles(values: Sequence[Percentiles]) -> Percentiles:
    return Percentiles(
        median(p.p50 for p in values), median(p.p95 for p in values), median(p.p99 for p in values)
    )


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference and not math.isnan(reference) else math.nan


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


# --- Markdown ---------------------------------------------------------------------------------


def markdown(results: Results) -> str:
    lines = [
        f"# Consumer benchmark, {results.started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{results.command}`",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in results.environment.items()),
        "",
        f"Consumer settings: `CONSUMER_BATCH_SIZE={results.batch_size}`, "
        f"`CONSUMER_BATCH_TIMEOUT_MS={results.batch_timeout_ms}` (the `.env.example` values "
        f"unless overridden), {results.partitions} partitions, "
        f"{100 / INVALID_EVERY:.0f} % invalid records. Each figure is the **median of "
        f"{results.repeats} run(s)**, min-max in brackets; every run starts from a fresh "
        "consumer group, dead-letter topic, PostgreSQL database and MongoDB database.",
        "",
    ]
    lines += _throughput_section(results)
    lines += _cpu_section(results)
    lines += _reference_section(results)
    lines += _latency_section(results)
    lines += _targets_section(results)
    lines += _profile_section(results)
    lines += _bounds_section(results)
    lines += _notes(results)
    if results.finished is not None:
        minutes = (results.finished - results.started).total_seconds() / 60
        lines += ["", f"Benchmark wall time: {minutes:.1f} min."]
    return "\n".join(lines) + "\n"


def _throughput_section(results: Results) -> list[str]:
    lines = [
        "## Throughput at full speed (pre-loaded topic, until every offset is committed)",
        "",
        "| records | mode | records/s | run s | start-up s | CPU s | CPU ms per 1k rec "
        "| peak RSS MB | x naive | share of smallest ceiling | share of serial bound |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in results.sizes:
        naive = median(n.throughput for n in size.naive)
        for mode, runs in size.consumer.items():
            _, smallest = size.smallest_ceiling(mode)
            rate = [r.throughput for r in runs]
            cpu = median(r.cpu_s for r in runs)
            lines.append(
                f"| {size.size:,} | {mode} | {_num(median(rate))}{spread(rate)} "
                f"| {_num(median(r.seconds for r in runs), 2)} "
                f"| {_num(median(r.startup_s for r in runs), 2)} "
                f"| {_num(cpu, 2)} | {_num(cpu / size.size * 1e6, 0)} "
                f"| {_num(median(r.peak_rss_mb for r in runs), 1)} "
                f"| {_num(_ratio(median(rate), naive), 1)} "
                f"| {_num(100 * _ratio(median(rate), smallest), 0)} % "
                f"| {_num(100 * _ratio(median(rate), size.serial_bound(mode)), 0)} % |"
            )
    problems = [
        f"{size.size:,} {mode}: {problem}"
        for size in results.sizes
        for mode, runs in size.consumer.items()
        for run in runs
        for problem in run.problems
    ]
    problems += [
        f"{size.size:,} Quix Streams: {problem}"
        for size in results.sizes
        for run in size.quix
        for problem in run.problems
    ]
    if results.big_records is not None:
        problems += [f"~60 KB records: {problem}" for problem in results.big_records.problems]
    complete = (
        "every run stored every valid record in each active database and dead-lettered every "
        "invalid one (Quix Streams, which has no dead-letter topic: stored every valid record)."
    )
    lines += ["", "Completeness check: " + ("; ".join(problems) if problems else complete), ""]
    lines += [
        "CPU s and peak RSS are the consumer process's own (`/proc/<pid>/stat` utime+stime, "
        "`/proc/<pid>/status` VmHWM), start-up included. Modes `postgres` and `mongo` run the "
        "same consumer with the other sink replaced by a no-op (`python -m bench.one_sink`). "
        "The ceiling and serial-bound shares of a mode count only the servers it uses (Kafka "
        "and its sinks; see the next section).",
        "",
    ]
    return lines


def cpu_medians(usages: Sequence[CpuUsage]) -> dict[str, float]:
    """Median cores used, per process group and for the whole machine."""
    found = {"machine": median(u.machine_cores for u in usages)}
    for group in (CONSUMER, *GROUPS):
        found[group] = median(u.cores[group] for u in usages if group in u.cores)
    return found


def _cpu_section(results: Results) -> list[str]:
    names = (CONSUMER, *GROUPS)
    lines = [
        "## Where the CPUs went (the same full-speed runs, and the concurrent ceiling)",
        "",
        "| records | run | records/s | CPUs busy | consumer (or raw clients) | "
        + " | ".join(GROUPS)
        + " |",
        "|---:|---|---:|---:|" + "---:|" * len(names),
    ]
    measured: list[tuple[int, str, float, list[CpuUsage]]] = []
    for size in results.sizes:
        for mode, runs in size.consumer.items():
            usages = [r.cpu for r in runs if r.cpu is not None]
            rate = median(r.throughput for r in runs if r.cpu is not None)
            measured.append((size.size, f"consumer, {mode}", rate, usages))
        concurrent = size.ceilings.get("concurrent", [])
        if size.concurrent_cpu and concurrent:
            rate = median(concurrent)
            measured.append((size.size, "raw, both databases at once", rate, size.concurrent_cpu))
    cpus = 0
    for records, run, rate, usages in measured:
        usages = [u for u in usages if u.cores]
        if not usages:
            continue
        cpus = usages[0].cpus
        used = cpu_medians(usages)
        cells = [
            f"{_num(100 * used[name], 0)} % ({_num(used[name] / rate * 1e6, 0)} µs)"
            for name in names
        ]
        lines.append(
            f"| {records:,} | {run} | {_num(rate)} "
            f"| {_num(used['machine'], 2)} of {cpus} | {' | '.join(cells)} |"
        )
    if not cpus:
        return []
    lines += [
        "",
        "A consumer run: from the first commit to the last. The concurrent ceiling: its timed "
        "server calls only, the bench's process counted as the raw clients. *CPUs busy*: "
        "`/proc/stat`, every process on the machine. Each process: its share of one CPU, and "
        "in brackets its CPU time per record (user + system of its whole process tree, "
        "`/proc/<pid>/stat`; PostgreSQL counts the postmaster and every backend, including the "
        "bench's own short queries). A server the harness did not start itself is not counted; "
        f"runs shorter than {MIN_WINDOW_S:.0f} s are not measured.",
        "",
    ]
    return lines


def _reference_section(results: Results) -> list[str]:
    lines = [
        "## References: raw ceilings, a peer and the naive consumer (records/s)",
        "",
        "| records | Kafka read | PostgreSQL, the consumer's INSERT "
        "| PostgreSQL execute_values | MongoDB insert_many "
        "| both databases at once | smallest isolated | serial bound "
        "| Quix Streams PostgreSQLSink | naive consumer |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in results.sizes:
        cells = [
            f"{_num(size.median_ceiling(name))}{spread(size.ceilings.get(name, []))}"
            if size.ceilings.get(name)
            else NOT_MEASURED
            for name in CEILING_NAMES
        ]
        name, smallest = size.smallest_ceiling()
        naive = [n.throughput for n in size.naive]
        quix = [q.throughput for q in size.quix]
        quix_cell = f"{_num(median(quix))}{spread(quix)}" if quix else NOT_MEASURED
        lines.append(
            f"| {size.size:,} | {' | '.join(cells)} "
            f"| {_num(smallest)} ({CEILING_NAMES.get(name, name)}) "
            f"| {_num(size.serial_bound())} | {quix_cell} "
            f"| {_num(median(naive), 0)}{spread(naive)} over {size.naive_limit:,} records |"
        )
    lines += [
        "",
        "Ceilings: the consumer's batch size and its exact rows and documents; only the server "
        "calls are timed. *PostgreSQL* and *MongoDB*: one client, one server, alone. "
        "*The consumer's INSERT* sends a batch as one JSON parameter that `json_to_recordset` "
        "turns into rows; *execute_values* sends the same rows as a multi-row `VALUES` list "
        "(what the consumer did before, and what the issue's first measurement used); it does "
        "not bound the consumer and is not counted as a ceiling. *Both "
        "databases at once*: one process, two threads, the consumer's INSERT into PostgreSQL "
        "in one and `insert_many` into FerretDB in the other, the same batches, timed until both "
        "finished: what a consumer that writes both databases can approach on this machine, "
        "where the two servers and their clients share the CPUs. *Serial bound* = 1 / "
        "(1/Kafka + 1/min(PostgreSQL, MongoDB)): the best a consumer can do that reads a batch, "
        "then writes both databases, without overlapping the two. *Quix Streams* 3.28.1 "
        "(`bench/quix_reference.py`): an `Application` with at-least-once processing, its "
        "default commit interval, a fresh group from the earliest offset, each record through "
        "the consumer's own validation (invalid ones dropped: it has no dead-letter topic), "
        "into its `PostgreSQLSink` (a table of its own in a "
        "fresh database); finished as the consumer is, when every offset is committed, and its "
        "rows counted. The naive consumer (lab material style: auto-commit, per message one "
        "INSERT + commit and one insert_one) runs over the first records of the same topic; its "
        "rate does not depend on the topic size.",
        "",
    ]
    lines += _quix_mongo_lines(results)
    lines += _big_record_lines(results)
    return lines


def _quix_mongo_lines(results: Results) -> list[str]:
    run = results.quix_mongo
    if run is None:
        return ["Quix Streams MongoDBSink: not measured.", ""]
    outcome = (
        f"{run.records:,} records in {_num(run.seconds, 1)} s"
        if run.finished
        else f"not finished: {'; '.join(run.problems)}"
    )
    problems = f" Problems: {'; '.join(run.problems)}." if run.problems and run.finished else ""
    largest = max((size.size for size in results.sizes), default=0)
    if largest and run.throughput > 0:
        problems += (
            f" At that rate the {largest:,}-record topic would take "
            f"{largest / run.throughput / 60:,.1f} min (an extrapolation, not a run)."
        )
    return [
        "Quix Streams MongoDBSink, measured once on a topic of its own: "
        f"**{_num(run.throughput, 1)} records/s** ({outcome}).{problems} It upserts each document "
        "(`UpdateOne(..., upsert=True)`, one update operation per record in a `bulk_write`) "
        "instead of inserting the batch; it is reported for completeness and not tuned for "
        "(matching on `_id` is the only setting given, as its default matches on the Kafka "
        "key, which these records do not have).",
        "",
    ]


def _big_record_lines(results: Results) -> list[str]:
    run = results.big_records
    if run is None:
        return [f"Memory with ~60 KB records: {NOT_MEASURED}.", ""]
    return [
        "## Memory with large records",
        "",
        f"{run.records:,} records of about {results.big_record_bytes / 1000:.0f} KB (a long "
        "quote, stored in both databases; 2 % invalid as everywhere), pre-loaded, consumed "
        "with both sinks and every setting at its default (`CONSUMER_BATCH_SIZE="
        f"{results.batch_size}`, `CONSUMER_BATCH_MAX_BYTES` at the consumer's default, "
        "`CONSUMER_MAX_RECORD_BYTES=65536`): "
        f"**peak RSS {_num(run.peak_rss_mb, 1)} MB**, {_num(run.throughput)} records/s, "
        f"CPU {_num(run.cpu_s, 1)} s"
        + (f"; problems: {'; '.join(run.problems)}" if run.problems else "; every record stored")
        + ".",
        "",
    ]


def _latency_section(results: Results) -> list[str]:
    lines = [
        "## Latency, Kafka record timestamp to database write (ms)",
        "",
        "| phase | mode | batch timeout ms | sink | p50 | p95 | p99 | poll-to-write p50 "
        "| poll-to-write p99 | consumer CPU s | peak RSS MB |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows: list[tuple[str, list[ConsumerResult]]] = [
        (f"{results.rate:,.0f} rec/s", runs) for runs in results.latency.values()
    ]
    rows += [
        (f"full speed, {size.size:,} pre-loaded", runs)
        for size in results.sizes
        for runs in size.consumer.values()
    ]
    for phase, runs in rows:
        if not runs:
            continue
        first = runs[0]
        for sink in SINKS_OF[first.mode]:
            kafka = median_percentiles([r.kafka_to_write[sink] for r in runs])
            poll = median_percentiles([r.poll_to_write[sink] for r in runs])
            lines.append(
                f"| {phase} | {first.mode} | {first.batch_timeout_ms} | {sink} "
                f"| {_num(kafka.p50)} | {_num(kafka.p95)} | {_num(kafka.p99)} "
                f"| {_num(poll.p50)} | {_num(poll.p99)} "
                f"| {_num(median(r.cpu_s for r in runs), 2)} "
                f"| {_num(median(r.peak_rss_mb for r in runs), 1)} |"
            )
    lines += [
        "",
        "Latency is `written_at - kafka_timestamp` per row (PostgreSQL, computed by "
        "`percentile_cont`) and `written_at - kafka.timestamp` per document (MongoDB), over "
        "every record; `written_at` is when the batch's write began. *Poll-to-write* is "
        "`written_at - ingested_at`, the consumer's own share after a batch was polled. At "
        "full speed the topic was loaded before the consumer started, so the Kafka-based "
        "figure mostly measures how long a record waited in the backlog, not the consumer.",
        "",
    ]
    return lines


def _default_latency_runs(results: Results) -> tuple[str, list[ConsumerResult]] | None:
    """The fixed-rate runs with both sinks and the default batch timeout (issue 11's setting)."""
    for label, runs in results.latency.items():
        if runs and runs[0].mode == "both" and runs[0].batch_timeout_ms == results.batch_timeout_ms:
            return label, runs
    return None


@dataclass(frozen=True)
class Target:
    """One row of the targets table; ``score`` is measured/threshold oriented so >= 1 is met."""

    name: str
    threshold: str
    measured: str
    reference: str
    score: float  # nan: not measured
    short: str  # the chart's label

    @property
    def met(self) -> bool | None:
        return None if math.isnan(self.score) else self.score >= 1.0


def targets(results: Results) -> list[Target]:
    found: list[Target] = []
    for size in results.sizes:
        both = size.median_throughput("both")
        concurrent = size.median_ceiling("concurrent")
        share = _ratio(both, concurrent)
        found.append(
            Target(
                f"{size.size:,}: both databases vs the concurrent raw ceiling",
                f">= {TARGET_CONCURRENT_SHARE:.0%}",
                f"{_num(100 * share)} % ({_num(both)} rec/s)",
                f"both databases at once, raw: {_rate(concurrent)}",
                share / TARGET_CONCURRENT_SHARE,
                f"{_short(size.size)} both /\nconcurrent ceiling",
            )
        )
    for size in results.sizes:
        postgres = size.median_throughput("postgres")
        quix = median(q.throughput for q in size.quix)
        x_quix = _ratio(postgres, quix)
        found.append(
            Target(
                f"{size.size:,}: PostgreSQL only vs Quix Streams",
                f">= {TARGET_X_QUIX:.0f}x",
                f"{_num(x_quix, 2)}x ({_num(postgres)} rec/s)",
                f"Quix Streams 3.28.1 PostgreSQLSink: {_rate(quix)}",
                x_quix / TARGET_X_QUIX,
                f"{_short(size.size)} postgres /\nQuix",
            )
        )
    default = _default_latency_runs(results)
    for name, limit in (("p50", TARGET_P50_MS), ("p99", TARGET_P99_MS)):
        value = math.nan
        label = "no fixed-rate run with both sinks at the default batch timeout"
        if default is not None:
            label, runs = default
            value = max(
                median(getattr(r.kafka_to_write[s], name) for r in runs) for s in SINKS_OF["both"]
            )
        found.append(
            Target(
                f"{name} latency at {results.rate:,.0f} rec/s, both sinks, default settings",
                f"<= {limit:.0f} ms",
                f"{_num(value, 1)} ms (worse sink)",
                f"run: {label}",
                limit / value if value > 0 else math.nan,
                f"{name} at\n{results.rate:,.0f}/s",
            )
        )
    every_run = [r for size in results.sizes for runs in size.consumer.values() for r in runs]
    every_run += [r for runs in results.latency.values() for r in runs]
    peak = max((r.peak_rss_mb for r in every_run), default=math.nan)
    found.append(
        Target(
            "consumer peak RSS, every run above",
            f"<= {TARGET_RSS_MB:.0f} MB",
            f"{_num(peak, 1)} MB",
            f"largest of {len(every_run)} runs",
            TARGET_RSS_MB / peak if peak > 0 else math.nan,
            "peak RSS",
        )
    )
    big = results.big_records
    big_rss = big.peak_rss_mb if big is not None else math.nan
    found.append(
        Target(
            "consumer peak RSS, ~60 KB records, default batch settings",
            f"<= {TARGET_RSS_MB:.0f} MB",
            f"{_num(big_rss, 1)} MB" if big is not None else NOT_MEASURED,
            f"{big.records:,} records of ~{results.big_record_bytes / 1000:.0f} KB"
            if big is not None
            else "needs --big-records",
            TARGET_RSS_MB / big_rss if big_rss > 0 else math.nan,
            "peak RSS,\n60 KB records",
        )
    )
    by_size = {size.size: size.median_throughput("both") for size in results.sizes}
    drift = math.nan
    if 100_000 in by_size and 1_000_000 in by_size:
        drift = _ratio(by_size[1_000_000] - by_size[100_000], by_size[100_000])
    found.append(
        Target(
            "both databases: 1M records vs 100k",
            f"within {TARGET_1M_DRIFT:.0%}",
            f"{_num(100 * drift, 1)} %" if not math.isnan(drift) else NOT_MEASURED,
            "the 100k median" if not math.isnan(drift) else "needs --sizes 100000 1000000",
            _drift_score(drift),
            "1M vs 100k",
        )
    )
    for size in results.sizes:
        both = size.median_throughput("both")
        naive = median(n.throughput for n in size.naive)
        x_naive = _ratio(both, naive)
        found.append(
            Target(
                f"{size.size:,}: both databases vs the naive consumer (earlier target)",
                f">= {TARGET_X_NAIVE:.0f}x",
                f"{_num(x_naive, 1)}x",
                f"naive consumer: {_rate(naive)}",
                x_naive / TARGET_X_NAIVE,
                f"{_short(size.size)} both /\nnaive",
            )
        )
        name, smallest = size.smallest_ceiling()
        share = _ratio(both, smallest)
        found.append(
            Target(
                f"{size.size:,}: both databases vs the smallest isolated ceiling (earlier target)",
                f">= {TARGET_CEILING_SHARE:.0%}",
                f"{_num(100 * share)} %",
                f"{CEILING_NAMES.get(name, name)} alone: {_num(smallest)} rec/s",
                share / TARGET_CEILING_SHARE,
                f"{_short(size.size)} both /\nsmallest isolated",
            )
        )
    return found


def _rate(value: float) -> str:
    return NOT_MEASURED if math.isnan(value) else f"{_num(value)} rec/s"


def _drift_score(drift: float) -> float:
    if math.isnan(drift):
        return math.nan
    return TARGET_1M_DRIFT / abs(drift) if drift else math.inf


def _short(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k"


def _targets_section(results: Results) -> list[str]:
    lines = [
        "## Targets",
        "",
        "Issue 11's targets first, then those kept from earlier issues. Medians of "
        f"{results.repeats} run(s); a ratio is taken between medians of the same run of the "
        "benchmark. The exactly-once and reliability tests are `make test`'s, not this report's.",
        "",
        "| target | threshold | measured | compared to | met |",
        "|---|---|---|---|---|",
    ]
    for target in targets(results):
        measured = NOT_MEASURED if math.isnan(target.score) else target.measured
        lines.append(
            f"| {target.name} | {target.threshold} | {measured} | {target.reference} "
            f"| {_met(target.met) if not math.isnan(target.score) else NOT_MEASURED} |"
        )
    return [*lines, ""]


def _profile_section(results: Results) -> list[str]:
    profile, run = results.profile, results.profile_run
    if profile is None or run is None:
        return []
    lines = [
        "## Profile of a full-speed run (pyinstrument, both sinks)",
        "",
        f"{run.records:,} records at {_num(run.throughput)} records/s under the profiler "
        f"(1 ms sampling of the consumer's main thread, {profile['profiled_seconds']:.1f} s "
        "from its first batch to shutdown). Where the wall time went, per stage (inclusive):",
        "",
        "| stage | seconds | share |",
        "|---|---:|---:|",
    ]
    for stage in profile["stages"]:
        lines.append(f"| {stage['stage']} | {stage['seconds']:.2f} | {stage['share']:.1%} |")
    lines += [
        "",
        "Top functions by self time:",
        "",
        "| function | self s | share |",
        "|---|---:|---:|",
    ]
    for entry in profile["top_self"][:12]:
        lines.append(f"| `{entry['function']}` | {entry['seconds']:.2f} | {entry['share']:.1%} |")
    lines += ["", "Full call tree: `bench/results/profile.txt`.", ""]
    same = [size for size in results.sizes if size.size == run.records]
    unprofiled = same[0].median_throughput("both") if same else math.nan
    lines += [
        f"The unprofiled median at this size is {_num(unprofiled)} records/s: sampling costs "
        "most where Python code runs many small calls (Kafka record decoding and CRC, "
        "validation), so those shares are somewhat inflated and the waits on the servers "
        "somewhat deflated. The order of the stages is what the profile shows reliably.",
        "",
    ]
    if any(
        e["function"].startswith("crc_update (kafka/record/_crc32c.py") for e in profile["top_self"]
    ):
        lines += [
            "`crc_update (kafka/record/_crc32c.py)` is kafka-python's pure-Python CRC32C, "
            "its fallback when the optional `crc32c` C package is not installed: every fetched "
            "record batch is checksummed byte by byte in Python, in the consumer's main thread.",
            "",
        ]
    return lines


def _bounds_section(results: Results) -> list[str]:
    """What limits each measured figure, from the measurements and the code that ran."""
    lines = ["## What bounds each result", ""]
    for size in results.sizes:
        concurrent = size.median_ceiling("concurrent")
        name, smallest = size.smallest_ceiling()
        kafka = size.median_ceiling("kafka")
        postgres = size.median_ceiling("postgres")
        if math.isnan(concurrent):
            lines.append(f"- {size.size:,}: the concurrent ceiling was {NOT_MEASURED}.")
        else:
            lines.append(
                f"- {size.size:,}, both databases: the servers written at once take "
                f"{_num(concurrent)} rec/s, {_num(100 * _ratio(concurrent, smallest))} % of the "
                f"slower one alone ({CEILING_NAMES.get(name, name)}, {_num(smallest)}); Kafka "
                f"alone reads {_num(kafka)}. The consumer reaches "
                f"{_num(100 * _ratio(size.median_throughput('both'), concurrent))} % of the "
                "concurrent ceiling; the rest is its own work (polling, decoding, validating, "
                "building rows and documents, dead-lettering, committing) on the same CPUs."
                + _cpu_bound(size.consumer.get("both", []))
                + _slowest_server(size)
            )
        lines.append(
            f"- {size.size:,}, PostgreSQL only: the consumer reaches "
            f"{_num(100 * _ratio(size.median_throughput('postgres'), postgres))} % of "
            f"PostgreSQL's raw rate ({_num(postgres)} rec/s)."
            + _cpu_bound(size.consumer.get("postgres", []))
        )
        quix = [q for q in size.quix if q.finished]
        if quix:
            seconds = median(q.seconds for q in quix)
            lines.append(
                f"- {size.size:,}, Quix Streams PostgreSQLSink: it writes only at a checkpoint, "
                f"every {QUIX_COMMIT_INTERVAL_S:.0f} s by default, so up to "
                f"{_num(100 * _ratio(QUIX_COMMIT_INTERVAL_S, seconds))} % of its median run "
                f"({_num(seconds, 1)} s) can be the wait for the last checkpoint; each "
                "checkpoint's rows go in one `execute_values` with psycopg2's default page size "
                "(100 rows per statement), and every record passes its dataframe pipeline one "
                "at a time."
            )
    default = _default_latency_runs(results)
    if default is not None:
        label, runs = default
        poll = max(median(r.poll_to_write[s].p50 for r in runs) for s in SINKS_OF["both"])
        lines.append(
            f"- Latency at {results.rate:,.0f} rec/s ({label}): a batch closes as soon as the "
            "consumer has caught up with the topic (the batch timeout, "
            f"{results.batch_timeout_ms} ms, is only an upper bound), so a record waits for the "
            "batch in flight before it, then for its own write; poll-to-write (the consumer's own "
            f"share after the poll) has a median of {_num(poll, 1)} ms on the worse sink."
        )
    if results.big_records is not None and results.big_record_bytes:
        cap = int(CONSUMER_DEFAULTS["CONSUMER_BATCH_MAX_BYTES"])
        lines.append(
            f"- Memory with ~{results.big_record_bytes / 1000:.0f} KB records: a batch closes at "
            f"CONSUMER_BATCH_MAX_BYTES ({cap / 2**20:.0f} MiB by default), about "
            f"{cap // results.big_record_bytes} such records, instead of "
            f"{results.batch_size} records "
            f"({results.batch_size * results.big_record_bytes / 1e6:.0f} MB); the peak also "
            "holds the client libraries' fetch buffers and the rows and "
            "documents built from the batch."
        )
    return [*lines, ""]


def _cpu_bound(runs: Sequence[ConsumerResult]) -> str:
    """One sentence: how busy the CPUs were, and who used most of them."""
    usages = [r.cpu for r in runs if r.cpu is not None]
    if not usages:
        return ""
    used = cpu_medians(usages)
    ranked = sorted((g for g in (CONSUMER, *GROUPS) if not math.isnan(used[g])), key=used.get)
    top = ", ".join(f"{g} {_num(100 * used[g], 0)} %" for g in reversed(ranked))
    return f" The CPUs were {_num(used['machine'], 2)} of {usages[0].cpus} busy; of one CPU: {top}."


def _slowest_server(size: SizeResult) -> str:
    """How much CPU FerretDB, the slowest server, got in the consumer run and in the ceiling."""
    runs = [r.cpu for r in size.consumer.get("both", []) if r.cpu is not None]
    raw = [u for u in size.concurrent_cpu if u.cores]
    if not runs or not raw:
        return ""
    server = "FerretDB"
    consumer = cpu_medians(runs)
    ceiling = cpu_medians(raw)
    return (
        f" {server}, which takes the longest per batch, got {_num(100 * consumer[server], 0)} % "
        f"of a CPU in the consumer run against {_num(100 * ceiling[server], 0)} % while the raw "
        f"clients wrote (they used {_num(100 * ceiling[CONSUMER], 0)} %, the consumer "
        f"{_num(100 * consumer[CONSUMER], 0)} %)."
    )


def _notes(results: Results) -> list[str]:
    notes = [
        "## Notes",
        "",
        "- The MongoDB server is FerretDB 1.x on its SQLite backend (the test harness's), "
        "which is much slower at inserts than a real MongoDB; its ceiling is expected to be "
        "the smallest, so the shares above are relative to FerretDB, not MongoDB.",
        "- All servers, the consumer and the benchmark share the machine's CPUs; the consumer "
        "competes with Kafka, PostgreSQL and FerretDB for them.",
        "- Throughput window: from the first batch's `ingested_at` to the moment the last "
        "offsets were seen committed (50 ms polling). Start-up (interpreter, imports, group "
        "join) is the column beside it.",
    ]
    for size in results.sizes:
        name, smallest = size.smallest_ceiling()
        naive = median(n.throughput for n in size.naive)
        notes.append(
            f"- {size.size:,} records: the serial bound is "
            f"{_num(100 * _ratio(size.serial_bound(), smallest))} % of the smallest ceiling "
            f"({CEILING_NAMES.get(name, name)}), and the smallest ceiling is "
            f"{_num(_ratio(smallest, naive), 1)}x the naive consumer. The serial bound is what a "
            "consumer that reads a batch and then writes it could reach; this consumer overlaps "
            "the two, so the serial bound does not limit it (see *What bounds each result*)."
        )
    for size in results.sizes:
        notes.append(
            f"- {size.size:,} records published at {_num(size.publish.rate)} records/s "
            "(kafka-python producer, before the runs)."
        )
    return notes


# --- Chart ------------------------------------------------------------------------------------


def chart(results: Results, path: Path) -> None:
    """Throughput beside its references, latency percentiles per sink, and the targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(
        1, 3, figsize=(21, 6.5), gridspec_kw={"width_ratios": [1.4, 1.1, 1.0]}
    )
    _throughput_chart(left, results)
    _latency_chart(middle, results)
    _targets_chart(right, results)
    fig.suptitle(
        f"quotes consumer, {results.environment.get('CPUs', '?')} CPUs, "
        f"{results.environment.get('MongoDB server', '')}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _throughput_chart(axes: Any, results: Results) -> None:
    modes = [
        m for m in ("both", "postgres", "mongo") if any(m in s.consumer for s in results.sizes)
    ]
    series: list[tuple[str, Any, str | None]] = [
        (f"consumer, {mode}", lambda s, m=mode: s.median_throughput(m), None) for mode in modes
    ]
    series += [
        ("Quix Streams, postgres", lambda s: median(q.throughput for q in s.quix), ".."),
        ("naive consumer", lambda s: median(n.throughput for n in s.naive), None),
        ("raw: both at once", lambda s: s.median_ceiling("concurrent"), "//"),
        ("raw: PostgreSQL alone", lambda s: s.median_ceiling("postgres"), "//"),
        ("raw: MongoDB alone", lambda s: s.median_ceiling("mongo"), "//"),
    ]
    width = 0.85 / len(series)
    for index, (name, value_of, hatch) in enumerate(series):
        heights = [value_of(size) for size in results.sizes]
        xs = [i + (index - (len(series) - 1) / 2) * width for i in range(len(results.sizes))]
        bars = axes.bar(xs, heights, width, label=name, hatch=hatch)
        labels = [_num(h) if not math.isnan(h) else "n/m" for h in heights]
        axes.bar_label(bars, labels=labels, fontsize=7, rotation=90, padding=2)
    axes.set_xticks(range(len(results.sizes)), [f"{s.size:,} records" for s in results.sizes])
    axes.set_yscale("log")
    low, high = axes.get_ylim()
    axes.set_ylim(low, high * 6)  # room for the value labels and the legend above the bars
    axes.set_ylabel("records/s (median, log scale)")
    axes.set_title("Full-speed throughput: the consumer and its references")
    axes.legend(fontsize=7, ncol=3, loc="upper center")


def _latency_chart(axes: Any, results: Results) -> None:
    groups: list[tuple[str, Percentiles]] = []
    for runs in results.latency.values():
        for sink in SINKS_OF[runs[0].mode] if runs else ():
            name = f"{runs[0].mode}\n{runs[0].batch_timeout_ms} ms\n{sink}"
            groups.append((name, median_percentiles([r.kafka_to_write[sink] for r in runs])))
    for p_index, attribute in enumerate(("p50", "p95", "p99")):
        xs = [i + (p_index - 1) * 0.27 for i in range(len(groups))]
        heights = [getattr(p, attribute) for _, p in groups]
        bars = axes.bar(xs, heights, 0.27, label=attribute)
        axes.bar_label(bars, labels=[_num(h) for h in heights], fontsize=7, padding=2)
    axes.axhline(TARGET_P99_MS, color="red", linestyle="--", linewidth=1, label="p99 target")
    axes.axhline(TARGET_P50_MS, color="purple", linestyle=":", linewidth=1, label="p50 target")
    axes.set_xticks(range(len(groups)), [g for g, _ in groups], fontsize=7)
    axes.set_ylabel("ms, Kafka timestamp to database write")
    axes.set_xlabel("mode / CONSUMER_BATCH_TIMEOUT_MS / sink", fontsize=8)
    axes.set_title(f"Latency at {results.rate:,.0f} records/s (median of runs)")
    axes.legend(fontsize=8)


def _targets_chart(axes: Any, results: Results) -> None:
    """Each target as measured/threshold, oriented so that 1 or more is met."""
    found = list(reversed(targets(results)))
    shown = [min(t.score, 3.0) if not math.isnan(t.score) else 0.0 for t in found]
    colors = [
        "lightgrey" if t.met is None else ("tab:green" if t.met else "tab:red") for t in found
    ]
    bars = axes.barh(range(len(found)), shown, color=colors)
    labels = [
        NOT_MEASURED if math.isnan(t.score) else f"{t.measured.split(' (')[0]} ({t.threshold})"
        for t in found
    ]
    axes.bar_label(bars, labels=labels, fontsize=7, padding=3)
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_yticks(range(len(found)), [t.short.replace("\n", " ") for t in found], fontsize=7)
    axes.set_xlim(0, 4.2)
    axes.set_xlabel("measured / threshold (1 or more: met; capped at 3)", fontsize=8)
    axes.set_title("Targets (green met, red missed, grey not measured)")
