"""``python -m bench``: measure the consumer against the real servers and write the report.

The plan (which runs, in which order: ``bench/README.md``, *What is measured*) and its options.
Each measurement is repeated ``--repeats`` times with the modes interleaved, so slow drift of the
machine spreads over all of them. ``--render latest.json`` rewrites the report and chart from
saved measurements, so a change to the report does not cost another hour of measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import ceilings, connect_reference, environment, report
from bench.infra import RESULTS_DIR, BenchError, Context, Scratch, load_endpoints
from bench.results import SINKS_OF, Results, Run, SizeResult, from_json, to_json
from bench.runs import consumer_run, naive_run, quix_run
from bench.workload import (
    BIG_RECORD_BYTES,
    CONSUMER_DEFAULTS,
    Published,
    Source,
    big_values,
    check_classification,
    publish,
    values,
)

PROFILE_MAX_SIZE = 100_000
# The options whose default depends on --quick: (full run, --quick, help); each default is set
# here only, and --help shows it.
SCALED: dict[str, tuple[Any, Any, str]] = {
    "sizes": ([10_000, 100_000], [3_000], "records per topic"),
    "repeats": (3, 1, "runs per measurement"),
    "rate_seconds": (20.0, 3.0, "latency phase length"),
    "latency_timeouts": (
        [100, 20],
        [],
        "also measure latency (both sinks) with these CONSUMER_BATCH_TIMEOUT_MS values; the "
        "--batch-timeout-ms value is measured anyway",
    ),
    "naive_limit": (3_000, 200, "records the naive consumer handles"),
    "quix_mongo_records": (2_000, 100, "records for the Quix Streams MongoDBSink run, 0 skips it"),
    "big_records": (3_000, 100, "records of about 60 KB for the peak-memory run, 0 skips it"),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=(__doc__ or "").splitlines()[0]
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke run, under a minute")
    for name, (full, quick, text) in SCALED.items():
        many = isinstance(full, list)
        shown = [" ".join(map(str, v)) or "none" if many else v for v in (full, quick)]
        text += f" (default {shown[0]}; --quick: {shown[1]})"
        kind = type(full[0] if many else full)
        add("--" + name.replace("_", "-"), type=kind, nargs="*" if many else None, help=text)
    add("--modes", nargs="+", choices=list(SINKS_OF), help="default: all three")
    add("--rate", type=float, default=1000.0, help="records/s, latency phase")
    for setting, also in (
        ("BATCH_SIZE", ", also the ceilings' batch size"),
        ("BATCH_TIMEOUT_MS", ""),
    ):
        default = int(CONSUMER_DEFAULTS[f"CONSUMER_{setting}"])
        text = f"CONSUMER_{setting}{also} (default: the consumer's)"
        add("--" + setting.lower().replace("_", "-"), type=int, default=default, help=text)
    add("--no-profile", action="store_true", help="skip the pyinstrument run")
    add("--no-connect", action="store_true", help="skip Kafka Connect (a JVM, ~10 s a run)")
    add("--out", type=Path, default=RESULTS_DIR, help="report directory")
    add("--no-progress", action="store_true", help="no progress bars")
    add(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the report and chart again from a saved latest.json",
    )
    args = parser.parse_args(argv)
    for name, (full, quick, _) in SCALED.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.modes = args.modes or list(SINKS_OF)
    if not args.sizes or min(args.sizes) < 100 or args.rate <= 0 or args.rate_seconds <= 0:
        parser.error("sizes must be >= 100, rate and rate seconds > 0")
    if min(args.repeats, args.naive_limit, args.batch_size) < 1:
        parser.error("repeats, naive limit and batch size must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        if args.render:
            results = from_json(args.render.read_text())
        else:
            results = run(args, shlex.join(["python", "-m", "bench", *argv]))
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    text = report.markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    latest = args.out / "latest.md"
    latest.write_text(text)
    shutil.copyfile(latest, args.out / f"{results.started:%Y-%m-%dT%H%M%S}.md")
    (args.out / "latest.json").write_text(to_json(results))
    report.chart(results, args.out / "latest.png")
    print(text)
    print(f"written: {latest}, {args.out / 'latest.png'}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace, command: str) -> Results:
    endpoints = load_endpoints()
    check_classification()
    started = datetime.now(UTC)
    logs = Path("/tmp") / f"streamlab-bench-{started:%Y%m%dT%H%M%S}"
    results = Results(
        command=command,
        started=started,
        repeats=args.repeats,
        batch_size=args.batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        partitions=3,
        rate=args.rate,
        environment=environment.describe(endpoints),
    )
    results.environment["load average at start"] = _load_average()
    fitting = [s for s in args.sizes if s <= PROFILE_MAX_SIZE]
    profile_size = None if args.no_profile else max(fitting) if fitting else min(args.sizes)
    _say(f"logs of every child process: {logs}")
    with Scratch(endpoints) as scratch:
        ctx = Context(endpoints, scratch, logs, args.batch_size, args.batch_timeout_ms)
        ctx.progress = not args.no_progress
        for size in args.sizes:
            results.sizes.append(_measure_size(ctx, args, size, size == profile_size, results))
            scratch.release_kafka()  # a 1M topic is ~300 MB; do not keep it for the next size
        _measure_latency(ctx, args, results)
        _measure_once(ctx, args, results)
    results.finished = datetime.now(UTC)
    results.environment["load average at end"] = _load_average()
    return results


def _load_average() -> str:
    """Other work on the machine skews every figure; the report says how busy it was."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def _say(message: str, run: Run | None = None) -> None:
    """One progress line; for a run, what it achieved and cost, and its problems if any."""
    if run is not None:
        message += f": {run.throughput:,.0f} records/s, CPU {run.cpu_s:.1f} s, peak RSS "
        message += f"{run.peak_rss_mb:.0f} MB"
        message += f"; PROBLEMS: {run.problems}" if run.problems else ""
    tqdm.write(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr)


