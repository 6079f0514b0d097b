"""Delivery's control flow with stand-in sinks: refusals isolated, outages waited out, crashes
surfaced, revocations honoured, both databases kept in agreement.

Stand-ins are fine here: these tests drive interleavings (a crash while another step retries, a
revocation mid-write) that real servers cannot be made to produce on cue. The same paths run
against the real servers in tests/integration/test_consumer.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quotes_consumer.deadletter import Reject
from quotes_consumer.delivery import Delivery, InFlight, Stopped, held_by_all
from quotes_consumer.health import Health, Metrics
from quotes_consumer.record import Message, Quote, transform
from quotes_consumer.sinks import Refused, SinkError, Unavailable

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE_S = 10


def quotes(n: int, partitions: int = 1) -> list[Quote]:
    return [
        transform(
            Message(
                "t", i % partitions, i, 0, None, f'{{"quote":"q{i}","character":"c"}}'.encode()
            ),
            1024,
            NOW,
        )
        for i in range(n)
    ]


class FakeSink:
    """A sink whose failures are scripted; records every call."""

    def __init__(
        self,
        name: str,
        refuses: set[int] = frozenset(),
        says_which: bool = False,
        failures: Sequence[Exception] = (),
        on_write: Callable[[Sequence[Quote]], None] | None = None,
        holds_back: bool | None = None,
    ) -> None:
        self.name = name
        # Like the real ones: PostgreSQL holds writes back until its commit, MongoDB does not.
        self.holds_back = name == "postgres" if holds_back is None else holds_back
        self.refuses = refuses  # offsets this sink refuses
        self.says_which = says_which  # report positions (like MongoDB) or not (like PostgreSQL)
        self.failures = list(failures)  # raised, in order, by the first writes
        self.on_write = on_write
        self.writes: list[list[int]] = []
        self.staged: list[int] = []
        self.committed: list[int] = []
        self.withdrawn: list[int] = []

    def write(self, batch: Sequence[Quote]) -> None:
        self.writes.append([q.message.offset for q in batch])
        if self.on_write is not None:
            self.on_write(batch)
        if self.failures:
            raise self.failures.pop(0)
        bad = [i for i, q in enumerate(batch) if q.message.offset in self.refuses]
        if bad and self.says_which:
            self.staged += [q.message.offset for i, q in enumerate(batch) if i not in bad]
            raise Refused(f"{self.name}: no", positions=bad)
        if bad:
            raise Refused(f"{self.name}: no")
        self.staged += [q.message.offset for q in batch]

    def commit(self, keep: Sequence[Quote], withdrawn: Sequence[Quote]) -> None:
        if self.holds_back:  # exactly keep becomes visible; the rest of the transaction never
            kept = [q.message.offset for q in keep]
            self.withdrawn += sorted(set(self.staged) - set(kept))
            self.committed += kept
        else:  # visible already: withdrawing is deleting
            gone = {q.message.offset for q in withdrawn}
            self.withdrawn += sorted(gone)
            self.committed = [o for o in self.committed + self.staged if o not in gone]
        self.staged = []

    def rollback(self) -> None:
        self.staged = []

    def close(self) -> None:
        pass


class FakeDeadLetters:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.published: list[Reject] = []

    def publish(self, rejects: Sequence[Reject]) -> None:
        if rejects and self.failures:
            self.failures -= 1
            from quotes_consumer.deadletter import DeadLetterError

            raise DeadLetterError("broker away")
        self.published += rejects


def deliver(
    sinks: list[FakeSink],
    batch: list[Quote],
    dead: FakeDeadLetters | None = None,
    stop: threading.Event | None = None,
) -> tuple[InFlight, FakeDeadLetters, Metrics]:
    dead = dead or FakeDeadLetters()
    metrics = Metrics()
    delivery = Delivery(sinks, dead, metrics, Health(60), stop or threading.Event(), 0.05)
    flight = delivery.start(batch, [])
    return flight, dead, metrics


def finished(flight: InFlight) -> None:
    assert flight.wait(DEADLINE_S), "delivery did not finish"


@pytest.mark.parametrize("says_which", [False, True])
@pytest.mark.parametrize("bad", [set(), {37}, {3, 60}, set(range(64))])
def test_splitting_isolates_exactly_the_refused_records(bad: set[int], says_which: bool) -> None:
    batch = quotes(64)
    postgres = FakeSink("postgres", refuses=bad, says_which=says_which)
    mongo = FakeSink("mongo")
    flight, dead, _ = deliver([postgres, mongo], batch)
    finished(flight)
    outcome = flight.outcome()
    assert sorted(q.message.offset for q in outcome.stored) == sorted(set(range(64)) - bad)
    assert sorted(r.message.offset for r in dead.published) == sorted(bad)
    assert {r.reason for r in dead.published} <= {"rejected_by_postgres"}
    assert all(r.detail == "postgres: no" for r in dead.published)
    # Never in one database only: what PostgreSQL refused, MongoDB withdraws.
    assert sorted(postgres.committed) == sorted(mongo.committed) == sorted(set(range(64)) - bad)
    assert sorted(mongo.withdrawn) == sorted(bad)
    # Halving, not one record at a time: about 2k*log2(n) writes for k bad records.
    if len(bad) in (1, 2):
        assert len(postgres.writes) <= 1 + 2 * len(bad) * 6
    if says_which:
        assert len(postgres.writes) == 1


def test_a_refusal_by_mongo_is_withdrawn_from_postgres() -> None:
    postgres, mongo = FakeSink("postgres"), FakeSink("mongo", refuses={5}, says_which=True)
    flight, dead, _ = deliver([postgres, mongo], quotes(10))
    finished(flight)
    assert 5 not in postgres.committed and postgres.withdrawn == [5]
    assert [(r.message.offset, r.reason) for r in dead.published] == [(5, "rejected_by_mongo")]


def test_transient_errors_are_retried_and_store_everything() -> None:
    postgres = FakeSink("postgres", failures=[Unavailable("down"), Unavailable("still down")])
    mongo = FakeSink("mongo")
    flight, dead, metrics = deliver([postgres, mongo], quotes(20))
    finished(flight)
    assert len(flight.outcome().stored) == 20 and dead.published == []
    assert len(postgres.writes) == 3 and len(mongo.writes) == 1, "only the failing step retries"
    assert metrics.failures.labels("postgres")._value.get() == 2


def test_an_unclassified_error_is_retried_then_isolated() -> None:
    mystery = [SinkError("what?")] * 3
    postgres = FakeSink("postgres", failures=mystery, refuses=set())
    flight, dead, _ = deliver([postgres, FakeSink("mongo")], quotes(8))
    finished(flight)
    # Three attempts fail, the fourth (now splitting) succeeds: nothing lost, nothing rejected.
    assert len(flight.outcome().stored) == 8 and dead.published == []


def test_an_error_that_stays_unclassified_dead_letters_only_its_record() -> None:
    class Mystery(FakeSink):
        def write(self, batch: Sequence[Quote]) -> None:
            self.writes.append([q.message.offset for q in batch])
            if any(q.message.offset == 3 for q in batch):
                raise SinkError("odd")
            self.staged += [q.message.offset for q in batch]

    postgres = Mystery("postgres")
    flight, dead, _ = deliver([postgres, FakeSink("mongo")], quotes(8))
    finished(flight)
    assert [r.message.offset for r in dead.published] == [3]
    assert len(flight.outcome().stored) == 7


def test_the_dead_letter_topic_being_away_is_retried() -> None:
    postgres = FakeSink("postgres", refuses={1})
    flight, dead, _ = deliver([postgres, FakeSink("mongo")], quotes(4), FakeDeadLetters(failures=2))
    finished(flight)
    assert [r.message.offset for r in dead.published] == [1]


def test_stop_during_a_retry_ends_the_batch_promptly_uncommitted() -> None:
    stop = threading.Event()
    postgres = FakeSink("postgres", failures=[Unavailable("down")] * 1000)
    mongo = FakeSink("mongo")
    flight, _, _ = deliver([postgres, mongo], quotes(5), stop=stop)
    time.sleep(0.3)
    stop.set()
    started = time.monotonic()
    finished(flight)
    assert time.monotonic() - started < 1.0
    with pytest.raises(Stopped):
        flight.outcome()
    assert postgres.committed == [] and mongo.committed == []


def test_a_crash_in_one_step_ends_the_batch_while_another_step_retries() -> None:
    postgres = FakeSink("postgres", failures=[Unavailable("down")] * 1000)
    mongo = FakeSink("mongo", failures=[ZeroDivisionError("a bug")])
    flight, _, _ = deliver([postgres, mongo], quotes(5))
    started = time.monotonic()
    finished(flight)
    assert time.monotonic() - started < 1.0
    with pytest.raises(ZeroDivisionError):
        flight.outcome()
    assert postgres.committed == []


def test_a_crash_is_surfaced_even_while_a_sibling_hangs_in_a_socket() -> None:
    release = threading.Event()
    postgres = FakeSink("postgres", on_write=lambda _batch: release.wait(DEADLINE_S))
    mongo = FakeSink("mongo", failures=[KeyError("bug")])
    flight, _, _ = deliver([postgres, mongo], quotes(5))
    try:
        finished(flight)
        with pytest.raises(KeyError):
            flight.outcome()
    finally:
        release.set()


def test_records_of_a_revoked_partition_stop_being_written() -> None:
    attempts: list[int] = []

    def fail_until_revoked(batch: Sequence[Quote]) -> None:
        attempts.append(len(batch))

    postgres = FakeSink("postgres", failures=[Unavailable("down")] * 3, on_write=fail_until_revoked)
    mongo = FakeSink("mongo")
    batch = quotes(10, partitions=2)
    flight, _, _ = deliver([postgres, mongo], batch)
    flight.revoke([("t", 1)])
    finished(flight)
    outcome = flight.outcome()
    assert sorted(q.message.offset for q in outcome.stored) == [0, 2, 4, 6, 8]
    assert attempts[-1] == 5, "the last attempt wrote only the partition still owned"


def test_a_repeated_message_id_is_written_once_and_counted() -> None:
    def with_id(offset: int) -> Quote:
        return transform(
            Message("t", 0, offset, 0, None, b'{"quote":"q","character":"c"}', (("uuid", b"m"),)),
            1024,
            NOW,
        )

    postgres, mongo = FakeSink("postgres"), FakeSink("mongo")
    flight, _, _ = deliver([postgres, mongo], [with_id(1), with_id(2), *quotes(2)])
    finished(flight)
    outcome = flight.outcome()
    assert outcome.duplicates == 1
    assert postgres.committed == mongo.committed == [1, 0, 1]  # offsets: m@1, then t:0:0, t:0:1


# --- Two batches handed over: the lanes ----------------------------------------------------------


class Timed(FakeSink):
    """Records when each write and commit starts and ends, and how many writes overlap."""

    def __init__(self, name: str, write_s: float = 0.0, commit_s: float = 0.0) -> None:
        super().__init__(name)
        self.write_s, self.commit_s = write_s, commit_s
        self.events: list[tuple[str, float]] = []
        self.active = self.most_active = 0

    def write(self, batch: Sequence[Quote]) -> None:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        self.events.append((f"write {batch[0].message.offset} start", time.monotonic()))
        time.sleep(self.write_s)
        super().write(batch)
        self.events.append((f"write {batch[0].message.offset} end", time.monotonic()))
        self.active -= 1

    def commit(self, keep: Sequence[Quote], withdrawn: Sequence[Quote]) -> None:
        self.events.append(("commit start", time.monotonic()))
        time.sleep(self.commit_s)
        super().commit(keep, withdrawn)
        self.events.append(("commit end", time.monotonic()))

    def at(self, event: str, nth: int = 0) -> float:
        return [t for name, t in self.events if name == event][nth]


def test_each_sink_takes_the_batches_one_at_a_time_in_the_order_given() -> None:
    postgres, mongo = Timed("postgres", write_s=0.05), Timed("mongo", write_s=0.08)
    delivery = Delivery([postgres, mongo], FakeDeadLetters(), Metrics(), Health(60), stop(), 0.05)
    first = delivery.start(quotes(10), [])
    second = delivery.start([replace_offset(q, 100) for q in quotes(10)], [])
    finished(first)
    finished(second)
    for sink in (postgres, mongo):
        assert sink.most_active == 1, f"{sink.name} held two batches at once"
        assert [o // 100 for o in sink.committed] == [0] * 10 + [1] * 10, "batch order"
    assert len(first.outcome().stored) == len(second.outcome().stored) == 10


def test_a_sink_starts_the_next_batch_without_waiting_for_the_others_commit() -> None:
    """The slow commit of one database does not hold the other one back: what the lanes are for."""
    postgres, mongo = Timed("postgres", commit_s=0.5), Timed("mongo")
    delivery = Delivery([postgres, mongo], FakeDeadLetters(), Metrics(), Health(60), stop(), 0.05)
    first = delivery.start(quotes(10), [])
    second = delivery.start([replace_offset(q, 100) for q in quotes(10)], [])
    finished(second)
    assert first.wait(0)
    assert mongo.at("write 100 start") < postgres.at("commit end", 0), (
        "MongoDB wrote the second batch while PostgreSQL still committed the first"
    )
    assert postgres.at("write 100 start") > postgres.at("commit end", 0), "one at a time"


def stop() -> threading.Event:
    return threading.Event()


def replace_offset(quote: Quote, shift: int) -> Quote:
    message = quote.message
    moved = Message(
        message.topic, message.partition, message.offset + shift, 0, None, message.value
    )
    return transform(moved, 1024, NOW)


# --- The protocol's holes, closed ----------------------------------------------------------------


def test_a_record_revoked_before_mongo_wrote_it_is_not_committed_in_postgres() -> None:
    """An eager rebalance while MongoDB is away: MongoDB's lane skips the revoked partition, so
    PostgreSQL must not commit it either, or a record MongoDB later refuses (for its new owner)
    would be in PostgreSQL only and dead-lettered."""
    postgres_writing, revoked = threading.Event(), threading.Event()
    flight_box: list[InFlight] = []

    def postgres_write(_batch: Sequence[Quote]) -> None:
        postgres_writing.set()  # it holds every partition's records now
        revoked.wait(DEADLINE_S)

    def mongo_write(_batch: Sequence[Quote]) -> None:
        if not revoked.is_set():
            postgres_writing.wait(DEADLINE_S)
            flight_box[0].revoke([("t", 1)])
            revoked.set()
            raise Unavailable("mongo away")

    postgres = FakeSink("postgres", on_write=postgres_write)
    mongo = FakeSink("mongo", on_write=mongo_write)
    delivery = Delivery([postgres, mongo], FakeDeadLetters(), Metrics(), Health(60), stop(), 0.05)
    flight = InFlight(delivery, quotes(6, partitions=2), [])
    flight_box.append(flight)
    flight.begin()
    finished(flight)
    assert postgres.writes[0] == [0, 1, 2, 3, 4, 5]
    assert sorted(mongo.committed) == [0, 2, 4]
    assert sorted(postgres.committed) == [0, 2, 4], "partition 1 rolled back in PostgreSQL"
    assert sorted(postgres.withdrawn) == [1, 3, 5]


class LosesItsCommit(FakeSink):
    """PostgreSQL whose first COMMIT is lost, and which refuses one record only when the batch
    is written again: a late refusal."""

    def __init__(self, late: int) -> None:
        super().__init__("postgres")
        self.late = late
        self.lost = False

    def commit(self, keep: Sequence[Quote], withdrawn: Sequence[Quote]) -> None:
        if not self.lost:
            self.lost = True
            self.refuses = {self.late}
            self.staged = []
            raise Unavailable("server closed the connection during COMMIT")
        super().commit(keep, withdrawn)


def test_a_late_refusal_is_dead_lettered_and_withdrawn_from_mongo() -> None:
    postgres, mongo = LosesItsCommit(late=2), FakeSink("mongo")
    flight, dead, _ = deliver([postgres, mongo], quotes(5))
    finished(flight)
    outcome = flight.outcome()
    assert sorted(q.message.offset for q in outcome.stored) == [0, 1, 3, 4]
    assert [(r.message.offset, r.reason) for r in dead.published] == [(2, "rejected_by_postgres")]
    assert sorted(postgres.committed) == sorted(mongo.committed) == [0, 1, 3, 4]
    assert mongo.withdrawn == [2]


@pytest.mark.parametrize("trial", range(300))
def test_a_crash_always_surfaces_as_a_crash_even_while_a_stop_ends_the_other_lane(
    trial: int,
) -> None:
    stop_event = threading.Event()
    postgres = FakeSink("postgres", failures=[Unavailable("down")] * 1000)

    def crash(_batch: Sequence[Quote]) -> None:
        stop_event.set()  # the stop and the crash arrive together
        raise ZeroDivisionError("a bug")

    mongo = FakeSink("mongo", on_write=crash)
    flight, _, _ = deliver([postgres, mongo], quotes(2), stop=stop_event)
    finished(flight)
    with pytest.raises(ZeroDivisionError):
        flight.outcome()


def test_close_never_waits_on_a_lane_stuck_in_a_call() -> None:
    release = threading.Event()
    postgres = FakeSink("postgres", on_write=lambda _batch: release.wait(DEADLINE_S))
    closed: list[str] = []
    postgres.close = lambda: closed.append("postgres")  # type: ignore[method-assign]
    delivery = Delivery(
        [postgres, FakeSink("mongo")], FakeDeadLetters(), Metrics(), Health(60), stop(), 0.05
    )
    delivery.start(quotes(2), [])
    time.sleep(0.1)
    started = time.monotonic()
    try:
        delivery.close()
        assert time.monotonic() - started < 2.0
        assert closed == [], "the stuck lane's sink is left to die with the process"
    finally:
        release.set()


def test_close_ends_every_thread_of_the_delivery_and_takes_no_more_batches() -> None:
    """A process that builds deliveries (a test, the state machine, an embedding app) must not
    collect idle threads: close ends each once its queued work is done."""
    before = set(threading.enumerate())
    delivery = Delivery(
        [FakeSink("postgres"), FakeSink("mongo")],
        FakeDeadLetters(),
        Metrics(),
        Health(60),
        stop(),
        0.05,
    )
    threads = set(threading.enumerate()) - before
    assert len(threads) >= 3, "a lane per sink and the batch workers"
    finished(delivery.start(quotes(3), []))
    delivery.close()
    deadline = time.monotonic() + DEADLINE_S
    while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [thread.name for thread in threads if thread.is_alive()] == []
    with pytest.raises(RuntimeError, match="closed"):
        delivery.start(quotes(1), [])


@given(
    kept=st.lists(st.lists(st.booleans(), min_size=12, max_size=12), min_size=1, max_size=3),
    repeats=st.booleans(),
)
def test_keep_is_what_every_sink_holds_in_batch_order(
    kept: list[list[bool]], repeats: bool
) -> None:
    """held_by_all, shortcut included, against its definition: each sink holds a sub-list of
    the batch (the quotes it wrote), and keep is every quote whose identity all of them hold.
    With ``repeats``, one message id comes in two partitions: two quotes, one identity."""
    batch = quotes(12, partitions=3)
    if repeats:
        batch[7] = batch[7]._replace(identity=batch[2].identity)
    results = {
        f"sink-{n}": ([q for q, keep in zip(batch, flags, strict=True) if keep], {})
        for n, flags in enumerate(kept)
    }
    common = set.intersection(*({q.identity for q in held} for held, _ in results.values()))
    assert held_by_all(batch, results) == [q for q in batch if q.identity in common]
