"""The consumer never stalls: any record, any database refusal, any outage, any rebalance.

Each test reproduces a way the pipeline once stopped for good, against the real servers, and
checks the promise: every valid record once in both databases, every other record in the
dead-letter topic with a reason, the consumer still running.
"""

from __future__ import annotations

import collections
import json
import random
import string
import time
from typing import Any

import pytest

from tests.integration.pipeline import (
    ConsumerProcess,
    Coordinate,
    mongo_collection,
    mongo_coordinates,
    pg_coordinates,
    pg_rows,
    produce,
    quote_value,
    read_topic,
    send,
    wait_for,
    wait_until_committed,
)
from tests.integration.test_consumer import (
    assert_exactly_once,
    start_server,
    stop_server,
    wait_until_stored,
)

pytestmark = pytest.mark.integration


def dead_letters_by_source(bootstrap: str, topic: str, expected: int) -> dict[Coordinate, Any]:
    letters: dict[Coordinate, Any] = {}
    for record in read_topic(bootstrap, f"{topic}.dlq", expected):
        headers = {n: v.decode() for n, v in record.headers if n.startswith("dlq.")}
        source = (int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"]))
        assert source not in letters, f"dead-lettered twice: {source}"
        letters[source] = headers
    return letters


def random_letters(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters) for _ in range(n))


def test_any_timestamp_is_stored_or_null_and_never_stops_the_consumer(setup: dict) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    timestamps = [0, 1, 10**15, 2**63 - 1, 1_700_000_000_000]
    records = [{"value": quote_value(i), "timestamp_ms": ts} for i, ts in enumerate(timestamps)]
    records += [{"value": quote_value(100 + i)} for i in range(30)]  # behind them
    placed = send(endpoints.kafka, topic, records)
    consumer = ConsumerProcess(setup["env"], setup["tmp"]).start()
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], len(placed))
    assert consumer.terminate() == 0, consumer.log()
    assert_exactly_once(endpoints, setup["database"], setup["mongo_db"], placed)
    by_quote = {
        row["quote"]: row["kafka_timestamp"] for row in pg_rows(endpoints, setup["database"])
    }
    stored = [
        by_quote[json.loads(quote_value(i))["quote"].strip().replace("   ", " ")] for i in range(5)
    ]
    assert stored[2] is None and stored[3] is None, "far-future timestamps are stored as NULL"
    assert stored[0] is not None and stored[0].year == 1970


def test_a_record_postgres_refuses_is_dead_lettered_and_withdrawn_from_mongo(setup: dict) -> None:
    """6,000 random letters in `character`: valid JSON, but too big for PostgreSQL's btree
    index. It must end in the dead-letter topic only, and everything behind it in both."""
    endpoints, topic = setup["endpoints"], setup["topic"]
    values = [quote_value(i) for i in range(200)]
    values[57] = quote_value(57, character=random_letters(6000, seed=57))
    values[143] = quote_value(143, character=random_letters(6000, seed=143))
    placed = produce(endpoints.kafka, topic, values)
    refused = {placed[57], placed[143]}
    consumer = ConsumerProcess(setup["env"], setup["tmp"]).start()
    expected = [c for c in placed if c not in refused]
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], len(expected))
    # Every batch done: until then MongoDB may still hold a refused record's document, which
    # its batch withdraws at commit.
    wait_until_committed(endpoints.kafka, f"{topic}-group", topic, placed)
    letters = dead_letters_by_source(endpoints.kafka, topic, 2)
    counted = 'quotes_consumer_records_dead_lettered_total{reason="rejected_by_postgres"}'
    wait_for("the dead letters counted", lambda: counted in consumer.metrics(), 10)
    metrics = consumer.metrics()
    assert consumer.alive() and consumer.terminate() == 0
    assert_exactly_once(endpoints, setup["database"], setup["mongo_db"], expected)
    assert set(letters) == refused
    for headers in letters.values():
        assert headers["dlq.reason"] == "rejected_by_postgres"
        assert "index row size" in headers["dlq.error"]
    assert (
        metrics['quotes_consumer_records_dead_lettered_total{reason="rejected_by_postgres"}'] == 2
    )


