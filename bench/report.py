"""The bench's one renderer: the Markdown report and the PNG chart, from :mod:`bench.results`.

Why medians with ranges: a median alone hides how far single runs scattered; the min-max range
beside it says how far to trust it. Every figure is derived from :mod:`bench.results`'s
medians, and the chart shows the same targets the report's table lists.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ceilings import LABELS
from bench.cpu import CONSUMER, GROUPS, CpuUsage
from bench.results import SINKS_OF, Results, Run, median
from bench.stored import Percentiles
from bench.workload import INVALID_EVERY

QUIX_COMMIT_INTERVAL_S = 5.0  # Quix Streams 3.28's Application default, which the bench keeps

NOT_MEASURED = "not measured"


# --- Numbers and tables -----------------------------------------------------------------------


def _num(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference and not math.isnan(reference) else math.nan


def _of(runs: Iterable[Any], attribute: str) -> float:
    """The median of one attribute over runs."""
    return median(getattr(run, attribute) for run in runs)


def _with_range(values: Sequence[float]) -> str:
    """The median, and the min-max range of the runs when there are several."""
    found = [v for v in values if not math.isnan(v)]
    scatter = f" ({_num(min(found))}-{_num(max(found))})" if len(found) >= 2 else ""
    return _num(median(values)) + scatter


def _percentiles(values: Sequence[Percentiles]) -> Percentiles:
    return Percentiles(_of(values, "p50"), _of(values, "p95"), _of(values, "p99"))


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table; a column whose name ends in ``:`` is right-aligned, as ``---:`` is."""
    names = [c.removesuffix(":") for c in columns]
    rule = "|" + "".join("---:|" if c.endswith(":") else "---|" for c in columns)
    return [_row(names), rule, *map(_row, rows)]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _section(title: str, *blocks: str | list[str]) -> list[str]:
    """A ``##`` section: the title, then each block (a paragraph or a table's lines), each
    followed by a blank line."""
    lines = [f"## {title}", ""]
    for block in blocks:
        lines += [block, ""] if isinstance(block, str) else [*block, ""]
    return lines


def _percent(value: float, reference: float, digits: int = 0) -> str:
    return _num(100 * _ratio(value, reference), digits)


# --- Markdown ---------------------------------------------------------------------------------


def markdown(results: Results) -> str:
    lines = [
        f"# Consumer benchmark, {results.started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{results.command}`",
        "",
        "| | |",
        "|---|---|",
        *(_row([name, value]) for name, value in results.environment.items()),
        "",
        f"Consumer settings: `CONSUMER_BATCH_SIZE={results.batch_size}`, "
        f"`CONSUMER_BATCH_TIMEOUT_MS={results.batch_timeout_ms}` (the `.env.example` values "
        f"unless overridden), {results.partitions} partitions, "
        f"{100 / INVALID_EVERY:.0f} % invalid records. Each figure is the **median of "
        f"{results.repeats} run(s)**, min-max in brackets. How each run is made and what each "
        "figure means: `bench/README.md`, *What is measured* and *Reading the report*.",
        "",
    ]
    for section in (
        _throughput_section,
        _cpu_section,
        _reference_section,
        _connect_section,
        _latency_section,
        _targets_section,
        _profile_section,
        _bounds_section,
    ):
        lines += section(results)
    if results.finished is not None:
        minutes = (results.finished - results.started).total_seconds() / 60
        lines.append(f"Benchmark wall time: {minutes:.1f} min.")
    return "\n".join(lines).rstrip("\n") + "\n"


