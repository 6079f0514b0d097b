"""Raw ceilings: what each server takes on this machine with no consumer in between.

Why: "records per second" says little alone on a 2-core machine that also runs Kafka,
PostgreSQL and FerretDB. Each ceiling runs one client against one server, with the consumer's
own batch size and the consumer's exact rows and documents. The smallest ceiling bounds the
pipeline even if it overlapped its three jobs (read, write PostgreSQL, write MongoDB) perfectly
and added no cost of its own; the consumer, which reads a batch and then writes both databases
at once, is bounded lower still, by 1 / (1/kafka + 1/min(postgres, mongo)). Only the server
call is timed; preparing rows and documents is not.

The isolated ceilings overstate what the two databases take together: on 2 cores, PostgreSQL,
FerretDB and their clients compete for the same CPUs. So one more ceiling writes both at once,
as the consumer does: one process, two threads, each database's client in its own thread, the
same batches. That is the limit a consumer writing both databases can approach.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from kafka import KafkaConsumer, TopicPartition

from bench.cpu import CpuUsage, Meter
from bench.infra import Endpoints, Scratch
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


def kafka_read(
    endpoints: Endpoints, topic: str, total: int, partitions: int, batch_size: int
) -> float:
    """kafka-python alone reading the whole topic (no group, no commits): records/s."""
    consumer = KafkaConsumer(
        bootstrap_servers=endpoints.kafka.split(","),
        enable_auto_commit=False,
        max_poll_records=batch_size,
        fetch_max_wait_ms=200,  # as the consumer sets it
        client_id="streamlab-bench-ceiling",
    )
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        seen = 0
        started = time.monotonic()
        deadline = started + 60 + total / 1000
        while seen < total and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=batch_size).values():
                seen += len(records)
        elapsed = time.monotonic() - started
    finally:
        consumer.close()
    if seen < total:
        raise RuntimeError(f"Kafka ceiling: read {seen} of {total} records")
    return total / elapsed


def postgres_insert(
    endpoints: Endpoints, scratch: Scratch, topic: str, total: int, partitions: int, batch: int
) -> float:
    """The consumer's INSERT of each batch, one transaction per batch, into a fresh schema."""
    return _postgres(
        endpoints,
        scratch,
        batches=transformed_batches(topic, total, partitions, batch),
        prepare=lambda quotes: (to_json(quotes),),
        send=lambda cursor, payload: cursor.execute(INSERT, payload),
    )


def postgres_values(
    endpoints: Endpoints, scratch: Scratch, topic: str, total: int, partitions: int, batch: int
) -> float:
    """execute_values of the same rows, one transaction per batch, into a fresh schema."""
    return _postgres(
        endpoints,
        scratch,
        batches=transformed_batches(topic, total, partitions, batch),
        prepare=lambda quotes: [to_row(q) for q in quotes],
        send=lambda cursor, rows: psycopg2.extras.execute_values(
            cursor, INSERT_VALUES, rows, page_size=len(rows)
        ),
    )


def _postgres(
    endpoints: Endpoints,
    scratch: Scratch,
    batches: Iterable[Sequence[Quote]],
    prepare: Callable[[Sequence[Quote]], Any],
    send: Callable[[psycopg2.extensions.cursor, Any], object],
) -> float:
    """Records/s of ``send``. What it sends is prepared outside the timed call, so only the
    client's work inside psycopg2 and the server's count."""
    conn = psycopg2.connect(**endpoints.pg_params(scratch.pg_database()))
    rows_written = 0
    spent = 0.0
    try:
        for quotes in batches:
            payload = prepare(quotes)
            started = time.perf_counter()
            with conn, conn.cursor() as cursor:
                send(cursor, payload)
            spent += time.perf_counter() - started
            rows_written += len(quotes)
    finally:
        conn.close()
    return rows_written / spent


def mongo_insert(
    endpoints: Endpoints, scratch: Scratch, topic: str, total: int, partitions: int, batch: int
) -> float:
    """insert_many (unordered) of the consumer's documents, one call per batch, fresh database."""
    dbname = scratch.mongo_database()
    client = endpoints.mongo_client()
    collection = client[dbname]["quotes"]
    docs_written = 0
    spent = 0.0
    try:
        for quotes in transformed_batches(topic, total, partitions, batch):
            now = datetime.now(UTC)
            documents = [to_document(q, now) for q in quotes]
            started = time.perf_counter()
            collection.insert_many(documents, ordered=False)
            spent += time.perf_counter() - started
            docs_written += len(documents)
    finally:
        client.close()
    return docs_written / spent


def concurrent_insert(
    endpoints: Endpoints, scratch: Scratch, topic: str, total: int, partitions: int, batch: int
) -> tuple[float, CpuUsage]:
    """Both databases at once: the consumer's INSERT and insert_many in two threads of one
    process.

    Batches are prepared (the INSERT's parameter and the documents) a chunk at a time outside
    the timed region; then one thread writes the chunk's batches to PostgreSQL (one transaction
    each) while the other writes the same batches to FerretDB (one unordered insert_many each),
    and the wall time until both finished is what counts. Records/s = records / sum of those
    wall times. The CPU use of the same stretches comes with it, the bench's process counted as
    the client.
    """
    pg_db, mongo_db = scratch.pg_database(), scratch.mongo_database()
    conn = psycopg2.connect(**endpoints.pg_params(pg_db))
    client = endpoints.mongo_client()
    collection = client[mongo_db]["quotes"]

    def write_postgres(payloads: Sequence[tuple[str]]) -> None:
        for payload in payloads:
            with conn, conn.cursor() as cursor:
                cursor.execute(INSERT, payload)

    def write_mongo(doc_batches: Sequence[list[dict[str, Any]]]) -> None:
        for documents in doc_batches:
            collection.insert_many(documents, ordered=False)

    batches = transformed_batches(topic, total, partitions, batch)
    per_chunk = max(1, CONCURRENT_CHUNK_RECORDS // batch)
    written = 0
    spent = 0.0
    meter = Meter(os.getpid())
    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="ceiling") as pool:
            while chunk := list(islice(batches, per_chunk)):
                now = datetime.now(UTC)
                payloads = [(to_json(quotes),) for quotes in chunk]
                documents = [[to_document(q, now) for q in quotes] for quotes in chunk]
                meter.start()
                started = time.perf_counter()
                futures = [
                    pool.submit(write_postgres, payloads),
                    pool.submit(write_mongo, documents),
                ]
                for future in futures:
                    future.result()
                spent += time.perf_counter() - started
                meter.stop()
                written += sum(len(quotes) for quotes in chunk)
    finally:
        conn.close()
        client.close()
    return written / spent, meter.usage()
