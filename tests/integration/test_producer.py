"""The Python producer stand-in against the real test Kafka and the real quotes API.

What must hold, as for the NiFi flow it replaces: every element the API returned is published
exactly once (records published == records fetched), each as the same JSON value, and records
keep their send order within each partition.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from quotes_producer.core import (
    fetch_quotes,
    make_producer,
    publish,
    split_records,
    synthetic_records,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUOTES_API = REPO / "quotes-api" / "app.py"
START_TIMEOUT_S = 20.0
READ_TIMEOUT_S = 30.0


@contextmanager
def quotes_api(*args: str) -> Iterator[str]:
    """Run quotes-api/app.py on a free loopback port; yield its base URL; always stop it."""
    process = subprocess.Popen(
        [sys.executable, str(QUOTES_API), "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        line = ""
        while time.monotonic() < deadline and "listening on" not in line:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, f"quotes-api did not start: {line!r}"
        yield match.group(1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def read_all(bootstrap: str, topic: str, expected: int) -> dict[tuple[int, int], bytes]:
    """Every record of the topic by (partition, offset), reading until ``expected`` or timeout."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        records: dict[tuple[int, int], bytes] = {}
        deadline = time.monotonic() + READ_TIMEOUT_S
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for rec in batch:
                    records[(rec.partition, rec.offset)] = rec.value
        # one more short poll: anything beyond `expected` would be a duplicate
        for batch in consumer.poll(timeout_ms=1000).values():
            for rec in batch:
                records[(rec.partition, rec.offset)] = rec.value
        return records
    finally:
        consumer.close()


def test_poll_publishes_every_fetched_quote_in_order(
    kafka_bootstrap: str, fresh_topic: str
) -> None:
    with quotes_api("--seed", "11", "--malformed-rate", "0.2") as base:
        items = fetch_quotes(f"{base}/quotes?count=50")
    records = list(split_records(items))
    producer = make_producer(kafka_bootstrap)
    try:
        result = publish(producer, fresh_topic, records)
    finally:
        producer.close(timeout=10)

    consumed = read_all(kafka_bootstrap, fresh_topic, len(items))
    assert result.count == len(items) == len(consumed) == 50
    # same value at the place the broker acknowledged, for every record
    for record, place in zip(records, result.placements, strict=True):
        assert consumed[place] == record
    # send order is offset order within each partition
    by_partition: dict[int, list[int]] = {}
    for partition, offset in result.placements:
        by_partition.setdefault(partition, []).append(offset)
    for offsets in by_partition.values():
        assert offsets == sorted(offsets)
    # each record is the API's element, unchanged (malformed ones too: the consumer rejects them)
    assert [json.loads(r) for r in records] == items


def test_poll_cli_one_command(kafka_bootstrap: str, fresh_topic: str) -> None:
    with quotes_api("--seed", "5", "--malformed-rate", "0") as base:
        done = subprocess.run(
            [
                sys.executable, "-m", "quotes_producer", "poll",
                "--api-url", f"{base}/quotes?count=8",
                "--bootstrap", kafka_bootstrap,
                "--topic", fresh_topic,
                "--iterations", "2", "--interval", "0.2",
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "published 16 records" in done.stdout
    consumed = read_all(kafka_bootstrap, fresh_topic, 16)
    assert len(consumed) == 16
    for value in consumed.values():
        assert set(json.loads(value)) == {"quote", "character", "image", "characterDirection"}


def test_load_cli_rate_and_invalid_share(kafka_bootstrap: str, fresh_topic: str) -> None:
    count, rate = 300, 200.0
    began = time.monotonic()
    done = subprocess.run(
        [
            sys.executable, "-m", "quotes_producer", "load",
            "--count", str(count), "--rate", str(rate), "--invalid-rate", "0.2",
            "--seed", "3", "--no-progress",
            "--bootstrap", kafka_bootstrap, "--topic", fresh_topic,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    assert re.search(rf"published {count} records .* records/s", done.stdout)
    assert elapsed >= (count - 1) / rate * 0.9, "the rate limit was not applied"
    consumed = read_all(kafka_bootstrap, fresh_topic, count)
    assert len(consumed) == count
    expected = list(synthetic_records(count, 0.2, seed=3))
    assert sorted(consumed.values()) == sorted(expected)
    invalid = sum(1 for record in expected if not _valid(record))
    assert 0.1 * count <= invalid <= 0.3 * count


def _valid(record: bytes) -> bool:
    try:
        item = json.loads(record)
    except json.JSONDecodeError:
        return False
    fields = ("quote", "character", "image", "characterDirection")
    return all(isinstance(item.get(f), str) and item.get(f) for f in fields)
