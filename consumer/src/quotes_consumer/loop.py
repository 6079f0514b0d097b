"""The consumer loop: poll a batch, transform it, deliver it, commit it, report it.

Delivery is at-least-once with idempotent writes, which makes every valid record land exactly
once in each database:

- offsets are committed only after both databases and the dead-letter topic have accepted the
  batch (``delivery``), so a crash at any point re-reads at most the batch in flight;
- re-reading is harmless, because both sinks key each record by its identity;
- while a write waits for a database or the dead-letter topic, the loop pauses its partitions
  and keeps calling ``poll()``, as Kafka Connect's WorkerSinkTask does, so the consumer keeps its
  place in the group: heartbeats, rebalances and revocations go on, and a replica that joins
  during an outage gets its partitions within seconds;
- the next batch is polled and transformed while the previous one is being written, and handed
  to delivery as soon as it is full, so each database starts on it the moment it finished the
  previous one; each database holds one batch at a time, and commits follow batch order;
- a batch is written as soon as it is full or the consumer has caught up with the topic, so a
  trickle of records is written within milliseconds, and a flood in full batches;
- on a rebalance, records of revoked partitions that are not yet written are dropped; their new
  owner reads them again from the last committed offset;
- a commit the group refuses (it is rebalancing) or that Kafka cannot take now is "not
  committed": the offsets are owed and go with the next commit after a poll, never retried in a
  loop that would need a poll first.

The loop is handed its parts (sinks, the dead-letter publisher, a consumer factory) by the
entry point, so tests and the benchmark can hand it others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    CorruptRecordError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from quotes_consumer.deadletter import Reject
from quotes_consumer.delivery import MAX_OUTSTANDING, Delivery, InFlight, Outcome, Stopped
from quotes_consumer.health import Health, Metrics
from quotes_consumer.kafka_errors import is_outage
from quotes_consumer.record import InvalidRecord, Message, Quote, transform
from quotes_consumer.settings import Settings
from quotes_consumer.steps import one_line

log = logging.getLogger("quotes_consumer")

POLL_IDLE_MS = 500
# While a batch is in flight, the next one is filled with polls this short, so that a flight
# is landed (its offsets committed) within a few milliseconds of finishing.
BUSY_POLL_MS = 5
# A write that takes longer than this pauses the partitions and polls while it waits.
KEEP_ALIVE_AFTER_S = 0.5
KEEP_ALIVE_POLL_MS = 200
COMMIT_TIMEOUT_MS = 5_000
# A stop ends within 10 s whatever hangs: 5 s to drain (DRAIN_S), 2 s to leave the group,
# 1 s for the lanes to close their sinks, 1-2 s for the dead-letter producer.
CLOSE_TIMEOUT_MS = 2_000
OWED_RETRY_S = 2.0
CONNECT_RETRY_MAX_S = 10.0
# Kafka away: the loop waits this long, doubling up to the cap (and to the retry backoff's
# cap), before it polls again; the client reconnects on its own meanwhile.
OUTAGE_FIRST_S = 0.5
OUTAGE_MAX_S = 2.0
# On a stop, the batches in flight get this long to finish and have their offsets committed.
DRAIN_S = 5.0
# The group moved on: the commit is refused, and only a poll (rejoining) can fix that.
REBALANCING = (
    CommitFailedError,
    RebalanceInProgressError,
    IllegalGenerationError,
    UnknownMemberIdError,
)

ConsumerFactory = Callable[[ConsumerRebalanceListener], KafkaConsumer]


def run(
    settings: Settings,
    connect: ConsumerFactory,
    delivery: Delivery,
    stop: threading.Event,
    metrics: Metrics,
    health: Health,
) -> None:
    """Consume until ``stop`` is set. Only bugs raise; outages are waited out.

    Kafka being away (refused, reset, timed out, no coordinator, a metadata refresh that
    fails) is an outage like a database's: the loop backs off and polls again, and the client
    reconnects by itself. What ``kafka_errors`` counts as a bug still ends the process.
    """
    pending = PendingBatch()
    offsets = OwedOffsets()
    flights: deque[Flight] = deque()  # handed to delivery, oldest first
    listener = Rebalance(pending, offsets, flights, health)
    with health.waiting("kafka"):  # the loop always needs Kafka: its clock never stops
        consumer = connect_until_stopped(connect, listener, stop, health)
        if consumer is None:
            return
        listener.consumer = consumer
        log.info(
            "consuming %s as group %s; rejects go to %s",
            settings.kafka_topic,
            settings.kafka_group_id,
            settings.kafka_dlq_topic,
        )
        progress = KafkaProgress(health)
        outage = KafkaOutage(stop, health, min(OUTAGE_MAX_S, settings.consumer_retry_max_backoff_s))
        try:
            while not stop.is_set():
                try:
                    turn(
                        consumer,
                        pending,
                        offsets,
                        flights,
                        settings,
                        delivery,
                        stop,
                        metrics,
                        progress,
                    )
                    outage.over()
                except Exception as error:
                    if not is_outage(error):
                        raise
                    outage.wait("poll", error)
            drain(consumer, pending, offsets, flights, metrics, progress)
        except Stopped as stopped:
            if not stop.is_set():
                raise RuntimeError(f"a batch stopped with no stop requested: {stopped}") from None
            log.info(
                "stopping while retrying to %s; the batch in flight stays uncommitted", stopped
            )
        finally:
            close(consumer)


def turn(
    consumer: KafkaConsumer,
    pending: PendingBatch,
    offsets: OwedOffsets,
    flights: deque[Flight],
    settings: Settings,
    delivery: Delivery,
    stop: threading.Event,
    metrics: Metrics,
    progress: KafkaProgress,
) -> None:
    """One turn of the loop: poll, land the oldest batch if it is done, hand over the next."""
    # Poll the next batch while earlier ones are being written.
    fill(consumer, pending, settings, stop, progress, flights)
    oldest = flights[0] if flights else None
    blocked = len(flights) == MAX_OUTSTANDING and pending.full(settings)
    if oldest is not None and (oldest.delivery.wait(0) or blocked):
        # Landed while still listed, so that a rebalance meanwhile revokes its records.
        if land(consumer, oldest, pending, offsets, stop.is_set, progress, metrics):
            flights.popleft()
        return
    if stop.is_set():
        return
    if len(flights) < MAX_OUTSTANDING and pending.due(settings, queued=bool(flights)):
        batch = pending.take()
        work = prepare(batch.records, settings, batch.unreadable)
        metrics.consumed.inc(len(batch.records))
        started = delivery.start(work.quotes, work.rejects)
        flights.append(Flight(started, batch, delivery.sink_names))
    elif not flights and offsets.commit_if_due(consumer) == "committed":
        progress.committed()


def drain(
    consumer: KafkaConsumer,
    pending: PendingBatch,
    offsets: OwedOffsets,
    flights: deque[Flight],
    metrics: Metrics,
    progress: KafkaProgress,
) -> None:
    """On a stop: let the batches in flight finish and commit their offsets, as Kafka Connect
    and Quix Streams do on shutdown, for at most :data:`DRAIN_S`. A batch still waiting then
    (a server away or hung) stays uncommitted and is read again after the restart."""
    deadline = time.monotonic() + DRAIN_S
    expired = lambda: time.monotonic() > deadline  # noqa: E731
    left_ms = lambda: int((deadline - time.monotonic()) * 1000)  # noqa: E731
    try:
        while flights:
            if expired() or not land(
                consumer, flights[0], pending, offsets, expired, progress, metrics, left_ms
            ):
                log.info("stopping with %d batches unfinished; they stay uncommitted", len(flights))
                return
            flights.popleft()
        if left_ms() > 0 and offsets.commit(consumer, left_ms()) == "committed":  # owed ones
            log.info("committed the offsets owed before stopping")
    except Exception as error:
        if not is_outage(error):
            raise
        log.info("stopping while Kafka is away; the batches in flight stay uncommitted")


def close(consumer: KafkaConsumer) -> None:
    """Leave the group without committing; Kafka being away does not delay the exit long."""
    try:
        consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_MS)
    except Exception as error:
        if not is_outage(error):
            raise
        log.info("Kafka unavailable while closing the consumer: %s", one_line(error))
    log.info("consumer closed")


@dataclass(frozen=True)
class Flight:
    """A batch handed to delivery, with what the loop needs to commit and report it."""

    delivery: InFlight
    batch: Batch
    sink_names: Sequence[str]


def land(
    consumer: KafkaConsumer,
    flight: Flight,
    pending: PendingBatch,
    offsets: OwedOffsets,
    give_up: Callable[[], bool],
    progress: KafkaProgress,
    metrics: Metrics,
    commit_timeout_ms: Callable[[], int] = lambda: COMMIT_TIMEOUT_MS,
) -> bool:
    """Wait for the oldest batch in flight (polling, paused, if it takes long), then commit and
    report it. False when ``give_up`` came true first: the batch stays uncommitted."""
    keep_alive(consumer, flight.delivery, pending, give_up, progress)
    if not flight.delivery.wait(0):
        return False
    outcome = flight.delivery.outcome()
    revoked = flight.delivery.revoked
    reached = next_offsets(flight.batch.records)
    offsets.owe({tp: o for tp, o in reached.items() if (tp.topic, tp.partition) not in revoked})
    committed = offsets.commit(consumer, commit_timeout_ms())
    if committed == "committed":
        progress.committed()
    report(consumer, flight.batch, reached, outcome, committed, flight.sink_names, metrics)
    return True


# --- Kafka ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    records: list[ConsumerRecord]
    started: float  # time.monotonic() when its first record was polled
    # Records the client could not parse: coordinates -> why (their entries in ``records`` are
    # placeholders holding only the coordinates).
    unreadable: dict[tuple[str, int, int], str] = field(default_factory=dict)


class PendingBatch:
    """Records polled but not yet handed to delivery; a rebalance may take some of them away."""

    def __init__(self) -> None:
        self.records: list[ConsumerRecord] = []
        self.unreadable: dict[tuple[str, int, int], str] = {}
        self.bytes = 0
        self.started = 0.0
        self.caught_up = False  # the last poll drained what the client had fetched

    def full(self, settings: Settings) -> bool:
        return (
            len(self.records) >= settings.consumer_batch_size
            or self.bytes >= settings.consumer_batch_max_bytes
        )

    def ms_left(self, settings: Settings) -> int:
        """Milliseconds until the batch is as old as the batch timeout."""
        deadline = self.started + settings.consumer_batch_timeout_ms / 1000
        return int((deadline - time.monotonic()) * 1000)

    def due(self, settings: Settings, queued: bool = False) -> bool:
        """Hand it to delivery now: full, or nothing more to wait for, or waited long enough.

        Closing a batch as soon as the topic is caught up, rather than waiting out the timeout,
        is what keeps the latency of a trickle of records low. Behind a batch still being
        written (``queued``), a batch waits until it is full or old: it would wait for that
        batch anyway, and meanwhile it grows.
        """
        if not self.records:
            return False
        if self.full(settings) or self.ms_left(settings) <= 0:
            return True
        return self.caught_up and not queued

    def add(self, records: Sequence[ConsumerRecord]) -> None:
        if records and not self.records:
            self.started = time.monotonic()
        self.records.extend(records)
        self.bytes += sum(record_bytes(r) for r in records)

    def add_unreadable(self, tp: TopicPartition, offset: int, why: str) -> None:
        """A placeholder for a record the client could not parse, so that it is dead-lettered
        and its offset committed in order with the rest."""
        placeholder = ConsumerRecord(
            tp.topic, tp.partition, -1, offset, -1, 0, None, None, [], None, -1, -1, -1
        )
        self.unreadable[(tp.topic, tp.partition, offset)] = why
        self.add([placeholder])

    def drop(self, partitions: set[TopicPartition]) -> None:
        kept = [r for r in self.records if TopicPartition(r.topic, r.partition) not in partitions]
        if len(kept) != len(self.records):
            log.info("rebalance: dropped %d unwritten records", len(self.records) - len(kept))
        self.records = kept
        self.bytes = sum(record_bytes(r) for r in kept)

    def take(self) -> Batch:
        batch = Batch(self.records, self.started, self.unreadable)
        self.records, self.bytes, self.unreadable = [], 0, {}
        return batch


def record_bytes(record: ConsumerRecord) -> int:
    """What a record costs in memory, near enough: its key, value and headers."""
    headers = record.headers or ()
    return (
        len(record.value or b"")
        + len(record.key or b"")
        + sum(len(name) + len(value or b"") for name, value in headers)
    )


class OwedOffsets:
    """Offsets of delivered records, not yet committed; cumulative per partition."""

    def __init__(self) -> None:
        self._owed: dict[TopicPartition, OffsetAndMetadata] = {}
        self._last_try = 0.0

    def owe(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        for tp, offset in offsets.items():
            if tp not in self._owed or self._owed[tp].offset < offset.offset:
                self._owed[tp] = offset

    def forget(self, partitions: set[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata]:
        """Drop what is owed for these partitions; return it."""
        return {tp: self._owed.pop(tp) for tp in partitions if tp in self._owed}

    def commit_if_due(self, consumer: KafkaConsumer) -> str:
        if self._owed and time.monotonic() - self._last_try >= OWED_RETRY_S:
            return self.commit(consumer)
        return "nothing due"

    def commit(self, consumer: KafkaConsumer, timeout_ms: int = COMMIT_TIMEOUT_MS) -> str:
        """Commit what is owed for partitions still assigned; say how it went, never raise."""
        self._last_try = time.monotonic()
        assigned = consumer.assignment()
        self.forget({tp for tp in self._owed if tp not in assigned})
        if not self._owed:
            return "nothing to commit"
        offsets = dict(self._owed)
        try:
            consumer.commit(offsets, timeout_ms=max(1, timeout_ms))
        except REBALANCING:
            log.warning("commit refused: the group is rebalancing; committing after the next poll")
            return "NOT committed (rebalancing)"
        except Exception as error:
            if not is_outage(error):
                raise
            log.warning("commit failed, committing after the next poll: %s", one_line(error))
            return "NOT committed (Kafka unavailable)"
        for tp, offset in offsets.items():
            if self._owed.get(tp) == offset:
                del self._owed[tp]
        return "committed"


class Rebalance(ConsumerRebalanceListener):
    """Called inside ``poll()``, in the loop's own thread, when partitions move.

    Records of a lost partition that are not written yet are dropped. If the partition comes
    back to this consumer in the same rebalance (the eager protocol revokes everything first),
    the client may keep its position past those records, so the consumer seeks back to the
    first dropped one: dropped records are always read again, by their next owner.
    """

    def __init__(
        self,
        pending: PendingBatch,
        offsets: OwedOffsets,
        flights: Sequence[Flight],
        health: Health,
    ) -> None:
        self._pending = pending
        self._offsets = offsets
        self._flights = flights  # the loop's own, read when partitions move
        self._health = health
        self.consumer: KafkaConsumer | None = None
        self._rewind: dict[TopicPartition, int] = {}
        # Offsets owed for delivered records of partitions revoked in this rebalance: owed again
        # if the partition comes straight back (the eager protocol revokes everything first).
        self._parked: dict[TopicPartition, OffsetAndMetadata] = {}

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._parked.update(self._lose(set(revoked)))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            if tp in self._rewind and self.consumer is not None:
                self.consumer.seek(tp, self._rewind[tp])
        self._offsets.owe({tp: o for tp, o in self._parked.items() if tp in assigned})
        self._rewind = {}  # partitions that went elsewhere: their owner reads from the commit
        self._parked = {}
        self._health.progressed("kafka")  # the group answered: this member has its share
        log.info("assigned partitions: %s", _partitions(assigned))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self._lose(set(lost))  # another member may own them already: what was owed is void

    def _lose(self, partitions: set[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata]:
        """Drop what is not written of these partitions; return the offsets that were owed."""
        if not partitions:
            return {}
        in_flight = [record for flight in self._flights for record in flight.batch.records]
        for record in (*self._pending.records, *in_flight):
            tp = TopicPartition(record.topic, record.partition)
            if tp in partitions:
                self._rewind[tp] = min(self._rewind.get(tp, record.offset), record.offset)
        self._pending.drop(partitions)
        owed = self._offsets.forget(partitions)
        for flight in self._flights:
            flight.delivery.revoke((tp.topic, tp.partition) for tp in partitions)
        log.info("revoked partitions: %s", _partitions(partitions))
        return owed


def kafka_consumer(settings: Settings) -> ConsumerFactory:
    """The production consumer factory: manual commits, bounded fetches, explicit timeouts."""

    def connect(listener: ConsumerRebalanceListener) -> KafkaConsumer:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
            group_id=settings.kafka_group_id,
            client_id=f"quotes-consumer-{settings.kafka_group_id}",
            enable_auto_commit=False,
            auto_offset_reset=settings.kafka_auto_offset_reset,
            max_poll_records=settings.consumer_batch_size,
            fetch_max_wait_ms=min(200, settings.consumer_batch_timeout_ms),
            # Memory: at most about one batch's worth of fetched data waits in the client.
            fetch_max_bytes=settings.consumer_batch_max_bytes,
            max_partition_fetch_bytes=min(1_048_576, settings.consumer_batch_max_bytes),
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            max_poll_interval_ms=settings.consumer_max_poll_interval_ms,
            # After a broker restart, reconnect within a second, not after a backoff that has
            # grown towards the default 30 s.
            reconnect_backoff_max_ms=1_000,
        )
        consumer.subscribe([settings.kafka_topic], listener=listener)
        return consumer

    return connect


def connect_until_stopped(
    connect: ConsumerFactory,
    listener: ConsumerRebalanceListener,
    stop: threading.Event,
    health: Health,
) -> KafkaConsumer | None:
    outage = KafkaOutage(stop, health, CONNECT_RETRY_MAX_S)
    while not stop.is_set():
        try:
            consumer = connect(listener)
            health.progressed("kafka")
            return consumer
        except Exception as error:
            if not is_outage(error):
                raise
            outage.wait("connect", error)
    return None


class KafkaOutage:
    """Waits out Kafka being away, when connecting and when polling alike: the failure goes to
    health and the log, then a pause from :data:`OUTAGE_FIRST_S` doubling to a cap, ended early
    by a stop. The client reconnects by itself meanwhile; a success starts the pauses over."""

    def __init__(self, stop: threading.Event, health: Health, max_s: float) -> None:
        self._stop = stop
        self._health = health
        self._max_s = max_s
        self._delay = self._first_s = min(OUTAGE_FIRST_S, max_s)

    def wait(self, doing: str, error: Exception) -> None:
        self._health.failed("kafka", one_line(error))
        log.warning(
            "could not %s: Kafka unavailable, retrying in %.1fs: %s",
            doing,
            self._delay,
            one_line(error),
        )
        self._stop.wait(self._delay)
        self._delay = min(self._delay * 2, self._max_s)

    def over(self) -> None:
        self._delay = self._first_s


class KafkaProgress:
    """Tells health when Kafka made progress: a heartbeat answered, records fetched, offsets
    committed, partitions assigned.

    Judged by progress, not by errors: a broker that hangs raises nothing, and ``poll()``
    returns nothing either way. The group coordinator answers a heartbeat every few seconds
    while all is well; the time of the last answer is the one private attribute the loop reads
    (kafka-python is pinned, and no public call tells it).
    """

    def __init__(self, health: Health) -> None:
        self._health = health
        self._last_heartbeat = float("-inf")

    def polled(self, consumer: KafkaConsumer, records: int) -> None:
        coordinator = consumer._coordinator
        heartbeat = coordinator.heartbeat
        # Reset when the coordinator is found and at every join, as the client's own session
        # check counts it; the first heartbeat answer comes an interval after joining.
        answered = max(heartbeat.last_receive, heartbeat.last_reset)
        if records or (answered > self._last_heartbeat and not coordinator.coordinator_unknown()):
            self._health.progressed("kafka")
        self._last_heartbeat = answered

    def committed(self) -> None:
        self._health.progressed("kafka")


def fill(
    consumer: KafkaConsumer,
    pending: PendingBatch,
    settings: Settings,
    stop: threading.Event,
    progress: KafkaProgress,
    flights: Sequence[Flight],
) -> None:
    """Poll records into ``pending`` until it is time to act.

    That is: the oldest batch in flight is done (to land it), or ``pending`` is full, or it is
    due and delivery can take it, or one poll came back empty with nothing in flight (so the
    caller sees a shutdown promptly). While batches are in flight the polls are short, so a
    finished one is landed within milliseconds.
    """
    size = settings.consumer_batch_size
    while not stop.is_set() and not pending.full(settings):
        if flights and flights[0].delivery.wait(0):
            return
        if len(flights) < MAX_OUTSTANDING and pending.due(settings, queued=bool(flights)):
            return
        if flights:
            wait_ms = BUSY_POLL_MS
        elif pending.records:
            wait_ms = max(1, min(pending.ms_left(settings), POLL_IDLE_MS))
        else:
            wait_ms = POLL_IDLE_MS
        wanted = size - len(pending.records)
        got = poll_into(consumer, pending, wait_ms, wanted)
        progress.polled(consumer, got)
        # Fewer records than asked for: the client holds no more right now.
        pending.caught_up = got < wanted
        if not flights and not pending.records:
            return  # an idle poll


def poll_into(
    consumer: KafkaConsumer, pending: PendingBatch, timeout_ms: int, max_records: int | None
) -> int:
    """One ``poll()``; its records go to ``pending``. Returns how many arrived.

    A record the client cannot parse (a header name that is not UTF-8, which the protocol
    forbids but a non-Java producer can send; a record whose checksum fails) makes kafka-python
    3.0.12 raise CorruptRecordError for it, and every later poll of that partition spins for
    ever on it. Such a record is a bad record like any other: it becomes a dead letter with its
    coordinates (its bytes stay in the topic, at the offset the letter names) and the consumer
    moves past it. Found by reading the client: the partition being parsed is the fetcher's
    ``_next_partition_records``, and its position is the unreadable record's offset.
    """
    try:
        polled = consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
    except CorruptRecordError as error:
        parsing = consumer._fetcher._next_partition_records
        if parsing is None:
            raise  # a whole fetch failed to parse: no record to point at; waited out
        tp = parsing.topic_partition
        offset = consumer.position(tp)
        log.warning("unreadable record at %s[%d]@%d: %s", tp.topic, tp.partition, offset, error)
        pending.add_unreadable(tp, offset, one_line(error))
        consumer.seek(tp, offset + 1)
        return 1
    got = 0
    for records in polled.values():
        pending.add(records)
        got += len(records)
    return got


def keep_alive(
    consumer: KafkaConsumer,
    flight: InFlight,
    pending: PendingBatch,
    give_up: Callable[[], bool],
    progress: KafkaProgress,
) -> None:
    """Wait for the batch in flight; if it takes long, pause every partition and keep polling.

    Polling keeps the consumer in its group and runs the rebalance listener; with every
    partition paused it fetches nothing. Partitions assigned meanwhile are paused too.
    """
    if flight.wait(KEEP_ALIVE_AFTER_S):
        return
    try:
        while not give_up() and not flight.wait(0):
            consumer.pause(*consumer.assignment())
            # Records fetched before a new partition was paused still arrive.
            got = poll_into(consumer, pending, KEEP_ALIVE_POLL_MS, None)
            progress.polled(consumer, got)
    finally:
        consumer.resume(*consumer.paused())


def next_offsets(records: Sequence[ConsumerRecord]) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offset to commit per partition: one past the last record of the batch."""
    last: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        if record.offset > last.get(key, -1):
            last[key] = record.offset
    return {
        TopicPartition(topic, partition): OffsetAndMetadata(offset + 1, "", -1)
        for (topic, partition), offset in last.items()
    }