def test_a_message_id_published_twice_is_stored_once(setup: dict) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    records = [
        {"value": quote_value(1), "headers": [("uuid", b"flowfile-1")]},
        {"value": quote_value(2)},
        {"value": quote_value(1), "headers": [("uuid", b"flowfile-1")]},  # a NiFi retry
        {"value": quote_value(3), "headers": [("uuid", b"flowfile-3")]},
    ]
    first = send(endpoints.kafka, topic, records)
    consumer = ConsumerProcess(setup["env"], setup["tmp"]).start()
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], 3)
    # The same message once more, in a later batch and another partition.
    again = send(endpoints.kafka, topic, [records[0]], partitions=1)
    # Dealt with, not merely consumed: that the repeat adds no row means something only once
    # its batch is written and committed.
    wait_until_committed(endpoints.kafka, f"{topic}-group", topic, first + again, 30)
    assert consumer.terminate() == 0
    rows = pg_rows(endpoints, setup["database"])
    assert sorted(r["message_id"] or "" for r in rows) == ["", "flowfile-1", "flowfile-3"]
    assert len(mongo_coordinates(endpoints, setup["mongo_db"])) == 3
    doc = mongo_collection(endpoints, setup["mongo_db"]).find_one({"message_id": "flowfile-1"})
    assert doc["_id"] == f"{topic}:id:flowfile-1"
    # Both databases kept the same copy: the first of the batch that held both.
    pg_copy = next(r for r in rows if r["message_id"] == "flowfile-1")
    kept = (pg_copy["source_partition"], pg_copy["source_offset"])
    assert kept == (doc["kafka"]["partition"], doc["kafka"]["offset"])
    assert kept in (first[0], first[2]) and again[0] not in (first[0], first[2])


def test_a_replica_joining_during_a_long_postgres_outage_gets_partitions_in_seconds(
    setup: dict,
) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    env = {**setup["env"], "CONSUMER_MAX_POLL_INTERVAL_MS": "4000"}
    one = ConsumerProcess(env, setup["tmp"], "one").start()
    placed = produce(endpoints.kafka, topic, [quote_value(i) for i in range(90)])
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], 90)

    stop_server(endpoints, "postgres")
    try:
        placed += produce(endpoints.kafka, topic, [quote_value(i) for i in range(90, 180)])
        wait_for("the first replica to retry", lambda: "retrying in" in one.log(), 30)
        time.sleep(6)  # longer than max.poll.interval.ms (4 s): the old loop left the group here
        two = ConsumerProcess(env, setup["tmp"], "two").start()
        joined = time.monotonic()
        wait_for(
            "the new replica to own partitions",
            lambda: f"assigned partitions: {topic}[" in two.log(),
            15,
        )
        took = time.monotonic() - joined
        assert took < 10, f"the new replica waited {took:.1f}s for partitions"
        assert one.alive(), one.log()
        assert "poll timeout has expired" not in one.log(), "the first replica left the group"
    finally:
        start_server(endpoints, "postgres")

    placed += produce(endpoints.kafka, topic, [quote_value(i) for i in range(180, 270)])
    wait_until_stored(endpoints, setup["database"], setup["mongo_db"], 270, timeout_s=90)
    assert one.terminate() == 0 and two.terminate() == 0
    assert_exactly_once(endpoints, setup["database"], setup["mongo_db"], placed)


@pytest.mark.parametrize("database_server", ["postgres", "ferretdb"])
def test_sigterm_during_an_outage_exits_0_within_10_seconds(
    setup: dict, database_server: str
) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    consumer = ConsumerProcess(setup["env"], setup["tmp"]).start()
    stop_server(endpoints, database_server)
    try:
        produce(endpoints.kafka, topic, [quote_value(i) for i in range(30)])
        wait_for("a failed write", lambda: "retrying in" in consumer.log(), 30)
        time.sleep(2)  # well inside a retry wait or a connect timeout
        started = time.monotonic()
        code = consumer.terminate(timeout_s=15)
        took = time.monotonic() - started
    finally:
        start_server(endpoints, database_server)
    assert code == 0, consumer.log()
    assert took < 10, f"SIGTERM took {took:.1f}s"


# --- Fuzz ----------------------------------------------------------------------------------------

FUZZ_SEED = 20261128
FUZZ_RECORDS = 3000


