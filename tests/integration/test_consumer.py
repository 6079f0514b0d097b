"""The consumer against real Kafka, PostgreSQL and MongoDB (FerretDB): exactly once in effect.

Each test has its own topic, consumer group and databases, and checks the strongest property it
can: the set of Kafka coordinates stored equals the set produced, in both databases, with no
duplicate, whatever happened in between (replay, bad input, outage, crash, a second replica).
"""

from __future__ import annotations

import collections
import json
import subprocess
import threading
import time

import pytest

from native import servers
from native.servers.endpoints import Endpoints
from tests.integration.pipeline import (
    ConsumerProcess,
    Coordinate,
    committed_offsets,
    mongo_collection,
    mongo_coordinates,
    pg_coordinates,
    pg_rows,
    produce,
    quote_value,
    read_topic,
    wait_for,
    wait_until_committed,
)

pytestmark = pytest.mark.integration


def assert_exactly_once(
    endpoints: Endpoints, database: str, mongo_db: str, expected: list[Coordinate]
) -> None:
    """Both databases hold each expected record once, and nothing else."""
    for name, stored in (
        ("PostgreSQL", pg_coordinates(endpoints, database)),
        ("MongoDB", mongo_coordinates(endpoints, mongo_db)),
    ):
        duplicates = [c for c, n in collections.Counter(stored).items() if n > 1]
        assert not duplicates, f"{name} has duplicates: {duplicates[:5]}"
        assert sorted(stored) == sorted(expected), (
            f"{name}: {len(stored)} stored vs {len(expected)} expected; "
            f"missing {sorted(set(expected) - set(stored))[:5]}, "
            f"extra {sorted(set(stored) - set(expected))[:5]}"
        )


def wait_until_stored(
    endpoints: Endpoints, database: str, mongo_db: str, count: int, timeout_s: float = 60
) -> None:
    wait_for(
        f"{count} records in both databases",
        lambda: (
            len(pg_coordinates(endpoints, database)) >= count
            and len(mongo_coordinates(endpoints, mongo_db)) >= count
        ),
        timeout_s,
    )


def test_n_records_become_n_rows_and_n_documents(setup: dict) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    expected = produce(endpoints.kafka, topic, [quote_value(i) for i in range(300)])
    consumer = ConsumerProcess(setup["env"], setup["tmp"]).start()
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], 300)
    # Stored is not committed: the last batch's commit may still be on its way.
    wait_until_committed(endpoints.kafka, f"{topic}-group", topic, expected)
    assert consumer.terminate() == 0, consumer.log()

    assert_exactly_once(endpoints, setup["database"], setup["mongo_db"], expected)
    offsets = committed_offsets(endpoints.kafka, f"{topic}-group", topic)
    assert offsets == {0: 100, 1: 100, 2: 100}

    row = pg_rows(endpoints, setup["database"])[0]
    assert row["source_topic"] == topic
    assert row["quote"] == "Test quote number 0, said with feeling."  # trimmed and collapsed
    assert row["character"] == "Character 0"
    assert row["image"] == "https://example.org/images/0.png"
    assert row["character_direction"] == "Right"
    assert row["word_count"] == 7
    assert len(row["content_hash"]) == 64
    assert row["kafka_timestamp"] is not None and row["ingested_at"] is not None

    doc = mongo_collection(endpoints, setup["mongo_db"]).find_one({"_id": f"{topic}:0:0"})
    assert doc is not None
    assert doc["quote"] == row["quote"] and doc["content_hash"] == row["content_hash"]
    assert doc["characterDirection"] == "Right" and doc["word_count"] == 7
    assert doc["kafka"]["topic"] == topic and doc["kafka"]["offset"] == 0

    log = consumer.log()
    batch_lines = [line for line in log.splitlines() if " batch: " in line]
    assert 3 <= len(batch_lines) <= 30, "one log line per batch, not per record"
    assert "SIGTERM received" in log and "consumer closed" in log


def test_replay_from_offset_zero_changes_nothing(setup: dict) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    expected = produce(endpoints.kafka, topic, [quote_value(i) for i in range(150)])
    first = ConsumerProcess(setup["env"], setup["tmp"], "first").start()
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], 150)
    assert first.terminate() == 0
    before = pg_rows(endpoints, setup["database"])
    doc_before = mongo_collection(endpoints, setup["mongo_db"]).find_one({"_id": f"{topic}:1:0"})

    # A new group starts from offset 0: every record is read and written a second time.
    replay_env = {**setup["env"], "KAFKA_GROUP_ID": f"{topic}-replay"}
    replay = ConsumerProcess(replay_env, setup["tmp"], "replay").start()
    wait_for(
        "the replay to commit every partition",
        lambda: (
            committed_offsets(endpoints.kafka, f"{topic}-replay", topic) == {0: 50, 1: 50, 2: 50}
        ),
        60,
    )
    assert replay.metrics()["quotes_consumer_records_consumed_total"] == 150
    assert replay.terminate() == 0

    assert_exactly_once(endpoints, setup["database"], setup["mongo_db"], expected)
    assert pg_rows(endpoints, setup["database"]) == before  # not even ingested_at moved
    doc_after = mongo_collection(endpoints, setup["mongo_db"]).find_one({"_id": f"{topic}:1:0"})
    assert doc_after == doc_before


