"""Dead-letter topic: rejected messages, unchanged where they fit, with headers that say why.

Modelled on Kafka Connect's dead-letter queue with context headers: the value, key and headers
are the original ones, and ``dlq.*`` headers name the reason and the source topic, partition and
offset, so a person can find, fix and replay a record. Delivery is at-least-once: a batch retried
after a crash may dead-letter a record twice; the source headers identify duplicates.

A dead letter must always fit in the topic, whatever the source record's sizes: a dead letter
that Kafka refuses would stop the pipeline as surely as a bad record. So key, headers and value
share a budget below Kafka's default 1 MiB record limit, and whatever is cut is marked in a
``dlq.*.truncated.from`` header; the whole original stays in the source topic, at the offset the
headers give.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.errors import KafkaError

from quotes_consumer.record import Header, Message

log = logging.getLogger("quotes_consumer")

# Kafka's defaults: broker message.max.bytes 1,048,588 and producer max.request.size 1,048,576.
# The budget leaves room for the record and batch framing.
MAX_DEAD_LETTER_BYTES = 1_000_000
MAX_KEY_BYTES = 16_384
MAX_ORIGINAL_HEADER_BYTES = 65_536
MAX_ERROR_CHARS = 500
MAX_CONTEXT_CHARS = 1_000  # reason, topic, group: short by nature, bounded all the same
HEADER_OVERHEAD = 10  # a header's two length varints, at most 5 bytes each


class DeadLetterError(RuntimeError):
    """Rejected records were not all acknowledged by Kafka; sending them again is safe."""


@dataclass(frozen=True)
class Reject:
    """A message that goes to the dead-letter topic, and why."""

    message: Message
    reason: str
    detail: str


@dataclass(frozen=True)
class DeadLetter:
    """The record to produce: within the budget, with the cuts marked."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def size(self) -> int:
        return _size(self.key) + _size(self.value) + _headers_size(self.headers)


def _size(data: bytes | None) -> int:
    return 0 if data is None else len(data)


def _headers_size(headers: Sequence[Header]) -> int:
    return sum(len(name.encode()) + _size(value) + HEADER_OVERHEAD for name, value in headers)


def _text(text: str, limit: int) -> bytes:
    """At most ``limit`` characters of ``text`` as UTF-8, a lone surrogate (which UTF-8 cannot
    hold, and which a rejection's detail may quote) written as its escape, e.g. ``\\ud800``.

    So a dead letter always encodes, whatever the texts, and each one's bytes stay bounded:
    at most 6 per character, the length of such an escape.
    """
    return text[:limit].encode("utf-8", "backslashreplace")


def _header_name(name: str) -> str:
    """An original header name the Kafka client can encode: lone surrogates escaped."""
    return _text(name, len(name)).decode("utf-8")


def _number(number: int) -> bytes:
    """An integer as decimal text. A message's coordinates come from the broker, but ``str``
    raises ValueError past 4300 digits, and a dead letter is built for any message."""
    if not -(2**64) < number < 2**64:
        return b"out of range"
    return str(number).encode()