def _measure_size(
    ctx: Context, args: argparse.Namespace, size: int, profile: bool, results: Results
) -> SizeResult:
    topic, published = _loaded_topic(ctx, f"bench-{size}-", size)
    if ctx.scratch.end_offsets(topic, ctx.partitions) != size:
        raise BenchError(f"topic {topic} does not hold the {size} records just published")
    _say(f"{size:,} records published at {published.rate:,.0f}/s to {topic}")
    result = SizeResult(size, published, min(size, args.naive_limit))
    for repeat in range(1, args.repeats + 1):
        found, usage = ceilings.measure(ctx, topic, size)
        for name, value in found.items():
            result.ceilings.setdefault(name, []).append(value)
        result.concurrent_cpu.append(usage)
        rates = ", ".join(f"{ceilings.LABELS[name]} {value:,.0f}" for name, value in found.items())
        _say(f"{size:,} ceilings {repeat}/{args.repeats}, records/s: {rates}")
    for repeat in range(1, args.repeats + 1):
        for mode in args.modes:
            run = consumer_run(ctx, topic, size, mode)
            result.consumer.setdefault(mode, []).append(run)
            _say(f"{size:,} {mode} {repeat}/{args.repeats}", run)
        result.quix.append(quix_run(ctx, topic, size, "postgres"))
        _say(f"{size:,} Quix Streams PostgreSQLSink {repeat}/{args.repeats}", result.quix[-1])
    if not args.no_connect:
        envelopes, result.connect_bytes = connect_reference.envelope_topic(ctx, topic, size)
        for repeat in range(1, args.repeats + 1):
            result.connect.append(connect_reference.connect_run(ctx, envelopes, size))
            _say(f"{size:,} Kafka Connect {repeat}/{args.repeats}", result.connect[-1])
    for repeat in range(1, args.repeats + 1):
        result.naive.append(naive_run(ctx, topic, result.naive_limit))
        _say(f"{size:,} naive {repeat}/{args.repeats}", result.naive[-1])
    if profile:
        prefix = args.out / "profile"
        args.out.mkdir(parents=True, exist_ok=True)
        results.profile_run = consumer_run(ctx, topic, size, "both", profile_prefix=prefix)
        results.profile = json.loads(prefix.with_suffix(".json").read_text())
        _say(f"profiled run, call tree in {prefix}.txt", results.profile_run)
    return result


def _measure_latency(ctx: Context, args: argparse.Namespace, results: Results) -> None:
    """Fixed-rate runs on fresh topics: the default settings per mode, then other timeouts."""
    total = int(args.rate * args.rate_seconds)
    variants = [(mode, args.batch_timeout_ms) for mode in (["both"] if args.quick else args.modes)]
    variants += [
        ("both", timeout)
        for timeout in args.latency_timeouts
        if timeout > 0 and timeout != args.batch_timeout_ms  # measured above already
    ]
    for repeat in range(1, args.repeats + 1):
        for mode, timeout_ms in variants:
            topic = ctx.scratch.topic("bench-rate-", ctx.partitions)
            run = consumer_run(ctx, topic, total, mode, rate=args.rate, batch_timeout_ms=timeout_ms)
            label = f"{mode}, timeout {timeout_ms} ms"
            results.latency.setdefault(label, []).append(run)
            worst = max(p.p99 for p in run.kafka_to_write.values())
            _say(f"{args.rate:,.0f}/s {label} {repeat}/{args.repeats}, p99 {worst:,.0f} ms", run)


def _measure_once(ctx: Context, args: argparse.Namespace, results: Results) -> None:
    """Quix Streams' MongoDBSink (bounded in time) and the memory run, each once on a topic of
    its own; why: ``bench/README.md``, *What is measured*."""
    if (total := args.quix_mongo_records) > 0:
        topic, _ = _loaded_topic(ctx, "bench-quix-mongo-", total)
        results.quix_mongo = quix_run(ctx, topic, total, "mongo", timeout_s=60 + total / 10)
        _say(f"Quix Streams MongoDBSink, {total:,} records", results.quix_mongo)
    if (total := args.big_records) > 0:
        topic, _ = _loaded_topic(ctx, "bench-big-", total, big_values)
        results.big_records = consumer_run(ctx, topic, total, "both", phase="big")
        results.big_record_bytes = BIG_RECORD_BYTES
        _say(
            f"{total:,} records of ~{BIG_RECORD_BYTES // 1000} KB, both sinks", results.big_records
        )


def _loaded_topic(
    ctx: Context, prefix: str, total: int, source: Source = values
) -> tuple[str, Published]:
    """A fresh topic, pre-loaded with ``total`` records."""
    topic = ctx.scratch.topic(prefix, ctx.partitions)
    with ctx.bar(total, f"publish {total:,} ({prefix.strip('-')})") as bar:
        published = publish(
            ctx.endpoints.kafka, topic, total, ctx.partitions, progress=bar, source=source
        )
    return topic, published
