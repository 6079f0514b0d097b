"""Health is judged by progress, per target: a hang, a refusal loop or a missing topic turns
``/healthz`` red as surely as an error, and success on one target never hides another's stall.

The clock is handed in, so the thresholds are checked without sleeping; the end-to-end cases run
the real delivery with stand-in sinks (a sink that hangs on cue; a dead-letter topic that
refuses every send), since no real server hangs on cue (tests/integration/test_hangs.py
SIGSTOPs the real ones).
"""

from __future__ import annotations

import threading
import time

from quotes_consumer.deadletter import DeadLetterError, Reject
from quotes_consumer.delivery import Delivery
from quotes_consumer.health import Health, Metrics
from tests.unit.test_delivery import FakeDeadLetters, FakeSink, quotes


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_target_with_nothing_waiting_is_never_stalled() -> None:
    clock = Clock()
    health = Health(10, clock)
    with health.waiting("postgres"):
        clock.now = 5
    clock.now = 1_000
    assert health.report()[0]


def test_work_waiting_without_progress_stalls_after_the_threshold_whatever_the_errors() -> None:
    clock = Clock()
    health = Health(10, clock)
    with health.waiting("postgres"):
        clock.now = 9
        assert health.report()[0], "not yet"
        clock.now = 11  # a hang: no error at all, and no progress
        healthy, body = health.report()
        assert not healthy and body["stalled"] == ["postgres"]
        health.progressed("postgres")
        assert health.report()[0], "progress starts the clock again"


def test_success_on_one_target_never_resets_another() -> None:
    clock = Clock()
    health = Health(10, clock)
    with health.waiting("kafka"), health.waiting("dead-letter"):
        for second in range(1, 30):
            clock.now = second
            health.progressed("kafka")  # heartbeats keep coming
            health.failed("dead-letter", "topic missing")
        healthy, body = health.report()
    assert not healthy and body["stalled"] == ["dead-letter"]
    assert body["last_errors"] == {"dead-letter": "topic missing"}


def test_two_pieces_of_work_on_one_target_share_its_clock() -> None:
    clock = Clock()
    health = Health(10, clock)
    with health.waiting("mongo"):
        clock.now = 8
        with health.waiting("mongo"):
            clock.now = 12  # the first has waited 12 s, with no progress
            assert not health.report()[0]


class RefusingDeadLetters(FakeDeadLetters):
    """A dead-letter topic that refuses every send, as a missing topic does."""

    def publish(self, rejects: list[Reject]) -> None:
        if rejects:
            raise DeadLetterError("dead-letter topic quotes.dlq: UnknownTopicOrPartitionError")


def wait_until_unhealthy(health: Health, within_s: float) -> dict:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        healthy, body = health.report()
        if not healthy:
            return body
        time.sleep(0.02)
    raise AssertionError(f"still healthy after {within_s}s: {health.report()[1]}")


def test_a_dead_letter_topic_that_refuses_every_send_turns_health_red() -> None:
    stop = threading.Event()
    health = Health(0.3)
    delivery = Delivery(
        [FakeSink("postgres"), FakeSink("mongo")],
        RefusingDeadLetters(),
        Metrics(),
        health,
        stop,
        0.05,
    )
    batch = quotes(3)
    flight = delivery.start(batch, [Reject(batch[0].message, "invalid_json", "x")])
    try:
        body = wait_until_unhealthy(health, 5)
        assert body["stalled"] == ["dead-letter"]
    finally:
        stop.set()
        flight.wait(5)


def test_a_sink_hanging_in_a_call_turns_health_red_without_any_error() -> None:
    stop, release = threading.Event(), threading.Event()
    health = Health(0.3)
    hanging = FakeSink("postgres", on_write=lambda _batch: release.wait(10))
    delivery = Delivery(
        [hanging, FakeSink("mongo")], FakeDeadLetters(), Metrics(), health, stop, 0.05
    )
    flight = delivery.start(quotes(3), [])
    try:
        body = wait_until_unhealthy(health, 5)
        assert body["stalled"] == ["postgres"] and body["last_errors"] == {}
    finally:
        release.set()
    assert flight.wait(5)
    assert len(flight.outcome().stored) == 3
    assert health.report()[0], "healthy again once the call returned"
