"""MongoDB sink: one unordered ``bulk_write`` of inserts per batch.

Idempotent by ``_id``, which is the record's Kafka coordinates: on a replay the insert of a
document that is already there fails with a duplicate-key error, which this sink counts as
written. Inserts rather than upserts, so that a replay changes nothing, not even ``ingested_at``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import InsertOne, MongoClient
from pymongo.errors import BulkWriteError, PyMongoError

from quotes_consumer.record import Quote
from quotes_consumer.sinks import SinkError

DUPLICATE_KEY = 11000


def to_document(quote: Quote, written_at: datetime) -> dict[str, Any]:
    """The stored document: the API's own field names, the extras, and the enrichment."""
    source = quote.source
    document: dict[str, Any] = {
        "_id": source.record_id,
        **quote.extra,
        "quote": quote.quote,
        "character": quote.character,
        "content_hash": quote.content_hash,
        "word_count": quote.word_count,
        "kafka": {
            "topic": source.topic,
            "partition": source.partition,
            "offset": source.offset,
            "timestamp": quote.kafka_timestamp,
        },
        "ingested_at": quote.ingested_at,
        "written_at": written_at,
    }
    if quote.image is not None:
        document["image"] = quote.image
    if quote.character_direction is not None:
        document["characterDirection"] = quote.character_direction
    return document


class MongoSink:
    name = "mongo"

    def __init__(self, uri: str, database: str, collection: str, timeout_ms: int = 5000) -> None:
        self._client: MongoClient[dict[str, Any]] = MongoClient(
            uri,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=6 * timeout_ms,
            appname="quotes-consumer",
            tz_aware=True,
        )
        self._collection = self._client[database][collection]

    def write(self, batch: Sequence[Quote]) -> None:
        if not batch:
            return
        now = datetime.now(UTC)
        requests = [InsertOne(to_document(quote, now)) for quote in batch]
        try:
            self._collection.bulk_write(requests, ordered=False)
        except BulkWriteError as error:
            details = error.details
            others = [e for e in details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
            if others or details.get("writeConcernErrors"):
                first = (others or details["writeConcernErrors"])[0]
                raise SinkError(f"MongoDB: {first.get('errmsg', first)}") from error
        except PyMongoError as error:
            raise SinkError(f"MongoDB: {str(error).splitlines()[0][:300]}") from error

    def close(self) -> None:
        self._client.close()