BAD_RECORDS: dict[str, bytes | None] = {
    "not_utf8": b'{"quote": "caf\xe9", "character": "X"}',
    "invalid_json": b'{"quote": "unterminated',
    "not_an_object": b'["quote", "character"]',
    "missing_field": json.dumps({"character": "Nobody"}).encode(),
    "empty_field": json.dumps({"quote": "   ", "character": "Blank"}).encode(),
    "wrong_type": json.dumps({"quote": 42, "character": "Numbers"}).encode(),
    "invalid_url": quote_value(1, image="ftp://example.org/x.png"),
    "invalid_direction": quote_value(2, characterDirection="Up"),
    "too_large": quote_value(3, quote="word " * 20_000),
    "empty_value": None,
    "invalid_text": quote_value(4, quote="nul \u0000 inside"),
    "invalid_field_name": quote_value(5, **{"$where": "1"}),
}


def test_bad_records_go_to_the_dead_letter_topic_and_the_rest_is_stored(setup: dict) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    values: list[bytes | None] = []
    reasons_in_order: list[str | None] = []
    for i in range(120):
        values.append(quote_value(i, extra_field={"kept": True, "n": i}))
        reasons_in_order.append(None)
        if i % 10 == 0:
            reason = list(BAD_RECORDS)[(i // 10) % len(BAD_RECORDS)]
            values.append(BAD_RECORDS[reason])
            reasons_in_order.append(reason)
    placed = produce(endpoints.kafka, topic, values, headers=[("trace-id", b"abc")], key=b"k")
    expected = [c for c, r in zip(placed, reasons_in_order, strict=True) if r is None]
    rejected = {c: r for c, r in zip(placed, reasons_in_order, strict=True) if r is not None}
    assert len(rejected) == len(BAD_RECORDS)

    consumer = ConsumerProcess(setup["env"], setup["tmp"]).start()
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], len(expected))
    dead = read_topic(endpoints.kafka, f"{topic}.dlq", len(rejected))
    # Every batch done and committed, and counted: the counters move once a batch is committed,
    # a moment after its dead letters can be read.
    wait_until_committed(endpoints.kafka, f"{topic}-group", topic, placed)
    counted = {f'quotes_consumer_records_dead_lettered_total{{reason="{r}"}}' for r in BAD_RECORDS}
    wait_for("every dead letter counted", lambda: counted <= set(consumer.metrics()), 10)
    assert consumer.alive() and consumer.health_status() == 200
    metrics = consumer.metrics()
    assert consumer.terminate() == 0

    assert_exactly_once(endpoints, setup["database"], setup["mongo_db"], expected)
    by_source = {}
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["dlq.source.topic"] == topic
        assert headers["trace-id"] == "abc", "original headers are kept"
        assert headers["dlq.error"]
        source = (int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"]))
        by_source[source] = (headers["dlq.reason"], record.value)
        assert record.key == b"k"
    assert {c: reason for c, (reason, _) in by_source.items()} == rejected
    for _coordinate, (reason, value) in by_source.items():
        assert value == BAD_RECORDS[reason], f"{reason}: the original bytes are kept"
    for reason in BAD_RECORDS:
        assert metrics[f'quotes_consumer_records_dead_lettered_total{{reason="{reason}"}}'] == 1

    doc = mongo_collection(endpoints, setup["mongo_db"]).find_one({"_id": f"{topic}:0:0"})
    assert doc is not None and doc["extra_field"] == {"kept": True, "n": 0}


class Publisher(threading.Thread):
    """Publishes valid records in small bursts while a test breaks something; bounded."""

    def __init__(self, bootstrap: str, topic: str, bursts: int, per_burst: int) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.bursts, self.per_burst = bursts, per_burst
        self.placed: list[Coordinate] = []

    def run(self) -> None:
        for burst in range(self.bursts):
            start = burst * self.per_burst
            values = [quote_value(start + i) for i in range(self.per_burst)]
            self.placed += produce(self.bootstrap, self.topic, values)
            time.sleep(0.5)


# Harness server name -> the compose service that plays its part.
COMPOSE_SERVICE = {"postgres": "postgres", "ferretdb": "mongo", "kafka": "kafka"}


def stop_server(endpoints: Endpoints, name: str) -> None:
    """Stop a server: the harness's own, or the compose stack's service."""
    if endpoints.harness:
        servers.down([name])
    else:
        command = ["docker", "compose", "stop", COMPOSE_SERVICE[name]]
        subprocess.run(command, check=True, timeout=120)


def start_server(endpoints: Endpoints, name: str) -> None:
    if endpoints.harness:
        servers.up([name])
    else:
        command = ["docker", "compose", "start", COMPOSE_SERVICE[name]]
        subprocess.run(command, check=True, timeout=120)


@pytest.mark.parametrize("database_server", ["postgres", "ferretdb"])
def test_database_outage_mid_stream_loses_and_duplicates_nothing(
    setup: dict, database_server: str
) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    env = {**setup["env"], "CONSUMER_UNHEALTHY_AFTER_S": "2", "CONSUMER_BATCH_SIZE": "50"}
    consumer = ConsumerProcess(env, setup["tmp"]).start()
    publisher = Publisher(endpoints.kafka, topic, bursts=12, per_burst=30)
    publisher.start()
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], 30)

    stop_server(endpoints, database_server)
    try:
        wait_for("/healthz to turn unhealthy", lambda: consumer.health_status() == 503, 30)
        time.sleep(3)  # several seconds of outage while records keep arriving
        assert consumer.alive()
    finally:
        start_server(endpoints, database_server)

    publisher.join(timeout=60)
    assert not publisher.is_alive()
    total = len(publisher.placed)
    assert total == 360
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], total, timeout_s=90)
    wait_for("/healthz to recover", lambda: consumer.health_status() == 200, 30)
    assert consumer.terminate() == 0
    assert_exactly_once(endpoints, setup["database"], setup["mongo_db"], publisher.placed)
    log = consumer.log()
    assert "retrying in" in log, "each failed attempt is logged"
    assert "succeeded at attempt" in log


