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
from pathlib import Path

import pytest

from quotes_producer.core import (
    fetch_quotes,
    make_producer,
    publish,
    split_records,
    synthetic_records,
)
from tests.integration.pipeline import read_topic, values_by_coordinate
from tests.integration.quotes_api_server import serve

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUOTES_API = REPO / "quotes-api" / "app.py"
START_TIMEOUT_S = 20.0


def test_poll_publishes_every_fetched_quote_in_order(
    kafka_bootstrap: str, fresh_topic: str
) -> None:
    with serve("--seed", "11", "--malformed-rate", "0.2") as base:
        items = fetch_quotes(f"{base}/quotes?count=50")
    records = list(split_records(items))
    producer = make_producer(kafka_bootstrap)
    try:
        result = publish(producer, fresh_topic, records)
    finally:
        producer.close(timeout=10)

    consumed = values_by_coordinate(read_topic(kafka_bootstrap, fresh_topic, len(items)))
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
    with serve("--seed", "5", "--malformed-rate", "0") as base:
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
    consumed = values_by_coordinate(read_topic(kafka_bootstrap, fresh_topic, 16))
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
    consumed = values_by_coordinate(read_topic(kafka_bootstrap, fresh_topic, count))
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
