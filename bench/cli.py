"""``python -m bench``: measure the consumer against the real test servers and write the report.

Phases, per topic size: publish the records once (to a fresh 3-partition topic), measure the raw
ceilings on them (each database alone, and both at once), run the consumer in every mode and
Quix Streams (PostgreSQL sink) on them, run the naive reference on their first records; then,
on fresh topics, the consumer with records published at a fixed rate; then Quix Streams'
MongoDB sink once on a small topic, the consumer on records of about 60 KB for its peak
memory, and one profiled full-speed run. Each measurement is repeated ``--repeats`` times
(modes interleaved, so slow drift of the machine spreads over all of them) and reported as the
median.

``--quick`` is a smoke run under a minute: one small size, one repetition, short rate phase.
``--render latest.json`` rewrites the report and chart from saved measurements, so a change to
the report does not cost another hour of measuring.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import ceilings, environment, report
from bench.infra import RESULTS_DIR, BenchError, load_endpoints, scratch
from bench.report import Results, SizeResult
from bench.runs import MODES, Context, consumer_run, naive_run, quix_run
from bench.workload import (
    BIG_RECORD_BYTES,
    big_values,
    check_classification,
    publish_all,
)
from quotes_consumer.settings import SPEC

DEFAULTS = {setting.name: setting.default for setting in SPEC}
PROFILE_MAX_SIZE = 100_000


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="smoke run, under a minute")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="records per topic (default 10000 100000)"
    )
    parser.add_argument("--modes", nargs="+", choices=list(MODES), help="default: all three")
    parser.add_argument("--repeats", type=int, help="runs per measurement (default 3)")
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s, latency phase")
    parser.add_argument("--rate-seconds", type=float, help="latency phase length (default 20)")
    parser.add_argument(
        "--latency-timeouts",
        type=int,
        nargs="*",
        help="also measure latency (both sinks) with these CONSUMER_BATCH_TIMEOUT_MS values "
        "(default 100 20; none in --quick; the --batch-timeout-ms value is measured anyway)",
    )
    parser.add_argument(
        "--naive-limit", type=int, help="records the naive consumer handles (default 3000)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=int(DEFAULTS["CONSUMER_BATCH_SIZE"]),
        help="CONSUMER_BATCH_SIZE, also the ceilings' batch size (default: the consumer's)",
    )
    parser.add_argument(
        "--batch-timeout-ms",
        type=int,
        default=int(DEFAULTS["CONSUMER_BATCH_TIMEOUT_MS"]),
        help="CONSUMER_BATCH_TIMEOUT_MS (default: the consumer's)",
    )
    parser.add_argument(
        "--quix-mongo-records",
        type=int,
        help="records for the one Quix Streams MongoDBSink run (default 2000; 0 skips it)",
    )
    parser.add_argument(
        "--big-records",
        type=int,
        help="records of about 60 KB for the peak-memory run (default 3000; 0 skips it)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the pyinstrument run")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="report directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the report and chart again from a saved latest.json",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([3_000] if quick else [10_000, 100_000])
    args.modes = args.modes or list(MODES)
    args.repeats = args.repeats or (1 if quick else 3)
    args.rate_seconds = args.rate_seconds or (3.0 if quick else 20.0)
    if args.latency_timeouts is None:
        args.latency_timeouts = [] if quick else [100, 20]
    args.naive_limit = args.naive_limit or (200 if quick else 3_000)
    if args.quix_mongo_records is None:
        args.quix_mongo_records = 100 if quick else 2_000
    if args.big_records is None:
        args.big_records = 100 if quick else 3_000
    if min(args.sizes) < 100 or args.repeats < 1 or args.rate <= 0 or args.batch_size < 1:
        parser.error("sizes must be >= 100, repeats >= 1, rate > 0, batch size >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        if args.render:
            results = report.results_from_json(json.loads(args.render.read_text()))
        else:
            results = run(args, command)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    text = report.markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    latest = args.out / "latest.md"
    latest.write_text(text)
    shutil.copyfile(latest, args.out / f"{results.started:%Y-%m-%dT%H%M%S}.md")
    (args.out / "latest.json").write_text(json.dumps(_plain(results), indent=1, default=str))
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
    profile_size = _profile_size(args)
    say = _say(args)
    say(f"logs of every child process: {logs}")
    with scratch(endpoints) as space:
        ctx = Context(
            endpoints=endpoints,
            scratch=space,
            logs=logs,
            batch_size=args.batch_size,
            batch_timeout_ms=args.batch_timeout_ms,
            progress=not args.no_progress,
        )
        for size in args.sizes:
            results.sizes.append(_measure_size(ctx, args, size, size == profile_size, results))
            space.release_kafka()  # a 1M topic is ~300 MB; do not keep it for the next size
        _measure_latency(ctx, args, results)
        _measure_quix_mongo(ctx, args, results)
        _measure_big_records(ctx, args, results)
    results.finished = datetime.now(UTC)
    results.environment["load average at end"] = _load_average()
    return results


def _load_average() -> str:
    """Other work on the machine skews every figure; the report says how busy it was."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def _say(args: argparse.Namespace) -> Any:
    def say(message: str) -> None:
        tqdm.write(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr)

    return say


