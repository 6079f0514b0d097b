"""The peer reference: Quix Streams 3.28 reading the bench's topic into one of its own sinks.
``python -m bench.quix_reference --sink postgres|mongo --state-dir S``, configured by the
consumer's own environment variables (the database is ``POSTGRES_DB`` or ``MONGO_DB``). How it
is set up and why nothing is tuned: ``bench/README.md``, *What is measured*.

Why a peer: a ceiling says what the servers allow, the naive consumer what no batching costs; a
maintained streaming library says what an ordinary, well-built alternative achieves on the same
topic, servers and machine.

The first record's wall-clock time is printed as a JSON line (``{"first_record_at": ...}``): the
start of the throughput window, as the consumer's first ``ingested_at`` is for the consumer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from pymongo import uri_parser
from quixstreams import Application, message_context
from quixstreams.sinks.community.mongodb import MongoDBSink
from quixstreams.sinks.community.postgresql import PostgreSQLSink

from quotes_consumer.record import InvalidRecord, Message, transform
from quotes_consumer.settings import Settings, load
from quotes_consumer.sinks.mongo import to_document
from quotes_consumer.sinks.postgres import to_columns

QUIX_TABLE = "quix_quotes"


class _Converter:
    """Record value to the sink's input (row dict or document), or None when invalid."""

    def __init__(self, sink: str, max_record_bytes: int) -> None:
        self.sink = sink
        self.max_record_bytes = max_record_bytes
        self.first_seen = False

    def __call__(self, value: bytes, key: Any, timestamp: int, headers: Any) -> Any:
        if not self.first_seen:
            self.first_seen = True
            print(json.dumps({"first_record_at": time.time()}), flush=True)
        context = message_context()
        message = Message(
            topic=context.topic,
            partition=context.partition,
            offset=context.offset,
            timestamp_ms=timestamp,
            key=key,
            value=value,
            headers=tuple(headers or ()),
        )
        now = datetime.now(UTC)
        try:
            quote = transform(message, self.max_record_bytes, now)
        except InvalidRecord:
            return None
        if self.sink == "mongo":
            return to_document(quote, now)
        return to_columns(quote)


def _document_id(item: Any) -> dict[str, Any]:
    """Match on the consumer's identity; Quix's default matches on the Kafka key (None here)."""
    return {"_id": item.value["_id"]}


def _without_id(document: dict[str, Any]) -> dict[str, Any]:
    """``$set`` must not name ``_id``; the filter above sets it on insert."""
    return {k: v for k, v in document.items() if k != "_id"}


def build_sink(sink: str, settings: Settings) -> PostgreSQLSink | MongoDBSink:
    if sink == "postgres":
        return PostgreSQLSink(
            host=settings.postgres_host,
            port=settings.postgres_port,
            dbname=settings.postgres_db,
            user=settings.postgres_user,
            password=settings.postgres_password,
            table_name=QUIX_TABLE,
        )
    parsed = uri_parser.parse_uri(settings.mongo_uri)
    host, port = parsed["nodelist"][0]
    return MongoDBSink(
        host=host,
        port=int(port),
        db=settings.mongo_db,
        collection="quotes",
        username=parsed.get("username"),
        password=parsed.get("password"),
        document_matcher=_document_id,
        value_selector=_without_id,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quix_reference")
    parser.add_argument("--sink", choices=("postgres", "mongo"), required=True)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    settings = load(os.environ)
    logging.basicConfig(level=logging.INFO)

    app = Application(
        broker_address=settings.kafka_bootstrap_servers,
        consumer_group=settings.kafka_group_id,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",  # commit_interval left at its default
        state_dir=args.state_dir,
    )
    topic = app.topic(settings.kafka_topic, value_deserializer="bytes")
    frame = app.dataframe(topic)
    frame = frame.apply(_Converter(args.sink, settings.consumer_max_record_bytes), metadata=True)
    frame = frame.filter(lambda value: value is not None)
    frame.sink(build_sink(args.sink, settings))
    app.run()  # until SIGTERM from the bench, which it handles with a last checkpoint
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