def hostile_record(rng: random.Random, index: int) -> dict[str, Any]:
    """One record: a valid quote half the time, otherwise something a hostile producer sends."""
    kind = rng.random()
    if kind < 0.5:
        value: bytes | None = quote_value(index)
    elif kind < 0.6:
        value = rng.randbytes(rng.randint(0, 300))
    elif kind < 0.75:
        item: dict[str, Any] = {}
        for name in rng.sample(["quote", "character", "image", "characterDirection", "x"], 3):
            item[name] = rng.choice(
                [
                    None,
                    7,
                    "",
                    " ",
                    "ok text",
                    ["a"],
                    {"$x": 1},
                    "https://x.org/a.png",
                    "Left",
                    2**70,
                ]
            )
        value = json.dumps(item).encode()
    elif kind < 0.8:
        value = quote_value(
            index,
            quote="".join(chr(rng.randint(1, 0x10FFFF)) for _ in range(20))
            .encode("utf-8", "surrogatepass")
            .decode("utf-8", "replace"),
        )
    elif kind < 0.85:
        value = quote_value(index, **{rng.choice(["a.b", "$set", "_id", "kafka"]): 1})
    elif kind < 0.88:
        value = quote_value(index, character=random_letters(6000, seed=index))  # PG refuses
    elif kind < 0.9:
        value = b"[" * rng.randint(1, 5000)
    elif kind < 0.92:
        value = None
    else:
        value = quote_value(index, nested=json.loads("[" * 40 + "]" * 40))
    record: dict[str, Any] = {"value": value}
    if value is None or rng.random() < 0.3:
        record["key"] = rng.randbytes(rng.randint(1, 64))
    headers = [
        (rng.choice(["trace", "", "x" * 300, "ünï"]), rng.randbytes(rng.randint(0, 50)))
        for _ in range(rng.randint(0, 3))
    ]
    if rng.random() < 0.15:
        headers.append(
            (
                "uuid",
                rng.choice([b"dup-1", b"dup-2", b"", b"\xff\xfe", b"a\nb", f"id-{index}".encode()]),
            )
        )
    record["headers"] = headers
    if rng.random() < 0.2:
        record["timestamp_ms"] = rng.choice([0, 1, 10**15, 2**63 - 1, rng.randint(0, 2**62)])
    return record


def test_seeded_fuzz_every_record_ends_exactly_once(setup: dict) -> None:
    """A few thousand hostile records among valid ones: the consumer never exits; each record
    is in both databases, in the dead-letter topic, or a repeat of a stored message id."""
    endpoints, topic = setup["endpoints"], setup["topic"]
    rng = random.Random(FUZZ_SEED)
    records = [hostile_record(rng, i) for i in range(FUZZ_RECORDS)]
    placed = send(endpoints.kafka, topic, records)
    env = {**setup["env"], "CONSUMER_BATCH_SIZE": "200"}
    consumer = ConsumerProcess(env, setup["tmp"]).start()
    # Every record dealt with for good (stored, dead-lettered or absorbed) and committed: then
    # the databases and the dead-letter topic hold their final state.
    wait_until_committed(endpoints.kafka, f"{topic}-group", topic, placed, 60)
    stored_pg = pg_coordinates(endpoints, setup["database"])
    stored_mongo = mongo_coordinates(endpoints, setup["mongo_db"])
    assert consumer.alive(), consumer.log()[-3000:]
    assert consumer.terminate() == 0

    assert not [c for c, n in collections.Counter(stored_pg).items() if n > 1]
    assert sorted(stored_pg) == sorted(stored_mongo), "never in one database only"
    stored = set(stored_pg)
    dead_count_hint = FUZZ_RECORDS - len(stored)
    letters = dead_letters_by_source(endpoints.kafka, topic, dead_count_hint)
    assert not stored & set(letters), "a record is stored or dead-lettered, not both"
    # What is neither stored nor dead-lettered must be a repeat of a stored message id.
    ids = {
        row["message_id"]
        for row in pg_rows(endpoints, setup["database"])
        if row["message_id"] is not None
    }
    for coordinate, record in zip(placed, records, strict=True):
        if coordinate in stored or coordinate in letters:
            continue
        uuid = [value for name, value in record["headers"] if name == "uuid"]
        assert uuid and uuid[0].decode("utf-8", "replace") in ids, f"lost: {coordinate} {record}"
    reasons = collections.Counter(headers["dlq.reason"] for headers in letters.values())
    assert reasons["rejected_by_postgres"] > 0 and reasons["invalid_json"] > 0, reasons
    assert len(stored) > FUZZ_RECORDS * 0.3