def dead_letter(reject: Reject, group_id: str) -> DeadLetter:
    """Build the dead letter for ``reject``: context headers first, then what fits of the rest.

    Never raises, for any message and any texts: every text is made encodable and bounded
    before it is measured, so a reject cannot stop the consumer nor outgrow the budget.
    """
    message = reject.message
    timestamp = message.timestamp_ms
    context = [
        ("dlq.reason", _text(reject.reason, MAX_CONTEXT_CHARS)),
        ("dlq.error", _text(reject.detail, MAX_ERROR_CHARS)),
        ("dlq.source.topic", _text(message.topic, MAX_CONTEXT_CHARS)),
        ("dlq.source.partition", _number(message.partition)),
        ("dlq.source.offset", _number(message.offset)),
        ("dlq.source.timestamp", b"" if timestamp is None else _number(timestamp)),
        ("dlq.consumer.group", _text(group_id, MAX_CONTEXT_CHARS)),
    ]
    cuts: list[tuple[str, bytes]] = []

    # Original headers, in order, while they fit their share; header values may be null.
    kept: list[tuple[str, bytes]] = []
    used = 0
    for name, value in message.headers:
        header = (_header_name(name), value if value is not None else b"")
        cost = _headers_size([header])
        if used + cost > MAX_ORIGINAL_HEADER_BYTES:
            cuts.append(("dlq.headers.truncated.from", _number(len(message.headers))))
            break
        kept.append(header)
        used += cost

    key = message.key
    if key is not None and len(key) > MAX_KEY_BYTES:
        cuts.append(("dlq.key.truncated.from", _number(len(key))))
        key = key[:MAX_KEY_BYTES]
    # A record with neither key nor value cannot be produced again as it was; an empty key
    # keeps it, and its headers still say where it came from.
    if key is None and message.value is None:
        key = b""

    value = message.value
    # Reserve room for the value-cut marker itself before measuring what is left.
    fixed = (
        _size(key)
        + _headers_size([*kept, *context, *cuts])
        + _headers_size([("dlq.value.truncated.from", b"0" * 20)])
    )
    room = MAX_DEAD_LETTER_BYTES - fixed
    if value is not None and len(value) > room:
        cuts.append(("dlq.value.truncated.from", _number(len(value))))
        value = value[: max(room, 0)]
    return DeadLetter(key, value, [*kept, *context, *cuts])


class DeadLetterPublisher:
    """Sends rejects to the dead-letter topic and waits until Kafka has them all."""

    def __init__(
        self, bootstrap_servers: str, topic: str, group_id: str, timeout_s: float = 15.0
    ) -> None:
        self.topic = topic
        self._group_id = group_id
        self._timeout_s = timeout_s  # the deadline of one publish, connecting included
        self._bootstrap_servers = bootstrap_servers.split(",")
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def connect_soon(self) -> None:
        """Connect in the background now, so that the first reject does not wait ~150 ms for
        a connection and metadata; if Kafka is away, the first publish connects instead."""

        def connect() -> None:
            with contextlib.suppress(KafkaError):
                self._connected()

        threading.Thread(target=connect, name="dead-letter-connect", daemon=True).start()

    def _connected(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                self._producer = self._new_producer()
            return self._producer

    def _new_producer(self) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            acks="all",
            linger_ms=0,  # publish() flushes at once anyway
            retries=5,
            max_block_ms=int(self._timeout_s * 1000),
            request_timeout_ms=int(self._timeout_s * 1000),
            bootstrap_timeout_ms=int(self._timeout_s * 1000),
            # After a broker restart, reconnect within a second, not after a backoff that has
            # grown towards the default 30 s.
            reconnect_backoff_max_ms=1_000,
            client_id="quotes-consumer-dlq",
        )

    def publish(self, rejects: Sequence[Reject]) -> None:
        """Send every reject and wait until Kafka acknowledged all of them, within the deadline.

        A publish that times out may still land later: sending again is safe, since the
        dead-letter topic is at-least-once and its source headers identify a repeat.
        """
        if not rejects:
            return
        deadline = time.monotonic() + self._timeout_s
        try:
            producer = self._connected()
            futures = []
            for reject in rejects:
                letter = dead_letter(reject, self._group_id)
                futures.append(
                    producer.send(
                        self.topic, key=letter.key, value=letter.value, headers=letter.headers
                    )
                )
            producer.flush(timeout=max(0.0, deadline - time.monotonic()))
            for future in futures:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
        except KafkaError as error:
            raise DeadLetterError(f"dead-letter topic {self.topic}: {error}") from error

    def close(self, timeout_s: float = 5.0) -> None:
        """Close within ``timeout_s``; with Kafka away, records still pending make the client
        refuse to close, and the process is about to end anyway. A producer still being built
        (Kafka away since startup: it waits up to the publish deadline to bootstrap) is not
        waited for: its thread ends with the process."""
        if not self._lock.acquire(timeout=timeout_s):
            log.info("dead-letter producer still connecting; not waited for")
            return
        try:
            if self._producer is not None:
                try:
                    self._producer.close(timeout=timeout_s)
                except KafkaError as error:
                    log.info("dead-letter producer not closed cleanly: %s", error)
        finally:
            self._lock.release()
