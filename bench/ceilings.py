"""Raw ceilings: what each server takes on this machine with no consumer in between.

Why: "records per second" says little alone on a 2-core machine that also runs Kafka,
PostgreSQL and FerretDB. Each ceiling runs one client against one server, with the consumer's
own batch size and the consumer's exact rows and documents. The smallest ceiling bounds the
pipeline even if it overlapped its three jobs (read, write PostgreSQL, write MongoDB) perfectly
and added no cost of its own; the consumer, which reads a batch and then writes both databases
at once, is bounded lower still, by 1 / (1/kafka + 1/min(postgres, mongo)). Only the server
call is timed; preparing rows and documents is not.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg2
import psycopg2.extras
from kafka import KafkaConsumer, TopicPartition

from bench.infra import Endpoints, Scratch
from bench.workload import transformed_batches
from quotes_consumer.sinks.mongo import to_document
from quotes_consumer.sinks.postgres import INSERT, to_row


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
    """execute_values of the consumer's rows, one transaction per batch, into a fresh schema."""
    dbname = scratch.pg_database()
    conn = psycopg2.connect(**endpoints.pg_params(dbname))
    rows_written = 0
    spent = 0.0
    try:
        for quotes in transformed_batches(topic, total, partitions, batch):
            rows = [to_row(q) for q in quotes]
            started = time.perf_counter()
            with conn, conn.cursor() as cursor:
                psycopg2.extras.execute_values(cursor, INSERT, rows, page_size=len(rows))
            spent += time.perf_counter() - started
            rows_written += len(rows)
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
