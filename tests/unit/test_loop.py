"""The loop's Kafka side with a stand-in consumer: which offsets a batch commits, what a
rebalance drops, how each refused commit is handled, and that the loop keeps polling with its
partitions paused while a write waits.

A stand-in consumer is used because these paths need a rebalance or a refused commit at an exact
moment; tests/integration/test_consumer.py runs the same loop against a real broker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from kafka import OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaConnectionError,
    KafkaTimeoutError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from quotes_consumer.delivery import Delivery
from quotes_consumer.health import Health, Metrics
from quotes_consumer.loop import (
    Batch,
    Flight,
    KafkaProgress,
    OwedOffsets,
    PendingBatch,
    Rebalance,
    keep_alive,
    next_offsets,
    prepare,
    run,
    to_message,
    transform_all,
)
from quotes_consumer.settings import load
from quotes_consumer.sinks import Unavailable
from tests.unit.test_delivery import FakeDeadLetters, FakeSink, Timed

TOPIC = "quotes"
VALID = b'{"quote":"q","character":"c"}'


def record(partition: int, offset: int, value: bytes | None = VALID, timestamp: int = 0):
    return ConsumerRecord(
        TOPIC, partition, -1, offset, timestamp, 0, None, value, [], None, 0, 0, 0
    )


class Heartbeat:
    def __init__(self) -> None:
        self.last_receive = float("-inf")
        self.last_reset = float("-inf")


class Coordinator:
    """The two things the loop reads of kafka-python's group coordinator."""

    def __init__(self) -> None:
        self.unknown = False
        self.heartbeat = Heartbeat()

    def coordinator_unknown(self) -> bool:
        return self.unknown


class FakeConsumer:
    """Enough of KafkaConsumer for the loop: scripted polls, commits and rebalances."""

    def __init__(self, batches: Sequence[list[ConsumerRecord]] = (), partitions: int = 2) -> None:
        self.batches = list(batches)
        self.assigned = {TopicPartition(TOPIC, p) for p in range(partitions)}
        self.paused_set: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, OffsetAndMetadata]] = []
        self.commit_errors: list[Exception] = []
        self.polls_while_paused = 0
        self.listener: Rebalance | None = None
        self.revoke_on_paused_poll: set[TopicPartition] = set()
        self.revoke_on_poll: set[TopicPartition] = set()  # at the next poll, paused or not
        self.reassign_after_revoke = False  # the eager protocol: revoke all, assign some back
        self.closed = False
        self.seeks: list[tuple[TopicPartition, int]] = []
        self._coordinator = Coordinator()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def subscribe(self, topics: list[str], listener: Rebalance) -> None:
        self.listener = listener

    def poll(self, timeout_ms: int = 0, max_records: int | None = None):
        if not self._coordinator.unknown:  # the group answers our heartbeats
            self._coordinator.heartbeat.last_receive = time.monotonic()
        if self.revoke_on_poll and self.listener is not None:
            self._rebalance()
        if self.paused_set and self.paused_set >= self.assigned:
            self.polls_while_paused += 1
            if self.revoke_on_paused_poll and self.listener is not None:
                self.revoke_on_poll, self.revoke_on_paused_poll = self.revoke_on_paused_poll, set()
                self._rebalance()
            time.sleep(timeout_ms / 1000)
            return {}
        if self.batches:
            records = self.batches.pop(0)
            grouped: dict[TopicPartition, list[ConsumerRecord]] = {}
            for r in records:
                grouped.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
            return grouped
        time.sleep(min(timeout_ms, 50) / 1000)
        return {}

    def _rebalance(self) -> None:
        assert self.listener is not None
        revoked, self.revoke_on_poll = self.revoke_on_poll, set()
        self.assigned -= revoked
        self.listener.on_partitions_revoked(revoked)
        if self.reassign_after_revoke:
            self.assigned |= revoked
            self.listener.on_partitions_assigned(revoked)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused_set |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused_set -= set(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_set)

    def commit(self, offsets: dict, timeout_ms: int | None = None) -> None:
        if self.commit_errors:
            raise self.commit_errors.pop(0)
        self.commits.append(dict(offsets))

    def highwater(self, tp: TopicPartition) -> int | None:
        if tp not in self.assigned:
            raise AssertionError("the real client raises IllegalStateError here")
        return None

    def close(self, autocommit: bool = False, timeout_ms: int | None = None) -> None:
        self.closed = True