def _throughput_section(results: Results) -> list[str]:
    rows = []
    for size in results.sizes:
        for mode, runs in size.consumer.items():
            rate, cpu = _of(runs, "throughput"), _of(runs, "cpu_s")
            rows.append(
                [
                    f"{size.size:,}",
                    mode,
                    _with_range([r.throughput for r in runs]),
                    _num(_of(runs, "seconds"), 2),
                    _num(_of(runs, "startup_s"), 2),
                    _num(cpu, 2),
                    _num(cpu / size.size * 1e6, 0),
                    _num(_of(runs, "peak_rss_mb"), 1),
                    _num(_ratio(rate, size.naive_rate), 1),
                    f"{_percent(rate, size.smallest_ceiling(mode)[1])} %",
                    f"{_percent(rate, size.serial_bound(mode))} %",
                ]
            )
    labelled = [
        (f"{s.size:,} {mode}", runs) for s in results.sizes for mode, runs in s.consumer.items()
    ]
    labelled += [(f"{s.size:,} Quix Streams", s.quix) for s in results.sizes]
    labelled += [(f"{s.size:,} Kafka Connect", s.connect) for s in results.sizes]
    labelled += [("~60 KB records", [results.big_records])] if results.big_records else []
    problems = [f"{label}: {p}" for label, runs in labelled for run in runs for p in run.problems]
    complete = (
        "every run stored every valid record in each active database and dead-lettered every "
        "invalid one (Quix Streams, which has no dead-letter topic: stored every valid record)."
    )
    columns = ["records:", "mode", "records/s:", "run s:", "start-up s:", "CPU s:"]
    columns += ["CPU ms per 1k rec:", "peak RSS MB:", "x naive:", "share of smallest ceiling:"]
    return _section(
        "Throughput at full speed (pre-loaded topic, until every offset is committed)",
        _table([*columns, "share of serial bound:"], rows),
        "Completeness check: " + ("; ".join(problems) if problems else complete),
        "Published before the runs (kafka-python producer): "
        + "; ".join(f"{s.size:,} at {_num(s.publish.rate)} records/s" for s in results.sizes)
        + ".",
    )


def cpu_medians(usages: Sequence[CpuUsage]) -> dict[str, float]:
    """Median cores used, per process group and for the whole machine."""
    found = {"machine": median(u.machine_cores for u in usages)}
    for group in (CONSUMER, *GROUPS):
        found[group] = median(u.cores[group] for u in usages if group in u.cores)
    return found


def timed_cpu(runs: Sequence[Run]) -> tuple[float, dict[str, float], int] | None:
    """The median rate and cores (``cpu_medians``) of the runs that have a CPU figure, and the
    machine's CPU count; runs shorter than the CPU window have none (bench/cpu.py)."""
    timed = [r for r in runs if r.cpu is not None and r.cpu.cores]
    if not timed:
        return None
    usages = [r.cpu for r in timed if r.cpu is not None]
    return _of(timed, "throughput"), cpu_medians(usages), usages[0].cpus


def _cpu_section(results: Results) -> list[str]:
    rows: list[list[str]] = []

    def row(records: int, run: str, rate: float, used: dict[str, float], cpus: int) -> None:
        rows.append(
            [f"{records:,}", run, _num(rate), f"{_num(used['machine'], 2)} of {cpus}"]
            + [
                f"{_num(100 * used[name], 0)} % ({_num(used[name] / rate * 1e6, 0)} µs)"
                for name in (CONSUMER, *GROUPS)
            ]
        )

    for size in results.sizes:
        for mode, runs in size.consumer.items():
            if cpu := timed_cpu(runs):
                rate, used, cpus = cpu
                row(size.size, f"consumer, {mode}", rate, used, cpus)
        usages = [u for u in size.concurrent_cpu if u.cores]
        if size.ceilings.get("concurrent") and usages:
            rate = size.median_ceiling("concurrent")
            row(size.size, "raw, both databases at once", rate, cpu_medians(usages), usages[0].cpus)
    if not rows:
        return []
    columns = ["records:", "run", "records/s:", "CPUs busy:", "consumer (or raw clients):"]
    return _section(
        "Where the CPUs went (the same full-speed runs, and the concurrent ceiling)",
        _table(columns + [f"{group}:" for group in GROUPS], rows),
    )


def _reference_section(results: Results) -> list[str]:
    rows = []
    for size in results.sizes:
        name, smallest = size.smallest_ceiling()
        quix = [q.throughput for q in size.quix]
        naive = [n.throughput for n in size.naive]
        rows.append(
            [f"{size.size:,}"]
            + [
                _with_range(size.ceilings[ceiling]) if size.ceilings.get(ceiling) else NOT_MEASURED
                for ceiling in LABELS
            ]
            + [
                f"{_num(smallest)} ({LABELS.get(name, name)})",
                _num(size.serial_bound()),
                _with_range(quix) if quix else NOT_MEASURED,
                f"{_with_range(naive)} over {size.naive_limit:,} records",
            ]
        )
    columns = ["records", "Kafka read", "PostgreSQL, the consumer's INSERT"]
    columns += ["PostgreSQL execute_values", "MongoDB insert_many", "both databases at once"]
    columns += ["smallest isolated", "serial bound", "Quix Streams PostgreSQLSink"]
    columns += ["naive consumer"]
    section = _section(
        "References: raw ceilings, a peer and the naive consumer (records/s)",
        _table([f"{name}:" for name in columns], rows),
        _quix_mongo(results),
    )
    if results.big_records is None:
        return [*section, f"Memory with ~60 KB records: {NOT_MEASURED}.", ""]
    return section + _big_records_section(results, results.big_records)


