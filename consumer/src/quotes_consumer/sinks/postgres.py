"""PostgreSQL sink: one transaction and one multi-row INSERT per batch.

Idempotent by the primary key (source_topic, source_partition, source_offset): a batch written
twice, after a crash between the database commit and the Kafka commit, inserts nothing new.
The table and views are created by the files in ``sql/``, not here, so that the compose
container and the tests share one schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from quotes_consumer.record import Quote
from quotes_consumer.sinks import SinkError

INSERT = """
INSERT INTO quotes (
    source_topic, source_partition, source_offset, kafka_timestamp,
    quote, character, image, character_direction,
    content_hash, word_count, ingested_at
) VALUES %s
ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
"""


def to_row(q: Quote) -> tuple[object, ...]:
    """One quote as the INSERT's VALUES tuple, in its column order."""
    return (
        q.source.topic,
        q.source.partition,
        q.source.offset,
        q.kafka_timestamp,
        q.quote,
        q.character,
        q.image,
        q.character_direction,
        q.content_hash,
        q.word_count,
        q.ingested_at,
    )


@dataclass(frozen=True)
class PostgresConfig:
    host: str
    port: int
    dbname: str
    user: str
    password: str
    connect_timeout_s: int = 5
    statement_timeout_ms: int = 30_000


class PostgresSink:
    name = "postgres"

    def __init__(self, config: PostgresConfig) -> None:
        self._config = config
        self._conn: psycopg2.extensions.connection | None = None

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
            )
        return self._conn

    def write(self, batch: Sequence[Quote]) -> None:
        if not batch:
            return
        rows = [to_row(q) for q in batch]
        try:
            conn = self._connection()
            with conn, conn.cursor() as cursor:  # one transaction: commit on success
                psycopg2.extras.execute_values(cursor, INSERT, rows, page_size=len(rows))
        except psycopg2.Error as error:
            self.close()  # a broken connection is rebuilt on the next attempt
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise SinkError(f"PostgreSQL: {message}") from error

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
            self._conn = None
