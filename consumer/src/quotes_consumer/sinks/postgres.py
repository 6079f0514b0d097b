"""PostgreSQL sink: one transaction per batch, one INSERT of the whole batch per write.

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
import operator
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import orjson
import psycopg2
import psycopg2.errorcodes
import psycopg2.extensions

from quotes_consumer.record import Quote
from quotes_consumer.sinks import Refused, SinkError, Unavailable

# The table's columns the consumer fills, each with its SQL type and where a quote holds it: the
# one list that the INSERT statement, the JSON payload and each row are generated from.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("source_topic", "text", "message.topic"),
    ("source_partition", "integer", "message.partition"),
    ("source_offset", "bigint", "message.offset"),
    ("message_id", "text", "message_id"),
    ("kafka_timestamp", "timestamptz", "kafka_timestamp"),
    ("quote", "text", "quote"),
    ("character", "text", "character"),
    ("image", "text", "image"),
    ("character_direction", "text", "character_direction"),
    ("content_hash", "text", "content_hash"),
    ("word_count", "integer", "word_count"),
    ("ingested_at", "timestamptz", "ingested_at"),
)
COLUMN_NAMES = tuple(name for name, _, _ in COLUMNS)
# One quote's values in COLUMNS order, read in one call (a row per record, in every batch).
_ROW: Callable[[Quote], tuple[object, ...]] = operator.attrgetter(*(path for _, _, path in COLUMNS))

# A whole batch is one parameter: a JSON array with one array of values per row, in COLUMNS order,
# that jsonb_array_elements splits into rows and each ``->>`` reads back and casts to its column's
# type. Against a multi-row VALUES list of the same rows (psycopg2's execute_values, which quotes
# every value in turn), the client's CPU per row is a fraction and the server's time less (``make
# bench`` measures both, as the isolated PostgreSQL ceilings). Arrays rather than objects keyed by
# column name (json_to_recordset): a third smaller, and about half the client's CPU per row
# (orjson writes a tuple as is, where an object needed a dict per row), with less server time too.
# No conflict target: a row is skipped when it clashes with the primary key (the same record
# read again) or with the unique message id (the same message published twice).
_NAMES = ", ".join(f'"{name}"' for name in COLUMN_NAMES)
_VALUES = ", ".join(f"(r ->> {index})::{kind}" for index, (_, kind, _) in enumerate(COLUMNS))
INSERT = (
    f"INSERT INTO quotes ({_NAMES}) SELECT {_VALUES} FROM jsonb_array_elements(%s::jsonb) AS r "
    "ON CONFLICT DO NOTHING"
)

# SQLSTATE classes a record can cause: a value (22), a constraint (23), a size limit (54),
# cardinality (21), a trigger or routine refusing it (09, 27, 2F, 38, 39, P0), a view's check (44).
# Every other class is the server's or the setup's state, not the record's, so it is waited out as
# Unavailable, never dead-lettered: connection (08), resources (53), operator action (57), system
# (58, XX), rollback and deadlock (40), a read-only standby after failover (25), locks and
# prerequisites (55), permissions and missing objects (42), authentication (28), database (3D),
# schema (3F), and any class PostgreSQL adds later.
REFUSED_CLASSES = frozenset({"21", "22", "23", "27", "2F", "38", "39", "44", "54", "09", "P0"})


class NoAnswer(psycopg2.OperationalError):
    """The server did not answer within the deadline; the connection was abandoned."""


# The deadline of the call the current thread is making, if any (see _wait).
_deadline = threading.local()


def _wait(conn: psycopg2.extensions.connection) -> None:
    """psycopg2's wait callback: every call waits here for its socket, up to the deadline.

    libpq blocks in the kernel with no client-side timeout, so a server that stops answering
    (a hung host, a SIGSTOPped process) holds a blocking call for ever: keepalives are answered
    by the server's kernel, and ``statement_timeout`` is enforced by the server that hangs. With
    this callback installed, psycopg2 runs each call without blocking and waits here instead.
    When the deadline passes, raising makes psycopg2 close the connection: it is abandoned, not
    awaited, and the caller retries on a new one.
    """
    deadline_at: float | None = getattr(_deadline, "at", None)
    poller = select.poll()
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        if state == psycopg2.extensions.POLL_READ:
            events = select.POLLIN
        elif state == psycopg2.extensions.POLL_WRITE:
            events = select.POLLOUT
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")
        poller.register(conn.fileno(), events)
        if deadline_at is None:
            poller.poll()
        else:
            left_ms = (deadline_at - time.monotonic()) * 1000
            if left_ms <= 0 or not poller.poll(left_ms):
                raise NoAnswer("no answer from the server within the deadline; abandoned")
        poller.unregister(conn.fileno())


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every psycopg2 call this thread makes in the block ends within ``seconds`` in total."""
    psycopg2.extensions.set_wait_callback(_wait)  # process-wide and idempotent
    previous = getattr(_deadline, "at", None)
    _deadline.at = time.monotonic() + seconds
    try:
        yield
    finally:
        _deadline.at = previous


