"""PostgreSQL sink: one transaction per batch, one multi-row INSERT per write.

Idempotent by identity: the Kafka-coordinate primary key, and a unique message id where the
producer gave one, with ``ON CONFLICT DO NOTHING``, so a batch written twice (after a crash
between the database commit and the Kafka commit) inserts nothing new.

The transaction stays open until :meth:`PostgresSink.commit`, so a record MongoDB refused is
withdrawn before anyone can see it, without the DELETE privilege. Writes after the first one of a
batch are wrapped in a savepoint, so a refused part rolls back alone while the parts already
written stay in the transaction. The table and views are created by the files in ``sql/``, not
here, so that the compose container and the tests share one schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg2
import psycopg2.errorcodes
import psycopg2.extensions
import psycopg2.extras

from quotes_consumer.record import Quote
from quotes_consumer.sinks import Refused, SinkError, Unavailable

# The table's columns the consumer fills, each with how a quote provides it: the one list that
# both the INSERT statement and each row are generated from.
COLUMNS: tuple[tuple[str, Callable[[Quote], object]], ...] = (
    ("source_topic", lambda q: q.message.topic),
    ("source_partition", lambda q: q.message.partition),
    ("source_offset", lambda q: q.message.offset),
    ("message_id", lambda q: q.message_id),
    ("kafka_timestamp", lambda q: q.kafka_timestamp),
    ("quote", lambda q: q.quote),
    ("character", lambda q: q.character),
    ("image", lambda q: q.image),
    ("character_direction", lambda q: q.character_direction),
    ("content_hash", lambda q: q.content_hash),
    ("word_count", lambda q: q.word_count),
    ("ingested_at", lambda q: q.ingested_at),
)

# No conflict target: a row is skipped when it clashes with the primary key (the same record
# read again) or with the unique message id (the same message published twice).
INSERT = (
    f"INSERT INTO quotes ({', '.join(name for name, _ in COLUMNS)}) VALUES %s "
    "ON CONFLICT DO NOTHING"
)

# SQLSTATE classes. Refused: the record's data (22), a constraint (23), a size limit (54).
# Unavailable: connection (08), resources (53), operator action such as shutdown or a
# statement timeout (57), system (58), serialization and deadlock (40), and the setup, not the
# records: permissions and missing objects (42), authentication (28), database (3D), schema (3F).
REFUSED_CLASSES = ("22", "23", "54")
UNAVAILABLE_CLASSES = ("08", "53", "57", "58", "40", "42", "28", "3D", "3F")


def to_row(quote: Quote) -> tuple[object, ...]:
    """One quote as the INSERT's VALUES tuple, in :data:`COLUMNS` order."""
    return tuple(value(quote) for _, value in COLUMNS)


@dataclass(frozen=True)
class PostgresConfig:
    host: str
    port: int
    dbname: str
    user: str
    password: str
    connect_timeout_s: int = 5
    statement_timeout_ms: int = 30_000


def classify(error: psycopg2.Error) -> SinkError:
    """The sink's kind of failure for a psycopg2 error, with its first line as the message."""
    text = str(error).strip().splitlines()
    message = f"PostgreSQL: {text[0] if text else type(error).__name__}"[:300]
    code = error.pgcode or ""
    if isinstance(error, psycopg2.InterfaceError) or (
        isinstance(error, psycopg2.OperationalError) and not code
    ):
        return Unavailable(message)  # no SQLSTATE: the connection itself failed
    if code[:2] in REFUSED_CLASSES:
        return Refused(f"{message} [{code} {psycopg2.errorcodes.lookup(code)}]")
    if code[:2] in UNAVAILABLE_CLASSES:
        return Unavailable(message)
    return SinkError(f"{message} [{code or 'no SQLSTATE'}]")


class PostgresSink:
    name = "postgres"

    def __init__(self, config: PostgresConfig) -> None:
        self._config = config
        self._conn: psycopg2.extensions.connection | None = None
        self._written: list[Quote] = []  # in the open transaction

    def _connection(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(
                host=self._config.host,
                port=self._config.port,
                dbname=self._config.dbname,
                user=self._config.user,
                password=self._config.password,
                connect_timeout=self._config.connect_timeout_s,
                application_name="quotes-consumer",
                options=f"-c statement_timeout={self._config.statement_timeout_ms}",
                # A silent network partition is noticed within about 20 s instead of hours.
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=2,
            )
        return self._conn

    def write(self, batch: Sequence[Quote]) -> None:
        if not batch:
            return
        rows = [to_row(quote) for quote in batch]
        try:
            conn = self._connection()
            with conn.cursor() as cursor:
                if not self._written:  # nothing to protect yet: the transaction is this write
                    psycopg2.extras.execute_values(cursor, INSERT, rows, page_size=len(rows))
                else:
                    cursor.execute("SAVEPOINT part")
                    try:
                        psycopg2.extras.execute_values(cursor, INSERT, rows, page_size=len(rows))
                    except psycopg2.Error as error:
                        if classify(error).__class__ is not Unavailable:
                            cursor.execute("ROLLBACK TO SAVEPOINT part")
                        raise
                    cursor.execute("RELEASE SAVEPOINT part")
        except psycopg2.Error as error:
            failure = classify(error)
            if isinstance(failure, Unavailable) or not self._written:
                self.rollback()  # the transaction is gone or held nothing: start over clean
            raise failure from error
        self._written.extend(batch)

    def commit(self, withdrawn: Sequence[Quote]) -> None:
        gone = {quote.identity for quote in withdrawn}
        if any(quote.identity in gone for quote in self._written):
            # Rare: MongoDB refused a record this transaction holds. Write the batch again
            # without it, so the row never becomes visible and no DELETE is needed.
            kept = [quote for quote in self._written if quote.identity not in gone]
            self.rollback()
            self.write(kept)
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.commit()
        except psycopg2.Error as error:
            self.rollback()
            raise classify(error) from error
        finally:
            self._written = []

    def rollback(self) -> None:
        self._written = []
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except psycopg2.Error:
            self.close()  # a broken connection is rebuilt on the next write

    def close(self) -> None:
        self._written = []
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
            self._conn = None
