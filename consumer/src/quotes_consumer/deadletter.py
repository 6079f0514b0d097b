"""Dead-letter topic: rejected messages, unchanged, with headers that say why and from where.

Modelled on Kafka Connect's dead-letter queue with context headers: the value and key are the
original bytes, the original headers are kept, and ``dlq.*`` headers name the reason and the
source topic, partition and offset, so a person can find, fix and replay a record. Delivery is
at-least-once: a batch retried after a crash may dead-letter a record twice; the source headers
identify duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.errors import KafkaError

from quotes_consumer.record import Coordinates, InvalidRecord

# Kafka's default limit on a record is 1 MiB (broker message.max.bytes, producer
# max.request.size). A rejected value close to it would not fit beside the reason headers, and a
# record that can never be sent would block the partition forever; so such a value is cut, and a
# header says so. The whole original stays in the source topic, at the offset the headers give.
MAX_VALUE_BYTES = 900_000


class DeadLetterError(RuntimeError):
    """Rejected records were not all acknowledged by Kafka; sending them again is safe."""


@dataclass(frozen=True)
class Reject:
    """A message that failed the record contract."""

    source: Coordinates
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    error: InvalidRecord


def reason_headers(reject: Reject, group_id: str) -> list[tuple[str, bytes]]:
    source = reject.source
    truncated = reject.value is not None and len(reject.value) > MAX_VALUE_BYTES
    context = [
        ("dlq.reason", reject.error.reason),
        ("dlq.error", reject.error.detail[:500]),
        ("dlq.source.topic", source.topic),
        ("dlq.source.partition", str(source.partition)),
        ("dlq.source.offset", str(source.offset)),
        ("dlq.source.timestamp", "" if source.timestamp_ms is None else str(source.timestamp_ms)),
        ("dlq.consumer.group", group_id),
    ]
    if truncated:
        context.append(("dlq.value.truncated.from", str(len(reject.value or b""))))
    return [*reject.headers, *((name, text.encode()) for name, text in context)]


class DeadLetterPublisher:
    def __init__(self, bootstrap_servers: str, topic: str, group_id: str) -> None:
        self.topic = topic
        self._group_id = group_id
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            acks="all",
            linger_ms=5,
            retries=5,
            max_block_ms=10_000,
            request_timeout_ms=10_000,
            client_id="quotes-consumer-dlq",
        )

    def publish(self, rejects: Sequence[Reject], timeout_s: float = 15.0) -> None:
        """Send every reject and wait until Kafka acknowledged all of them."""
        if not rejects:
            return
        try:
            futures = [
                self._producer.send(
                    self.topic,
                    # A record with neither key nor value cannot be produced again as it was;
                    # an empty key keeps it, and its headers still say where it came from.
                    key=b"" if reject.key is None and reject.value is None else reject.key,
                    value=None if reject.value is None else reject.value[:MAX_VALUE_BYTES],
                    headers=reason_headers(reject, self._group_id),
                )
                for reject in rejects
            ]
            self._producer.flush(timeout=timeout_s)
            for future in futures:
                future.get(timeout=timeout_s)
        except KafkaError as error:
            raise DeadLetterError(f"dead-letter topic {self.topic}: {error}") from error

    def close(self) -> None:
        self._producer.close(timeout=5)
