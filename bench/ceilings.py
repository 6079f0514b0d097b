"""Raw ceilings: what each server takes on this machine with no consumer in between. Which
ceilings, and how each is made: ``bench/README.md``, *What is measured*.

Why the consumer's own batch size, rows and documents, with only the server call timed: a
ceiling is then the most the consumer could get from that server, not a different workload's
figure. Why a concurrent ceiling too: on 2 cores the two databases and their clients compete for
the same CPUs, so the isolated ceilings overstate what both take together.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import psycopg2
import psycopg2.extensions
from kafka import KafkaConsumer, TopicPartition
from psycopg2.extras import execute_values

from bench.cpu import CpuUsage, Meter
from bench.infra import Context
from bench.workload import transformed_batches
from quotes_consumer.record import Quote
from quotes_consumer.sinks.mongo import to_document
from quotes_consumer.sinks.postgres import COLUMN_NAMES, INSERT, to_json, to_row

# The same rows as a multi-row VALUES list, the way psycopg2's execute_values sends them: the
# statement the consumer used before its one-parameter JSON INSERT, kept as a reference.
INSERT_VALUES = f"INSERT INTO quotes ({', '.join(COLUMN_NAMES)}) VALUES %s ON CONFLICT DO NOTHING"

# Batches prepared ahead of each timed stretch of the concurrent ceiling: enough for the two
# threads to run freely for seconds, few enough that a 1M-record run stays in memory bounds.
CONCURRENT_CHUNK_RECORDS = 25_000

# Every ceiling, in the order measured, with its name in the report.
LABELS = {
    "kafka": "Kafka read",
    "postgres": "PostgreSQL insert",
    "postgres_values": "PostgreSQL execute_values",
    "mongo": "MongoDB insert",
    "concurrent": "both databases at once",
}
Documents = list[dict[str, Any]]
Send = Callable[[psycopg2.extensions.cursor, Any], object]  # one statement, in a transaction


def measure(ctx: Context, topic: str, total: int) -> tuple[dict[str, float], CpuUsage]:
    """Every ceiling once, in records/s, each into fresh databases; with the CPU use of the
    concurrent ceiling's timed calls."""

    def batches() -> Iterator[list[Quote]]:
        return transformed_batches(topic, total, ctx.partitions, ctx.batch_size)

    found = {
        "kafka": kafka_read(ctx, topic, total),
        # The consumer's INSERT: the batch as one JSON parameter.
        "postgres": _postgres(ctx, batches(), lambda quotes: (to_json(quotes),), _insert),
        "postgres_values": _postgres(
            ctx,
            batches(),
            lambda quotes: [to_row(q) for q in quotes],
            lambda cursor, rows: execute_values(cursor, INSERT_VALUES, rows, page_size=len(rows)),
        ),
    }
    # insert_many (unordered) of the consumer's documents, one call per batch.
    with closing(ctx.endpoints.mongo_client()) as client:
        collection = client[ctx.scratch.mongo_database()]["quotes"]
        prepared = ((_documents(quotes), len(quotes)) for quotes in batches())
        found["mongo"] = _timed(prepared, lambda docs: collection.insert_many(docs, ordered=False))
    ctx.scratch.release_databases()
    found["concurrent"], usage = _concurrent(ctx, batches())
    ctx.scratch.release_databases()
    return found, usage


def kafka_read(ctx: Context, topic: str, total: int) -> float:
    """kafka-python alone reading the whole topic (no group, no commits)."""
    consumer = KafkaConsumer(
        bootstrap_servers=ctx.endpoints.kafka.split(","),
        enable_auto_commit=False,
        max_poll_records=ctx.batch_size,
        fetch_max_wait_ms=200,  # as the consumer sets it
        client_id="streamlab-bench-ceiling",
    )
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(ctx.partitions)])
        consumer.seek_to_beginning()
        seen = 0
        started = time.monotonic()
        deadline = started + 60 + total / 1000
        while seen < total and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=ctx.batch_size).values():
                seen += len(records)
        elapsed = time.monotonic() - started
    finally:
        consumer.close()
    if seen < total:
        raise RuntimeError(f"Kafka ceiling: read {seen} of {total} records")
    return total / elapsed


def _postgres(
    ctx: Context, batches: Iterable[list[Quote]], prepare: Callable[[list[Quote]], Any], send: Send
) -> float:
    """One transaction per batch into a fresh database."""
    with closing(psycopg2.connect(**ctx.endpoints.pg_params(ctx.scratch.pg_database()))) as conn:
        prepared = ((prepare(quotes), len(quotes)) for quotes in batches)
        return _timed(prepared, lambda payload: _transaction(conn, send, payload))


def _transaction(conn: psycopg2.extensions.connection, send: Send, payload: Any) -> None:
    with conn, conn.cursor() as cursor:
        send(cursor, payload)


def _insert(cursor: psycopg2.extensions.cursor, payload: tuple[str]) -> None:
    cursor.execute(INSERT, payload)


def _documents(quotes: list[Quote]) -> Documents:
    now = datetime.now(UTC)
    return [to_document(q, now) for q in quotes]


def _concurrent(ctx: Context, batches: Iterator[list[Quote]]) -> tuple[float, CpuUsage]:
    """Both databases at once, a thread each, a chunk of batches at a time (prepared outside the
    timed region); the wall time until both finished counts, with the CPU use of those stretches."""
    per_chunk = max(1, CONCURRENT_CHUNK_RECORDS // ctx.batch_size)

    def prepared() -> Iterator[tuple[tuple[list[tuple[str]], list[Documents]], int]]:
        while chunk := list(islice(batches, per_chunk)):
            payloads = [(to_json(quotes),) for quotes in chunk]
            yield (payloads, [_documents(quotes) for quotes in chunk]), sum(map(len, chunk))

    meter = Meter(os.getpid())
    conn = psycopg2.connect(**ctx.endpoints.pg_params(ctx.scratch.pg_database()))
    with (
        closing(conn),
        closing(ctx.endpoints.mongo_client()) as client,
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="ceiling") as pool,
    ):
        collection = client[ctx.scratch.mongo_database()]["quotes"]

        def write_postgres(payloads: list[tuple[str]]) -> None:
            for payload in payloads:
                _transaction(conn, _insert, payload)

        def write_mongo(batches_of_documents: list[Documents]) -> None:
            for documents in batches_of_documents:
                collection.insert_many(documents, ordered=False)

        def both(chunk: tuple[list[tuple[str]], list[Documents]]) -> None:
            for write in [
                pool.submit(write_postgres, chunk[0]),
                pool.submit(write_mongo, chunk[1]),
            ]:
                write.result()

        return _timed(prepared(), both, meter), meter.usage()


def _timed(
    prepared: Iterable[tuple[Any, int]], send: Callable[[Any], object], meter: Meter | None = None
) -> float:
    """Records/s of ``send`` over each (payload, records) prepared, counting only its calls."""
    written, spent = 0, 0.0
    for payload, records in prepared:
        if meter is not None:
            meter.start()
        started = time.perf_counter()
        send(payload)
        spent += time.perf_counter() - started
        if meter is not None:
            meter.stop()
        written += records
    return written / spent
