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
from kafka.errors import (
    CoordinatorNotAvailableError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    NotCoordinatorError,
    RequestTimedOutError,
)

from quotes_consumer.health import Health
from quotes_consumer.kafka_errors import BUGS, is_outage
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


@pytest.mark.parametrize("error_class", KAFKA_ERRORS, ids=lambda cls: cls.__name__)
def test_every_client_error_is_an_outage_unless_it_names_a_bug(error_class: type) -> None:
    error = error_class.__new__(error_class)  # some need arguments; the class is what counts
    assert is_outage(error) is not issubclass(error_class, BUGS)


def test_the_client_defines_many_errors_and_few_are_bugs() -> None:
    """Guards the parametrized test above against an empty or wrong hierarchy."""
    assert len(KAFKA_ERRORS) > 60
    assert sum(issubclass(cls, BUGS) for cls in KAFKA_ERRORS) <= 10


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        BrokenPipeError(32, "Broken pipe"),
        TimeoutError("timed out"),  # socket.timeout is this class since Python 3.10
    ],
    ids=type,
)
def test_socket_errors_escaping_the_client_are_an_outage(error: Exception) -> None:
    assert is_outage(error)


@pytest.mark.parametrize(
    "error", [ValueError("x"), TypeError("x"), KeyError("x"), AssertionError("x"), RuntimeError()]
)
def test_errors_that_are_not_the_clients_are_bugs(error: Exception) -> None:
    assert not is_outage(error)


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
    ConnectionResetError(104, "Connection reset by peer"),
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