def settings(**overrides: str):
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "POSTGRES_HOST": "h",
        "POSTGRES_DB": "d",
        "POSTGRES_USER": "u",
        "POSTGRES_PASSWORD": "p",
        "MONGO_URI": "mongodb://h/",
        "CONSUMER_BATCH_TIMEOUT_MS": "20",
        "CONSUMER_BATCH_SIZE": "10",
        "CONSUMER_RETRY_MAX_BACKOFF_S": "0.2",
    }
    return load(env | overrides)


# --- Pure parts ----------------------------------------------------------------------------------


def test_commits_one_past_the_last_record_of_each_partition() -> None:
    batch = [record(0, 5), record(1, 9), record(0, 7), record(0, 6)]
    assert next_offsets(batch) == {
        TopicPartition(TOPIC, 0): OffsetAndMetadata(8, "", -1),
        TopicPartition(TOPIC, 1): OffsetAndMetadata(10, "", -1),
    }


def test_a_rebalance_drops_only_the_revoked_partitions() -> None:
    pending = PendingBatch()
    pending.add([record(0, 1), record(1, 1), record(2, 1)])
    pending.drop({TopicPartition(TOPIC, 1)})
    batch = pending.take()
    assert [(r.partition, r.offset) for r in batch.records] == [(0, 1), (2, 1)]
    assert pending.records == [] and pending.bytes == 0


def test_transform_all_splits_valid_from_rejected_and_keeps_the_original() -> None:
    messages = [to_message(record(0, 1)), to_message(record(0, 2, b"nope"))]
    quotes, rejects = transform_all(messages, 1024)
    assert [q.message.offset for q in quotes] == [1]
    assert [(r.message.offset, r.message.value, r.reason) for r in rejects] == [
        (2, b"nope", "invalid_json")
    ]


def test_every_part_of_the_clients_record_lands_in_its_own_field() -> None:
    """to_message builds Message by position: each part of the record, told apart by value."""
    polled = ConsumerRecord(
        TOPIC, 2, -1, 41, 1_700_000_000_123, 0, b"k", b"v", [("uuid", b"u")], None, 1, 1, 1
    )
    message = to_message(polled)
    assert message._asdict() == {
        "topic": TOPIC,
        "partition": 2,
        "offset": 41,
        "timestamp_ms": 1_700_000_000_123,
        "key": b"k",
        "value": b"v",
        "headers": (("uuid", b"u"),),
    }


def test_a_far_future_timestamp_is_stored_as_null_not_a_crash() -> None:
    messages = [to_message(record(0, 1, timestamp=10**15))]
    quotes, rejects = transform_all(messages, 1024)
    assert rejects == [] and quotes[0].kafka_timestamp is None


# --- Commits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (CommitFailedError(), "NOT committed (rebalancing)"),
        (RebalanceInProgressError(), "NOT committed (rebalancing)"),
        (IllegalGenerationError(), "NOT committed (rebalancing)"),
        (UnknownMemberIdError(), "NOT committed (rebalancing)"),
        (KafkaTimeoutError(), "NOT committed (Kafka unavailable)"),
        (KafkaConnectionError(), "NOT committed (Kafka unavailable)"),
    ],
)
def test_a_refused_commit_is_owed_not_retried(error: Exception, said: str) -> None:
    consumer = FakeConsumer()
    consumer.commit_errors = [error]
    owed = OwedOffsets()
    owed.owe(next_offsets([record(0, 4)]))
    assert owed.commit(consumer) == said
    assert consumer.commits == [], "no retry inside the commit"
    # The next commit, after a poll, carries the owed offset along with the new one.
    owed.owe(next_offsets([record(1, 2)]))
    assert owed.commit(consumer) == "committed"
    assert consumer.commits == [
        {
            TopicPartition(TOPIC, 0): OffsetAndMetadata(5, "", -1),
            TopicPartition(TOPIC, 1): OffsetAndMetadata(3, "", -1),
        }
    ]


def test_owed_offsets_of_a_partition_no_longer_assigned_are_dropped() -> None:
    consumer = FakeConsumer(partitions=1)
    owed = OwedOffsets()
    owed.owe(next_offsets([record(0, 1), record(1, 1)]))
    assert owed.commit(consumer) == "committed"
    assert list(consumer.commits[0]) == [TopicPartition(TOPIC, 0)]


# --- Keeping the group alive ---------------------------------------------------------------------


