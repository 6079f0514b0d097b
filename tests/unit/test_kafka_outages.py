"""Kafka being away is an outage, not a crash: every error class kafka-python 3.0.12 defines.

The classification is checked over the client's whole error hierarchy, not a list of the errors
seen so far: a new subclass is an outage unless it says the code or the settings are wrong. The
loop is then driven with a stand-in consumer whose calls raise those errors, as a broker restart
makes the real one do (the stand-in is fine here: no server makes ``poll`` raise on cue; the
chaos soak restarts a real broker).
"""

from __future__ import annotations

import inspect
import threading

import kafka.errors
import pytest
from kafka import TopicPartition
from kafka.coordinator.base import UnjoinedGroupException
from kafka.errors import (
    BrokerNotAvailableError,
    Cancelled,
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    GroupAuthorizationFailedError,
    IllegalStateError,
    InvalidGroupIdError,
    InvalidSessionTimeoutError,
    KafkaConfigurationError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    MetadataEmptyBrokerList,
    NodeNotReadyError,
    NotCoordinatorError,
    NotEnoughReplicasError,
    RequestTimedOutError,
    RetriableError,
    StaleMetadata,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    UnsupportedVersionError,
)

from quotes_consumer.health import Health
from quotes_consumer.kafka_errors import is_outage
from tests.unit.test_delivery import FakeSink
from tests.unit.test_loop import TOPIC, FakeConsumer, parts, record, run_loop

KAFKA_ERRORS = sorted(
    (
        cls
        for _, cls in inspect.getmembers(kafka.errors, inspect.isclass)
        if issubclass(cls, KafkaError)
    ),
    key=lambda cls: cls.__name__,
)


def make(error_class: type[Exception]) -> Exception:
    return error_class.__new__(error_class)  # some need arguments; the class is what counts


@pytest.mark.parametrize(
    "error_class",
    [cls for cls in KAFKA_ERRORS if issubclass(cls, RetriableError)],
    ids=lambda cls: cls.__name__,
)
def test_every_error_the_client_calls_retriable_is_an_outage(error_class: type) -> None:
    assert is_outage(make(error_class))


@pytest.mark.parametrize(
    "error_class",
    [
        # What a broker restart, a hung broker or a moved coordinator make poll/commit raise,
        # found by reading the client (docs/reliability.md has the paths).
        KafkaConnectionError,
        KafkaTimeoutError,
        RequestTimedOutError,
        NodeNotReadyError,
        Cancelled,
        CoordinatorNotAvailableError,
        NotCoordinatorError,
        CoordinatorLoadInProgressError,
        StaleMetadata,
        LeaderNotAvailableError,
        UnknownTopicOrPartitionError,
        MetadataEmptyBrokerList,
        NotEnoughReplicasError,
        UnjoinedGroupException,
        BrokerNotAvailableError,
        # The setup's state, like a missing grant: an operator fixes the ACL.
        TopicAuthorizationFailedError,
        GroupAuthorizationFailedError,
    ],
    ids=lambda cls: cls.__name__,
)
def test_what_an_outage_makes_the_client_raise_is_waited_out(error_class: type) -> None:
    assert is_outage(make(error_class))


@pytest.mark.parametrize(
    "error",
    [
        KafkaError("User rebalance callback throws an error"),  # our listener's bug, wrapped
        IllegalStateError("KafkaConsumer is closed"),
        KafkaConfigurationError("heartbeat_interval_ms must be lower than session_timeout_ms"),
        InvalidSessionTimeoutError(),
        UnsupportedVersionError(),
        InvalidGroupIdError(),
        # Escapes only when the client's network thread has died; it never recovers.
        ConnectionRefusedError(111, "Connection refused"),
        OSError("Bad file descriptor"),
        ValueError("x"),
        TypeError("x"),
        KeyError("x"),
        AssertionError("x"),
        RuntimeError("the client's network thread crashed"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_bugs_and_bad_settings_are_not_an_outage(error: Exception) -> None:
    assert not is_outage(error)


def test_the_client_defines_many_errors_and_most_say_retry_or_stop() -> None:
    """Guards the parametrized tests above against an empty or different hierarchy."""
    assert len(KAFKA_ERRORS) > 100
    assert sum(issubclass(cls, RetriableError) for cls in KAFKA_ERRORS) > 20


class RestartingBroker(FakeConsumer):
    """A consumer whose broker goes away for a few polls, as a restart looks from the client."""

    def __init__(self, failures: list[Exception], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.failures = failures
        self.commit_failures: list[Exception] = []
        self.close_error: Exception | None = None

    def poll(self, timeout_ms: int = 0, max_records: int | None = None):
        if self.failures:
            self._coordinator.unknown = True
            raise self.failures.pop(0)
        self._coordinator.unknown = False
        return super().poll(timeout_ms, max_records)

    def commit(self, offsets: dict, timeout_ms: int | None = None) -> None:
        if self.commit_failures:
            raise self.commit_failures.pop(0)
        super().commit(offsets, timeout_ms)

    def close(self, autocommit: bool = False, timeout_ms: int | None = None) -> None:
        super().close(autocommit, timeout_ms)
        if self.close_error is not None:
            raise self.close_error


RESTART = [
    KafkaConnectionError("111 ECONNREFUSED"),
    NodeNotReadyError(),
    CoordinatorNotAvailableError(),
    NotCoordinatorError(),
    RequestTimedOutError(),
    KafkaTimeoutError(),
    CoordinatorLoadInProgressError(),
]


def test_a_broker_restart_while_polling_is_ridden_out_and_everything_is_committed() -> None:
    stop = threading.Event()
    consumer = RestartingBroker(
        list(RESTART), batches=[[record(0, 0), record(1, 0), record(0, 1, b"not json")]]
    )
    consumer.commit_failures = [KafkaConnectionError("gone"), KafkaTimeoutError()]
    consumer.close_error = KafkaConnectionError("gone while closing")
    postgres, mongo = FakeSink("postgres"), FakeSink("mongo")
    threading.Timer(4.0, stop.set).start()
    run_loop(consumer, parts([postgres, mongo], stop), stop)
    assert consumer.failures == [], "every error was raised and ridden out"
    assert sorted(postgres.committed) == sorted(mongo.committed) == [0, 0]
    last = consumer.commits[-1]
    assert last[TopicPartition(TOPIC, 0)].offset == 2 and last[TopicPartition(TOPIC, 1)].offset == 1


def test_kafka_away_for_longer_than_the_threshold_turns_health_red() -> None:
    stop = threading.Event()
    consumer = RestartingBroker([KafkaConnectionError("refused")] * 10_000)
    health = Health(0.3)
    reports: list[tuple[bool, dict]] = []
    threading.Timer(1.0, lambda: reports.append(health.report())).start()
    threading.Timer(1.2, stop.set).start()
    run_loop(consumer, parts([FakeSink("postgres")], stop), stop, health)
    healthy, body = reports[0]
    assert not healthy and body["stalled"] == ["kafka"]
    assert "refused" in body["last_errors"]["kafka"]


def test_a_programming_error_from_the_client_still_stops_the_loop() -> None:
    stop = threading.Event()
    consumer = RestartingBroker([IllegalStateError("no subscription")])
    threading.Timer(5.0, stop.set).start()
    with pytest.raises(IllegalStateError):
        run_loop(consumer, parts([FakeSink("postgres")], stop), stop)
    assert consumer.closed