def _profile_size(args: argparse.Namespace) -> int | None:
    if args.no_profile:
        return None
    fitting = [s for s in args.sizes if s <= PROFILE_MAX_SIZE]
    return max(fitting) if fitting else min(args.sizes)


def _measure_size(
    ctx: Context, args: argparse.Namespace, size: int, profile: bool, results: Results
) -> SizeResult:
    say = _say(args)
    topic = ctx.scratch.topic(f"bench-{size}-", ctx.partitions)
    with ctx.bar(size, f"publish {size:,}") as bar:
        published = publish_all(ctx.endpoints.kafka, topic, size, ctx.partitions, progress=bar)
    if ctx.scratch.end_offsets(topic, ctx.partitions) != size:
        raise BenchError(f"topic {topic} does not hold the {size} records just published")
    say(f"{size:,} records published at {published.rate:,.0f}/s to {topic}")
    limit = min(size, args.naive_limit)
    result = SizeResult(size, published, limit)

    for name in report.CEILING_NAMES:
        result.ceilings[name] = []
    for repeat in range(args.repeats):
        kafka = ceilings.kafka_read(ctx.endpoints, topic, size, ctx.partitions, ctx.batch_size)
        result.ceilings["kafka"].append(kafka)
        pg = ceilings.postgres_insert(
            ctx.endpoints, ctx.scratch, topic, size, ctx.partitions, ctx.batch_size
        )
        result.ceilings["postgres"].append(pg)
        values = ceilings.postgres_values(
            ctx.endpoints, ctx.scratch, topic, size, ctx.partitions, ctx.batch_size
        )
        result.ceilings["postgres_values"].append(values)
        mongo = ceilings.mongo_insert(
            ctx.endpoints, ctx.scratch, topic, size, ctx.partitions, ctx.batch_size
        )
        result.ceilings["mongo"].append(mongo)
        ctx.scratch.release_databases()
        both, both_cpu = ceilings.concurrent_insert(
            ctx.endpoints, ctx.scratch, topic, size, ctx.partitions, ctx.batch_size
        )
        result.ceilings["concurrent"].append(both)
        result.concurrent_cpu.append(both_cpu)
        ctx.scratch.release_databases()
        say(
            f"{size:,} ceilings {repeat + 1}/{args.repeats}: Kafka {kafka:,.0f}, "
            f"PostgreSQL {pg:,.0f} (execute_values {values:,.0f}), MongoDB {mongo:,.0f}, "
            f"both at once {both:,.0f} records/s"
        )

    for repeat in range(args.repeats):
        for mode in args.modes:
            run = consumer_run(ctx, topic, size, mode)
            result.consumer.setdefault(mode, []).append(run)
            say(
                f"{size:,} {mode} {repeat + 1}/{args.repeats}: {run.throughput:,.0f} records/s, "
                f"CPU {run.cpu_s:.1f} s, peak RSS {run.peak_rss_mb:.0f} MB"
                + (f"; PROBLEMS: {run.problems}" if run.problems else "")
            )
        quix = quix_run(ctx, topic, size, "postgres")
        result.quix.append(quix)
        say(
            f"{size:,} Quix Streams PostgreSQLSink {repeat + 1}/{args.repeats}: "
            f"{quix.throughput:,.0f} records/s, peak RSS {quix.peak_rss_mb:.0f} MB"
            + (f"; PROBLEMS: {quix.problems}" if quix.problems else "")
        )

    for repeat in range(args.repeats):
        naive = naive_run(ctx, topic, limit)
        result.naive.append(naive)
        say(f"{size:,} naive {repeat + 1}/{args.repeats}: {naive.throughput:,.0f} records/s")

    if profile:
        prefix = args.out / "profile"
        args.out.mkdir(parents=True, exist_ok=True)
        run = consumer_run(ctx, topic, size, "both", profile_prefix=prefix)
        results.profile_run = run
        results.profile = json.loads(prefix.with_suffix(".json").read_text())
        say(f"profiled run: {run.throughput:,.0f} records/s; tree in {prefix}.txt")
    return result


