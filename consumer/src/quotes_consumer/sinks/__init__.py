"""Where valid quotes go. A sink writes batches idempotently and says how a failure is meant.

Sinks know nothing of Kafka: they receive :class:`~quotes_consumer.record.Quote` values whose
``identity`` makes every write idempotent. The delivery step decides when to retry, when to
isolate a refused record, and when to commit.

A failure is one of three kinds, because each needs a different answer:

- :class:`Unavailable`: the database, the network or the setup is failing, not the records
  (connection lost, no answer within the deadline, shutdown, failover, a read-only standby,
  write conflict, missing table or permission). Retried with backoff for as long as it lasts;
- :class:`Refused`: the database refuses some records for what they are (a value, a limit, a
  constraint). Those records are isolated and dead-lettered; the rest is stored;
- :class:`SinkError` itself: not classified. Retried a few times, then isolated like a refusal;
  if every record of the batch fails alike, it is the server's state, not the records', and it
  is waited out like Unavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from quotes_consumer.record import Quote

if TYPE_CHECKING:
    from quotes_consumer.settings import Settings


class SinkError(RuntimeError):
    """A write failed for a reason the sink could not classify; writing again is safe."""


class Unavailable(SinkError):
    """Nothing about the records: the database or the way to it is failing. Retry later."""


class Refused(SinkError):
    """The database refuses records of the batch for what they are.

    ``positions`` are the indexes, in the written batch, of exactly the refused records when the
    database says which (the others are then stored); None when it does not, and the caller must
    split the batch to find them.
    """

    def __init__(self, message: str, positions: Sequence[int] | None = None) -> None:
        super().__init__(message)
        self.positions = None if positions is None else tuple(positions)


class Sink(Protocol):
    """Writes of one batch happen in two steps, so both databases can agree on the outcome.

    ``write`` may be called several times for parts of one batch (to isolate a refused record);
    ``commit`` then makes durable what every sink wrote (``keep``), and takes back what this sink
    wrote and another refused (``withdrawn``). A sink that holds writes back until its commit
    (``holds_back``: PostgreSQL's open transaction) commits exactly ``keep``; one that cannot
    (MongoDB) deletes ``withdrawn``. Every call ends within the sink's own deadline: a server
    that does not answer is an :class:`Unavailable` failure, never a wait without end.
    """

    name: str
    holds_back: bool

    def write(self, batch: Sequence[Quote]) -> None:
        """Store every quote of ``batch`` or raise; storing a quote twice changes nothing."""

    def commit(self, keep: Sequence[Quote], withdrawn: Sequence[Quote]) -> None:
        """Make ``keep`` durable and take back ``withdrawn``."""

    def rollback(self) -> None:
        """Forget this batch's writes not yet committed, where the database can."""

    def close(self) -> None: ...


def build(settings: Settings) -> list[Sink]:
    """The production sinks, built in one place for the entry point, tests and benchmark."""
    from quotes_consumer.sinks.mongo import MongoSink
    from quotes_consumer.sinks.postgres import PostgresConfig, PostgresSink

    return [
        PostgresSink(
            PostgresConfig(
                host=settings.postgres_host,
                port=settings.postgres_port,
                dbname=settings.postgres_db,
                user=settings.postgres_user,
                password=settings.postgres_password,
                call_timeout_s=settings.consumer_write_timeout_s,
            )
        ),
        MongoSink(
            settings.mongo_uri,
            settings.mongo_db,
            settings.mongo_collection,
            call_timeout_s=settings.consumer_write_timeout_s,
        ),
    ]