# --- Transform -----------------------------------------------------------------------------------


def to_message(record: ConsumerRecord) -> Message:
    """The client's record as plain data; the timestamp is kept only if it is an integer."""
    timestamp = record.timestamp if isinstance(record.timestamp, int) else None
    # Positional, in Message's field order (topic, partition, offset, timestamp_ms, key, value,
    # headers): keywords cost a named tuple about 0.3 us more per record.
    return Message(
        record.topic,
        record.partition,
        record.offset,
        timestamp,
        record.key,
        record.value,
        tuple(record.headers or ()),
    )


def transform_all(messages: Sequence[Message], max_bytes: int) -> tuple[list[Quote], list[Reject]]:
    """Every message becomes a quote or a reject, whatever it holds.

    The boundary of the record path: an exception other than the contract's own refusal is a
    bug in our code, and a bug must never stop the pipeline (compose would restart it onto the
    same record, for ever). The record is dead-lettered as ``unexpected_error`` with the
    exception's type and message, and the traceback is logged once, to fix the code.
    """
    now = datetime.now(UTC)  # one clock read per batch
    quotes: list[Quote] = []
    rejects: list[Reject] = []
    for message in messages:
        try:
            quotes.append(transform(message, max_bytes, now))
        except InvalidRecord as error:
            log.debug("reject %s: %s", message.record_id, error)
            rejects.append(Reject(message, error.reason, error.detail))
        except Exception as error:
            rejects.append(unexpected(message, error))
    return quotes, rejects


