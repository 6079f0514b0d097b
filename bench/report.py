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

from bench.runs import SINKS_OF, ConsumerResult, NaiveResult
from bench.stored import Percentiles
from bench.workload import INVALID_EVERY, Published

# The targets.
TARGET_X_NAIVE = 20.0
TARGET_CEILING_SHARE = 0.70
TARGET_P99_MS = 200.0
TARGET_RSS_MB = 150.0
TARGET_1M_DRIFT = 0.15
CEILING_NAMES = {"kafka": "Kafka read", "postgres": "PostgreSQL insert", "mongo": "MongoDB insert"}


@dataclass
class SizeResult:
    size: int
    publish: Published
    naive_limit: int
    consumer: dict[str, list[ConsumerResult]] = field(default_factory=dict)
    naive: list[NaiveResult] = field(default_factory=list)
    ceilings: dict[str, list[float]] = field(default_factory=dict)

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


def results_from_json(data: dict[str, Any]) -> Results:
    """Rebuild :class:`Results` from ``latest.json``, to render a report without measuring."""

    def consumer(item: dict[str, Any]) -> ConsumerResult:
        fields = {k: v for k, v in item.items() if k not in ("kafka_to_write", "poll_to_write")}
        return ConsumerResult(
            **fields,
            kafka_to_write={k: Percentiles(**v) for k, v in item["kafka_to_write"].items()},
            poll_to_write={k: Percentiles(**v) for k, v in item["poll_to_write"].items()},
        )

    sizes = [
        SizeResult(
            size=item["size"],
            publish=Published(**item["publish"]),
            naive_limit=item["naive_limit"],
            consumer={m: [consumer(r) for r in runs] for m, runs in item["consumer"].items()},
            naive=[NaiveResult(**n) for n in item["naive"]],
            ceilings=item["ceilings"],
        )
        for item in data["sizes"]
    ]
    finished = data.get("finished")
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
    lines += _reference_section(results)
    lines += _latency_section(results)
    lines += _targets_section(results)
    lines += _profile_section(results)
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
    complete = (
        "every run stored every valid record in each active database and dead-lettered every "
        "invalid one."
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


def _reference_section(results: Results) -> list[str]:
    lines = [
        "## References: raw ceilings and the naive consumer (records/s)",
        "",
        "| records | Kafka read | PostgreSQL execute_values | MongoDB insert_many "
        "| smallest | serial bound | naive consumer |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in results.sizes:
        cells = [
            f"{_num(size.median_ceiling(name))}{spread(size.ceilings.get(name, []))}"
            for name in CEILING_NAMES
        ]
        name, smallest = size.smallest_ceiling()
        naive = [n.throughput for n in size.naive]
        lines.append(
            f"| {size.size:,} | {' | '.join(cells)} "
            f"| {_num(smallest)} ({CEILING_NAMES.get(name, name)}) "
            f"| {_num(size.serial_bound())} "
            f"| {_num(median(naive), 0)}{spread(naive)} over {size.naive_limit:,} records |"
        )
    lines += [
        "",
        "Ceilings: one client, one server, the consumer's batch size and its exact rows and "
        "documents; only the server call is timed. *Serial bound* = 1 / (1/Kafka + "
        "1/min(PostgreSQL, MongoDB)): the best a consumer can do that reads a batch, then writes "
        "both databases at once, as this one does. The naive consumer (lab "
        "material style: auto-commit, per message one INSERT + commit and one insert_one) runs "
        "over the first records of the same topic; its rate does not depend on the topic size.",
        "",
    ]
    return lines


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


def _targets_section(results: Results) -> list[str]:
    lines = ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for size in results.sizes:
        both = size.median_throughput("both")
        naive = median(n.throughput for n in size.naive)
        name, smallest = size.smallest_ceiling()
        x_naive = _ratio(both, naive)
        share = _ratio(both, smallest)
        lines.append(
            f"| {size.size:,}: both sinks >= {TARGET_X_NAIVE:.0f}x naive "
            f"| {_num(x_naive, 1)}x ({_num(both)} vs {_num(naive)} rec/s) "
            f"| {_met(None if math.isnan(x_naive) else x_naive >= TARGET_X_NAIVE)} |"
        )
        lines.append(
            f"| {size.size:,}: both sinks >= {TARGET_CEILING_SHARE:.0%} of smallest ceiling "
            f"| {_num(100 * share)} % of {_num(smallest)} rec/s ({CEILING_NAMES.get(name, name)}) "
            f"| {_met(None if math.isnan(share) else share >= TARGET_CEILING_SHARE)} |"
        )
    for label, runs in results.latency.items():
        if not runs or runs[0].mode != "both":
            continue
        p99 = max(median(r.kafka_to_write[s].p99 for r in runs) for s in SINKS_OF["both"])
        met = None if math.isnan(p99) else p99 < TARGET_P99_MS
        lines.append(
            f"| p99 at {results.rate:,.0f} rec/s < {TARGET_P99_MS:.0f} ms ({label}) "
            f"| {_num(p99)} ms (worse sink) | {_met(met)} |"
        )
    every_run = [r for size in results.sizes for runs in size.consumer.values() for r in runs]
    every_run += [r for runs in results.latency.values() for r in runs]
    if every_run:
        peak = max(r.peak_rss_mb for r in every_run)
        lines.append(
            f"| consumer peak RSS < {TARGET_RSS_MB:.0f} MB | {_num(peak, 1)} MB (largest of "
            f"{len(every_run)} runs) | {_met(peak < TARGET_RSS_MB)} |"
        )
    by_size = {size.size: size.median_throughput("both") for size in results.sizes}
    if 100_000 in by_size and 1_000_000 in by_size:
        drift = _ratio(by_size[1_000_000] - by_size[100_000], by_size[100_000])
        lines.append(
            f"| throughput at 1M within {TARGET_1M_DRIFT:.0%} of 100k | {_num(100 * drift, 1)} % "
            f"| {_met(None if math.isnan(drift) else abs(drift) <= TARGET_1M_DRIFT)} |"
        )
    else:
        lines.append(
            f"| throughput at 1M within {TARGET_1M_DRIFT:.0%} of 100k | not measured "
            "(needs `--sizes 100000 1000000`) | n/a |"
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
            f"{_num(_ratio(smallest, naive), 1)}x the naive consumer. A consumer that reads a "
            "batch and then writes it cannot pass the serial bound, whatever its own overhead; "
            "beating it needs reading and writing to overlap too."
        )
    for size in results.sizes:
        notes.append(
            f"- {size.size:,} records published at {_num(size.publish.rate)} records/s "
            "(kafka-python producer, before the runs)."
        )
    return notes


# --- Chart ------------------------------------------------------------------------------------


def chart(results: Results, path: Path) -> None:
    """Throughput by mode and size next to its references; latency percentiles per sink."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    modes = [
        m for m in ("both", "postgres", "mongo") if any(m in s.consumer for s in results.sizes)
    ]
    series = [*modes, "naive", "smallest ceiling"]
    width = 0.8 / max(1, len(series))
    for index, name in enumerate(series):
        heights = []
        for size in results.sizes:
            if name == "naive":
                heights.append(median(n.throughput for n in size.naive))
            elif name == "smallest ceiling":
                heights.append(size.smallest_ceiling()[1])
            else:
                heights.append(size.median_throughput(name))
        xs = [i + (index - (len(series) - 1) / 2) * width for i in range(len(results.sizes))]
        hatch = "//" if name == "smallest ceiling" else None
        bars = left.bar(xs, heights, width, label=name, hatch=hatch)
        left.bar_label(bars, labels=[_num(h) for h in heights], fontsize=7, rotation=90, padding=2)
    left.set_xticks(range(len(results.sizes)), [f"{s.size:,} records" for s in results.sizes])
    left.set_yscale("log")
    low, high = left.get_ylim()
    left.set_ylim(low, high * 4)  # room for the value labels and the legend above the bars
    left.set_ylabel("records/s (median, log scale)")
    left.set_title("Full-speed throughput by mode and size")
    left.legend(fontsize=8, ncol=3, loc="upper center")

    groups: list[tuple[str, Percentiles]] = []
    for runs in results.latency.values():
        for sink in SINKS_OF[runs[0].mode] if runs else ():
            name = f"{runs[0].mode}\n{runs[0].batch_timeout_ms} ms\n{sink}"
            groups.append((name, median_percentiles([r.kafka_to_write[sink] for r in runs])))
    for p_index, (name, attribute) in enumerate((("p50", "p50"), ("p95", "p95"), ("p99", "p99"))):
        xs = [i + (p_index - 1) * 0.27 for i in range(len(groups))]
        heights = [getattr(p, attribute) for _, p in groups]
        bars = right.bar(xs, heights, 0.27, label=name)
        right.bar_label(bars, labels=[_num(h) for h in heights], fontsize=7, padding=2)
    right.axhline(TARGET_P99_MS, color="red", linestyle="--", linewidth=1, label="p99 target")
    right.set_xticks(range(len(groups)), [g for g, _ in groups], fontsize=7)
    right.set_ylabel("ms, Kafka timestamp to database write")
    right.set_xlabel("mode / CONSUMER_BATCH_TIMEOUT_MS / sink", fontsize=8)
    right.set_title(f"Latency at {results.rate:,.0f} records/s (median of runs)")
    right.legend(fontsize=8)
    fig.suptitle(
        f"quotes consumer, {results.environment.get('CPUs', '?')} CPUs, "
        f"{results.environment.get('MongoDB server', '')}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