def to_row(quote: Quote) -> tuple[object, ...]:
    """One quote as a tuple of Python values, in :data:`COLUMNS` order."""
    return _ROW(quote)


def to_columns(quote: Quote) -> dict[str, object]:
    """One quote as column name -> value: the row the bench's peers (Quix Streams, Kafka
    Connect) are handed to write."""
    return dict(zip(COLUMN_NAMES, _ROW(quote), strict=True))


def to_json(batch: Sequence[Quote]) -> str:
    """The batch as the INSERT's one parameter: a JSON array with one array of values per quote,
    in :data:`COLUMNS` order.

    Dates go as RFC 3339 with their offset; text goes as UTF-8, unescaped, which PostgreSQL
    reads as is. The record contract already refused what no text column can hold (NUL, lone
    surrogates), so the server accepts every value this produces; orjson refuses a lone
    surrogate too, which the caller treats as a refusal of the batch.
    """
    return orjson.dumps([_ROW(quote) for quote in batch]).decode()


@dataclass(frozen=True)
class PostgresConfig:
    host: str
    port: int
    dbname: str
    user: str
    password: str
    connect_timeout_s: int = 5
    statement_timeout_ms: int = 30_000
    # No call (connect, write, commit, rollback) waits longer than this for an answer.
    call_timeout_s: float = 15.0


def classify(error: psycopg2.Error) -> SinkError:
    """The sink's kind of failure for a psycopg2 error, with its first line as the message.

    Total: every SQLSTATE is either a refusal of the records or the server's state.
    """
    text = str(error).strip().splitlines()
    message = f"PostgreSQL: {text[0] if text else type(error).__name__}"[:300]
    code = error.pgcode or ""
    if not code:
        return Unavailable(message)  # no SQLSTATE: the connection failed, or no answer came
    if code[:2] in REFUSED_CLASSES:
        return Refused(f"{message} [{code} {psycopg2.errorcodes.lookup(code)}]")
    return Unavailable(f"{message} [{code}]")


class PostgresSink:
    name = "postgres"
    holds_back = True  # nothing is visible before commit(): withdrawing is not writing

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
        try:
            payload = (to_json(batch),)
        except orjson.JSONEncodeError as error:
            raise Refused(f"PostgreSQL: the batch cannot be encoded: {error}") from error
        try:
            with deadline(self._config.call_timeout_s):
                conn = self._connection()
                with conn.cursor() as cursor:
                    if not self._written:  # nothing to protect yet: the transaction is this write
                        cursor.execute(INSERT, payload)
                    else:
                        cursor.execute("SAVEPOINT part")
                        try:
                            cursor.execute(INSERT, payload)
                        except psycopg2.Error as error:
                            if not isinstance(classify(error), Unavailable):
                                cursor.execute("ROLLBACK TO SAVEPOINT part")
                            raise
                        cursor.execute("RELEASE SAVEPOINT part")
        except psycopg2.Error as error:
            failure = classify(error)
            if isinstance(failure, Unavailable):
                # The server's state, not the records': the retry starts on a new connection,
                # so a session that cannot write (a standby, a setting) is not kept for ever.
                self.close()
            elif not self._written:
                self.rollback()  # the transaction held nothing: start over clean
            raise failure from error
        self._written.extend(batch)

    def commit(self, keep: Sequence[Quote], withdrawn: Sequence[Quote]) -> None:
        """Make exactly ``keep`` durable: whatever else the transaction holds never shows.

        Usually the transaction holds exactly ``keep``. When it holds more (a record the other
        database refused, or one whose partition was revoked before the other database wrote
        it), the batch is written again without those rows, so they are never visible and no
        DELETE privilege is needed. After a lost COMMIT the transaction holds nothing, and the
        caller writes ``keep`` again before calling this.
        """
        del withdrawn  # everything not in keep is withdrawn, by not committing it
        wanted = {quote.identity for quote in keep}
        if {quote.identity for quote in self._written} != wanted:
            self.rollback()
            self.write(keep)
        try:
            with deadline(self._config.call_timeout_s):
                if self._conn is not None and not self._conn.closed:
                    self._conn.commit()
        except psycopg2.Error as error:
            self.close()  # the transaction is lost; the retry writes it again on a new session
            raise classify(error) from error
        finally:
            self._written = []

    def rollback(self) -> None:
        self._written = []
        if self._conn is None:
            return
        try:
            with deadline(self._config.call_timeout_s):
                self._conn.rollback()
        except psycopg2.Error:
            self.close()  # a broken connection is rebuilt on the next write

    def close(self) -> None:
        self._written = []
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
            self._conn = None