def _connect_section(results: Results) -> list[str]:
    """Kafka Connect beside the consumer, both sinks; nothing when it was not measured."""
    rows = []
    for size in (s for s in results.sizes if s.connect):
        ours = size.consumer.get("both", [])
        for name, runs, at in (("consumer", ours, 0), ("Kafka Connect", size.connect, 1)):
            cpu = _of(runs, "cpu_s")
            rows.append(
                [f"{size.size:,}", name]
                + [_with_range([getattr(r, a) for r in runs]) for a in ("throughput", "from_start")]
                + [_num(_of(runs, a), 2) for a in ("startup_s", "seconds")]
                + [_num(cpu, 2), _num(cpu / size.size * 1e6), _num(_of(runs, "peak_rss_mb"), 1)]
                + [_num(size.connect_bytes[at]) if size.connect_bytes else "n/a"]
            )
    if not rows:
        return []
    columns = ["records:", "program", "records/s after first record:", "records/s from start:"]
    columns += ["start-up s:", "run s:", "CPU s:", "CPU ms per 1k rec:", "peak RSS MB:"]
    return _section(
        "Beside Kafka Connect (both databases)",
        _table([*columns, "bytes per record:"], rows),
        "Kafka Connect 3.9.1 (Debezium JDBC sink, MongoDB sink with `InsertOneDefaultStrategy`; "
        "how: `bench/README.md`) reads the rows in an envelope: **its records are larger**.",
    )


def _quix_mongo(results: Results) -> str:
    run = results.quix_mongo
    if run is None:
        return "Quix Streams MongoDBSink: not measured."
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
    return (
        "Quix Streams MongoDBSink, measured once on a topic of its own: "
        f"**{_num(run.throughput, 1)} records/s** ({outcome}).{problems}"
    )


def _big_records_section(results: Results, run: Run) -> list[str]:
    return _section(
        "Memory with large records",
        f"{run.records:,} records of about {results.big_record_bytes / 1000:.0f} KB, both "
        f"sinks, every setting at its default: **peak RSS {_num(run.peak_rss_mb, 1)} MB**, "
        f"{_num(run.throughput)} records/s, CPU {_num(run.cpu_s, 1)} s"
        + (f"; problems: {'; '.join(run.problems)}" if run.problems else "; every record stored")
        + ".",
    )


def _latency_section(results: Results) -> list[str]:
    phases: list[tuple[str, list[Run]]] = [
        (f"{results.rate:,.0f} rec/s", runs) for runs in results.latency.values()
    ]
    phases += [
        (f"full speed, {size.size:,} pre-loaded", runs)
        for size in results.sizes
        for runs in size.consumer.values()
    ]
    rows = []
    for phase, runs in phases:
        for sink in SINKS_OF[runs[0].mode] if runs else ():
            kafka = _percentiles([r.kafka_to_write[sink] for r in runs])
            poll = _percentiles([r.poll_to_write[sink] for r in runs])
            rows.append(
                [phase, runs[0].mode, str(runs[0].batch_timeout_ms), sink]
                + [_num(value) for value in (kafka.p50, kafka.p95, kafka.p99, poll.p50, poll.p99)]
                + [_num(_of(runs, "cpu_s"), 2), _num(_of(runs, "peak_rss_mb"), 1)]
            )
    columns = ["phase", "mode", "batch timeout ms:", "sink", "p50:", "p95:", "p99:"]
    columns += ["poll-to-write p50:", "poll-to-write p99:", "consumer CPU s:", "peak RSS MB:"]
    return _section(
        "Latency, Kafka record timestamp to database write (ms)",
        _table(columns, rows),
    )


