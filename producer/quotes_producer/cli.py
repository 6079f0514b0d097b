"""Command line: ``poll`` mirrors the NiFi flow, ``load`` generates benchmark traffic.

Examples::

    python -m quotes_producer poll --api-url http://127.0.0.1:8080/quotes?count=10 \\
        --bootstrap 127.0.0.1:19092 --topic quotes
    python -m quotes_producer load --count 10000 --rate 500 --invalid-rate 0.05
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import urllib.error

from kafka.errors import KafkaError
from tqdm import tqdm

from quotes_producer.core import (
    FetchError,
    fetch_quotes,
    make_producer,
    pacer,
    publish,
    split_records,
    synthetic_records,
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--topic",
        default=os.environ.get("KAFKA_TOPIC", "quotes"),
        help="target topic (env KAFKA_TOPIC)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m quotes_producer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    poll = sub.add_parser("poll", help="fetch the API, split the array, publish each quote")
    poll.add_argument(
        "--api-url",
        default=os.environ.get("QUOTES_API_URL", "http://127.0.0.1:8080/quotes?count=10"),
        help="GET endpoint returning a JSON array (env QUOTES_API_URL)",
    )
    poll.add_argument(
        "--iterations", type=int, default=1, help="number of polls (default 1; 0 = until stopped)"
    )
    poll.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    _common(poll)

    load = sub.add_parser("load", help="publish N synthetic quotes at a fixed rate")
    load.add_argument("--count", type=int, required=True, help="records to publish")
    load.add_argument("--rate", type=float, default=0.0, help="records per second (0 = max)")
    load.add_argument(
        "--invalid-rate", type=float, default=0.0, help="share of invalid records, 0..1"
    )
    load.add_argument("--seed", type=int, default=None, help="seed for a reproducible stream")
    load.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _common(load)
    return parser


def run_poll(args: argparse.Namespace) -> int:
    """Fetch/split/publish ``iterations`` times (0: until Ctrl-C), ``interval`` seconds apart.

    Ctrl-C (SIGINT, as ``make demo`` sends it) ends the loop; the producer
    is then closed, which waits for the records already sent to be acknowledged.
    """
    if args.iterations < 0:
        print("error: --iterations must be >= 0", file=sys.stderr)
        return 2
    producer = make_producer(args.bootstrap)
    total = 0
    polls = itertools.count() if args.iterations == 0 else range(args.iterations)
    try:
        for iteration in polls:
            if iteration:
                time.sleep(args.interval)
            items = fetch_quotes(args.api_url)
            result = publish(producer, args.topic, split_records(items))
            total += result.count
            print(f"poll {iteration + 1}: fetched {len(items)}, published {result.count}")
            sys.stdout.flush()  # one line per poll, visible at once in a log file
    except KeyboardInterrupt:
        print("interrupted, stopping", flush=True)
    finally:
        producer.close(timeout=10)
    print(f"published {total} records to {args.topic}")
    return 0


def run_load(args: argparse.Namespace) -> int:
    """Publish ``count`` synthetic records at ``rate``/s and print the achieved rate."""
    if args.count < 0 or not 0.0 <= args.invalid_rate <= 1.0:
        print("error: --count must be >= 0 and --invalid-rate within 0..1", file=sys.stderr)
        return 2
    producer = make_producer(args.bootstrap, client_id="quotes-producer-load")
    bar = tqdm(total=args.count, unit="rec", disable=args.no_progress, file=sys.stderr)
    began = time.monotonic()
    try:
        result = publish(
            producer,
            args.topic,
            synthetic_records(args.count, args.invalid_rate, args.seed),
            on_sent=lambda: bar.update(1),
            pace=pacer(args.rate),
        )
    finally:
        bar.close()
        producer.close(timeout=10)
    elapsed = time.monotonic() - began
    rate = result.count / elapsed if elapsed > 0 else 0.0
    target = f" (target {args.rate:.0f}/s)" if args.rate > 0 else ""
    print(
        f"published {result.count} records to {args.topic} in {elapsed:.2f}s: "
        f"{rate:.1f} records/s{target}, invalid share {args.invalid_rate:.2%}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors are one line on stderr and exit code 1."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "poll":
            return run_poll(args)
        return run_load(args)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except urllib.error.URLError as exc:
        print(f"error: cannot fetch {args.api_url}: {exc.reason}", file=sys.stderr)
    except KafkaError as exc:
        print(f"error: Kafka at {args.bootstrap}: {exc}", file=sys.stderr)
    return 1