def unexpected(message: Message, error: Exception) -> Reject:
    log.exception("unexpected error on %s; dead-lettered, please report", message.record_id)
    return Reject(message, "unexpected_error", f"{type(error).__name__}: {error}")


@dataclass(frozen=True)
class Prepared:
    """A batch's records, transformed: what delivery needs."""

    records: list[ConsumerRecord]
    quotes: list[Quote]
    rejects: list[Reject]


def prepare(
    records: list[ConsumerRecord],
    settings: Settings,
    unreadable: dict[tuple[str, int, int], str] | None = None,
) -> Prepared:
    messages: list[Message] = []
    broken: list[Reject] = []
    for record in records:
        why = (
            unreadable.get((record.topic, record.partition, record.offset)) if unreadable else None
        )
        if why is not None:
            broken.append(Reject(coordinates_only(record), "unreadable_record", why))
            continue
        try:
            messages.append(to_message(record))
        except Exception as error:  # the client handed over something no Message can hold
            broken.append(unexpected(coordinates_only(record), error))
    quotes, rejects = transform_all(messages, settings.consumer_max_record_bytes)
    return Prepared(records, quotes, [*broken, *rejects])


def coordinates_only(record: ConsumerRecord) -> Message:
    """What is certain about a record: where it sits. Value and key are kept if they are bytes."""
    value, key = record.value, record.key
    return Message(
        topic=str(record.topic),
        partition=int(record.partition),
        offset=int(record.offset),
        timestamp_ms=None,
        key=key if isinstance(key, bytes) else None,
        value=value if isinstance(value, bytes) else None,
    )


