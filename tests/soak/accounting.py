"""The checker's reads: Kafka offsets, the dead-letter topic, PostgreSQL and MongoDB, each down
to the (partition, offset) of every record, and the comparison with what Kafka acknowledged.

Why by coordinates: they are a record's identity in every store, so "exactly once" is an
equality of multisets, and a miss or a duplicate names its record.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

import psycopg2
from kafka import KafkaConsumer, TopicPartition

from native.servers.endpoints import Endpoints
from tests.integration.pipeline import Coordinate

TIMEOUT_MS = 5_000


def kafka_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[tuple[int, int]]:
    """(committed, end) per partition, from a new client each time, as the last one may not
    have survived a broker restart. Raises KafkaError while the broker is away."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        request_timeout_ms=TIMEOUT_MS + 1_000,
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = consumer.end_offsets(tps, timeout_ms=TIMEOUT_MS)
        return [(consumer.committed(tp, timeout_ms=TIMEOUT_MS) or 0, ends[tp]) for tp in tps]
    finally:
        consumer.close(timeout_ms=TIMEOUT_MS)


def dead_letter_sources(bootstrap: str, dlq: str, timeout_s: float = 60) -> list[Coordinate]:
    """The source coordinates named by every record of the dead-letter topic, read to its end."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(dlq, p) for p in consumer.partitions_for_topic(dlq) or ()]
        ends = consumer.end_offsets(tps, timeout_ms=TIMEOUT_MS)
        consumer.assign(tps)
        consumer.seek_to_beginning()
        sources: list[Coordinate] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dlq} not read to its end in {timeout_s:.0f}s")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    headers = {key: value.decode() for key, value in record.headers}
                    source = (headers["dlq.source.partition"], headers["dlq.source.offset"])
                    sources.append((int(source[0]), int(source[1])))
        return sources
    finally:
        consumer.close()


def postgres_coordinates(endpoints: Endpoints, database: str) -> Counter[Coordinate]:
    conn = psycopg2.connect(**endpoints.pg_params(database))
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT source_partition, source_offset FROM quotes")
            return Counter((int(p), int(o)) for p, o in cursor.fetchall())
    finally:
        conn.close()


def mongo_figures(
    endpoints: Endpoints, database: str, read_limit: int
) -> tuple[int, Counter[Coordinate] | None]:
    """The collection's size, and its coordinates if it holds at most ``read_limit`` documents.

    ``estimated_document_count``, because FerretDB's ``count_documents`` takes minutes on big
    collections (FACTS.md); and FerretDB reads each document whole, even for a projection.
    """
    client = endpoints.mongo_client()
    try:
        collection = client[database]["quotes"]
        size = collection.estimated_document_count()
        if size > read_limit:
            return size, None
        found = collection.find({}, {"kafka.partition": 1, "kafka.offset": 1, "_id": 0})
        kafka = (doc["kafka"] for doc in found.batch_size(5_000))
        return size, Counter((k["partition"], k["offset"]) for k in kafka)
    finally:
        client.close()


def exactly_once(store: str, stored: Counter[Coordinate], valid: Iterable[Coordinate]) -> list[str]:
    """One line per broken promise: valid records missing, stored twice, or strangers stored."""
    expected = set(valid)
    missing, extra = sorted(expected - stored.keys()), sorted(stored.keys() - expected)
    twice = sorted(coordinate for coordinate, count in stored.items() if count > 1)
    copies = sum(stored[coordinate] - 1 for coordinate in twice)
    return [
        f"{store}: {count} {what}, e.g. {examples[:3]}"
        for count, what, examples in (
            (len(missing), "valid records missing", missing),
            (copies, "duplicate copies", twice),
            (len(extra), "records stored that are no valid acknowledged record", extra),
        )
        if count
    ]


def rss_thirds(samples: list[int]) -> list[float]:
    """Peak RSS in MiB over the first, middle and last third of a replica's samples."""
    third = max(1, len(samples) // 3)
    parts = (samples[:third], samples[third:-third], samples[-third:])
    return [round(max(part, default=0) / 1024, 1) for part in parts]
