"""The consumer loop: poll a batch, transform it, write it, commit it, report it.

Delivery is at-least-once with idempotent writes, which makes every valid record land exactly
once in each database:

- offsets are committed only after PostgreSQL, MongoDB and the dead-letter topic have all
  accepted the batch, so a crash at any point re-reads at most the batch in flight;
- re-reading is harmless, because both sinks key each record by its Kafka coordinates;
- an outage of any of them is ridden out with capped exponential backoff, retrying only the step
  that failed, and nothing is committed past an unwritten record;
- on a rebalance, records of revoked partitions that are not yet written are dropped from the
  batch; their new owner reads them again from the last committed offset.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError

from quotes_consumer.deadletter import DeadLetterError, DeadLetterPublisher, Reject
from quotes_consumer.health import Health, Metrics
from quotes_consumer.record import Coordinates, InvalidRecord, Quote, transform
from quotes_consumer.settings import Settings
from quotes_consumer.sinks import Sink, SinkError
from quotes_consumer.sinks.mongo import MongoSink
from quotes_consumer.sinks.postgres import PostgresConfig, PostgresSink

log = logging.getLogger("quotes_consumer")

T = TypeVar("T")
FIRST_BACKOFF_S = 0.5
POLL_IDLE_MS = 500
RETRYABLE = (SinkError, DeadLetterError, KafkaError)


class Stopped(Exception):
    """Shutdown was asked for while waiting to retry; the batch in flight is not committed."""


def run(settings: Settings, stop: threading.Event, metrics: Metrics, health: Health) -> None:
    """Consume until ``stop`` is set. Only bugs raise; outages are waited out."""
    retrying = Retrier(stop, settings.consumer_retry_max_backoff_s, metrics, health)
    sinks: list[Sink] = [
        PostgresSink(
            PostgresConfig(
                host=settings.postgres_host,
                port=settings.postgres_port,
                dbname=settings.postgres_db,
                user=settings.postgres_user,
                password=settings.postgres_password,
            )
        ),
        MongoSink(settings.mongo_uri, settings.mongo_db, settings.mongo_collection),
    ]
    pending = PendingBatch()
    dead_letters: DeadLetterPublisher | None = None
    try:
        dead_letters = retrying(
            "kafka",
            "connect the dead-letter producer",
            lambda: DeadLetterPublisher(
                settings.kafka_bootstrap_servers, settings.kafka_dlq_topic, settings.kafka_group_id
            ),
        )
        consumer = retrying("kafka", "connect to Kafka", lambda: connect(settings, pending))
    except Stopped:
        if dead_letters is not None:
            dead_letters.close()
        _close_all(sinks)
        return
    log.info(
        "consuming %s as group %s; rejects go to %s",
        settings.kafka_topic,
        settings.kafka_group_id,
        settings.kafka_dlq_topic,
    )
    pool = ThreadPoolExecutor(max_workers=len(sinks) + 1, thread_name_prefix="write")
    try:
        while not stop.is_set():
            batch = poll_batch(consumer, pending, settings, stop)
            if batch is None:
                continue
            records = batch.records
            quotes, rejects = transform_all(records, settings.consumer_max_record_bytes)
            metrics.consumed.inc(len(records))

            write_everywhere(pool, retrying, sinks, dead_letters, quotes, rejects)
            for sink in sinks:
                metrics.written.labels(sink.name).inc(len(quotes))
            for reject in rejects:
                metrics.dead_lettered.labels(reject.error.reason).inc()

            offsets = next_offsets(records)
            committed = retrying("kafka", "commit offsets", partial(commit, consumer, offsets))
            report(consumer, batch, quotes, rejects, offsets, committed, metrics)
    except Stopped as stopped:
        log.info("stopping while retrying to %s; the batch in flight stays uncommitted", stopped)
    finally:
        pool.shutdown(wait=True)
        consumer.close(autocommit=False)
        dead_letters.close()
        _close_all(sinks)
        log.info("consumer closed")


# --- Kafka ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    records: list[ConsumerRecord]
    started: float  # time.monotonic() when its first record was polled


class PendingBatch:
    """Records polled but not yet written; a rebalance may take some of them away."""

    def __init__(self) -> None:
        self.records: list[ConsumerRecord] = []
        self.started = 0.0

    def add(self, records: Sequence[ConsumerRecord]) -> None:
        if records and not self.records:
            self.started = time.monotonic()
        self.records.extend(records)

    def drop(self, partitions: set[TopicPartition]) -> None:
        kept = [r for r in self.records if TopicPartition(r.topic, r.partition) not in partitions]
        if len(kept) != len(self.records):
            log.info("rebalance: dropped %d unwritten records", len(self.records) - len(kept))
        self.records = kept

    def take(self) -> Batch:
        batch = Batch(self.records, self.started)
        self.records = []
        return batch


class DropRevoked(ConsumerRebalanceListener):
    """Called inside ``poll()``, in the loop's own thread, when partitions move."""

    def __init__(self, pending: PendingBatch) -> None:
        self._pending = pending

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._pending.drop(set(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned partitions: %s", _partitions(assigned))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self._pending.drop(set(lost))


def connect(settings: Settings, pending: PendingBatch) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        group_id=settings.kafka_group_id,
        client_id=f"quotes-consumer-{socket.gethostname()}",
        enable_auto_commit=False,
        auto_offset_reset=settings.kafka_auto_offset_reset,
        max_poll_records=settings.consumer_batch_size,
        fetch_max_wait_ms=min(200, settings.consumer_batch_timeout_ms),
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
    )
    consumer.subscribe([settings.kafka_topic], listener=DropRevoked(pending))
    return consumer


def poll_batch(
    consumer: KafkaConsumer, pending: PendingBatch, settings: Settings, stop: threading.Event
) -> Batch | None:
    """Poll until the batch is full or its first record is older than the batch timeout.

    Returns None after an idle poll, so the caller sees a shutdown request promptly.
    """
    size, timeout_s = settings.consumer_batch_size, settings.consumer_batch_timeout_ms / 1000
    while not stop.is_set():
        if pending.records:
            remaining_ms = int((pending.started + timeout_s - time.monotonic()) * 1000)
            if len(pending.records) >= size or remaining_ms <= 0:
                return pending.take()
            wait_ms = min(remaining_ms, POLL_IDLE_MS)
        else:
            wait_ms = POLL_IDLE_MS
        polled = consumer.poll(timeout_ms=wait_ms, max_records=size - len(pending.records))
        for records in polled.values():
            pending.add(records)
        if not pending.records:
            return None
    return None


def next_offsets(records: Sequence[ConsumerRecord]) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offset to commit per partition: one past the last record of the batch."""
    last: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        last[partition] = max(last.get(partition, -1), record.offset)
    return {tp: OffsetAndMetadata(offset + 1, "", -1) for tp, offset in last.items()}


def commit(consumer: KafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]) -> bool:
    """Commit, or return False when the group moved on: the new owner re-reads the batch."""
    try:
        consumer.commit(offsets, timeout_ms=10_000)
        return True
    except CommitFailedError:
        log.warning(
            "commit rejected: the group rebalanced during the batch; its new owner re-reads it "
            "(already written, the writes are idempotent)"
        )
        return False


# --- Transform and write -------------------------------------------------------------------------


def transform_all(
    records: Sequence[ConsumerRecord], max_bytes: int
) -> tuple[list[Quote], list[Reject]]:
    now = datetime.now(UTC)
    quotes: list[Quote] = []
    rejects: list[Reject] = []
    for record in records:
        source = Coordinates(record.topic, record.partition, record.offset, record.timestamp)
        try:
            quotes.append(transform(record.value, source, max_bytes, now))
        except InvalidRecord as error:
            log.debug("reject %s: %s", source.record_id, error)
            rejects.append(Reject(source, record.key, record.value, record.headers or [], error))
    return quotes, rejects


def write_everywhere(
    pool: ThreadPoolExecutor,
    retrying: Retrier,
    sinks: Sequence[Sink],
    dead_letters: DeadLetterPublisher,
    quotes: list[Quote],
    rejects: list[Reject],
) -> None:
    """Write both databases and the dead-letter topic at once, each retrying on its own.

    A batch then costs the slowest of the three, not their sum. Returns once all succeeded;
    raises Stopped if shutdown came first (the others see the same stop and return promptly).
    """
    steps = [
        pool.submit(
            retrying,
            sink.name,
            f"write {len(quotes)} records to {sink.name}",
            partial(sink.write, quotes),
        )
        for sink in sinks
    ]
    steps.append(
        pool.submit(
            retrying, "kafka", "dead-letter rejects", partial(dead_letters.publish, rejects)
        )
    )
    for step in steps:
        step.result()


class Retrier:
    """Run a step until it succeeds, backing off exponentially up to a cap.

    One log line per failed attempt, and the health status learns since when a target has been
    failing. Waiting is interruptible: a shutdown request ends the wait with :class:`Stopped`.
    """

    def __init__(
        self, stop: threading.Event, max_backoff_s: float, metrics: Metrics, health: Health
    ) -> None:
        self._stop = stop
        self._max_backoff_s = max_backoff_s
        self._metrics = metrics
        self._health = health

    def __call__(self, target: str, what: str, action: Callable[[], T]) -> T:
        delay = min(FIRST_BACKOFF_S, self._max_backoff_s)
        for attempt in itertools.count(1):
            try:
                result = action()
            except RETRYABLE as error:
                self._health.failed(target)
                self._metrics.failures.labels(target).inc()
                log.warning(
                    "could not %s (attempt %d), retrying in %.1fs: %s",
                    what,
                    attempt,
                    delay,
                    _one_line(error),
                )
                if self._stop.wait(delay):
                    raise Stopped(what) from None
                delay = min(delay * 2, self._max_backoff_s)
                continue
            if attempt > 1:
                log.info("%s: succeeded at attempt %d", what, attempt)
            self._health.succeeded(target)
            return result
        raise AssertionError("unreachable")


# --- Reporting -----------------------------------------------------------------------------------


def report(
    consumer: KafkaConsumer,
    batch: Batch,
    quotes: Sequence[Quote],
    rejects: Sequence[Reject],
    offsets: dict[TopicPartition, OffsetAndMetadata],
    committed: bool,
    metrics: Metrics,
) -> None:
    """One log line per batch, and the metrics that go with it."""
    lag = 0
    for tp, offset in offsets.items():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            behind = max(0, highwater - offset.offset)
            metrics.lag.labels(tp.topic, str(tp.partition)).set(behind)
            lag += behind
    if committed:
        metrics.commits.inc()
    seconds = time.monotonic() - batch.started
    metrics.batch_seconds.observe(seconds)
    log.info(
        "batch: %d records from %s -> %d written to postgres+mongo, %d dead-lettered; "
        "%.0f ms; %s; lag %d",
        len(batch.records),
        _partitions(offsets),
        len(quotes),
        len(rejects),
        seconds * 1000,
        "committed" if committed else "NOT committed (rebalanced)",
        lag,
    )


def _partitions(partitions: object) -> str:
    names = sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)  # type: ignore[attr-defined]
    return ", ".join(names) or "none"


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    if not lines or lines[0].endswith(": None") or lines[0] == "None":
        return type(error).__name__  # kafka-python's errors often carry no message
    return lines[0][:300]


def _close_all(sinks: Sequence[Sink]) -> None:
    for sink in sinks:
        sink.close()
