"""MongoDB sink: one unordered ``insert_many`` per write.

Idempotent by ``_id``, which is the quote's identity: on a replay the insert of a document that
is already there fails with a duplicate-key error, which this sink counts as written. Inserts
rather than upserts, so that a replay changes nothing, not even ``ingested_at``.

An unordered insert reports each refused document by its index and stores the others, so a
refusal here names exactly the refused records. MongoDB (and FerretDB) has no transaction to hold
back on a standalone server, so a record PostgreSQL refused is withdrawn by deleting the document
this batch inserted for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pymongo
from bson import DatetimeMS
from bson.errors import BSONError
from pymongo import MongoClient
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from quotes_consumer.record import Quote
from quotes_consumer.sinks import Refused, SinkError, Unavailable

DUPLICATE_KEY = 11000
# Server error codes that say nothing about the document, so they are waited out, never
# dead-lettered: shutdown, interruption and failover, including a node that is no longer primary
# (91, 189, 10107, 11600, 11601, 11602, 13435, 13436), network (6, 7, 89, 9001), time limits and
# locks (24, 50, 262), write conflict (112), routing (133, 13388), and the setup: authentication
# and authorization (13, 18).
UNAVAILABLE_CODES = frozenset(
    {6, 7, 13, 18, 24, 50, 89, 91, 112, 133, 189, 262, 9001, 10107, 11600, 11601, 11602, 13388}
    | {13435, 13436}
)


def to_document(quote: Quote, written_at: datetime | DatetimeMS) -> dict[str, Any]:
    """The stored document: the API's own field names, the extras, and the enrichment."""
    message = quote.message
    document: dict[str, Any] = {
        "_id": quote.identity,
        **quote.extra,
        "quote": quote.quote,
        "character": quote.character,
        "content_hash": quote.content_hash,
        "word_count": quote.word_count,
        "kafka": {
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "timestamp": quote.kafka_timestamp,
        },
        "ingested_at": quote.ingested_at,
        "written_at": written_at,
    }
    if quote.message_id is not None:
        document["message_id"] = quote.message_id
    if quote.image is not None:
        document["image"] = quote.image
    if quote.character_direction is not None:
        document["characterDirection"] = quote.character_direction
    return document


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"MongoDB: {lines[0] if lines else type(error).__name__}"[:300]


def classify(error: Exception) -> SinkError:
    """The sink's kind of failure for a pymongo or BSON error."""
    message = _first_line(error)
    if isinstance(error, (ConnectionFailure, ExecutionTimeout, WTimeoutError)) or (
        isinstance(error, PyMongoError) and error.timeout
    ):
        return Unavailable(message)  # includes AutoReconnect, NotPrimaryError, every timeout
    if isinstance(error, OperationFailure) and (
        error.code in UNAVAILABLE_CODES
        or error.has_error_label("RetryableWriteError")
        or error.has_error_label("TransientTransactionError")
    ):
        return Unavailable(f"{message} [code {error.code}]")
    if isinstance(error, (DocumentTooLarge, BSONError)):
        return Refused(message)  # raised before sending: which document is not said
    if isinstance(error, OperationFailure):
        return SinkError(f"{message} [code {error.code}]")
    return SinkError(message)


class MongoSink:
    name = "mongo"
    holds_back = False  # an acknowledged insert is visible at once: withdrawing is deleting

    def __init__(
        self,
        uri: str,
        database: str,
        collection: str,
        timeout_ms: int = 5000,
        call_timeout_s: float = 15.0,
    ) -> None:
        # No call waits longer than this in total (server selection, connection, answer): a
        # server that accepts the connection and never answers is abandoned, not awaited.
        self._call_timeout_s = call_timeout_s
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
        # The same for every document: converted to BSON's milliseconds once, not per document
        # (a timezone-aware datetime costs the encoder a call to its utcoffset()).
        now = DatetimeMS(datetime.now(UTC))
        try:
            documents = [to_document(quote, now) for quote in batch]
            with pymongo.timeout(self._call_timeout_s):
                # insert_many rather than bulk_write of InsertOne: the same command and the same
                # BulkWriteError, without an InsertOne object and its checks for every document
                # (about 1.5 us of CPU per record; bench/results).
                self._collection.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            self._raise_for(error)
        except (PyMongoError, BSONError) as error:
            raise classify(error) from error

    @staticmethod
    def _raise_for(error: BulkWriteError) -> None:
        """Duplicates are success; a failing server is Unavailable; the rest are refusals."""
        details = error.details
        if details.get("writeConcernErrors"):
            first = details["writeConcernErrors"][0]
            raise Unavailable(f"MongoDB: {first.get('errmsg', first)}") from error
        failed = [e for e in details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
        if not failed:
            return
        transient = [e for e in failed if e.get("code") in UNAVAILABLE_CODES]
        if transient:
            raise Unavailable(f"MongoDB: {transient[0].get('errmsg', transient[0])}") from error
        first = failed[0]
        raise Refused(
            f"MongoDB: {str(first.get('errmsg', first))[:250]} [code {first.get('code')}]",
            positions=[e["index"] for e in failed],
        ) from error

    def commit(self, keep: Sequence[Quote], withdrawn: Sequence[Quote]) -> None:
        """Inserts are durable already; take back the documents of ``withdrawn`` quotes.

        ``withdrawn`` holds only records another database refused, which any replica would see
        refused too. Only a document this very record wrote is deleted (same ``_id`` and Kafka
        coordinates): a document that an earlier copy of the same message wrote stays. Records
        in neither list (revoked before the other database wrote them) stay: their partition's
        new owner reads them again and writes them to both.
        """
        del keep  # written and acknowledged already
        if not withdrawn:
            return
        match = [
            {
                "_id": quote.identity,
                "kafka.partition": quote.message.partition,
                "kafka.offset": quote.message.offset,
            }
            for quote in withdrawn
        ]
        try:
            with pymongo.timeout(self._call_timeout_s):
                self._collection.delete_many({"$or": match})
        except (PyMongoError, BSONError) as error:
            failure = classify(error)
            raise (
                failure if isinstance(failure, Unavailable) else SinkError(str(failure))
            ) from error

    def rollback(self) -> None:
        """Nothing is held back: written documents stay, and writing them again is harmless."""

    def close(self) -> None:
        self._client.close()