# --- Targets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """A target's threshold: at least (or at most) ``limit``, shown as ``text`` with the limit
    in its ``{}``."""

    limit: float
    at_least: bool
    text: str

    def __str__(self) -> str:
        return self.text.format(self.limit)

    def score(self, value: float) -> float:
        """measured/threshold, oriented so that 1 or more is met; nan when not measured."""
        if self.at_least:
            return value / self.limit
        return self.limit / value if value > 0 else math.inf if value == 0 else math.nan


# The targets, the one place they are set: issue 11's as issue 22 raised them (Quix 3x, Kafka
# Connect, CPU per record, p99, RSS), then the ones kept from earlier issues.
CONCURRENT_SHARE = Bound(0.85, True, ">= {:.0%}")  # both sinks / concurrent raw-write ceiling
X_QUIX = Bound(3.0, True, ">= {:.0f}x")  # PostgreSQL only / Quix Streams PostgreSQLSink
# On a long run Quix's 5 s checkpoint wait weighs little: there the target is to stay ahead.
X_QUIX_LONG = Bound(1.0, True, ">= {:.0f}x")
LONG_RUN = 1_000_000  # records
X_CONNECT = Bound(1.3, True, ">= {:.1f}x")  # both / Kafka Connect, after first records
CPU_US = Bound(25.0, False, "<= {:.0f} µs")  # the consumer's CPU per record, both databases
P50_MS = Bound(15.0, False, "<= {:.0f} ms")
P99_MS = Bound(50.0, False, "<= {:.0f} ms")
RSS_MB = Bound(100.0, False, "<= {:.0f} MB")
RSS_BIG_MB = Bound(150.0, False, "<= {:.0f} MB")  # with ~60 KB records
DRIFT_1M = Bound(0.15, False, "within {:.0%}")  # 1M records vs 100k, both sinks
X_NAIVE = Bound(20.0, True, ">= {:.0f}x")
CEILING_SHARE = Bound(0.70, True, ">= {:.0%}")  # both sinks / smallest isolated ceiling


@dataclass(frozen=True)
class Target:
    """One row of the targets table, and one bar of the chart (labelled ``short``)."""

    name: str
    bound: Bound
    value: float  # nan: not measured
    measured: str
    reference: str
    short: str

    @property
    def score(self) -> float:
        return self.bound.score(self.value)

    @property
    def met(self) -> bool | None:
        return None if math.isnan(self.score) else self.score >= 1.0


def targets(results: Results) -> list[Target]:
    found = []
    for size in results.sizes:
        both, concurrent = size.median_throughput("both"), size.median_ceiling("concurrent")
        share = _ratio(both, concurrent)
        found.append(
            Target(
                f"{size.size:,}: both databases vs the concurrent raw ceiling",
                CONCURRENT_SHARE,
                share,
                f"{_num(100 * share)} % ({_num(both)} rec/s)",
                f"both databases at once, raw: {_rate(concurrent)}",
                f"{_short(size.size)} both /\nconcurrent ceiling",
            )
        )
    for size in results.sizes:
        postgres = size.median_throughput("postgres")
        x_quix = _ratio(postgres, size.quix_rate)
        found.append(
            Target(
                f"{size.size:,}: PostgreSQL only vs Quix Streams",
                X_QUIX_LONG if size.size >= LONG_RUN else X_QUIX,
                x_quix,
                f"{_num(x_quix, 2)}x ({_num(postgres)} rec/s)",
                f"Quix Streams 3.28.1 PostgreSQLSink: {_rate(size.quix_rate)}",
                f"{_short(size.size)} postgres /\nQuix",
            )
        )
    for size in (s for s in results.sizes if s.connect):
        both = size.median_throughput("both")
        connect = _of(size.connect, "throughput")
        x_connect = _ratio(both, connect)
        found.append(
            Target(
                f"{size.size:,}: both databases vs Kafka Connect, after first records",
                X_CONNECT,
                x_connect,
                f"{_num(x_connect, 2)}x ({_num(both)} rec/s)",
                f"Kafka Connect 3.9.1: {_rate(connect)}",
                f"{_short(size.size)} both /\nConnect",
            )
        )
    for size in results.sizes:
        cpu = timed_cpu(size.consumer.get("both", []))
        if cpu is None:
            continue
        rate, used, _ = cpu
        per_record = used[CONSUMER] / rate * 1e6  # the CPU table's figure
        found.append(
            Target(
                f"{size.size:,}: consumer CPU per record, both databases",
                CPU_US,
                per_record,
                f"{_num(per_record, 0)} µs",
                "the CPU table's consumer column",
                f"{_short(size.size)} both:\nCPU per record",
            )
        )
    default = results.default_latency()
    for name, bound in (("p50", P50_MS), ("p99", P99_MS)):
        value = math.nan
        label = "no fixed-rate run with both sinks at the default batch timeout"
        if default is not None:
            label, runs = default
            value = max(_of((r.kafka_to_write[s] for r in runs), name) for s in SINKS_OF["both"])
        found.append(
            Target(
                f"{name} latency at {results.rate:,.0f} rec/s, both sinks, default settings",
                bound,
                value,
                f"{_num(value, 1)} ms (worse sink)",
                f"run: {label}",
                f"{name} at\n{results.rate:,.0f}/s",
            )
        )
    every_run = [r for size in results.sizes for runs in size.consumer.values() for r in runs]
    every_run += [r for runs in results.latency.values() for r in runs]
    peak = max((r.peak_rss_mb for r in every_run), default=math.nan)
    big = results.big_records
    big_rss = big.peak_rss_mb if big is not None else math.nan
    by_size = {size.size: size.median_throughput("both") for size in results.sizes}
    drift = math.nan
    if 100_000 in by_size and 1_000_000 in by_size:
        drift = _ratio(by_size[1_000_000] - by_size[100_000], by_size[100_000])
    found += [
        Target(
            "consumer peak RSS, every run above",
            RSS_MB,
            peak,
            f"{_num(peak, 1)} MB",
            f"largest of {len(every_run)} runs",
            "peak RSS",
        ),
        Target(
            "consumer peak RSS, ~60 KB records, default batch settings",
            RSS_BIG_MB,
            big_rss,
            f"{_num(big_rss, 1)} MB",
            f"{big.records:,} records of ~{results.big_record_bytes / 1000:.0f} KB"
            if big is not None
            else "needs --big-records",
            "peak RSS,\n60 KB records",
        ),
        Target(
            "both databases: 1M records vs 100k",
            DRIFT_1M,
            abs(drift),
            f"{_num(100 * drift, 1)} %",
            "the 100k median" if not math.isnan(drift) else "needs --sizes 100000 1000000",
            "1M vs 100k",
        ),
    ]
    for size in results.sizes:
        both = size.median_throughput("both")
        x_naive = _ratio(both, size.naive_rate)
        name, smallest = size.smallest_ceiling()
        share = _ratio(both, smallest)
        found += [
            Target(
                f"{size.size:,}: both databases vs the naive consumer (earlier target)",
                X_NAIVE,
                x_naive,
                f"{_num(x_naive, 1)}x",
                f"naive consumer: {_rate(size.naive_rate)}",
                f"{_short(size.size)} both /\nnaive",
            ),
            Target(
                f"{size.size:,}: both databases vs the smallest isolated ceiling (earlier target)",
                CEILING_SHARE,
                share,
                f"{_num(100 * share)} %",
                f"{LABELS.get(name, name)} alone: {_num(smallest)} rec/s",
                f"{_short(size.size)} both /\nsmallest isolated",
            ),
        ]
    return found


def _rate(value: float) -> str:
    return NOT_MEASURED if math.isnan(value) else f"{_num(value)} rec/s"


def _short(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 else f"{size // 1000}k"


def _targets_section(results: Results) -> list[str]:
    rows = [
        [t.name, str(t.bound), t.measured, t.reference, "yes" if t.met else "**no**"]
        if t.met is not None
        else [t.name, str(t.bound), NOT_MEASURED, t.reference, NOT_MEASURED]
        for t in targets(results)
    ]
    return _section(
        "Targets",
        _table(["target", "threshold", "measured", "compared to", "met"], rows),
    )


# --- Profile and bounds -----------------------------------------------------------------------


def _profile_section(results: Results) -> list[str]:
    profile, run = results.profile, results.profile_run
    if profile is None or run is None:
        return []
    stages = [[s["stage"], f"{s['seconds']:.2f}", f"{s['share']:.1%}"] for s in profile["stages"]]
    top = [
        [f"`{e['function']}`", f"{e['seconds']:.2f}", f"{e['share']:.1%}"]
        for e in profile["top_self"][:12]
    ]
    same = [size for size in results.sizes if size.size == run.records]
    unprofiled = same[0].median_throughput("both") if same else math.nan
    return _section(
        "Profile of a full-speed run (pyinstrument, both sinks)",
        f"{run.records:,} records at {_num(run.throughput)} records/s under the profiler "
        f"(1 ms sampling of the consumer's main thread, {profile['profiled_seconds']:.1f} s "
        "from its first batch to shutdown). Where the wall time went, per stage (inclusive):",
        _table(["stage", "seconds:", "share:"], stages),
        "Top functions by self time:",
        _table(["function", "self s:", "share:"], top),
        f"Full call tree: `bench/results/profile.txt`. The unprofiled median at this size is "
        f"{_num(unprofiled)} records/s (what the profiler distorts: `bench/README.md`).",
    )


def _bounds_section(results: Results) -> list[str]:
    """What limits each measured figure, from the measurements; why: `bench/README.md`."""
    lines = []
    for size in results.sizes:
        concurrent = size.median_ceiling("concurrent")
        name, smallest = size.smallest_ceiling()
        postgres = size.median_ceiling("postgres")
        if math.isnan(concurrent):
            lines.append(f"- {size.size:,}: the concurrent ceiling was {NOT_MEASURED}.")
        else:
            lines.append(
                f"- {size.size:,}, both databases: the servers written at once take "
                f"{_num(concurrent)} rec/s, {_percent(concurrent, smallest)} % of the "
                f"slower one alone ({LABELS.get(name, name)}, {_num(smallest)}); Kafka "
                f"alone reads {_num(size.median_ceiling('kafka'))}. The consumer reaches "
                f"{_percent(size.median_throughput('both'), concurrent)} % of the "
                "concurrent ceiling; the rest is its own work on the same CPUs."
            )
        lines.append(
            f"- {size.size:,}, PostgreSQL only: the consumer reaches "
            f"{_percent(size.median_throughput('postgres'), postgres)} % of "
            f"PostgreSQL's raw rate ({_num(postgres)} rec/s)."
        )
        quix = [q for q in size.quix if q.finished]
        if quix:
            seconds = _of(quix, "seconds")
            lines.append(
                f"- {size.size:,}, Quix Streams PostgreSQLSink: up to "
                f"{_percent(QUIX_COMMIT_INTERVAL_S, seconds)} % of its median run "
                f"({_num(seconds, 1)} s) can be the wait for its last checkpoint "
                f"({QUIX_COMMIT_INTERVAL_S:.0f} s apart)."
            )
        if connect := [c for c in size.connect if c.finished]:
            lines.append(
                f"- {size.size:,}, Kafka Connect: up to {_percent(1, _of(connect, 'seconds'))} % "
                "of its median run can be the wait for its last offset commit (1 s apart)."
            )
    default = results.default_latency()
    if default is not None:
        label, runs = default
        poll = max(_of((r.poll_to_write[s] for r in runs), "p50") for s in SINKS_OF["both"])
        lines.append(
            f"- Latency at {results.rate:,.0f} rec/s ({label}): poll-to-write has a median of "
            f"{_num(poll, 1)} ms on the worse sink."
        )
    return _section("What bounds each result", lines)


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
    modes = [m for m in SINKS_OF if any(m in s.consumer for s in results.sizes)]
    series: list[tuple[str, Any, str | None]] = [
        (f"consumer, {mode}", lambda s, m=mode: s.median_throughput(m), None) for mode in modes
    ]
    series += [
        ("Quix Streams, postgres", lambda s: s.quix_rate, ".."),
        *[
            (f"Kafka Connect, both{how}", lambda s, a=a: _of(s.connect, a), "xx")
            for how, a in (("", "throughput"), (", from start", "from_start"))
            if any(s.connect for s in results.sizes)
        ],
        ("naive consumer", lambda s: s.naive_rate, None),
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
            groups.append((name, _percentiles([r.kafka_to_write[sink] for r in runs])))
    for p_index, attribute in enumerate(("p50", "p95", "p99")):
        xs = [i + (p_index - 1) * 0.27 for i in range(len(groups))]
        heights = [getattr(p, attribute) for _, p in groups]
        bars = axes.bar(xs, heights, 0.27, label=attribute)
        axes.bar_label(bars, labels=[_num(h) for h in heights], fontsize=7, padding=2)
    axes.axhline(P99_MS.limit, color="red", linestyle="--", linewidth=1, label="p99 target")
    axes.axhline(P50_MS.limit, color="purple", linestyle=":", linewidth=1, label="p50 target")
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
        NOT_MEASURED if math.isnan(t.score) else f"{t.measured.split(' (')[0]} ({t.bound})"
        for t in found
    ]
    axes.bar_label(bars, labels=labels, fontsize=7, padding=3)
    axes.axvline(1.0, color="black", linewidth=1)
    axes.set_yticks(range(len(found)), [t.short.replace("\n", " ") for t in found], fontsize=7)
    axes.set_xlim(0, 4.2)
    axes.set_xlabel("measured / threshold (1 or more: met; capped at 3)", fontsize=8)
    axes.set_title("Targets (green met, red missed, grey not measured)")