def parts(sinks: list[FakeSink], stop: threading.Event) -> Delivery:
    return Delivery(sinks, FakeDeadLetters(), Metrics(), Health(60), stop, 0.05)


def test_while_a_write_waits_the_loop_polls_with_every_partition_paused() -> None:
    stop = threading.Event()
    postgres = FakeSink("postgres", failures=[Unavailable("down")] * 40)
    consumer = FakeConsumer()
    pending = PendingBatch()
    flights: list[Flight] = []
    listener = Rebalance(pending, OwedOffsets(), flights, Health(60))
    consumer.subscribe([TOPIC], listener)
    records = [record(0, 0), record(1, 0)]
    quotes, _ = transform_all([to_message(r) for r in records], 1024)
    delivery = parts([postgres, FakeSink("mongo")], stop)
    flight = delivery.start(quotes, [])
    flights.append(Flight(flight, Batch(records, time.monotonic()), delivery.sink_names))
    consumer.revoke_on_paused_poll = {TopicPartition(TOPIC, 1)}
    keep_alive(consumer, flight, pending, stop.is_set, KafkaProgress(Health(60)))
    assert flight.wait(0)
    assert consumer.polls_while_paused >= 2, "heartbeats and rebalances go on"
    assert consumer.paused() == set(), "partitions are resumed afterwards"
    assert [q.message.partition for q in flight.outcome().stored] == [0], "revoked: not stored"


def test_the_whole_loop_stores_commits_and_stops_on_request() -> None:
    stop = threading.Event()
    consumer = FakeConsumer([[record(0, 0), record(1, 0), record(0, 1, b"bad")]])
    sinks = [FakeSink("postgres"), FakeSink("mongo")]
    delivery = parts(sinks, stop)
    threading.Timer(1.0, stop.set).start()
    run_loop(consumer, delivery, stop)
    assert sorted(sinks[0].committed) == sorted(sinks[1].committed) == [0, 0]
    assert consumer.commits[-1] == {
        TopicPartition(TOPIC, 0): OffsetAndMetadata(2, "", -1),
        TopicPartition(TOPIC, 1): OffsetAndMetadata(1, "", -1),
    }
    assert consumer.closed


def test_a_partition_revoked_and_assigned_back_mid_write_is_not_committed() -> None:
    """Its records were dropped from the write, so committing them would lose them; the
    client re-reads them from the last commit instead."""
    stop = threading.Event()
    consumer = FakeConsumer([[record(0, 0), record(1, 0)]])
    consumer.reassign_after_revoke = True
    both = {TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)}

    def rebalance_during_the_write(_batch: object) -> None:
        if not consumer.seeks and not consumer.revoke_on_poll:
            consumer.revoke_on_poll = both  # once

    sinks = [
        FakeSink(
            "postgres",
            failures=[Unavailable("down")] * 30,
            on_write=rebalance_during_the_write,
        ),
        FakeSink("mongo"),
    ]
    threading.Timer(3.0, stop.set).start()
    run_loop(consumer, parts(sinks, stop), stop)
    assert sinks[0].committed == []
    assert consumer.commits == [], "nothing of a revoked partition is committed"
    assert sorted(consumer.seeks) == [(TopicPartition(TOPIC, 0), 0), (TopicPartition(TOPIC, 1), 0)]


def test_a_crash_in_a_write_step_leaves_the_loop_with_the_error() -> None:
    stop = threading.Event()
    consumer = FakeConsumer([[record(0, 0)]])
    sinks = [
        FakeSink("postgres", failures=[Unavailable("x")] * 100),
        FakeSink("mongo", failures=[ValueError("bug")]),
    ]
    with pytest.raises(ValueError, match="bug"):
        run_loop(consumer, parts(sinks, stop), stop)
    assert consumer.commits == [] and consumer.closed


def test_stop_during_an_outage_returns_promptly_without_committing() -> None:
    stop = threading.Event()
    consumer = FakeConsumer([[record(0, 0)]])
    sinks = [FakeSink("postgres", failures=[Unavailable("down")] * 10_000), FakeSink("mongo")]
    threading.Timer(1.0, stop.set).start()
    started = time.monotonic()
    run_loop(consumer, parts(sinks, stop), stop)
    assert time.monotonic() - started < 3.0
    assert consumer.commits == []


