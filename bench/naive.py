"""The reference consumer, written the way the original lab material did it:
``python -m bench.naive --limit N``, configured by the consumer's own environment variables
(:mod:`quotes_consumer.settings`). What it does: ``bench/README.md``, *What is measured*.

Why it builds the very rows and documents the real consumer writes (same transform, same schema):
the ratio to it should measure batching, not different data.

Prints one JSON line for the bench (:meth:`bench.runs.Child.reported`): records handled, seconds
from the first message to the last write, and its own CPU seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime

import psycopg2
import pymongo
from kafka import KafkaConsumer

from quotes_consumer.loop import to_message
from quotes_consumer.record import InvalidRecord, transform
from quotes_consumer.settings import load
from quotes_consumer.sinks.mongo import to_document
from quotes_consumer.sinks.postgres import COLUMN_NAMES, to_row

INSERT_ONE = (
    f"INSERT INTO quotes ({', '.join(COLUMN_NAMES)}) "
    f"VALUES ({', '.join(['%s'] * len(COLUMN_NAMES))})"
)
IDLE_TIMEOUT_MS = 15_000


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive")
    parser.add_argument("--limit", type=int, required=True, help="stop after this many records")
    limit = parser.parse_args(argv).limit
    settings = load(os.environ)
    consumer = KafkaConsumer(
        settings.kafka_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        group_id=settings.kafka_group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        consumer_timeout_ms=IDLE_TIMEOUT_MS,  # ends the for-loop if the topic runs dry
    )
    conn = psycopg2.connect(
        host=settings.postgres_host,
        port=settings.postgres_port,
        dbname=settings.postgres_db,
        user=settings.postgres_user,
        password=settings.postgres_password,
    )
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        settings.mongo_uri, tz_aware=True
    )
    collection = client[settings.mongo_db]["quotes"]

    handled = written = 0
    first = last = 0.0
    for message in consumer:  # bounded: --limit records, or IDLE_TIMEOUT_MS without one
        if not first:
            first = time.monotonic()
        handled += 1
        now = datetime.now(UTC)
        try:
            quote = transform(to_message(message), settings.consumer_max_record_bytes, now)
        except InvalidRecord:
            quote = None
        if quote is not None:
            with conn.cursor() as cursor:
                cursor.execute(INSERT_ONE, to_row(quote))
            conn.commit()
            collection.insert_one(to_document(quote, datetime.now(UTC)))
            written += 1
        last = time.monotonic()
        if handled >= limit:
            break

    consumer.close()  # auto-commit's last commit happens here
    conn.close()
    client.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "records": handled,
        "written": written,
        "seconds": last - first,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }
    print(json.dumps(report), flush=True)
    return 0 if handled >= limit else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