def test_kafka_outage_mid_stream_is_ridden_out(setup: dict) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    expected = produce(endpoints.kafka, topic, [quote_value(i) for i in range(1500)])
    env = {**setup["env"], "CONSUMER_BATCH_SIZE": "20", "CONSUMER_UNHEALTHY_AFTER_S": "2"}
    consumer = ConsumerProcess(env, setup["tmp"]).start()
    wait_for(
        "some records stored",
        lambda: len(pg_coordinates(endpoints, setup["database"])) >= 100,
        60,
        every_s=0.05,
    )
    stop_server(endpoints, "kafka")
    try:
        # Kafka unreachable longer than the threshold turns /healthz red, as a database does.
        wait_for("/healthz to turn unhealthy", lambda: consumer.health_status() == 503, 20)
        assert consumer.alive()
    finally:
        start_server(endpoints, "kafka")
    wait_for("/healthz to recover", lambda: consumer.health_status() == 200, 60)
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], 1500, timeout_s=120)
    wait_for(
        "every offset committed",
        lambda: (
            committed_offsets(endpoints.kafka, f"{topic}-group", topic) == {0: 500, 1: 500, 2: 500}
        ),
        60,
    )
    assert consumer.terminate() == 0
    assert_exactly_once(endpoints, setup["database"], setup["mongo_db"], expected)


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(setup: dict) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    expected = produce(endpoints.kafka, topic, [quote_value(i) for i in range(3000)])
    env = {**setup["env"], "CONSUMER_BATCH_SIZE": "25"}
    first = ConsumerProcess(env, setup["tmp"], "first").start()
    wait_for(
        "some but not all records stored",
        lambda: len(pg_coordinates(endpoints, setup["database"])) >= 200,
        60,
        every_s=0.05,
    )
    first.kill()
    stored_at_kill = len(pg_coordinates(endpoints, setup["database"]))
    assert stored_at_kill < 3000, "the kill must land mid-stream"

    second = ConsumerProcess(env, setup["tmp"], "second").start()
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], 3000, timeout_s=120)
    # Stored is not committed: the last batch's commit may still be on its way.
    wait_until_committed(endpoints.kafka, f"{topic}-group", topic, expected)
    assert second.terminate() == 0
    assert_exactly_once(endpoints, setup["database"], setup["mongo_db"], expected)
    assert committed_offsets(endpoints.kafka, f"{topic}-group", topic) == {
        0: 1000,
        1: 1000,
        2: 1000,
    }


def test_two_consumers_in_one_group_share_partitions(setup: dict) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    one = ConsumerProcess(setup["env"], setup["tmp"], "one").start()
    two = ConsumerProcess(setup["env"], setup["tmp"], "two").start()
    wait_for(
        "both replicas to get partitions",
        lambda: (
            "assigned partitions: test" in one.log() and "assigned partitions: test" in two.log()
        ),
        60,
    )
    publisher = Publisher(endpoints.kafka, topic, bursts=6, per_burst=60)
    publisher.run()  # in this thread: the replicas consume while it publishes
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], 360)
    consumed = [c.metrics().get("quotes_consumer_records_consumed_total", 0.0) for c in (one, two)]
    assert one.terminate() == 0 and two.terminate() == 0
    assert_exactly_once(endpoints, setup["database"], setup["mongo_db"], publisher.placed)
    assert all(n > 0 for n in consumed), f"both replicas must do work: {consumed}"
    assert sum(consumed) >= 360