def test_kafka_unreachable_turns_health_red_after_the_threshold() -> None:
    stop = threading.Event()
    consumer = FakeConsumer()
    consumer._coordinator.unknown = True
    health = Health(0.2)
    reports: list[tuple[bool, dict]] = []
    threading.Timer(0.8, lambda: reports.append(health.report())).start()
    threading.Timer(1.0, stop.set).start()
    run_loop(consumer, parts([FakeSink("p")], stop), stop, health)
    healthy, body = reports[0]
    assert body["stalled"] == ["kafka"] and not healthy


def run_loop(
    consumer: FakeConsumer, delivery: Delivery, stop: threading.Event, health: Health | None = None
) -> None:
    """The real loop, handed the stand-in consumer through its consumer-factory seam."""

    def connect(listener: Rebalance) -> FakeConsumer:
        consumer.subscribe([TOPIC], listener)
        return consumer

    run(settings(), connect, delivery, stop, Metrics(), health or Health(60))  # type: ignore[arg-type]


# --- Two batches handed over -------------------------------------------------------------------


def test_a_full_batch_is_handed_over_while_the_previous_one_commits_and_commits_keep_order() -> (
    None
):
    stop = threading.Event()
    first = [record(0, offset) for offset in range(10)]  # CONSUMER_BATCH_SIZE=10: full
    second = [record(0, offset) for offset in range(10, 20)]
    consumer = FakeConsumer([first, second])
    postgres, mongo = Timed("postgres", commit_s=0.4), Timed("mongo")
    committed_at: list[float] = []
    commit = consumer.commit

    def timed_commit(offsets: dict, timeout_ms: int | None = None) -> None:
        commit(offsets, timeout_ms)
        committed_at.append(time.monotonic())

    consumer.commit = timed_commit  # type: ignore[method-assign]
    threading.Timer(2.0, stop.set).start()
    run_loop(consumer, parts([postgres, mongo], stop), stop)
    assert [c[TopicPartition(TOPIC, 0)].offset for c in consumer.commits] == [10, 20]
    assert mongo.at("write 10 start") < committed_at[0], (
        "the second batch was being written before the first one's offsets were committed"
    )
    assert sorted(postgres.committed) == sorted(mongo.committed) == list(range(20))


def test_a_revocation_drops_the_partition_from_every_batch_in_flight() -> None:
    stop = threading.Event()
    lost = TopicPartition(TOPIC, 1)
    first = [record(0, o) for o in range(5)] + [record(1, 100 + o) for o in range(5)]
    second = [record(0, o) for o in range(5, 10)] + [record(1, 100 + o) for o in range(5, 10)]
    consumer = FakeConsumer([first, second])
    postgres = FakeSink("postgres", failures=[Unavailable("down")] * 20)  # ~1 s of outage
    mongo = FakeSink("mongo")

    def revoke() -> None:  # both batches are handed over by now, the first still retrying
        consumer.revoke_on_poll = {lost}

    threading.Timer(0.3, revoke).start()
    threading.Timer(3.0, stop.set).start()
    run_loop(consumer, parts([postgres, mongo], stop), stop)
    assert sorted(postgres.committed) == list(range(10)), "only partition 0 was written"
    assert consumer.commits and all(lost not in c for c in consumer.commits)
    assert consumer.commits[-1][TopicPartition(TOPIC, 0)].offset == 10


# --- The record path's boundary ------------------------------------------------------------------


def test_a_bug_in_the_record_path_dead_letters_that_record_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import quotes_consumer.loop as loop

    real = loop.transform

    def buggy(message, max_bytes, now):  # a stand-in for a bug no one has found yet
        if message.offset == 1:
            raise ZeroDivisionError("a bug in our own code")
        return real(message, max_bytes, now)

    monkeypatch.setattr(loop, "transform", buggy)
    quotes, rejects = transform_all([to_message(record(0, o)) for o in range(3)], 1024)
    assert [q.message.offset for q in quotes] == [0, 2]
    assert [(r.message.offset, r.reason) for r in rejects] == [(1, "unexpected_error")]
    assert rejects[0].detail == "ZeroDivisionError: a bug in our own code"


def test_a_record_no_message_can_hold_is_dead_lettered_by_its_coordinates() -> None:
    broken = ConsumerRecord(TOPIC, 0, -1, 7, 0, 0, b"k", b"v", 42, None, 0, 0, 0)  # headers: 42
    work = prepare([broken, record(0, 8)], settings())
    assert [q.message.offset for q in work.quotes] == [8]
    [reject] = work.rejects
    assert (reject.reason, reject.message.offset, reject.message.value) == (
        "unexpected_error",
        7,
        b"v",
    )