def _measure_latency(ctx: Context, args: argparse.Namespace, results: Results) -> None:
    """Fixed-rate runs on fresh topics: the default settings per mode, then shorter timeouts.

    At a low rate a batch closes on its timeout, not on its size, so the timeout bounds how
    long a record waits before its write; the other timeouts show what the setting buys. The
    run at the default settings, both sinks, is the one the latency targets are judged on.
    """
    say = _say(args)
    total = int(args.rate * args.rate_seconds)
    variants = [(mode, args.batch_timeout_ms) for mode in (["both"] if args.quick else args.modes)]
    variants += [
        ("both", timeout)
        for timeout in args.latency_timeouts
        if timeout > 0 and timeout != args.batch_timeout_ms  # measured above already
    ]
    for repeat in range(args.repeats):
        for mode, timeout_ms in variants:
            topic = ctx.scratch.topic("bench-rate-", ctx.partitions)
            run = consumer_run(ctx, topic, total, mode, rate=args.rate, batch_timeout_ms=timeout_ms)
            label = f"{mode}, timeout {timeout_ms} ms"
            results.latency.setdefault(label, []).append(run)
            worst = max(p.p99 for p in run.kafka_to_write.values())
            say(
                f"{args.rate:,.0f}/s {label} {repeat + 1}/{args.repeats}: p99 {worst:,.0f} ms"
                + (f"; PROBLEMS: {run.problems}" if run.problems else "")
            )


def _measure_quix_mongo(ctx: Context, args: argparse.Namespace, results: Results) -> None:
    """Quix Streams' MongoDBSink once, on a small topic of its own, bounded in time.

    It upserts one document at a time (an UpdateOne per record), which FerretDB runs at tens
    of documents per second; measured once to report that rate, not repeated, not tuned.
    """
    total = args.quix_mongo_records
    if total <= 0:
        return
    topic = ctx.scratch.topic("bench-quix-mongo-", ctx.partitions)
    publish_all(ctx.endpoints.kafka, topic, total, ctx.partitions)
    run = quix_run(ctx, topic, total, "mongo", timeout_s=60 + total / 10)
    results.quix_mongo = run
    _say(args)(
        f"Quix Streams MongoDBSink, {total:,} records: {run.throughput:,.1f} records/s"
        + (f"; PROBLEMS: {run.problems}" if run.problems else "")
    )


def _measure_big_records(ctx: Context, args: argparse.Namespace, results: Results) -> None:
    """The consumer (both sinks, default batch settings) over records of about 60 KB.

    Issue 8's memory bound: a batch is capped at CONSUMER_BATCH_MAX_BYTES as well as at
    CONSUMER_BATCH_SIZE records, so 500 records of 60 KB (30 MB) never sit in one batch. The
    records stay under the default CONSUMER_MAX_RECORD_BYTES (65,536), so every setting is the
    default one.
    """
    total = args.big_records
    if total <= 0:
        return
    topic = ctx.scratch.topic("bench-big-", ctx.partitions)
    with ctx.bar(total, f"publish {total:,} records of ~60 KB") as bar:
        publish_all(
            ctx.endpoints.kafka, topic, total, ctx.partitions, progress=bar, source=big_values
        )
    run = consumer_run(ctx, topic, total, "both", phase="big")
    results.big_records = run
    results.big_record_bytes = BIG_RECORD_BYTES
    _say(args)(
        f"{total:,} records of ~{BIG_RECORD_BYTES // 1000} KB, both sinks: "
        f"{run.throughput:,.0f} records/s, peak RSS {run.peak_rss_mb:.0f} MB"
        + (f"; PROBLEMS: {run.problems}" if run.problems else "")
    )


def _plain(results: Results) -> dict[str, Any]:
    """Everything measured, for a later look or another chart."""
    return asdict(results)