# --- Reporting -----------------------------------------------------------------------------------


def report(
    consumer: KafkaConsumer,
    batch: Batch,
    offsets: dict[TopicPartition, OffsetAndMetadata],
    outcome: Outcome,
    committed: str,
    sink_names: Sequence[str],
    metrics: Metrics,
) -> None:
    """One log line per batch, and the metrics that go with it; ``offsets`` are where the
    batch reached in each partition."""
    assigned = consumer.assignment()
    lag = 0
    for tp, offset in offsets.items():
        highwater = consumer.highwater(tp) if tp in assigned else None
        if highwater is not None:
            behind = max(0, highwater - offset.offset)
            metrics.lag.labels(tp.topic, str(tp.partition)).set(behind)
            lag += behind
    for sink in sink_names:
        metrics.written.labels(sink).inc(len(outcome.stored))
    for reject in outcome.dead_lettered:
        metrics.dead_lettered.labels(reject.reason).inc()
    if committed == "committed":
        metrics.commits.inc()
    seconds = time.monotonic() - batch.started
    metrics.batch_seconds.observe(seconds)
    log.info(
        "batch: %d records from %s -> %d stored in both databases, %d dead-lettered%s; "
        "%.0f ms; %s; lag %d",
        len(batch.records),
        _partitions(offsets),
        len(outcome.stored),
        len(outcome.dead_lettered),
        f", {outcome.duplicates} repeated message ids" if outcome.duplicates else "",
        seconds * 1000,
        committed,
        lag,
    )


def _partitions(partitions: object) -> str:
    names = sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)  # type: ignore[attr-defined]
    return ", ".join(names) or "none"
