"""The steady load: a bounded stream at a fixed rate, and a ledger of what Kafka acknowledged.

Why acknowledgements, not sends: the checker accounts for the records in Kafka, and only an
acknowledgement says a record is there. The producer is idempotent, with generous retries and
delivery timeout: it buffers through a broker restart, and a retried send cannot land twice.
"""

from __future__ import annotations

import json
import threading
import time

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import RecordMetadata

from tests.integration.pipeline import Coordinate, quote_value

# One in a hundred records is invalid, of each kind in turn (the consumer's reason in comments).
INVALID = (
    b'{"quote": "unterminated',  # invalid_json
    json.dumps({"character": "Nobody"}).encode(),  # missing_field
    json.dumps({"quote": 42, "character": "Numbers"}).encode(),  # wrong_type
)
DELIVERY_TIMEOUT_MS = 180_000  # longer than a broker restart takes, even on a busy machine


class SteadyProducer(threading.Thread):
    """Sends ``rate`` records a second, round-robin over the partitions, until stopped or
    ``limit`` records were sent; falling behind (a blocked send) is not caught up in a burst."""

    def __init__(self, bootstrap: str, topic: str, rate: float, limit: int, partitions: int):
        super().__init__(name="soak-producer", daemon=True)
        self.bootstrap, self.topic, self.rate = bootstrap, topic, rate
        self.limit, self.partitions = limit, partitions
        self.stop = threading.Event()
        self.valid: list[Coordinate] = []
        self.invalid: list[Coordinate] = []
        self.sent = 0  # handed to the client, acknowledged or not yet
        self.failed = 0  # sends Kafka did not acknowledge: not in the ledger
        self.error: str | None = None  # the ledger may be incomplete

    @staticmethod
    def value(index: int) -> tuple[bytes, bool]:
        """Record ``index``: a valid quote with a text of its own, or an invalid one."""
        if index % 100 == 50:
            return INVALID[(index // 100) % len(INVALID)], False
        return quote_value(index), True

    def _acked(self, valid: bool, meta: RecordMetadata) -> None:
        (self.valid if valid else self.invalid).append((meta.partition, meta.offset))

    def _failed(self, _error: Exception) -> None:
        self.failed += 1

    def run(self) -> None:
        try:
            producer = KafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=20,
                request_timeout_ms=10_000,
                delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
                max_block_ms=10_000,
                reconnect_backoff_max_ms=2_000,
            )
        except KafkaError as error:
            self.error = f"producer could not start: {error}"
            return
        try:
            began = time.monotonic()
            for index in range(self.limit):
                behind = time.monotonic() - (began + index / self.rate)
                if behind > 1:
                    began += behind  # resume the rate from now
                if self.stop.wait(max(0.0, -behind)):
                    break
                value, valid = self.value(index)
                try:
                    future = producer.send(self.topic, value, partition=index % self.partitions)
                except KafkaError:
                    self.failed += 1
                    continue
                future.add_callback(self._acked, valid).add_errback(self._failed)
                self.sent += 1
        finally:
            try:
                producer.flush(timeout=DELIVERY_TIMEOUT_MS / 1000 + 20)
            except KafkaError as error:
                self.error = f"producer flush: {error}"
            producer.close(timeout=10)
