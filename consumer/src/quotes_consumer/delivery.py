"""Delivery of one batch: every valid quote in both databases, every other record dead-lettered.

The promise, whatever the input and whichever single server fails:

- a quote ends in both databases or in the dead-letter topic, never in one database only;
- a failing server (:class:`~quotes_consumer.sinks.Unavailable`) is waited out with capped
  exponential backoff, retrying only the step that failed;
- a record a database refuses (:class:`~quotes_consumer.sinks.Refused`) is isolated by splitting
  the batch in halves, so finding k bad records among n costs about 2k·log2(n) writes, not n;
  it goes to the dead-letter topic as ``rejected_by_<sink>``; the rest is stored;
- a failure no one classified is retried a few times, then isolated the same way.

Both databases are written at once, each by its own lane (one thread per sink), in two steps.
First each sink writes the batch and finds what it refuses. Then, once every sink has written,
each sink commits, withdrawing what the *other* refused: PostgreSQL by rewriting its still-open
transaction without those rows, MongoDB by deleting the documents this batch inserted for them.

A lane takes batches in the order they were handed over and holds one at a time, so commits
follow batch order. The next batch may be handed over while one is still being written
(:data:`MAX_OUTSTANDING`): each lane starts it the moment it finished the previous one, and the
slower database never waits for the faster one's commit, nor for the loop to notice the batch
is done and commit its offsets to Kafka.

The work runs in background threads so that the loop keeps polling Kafka while a database is
away (see ``loop``). This module knows nothing of Kafka's consumer: it receives quotes, rejects
and a publisher for the dead-letter topic.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from quotes_consumer.deadletter import DeadLetterError, Reject
from quotes_consumer.health import Health, Metrics
from quotes_consumer.record import Quote
from quotes_consumer.sinks import Refused, Sink, SinkError, Unavailable

log = logging.getLogger("quotes_consumer")

T = TypeVar("T")
FIRST_BACKOFF_S = 0.5
# How often a failure nobody classified is retried before the batch is split to isolate it.
UNCLASSIFIED_ATTEMPTS = 3
# Batches handed to delivery and not yet done: one being written, the next queued behind it.
MAX_OUTSTANDING = 2
# How often a step waiting for the other sinks checks for a stop or a failed sibling.
WAIT_SLICE_S = 0.1
Partition = tuple[str, int]


class Stopped(Exception):
    """Shutdown (or a failed sibling step) ended a wait; the batch stays uncommitted."""


class DeadLetters(Protocol):
    def publish(self, rejects: Sequence[Reject]) -> None: ...


@dataclass
class Outcome:
    """What became of a batch once every step finished."""

    stored: list[Quote] = field(default_factory=list)  # in both databases (or already there)
    duplicates: int = 0  # a second copy of a message id in the same batch
    dead_lettered: list[Reject] = field(default_factory=list)


class Backoff:
    """Waits between attempts: 0.5 s doubling to a cap, ended early by shutdown or ``halt``."""

    def __init__(self, stop: threading.Event, halt: threading.Event, max_s: float) -> None:
        self._stop = stop
        self._halt = halt
        self._max_s = max_s

    def delays(self) -> Iterable[float]:
        delay = min(FIRST_BACKOFF_S, self._max_s)
        while True:
            yield delay
            delay = min(delay * 2, self._max_s)

    def wait(self, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self._stop.is_set():
            if self._halt.wait(min(left, 0.1)):
                break
        if self._stop.is_set() or self._halt.is_set():
            raise Stopped(what)


class Workers:
    """A few threads, started once, that run the steps of each batch; one thread is a lane.

    Started once because starting threads for every batch cost milliseconds of the batch's
    latency (each start waits for the new thread to get the interpreter lock); daemon threads
    because a step stuck in a database socket must never delay the process's exit.
    """

    def __init__(self, count: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]]] = (
            queue.SimpleQueue()
        )
        for number in range(count):
            threading.Thread(target=self._work, name=f"{name}-{number}", daemon=True).start()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((job, future))  # type: ignore[arg-type]
        return future

    def _work(self) -> None:
        while True:
            job, future = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as error:  # handed to whoever waits on the future
                future.set_exception(error)


class Delivery:
    """Writes batches to the sinks and the dead-letter topic, each sink one batch at a time."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        dead_letters: DeadLetters,
        metrics: Metrics,
        health: Health,
        stop: threading.Event,
        max_backoff_s: float,
    ) -> None:
        self._sinks = list(sinks)
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._health = health
        self._stop = stop
        self._max_backoff_s = max_backoff_s
        self._current: InFlight | None = None
        self._lanes = {sink.name: Workers(1, f"sink-{sink.name}") for sink in self._sinks}
        # Per outstanding batch: one thread to see it through, one for its dead letters.
        self._workers = Workers(2 * MAX_OUTSTANDING, "delivery")

    def start(self, quotes: Sequence[Quote], rejects: Sequence[Reject]) -> InFlight:
        """Begin delivering a batch in the background, after those handed over before it.

        The caller keeps at most :data:`MAX_OUTSTANDING` batches not yet done.
        """
        flight = InFlight(self, quotes, rejects)
        self._current = flight
        flight.begin()
        return flight

    @property
    def sink_names(self) -> list[str]:
        return [sink.name for sink in self._sinks]

    def close(self) -> None:
        """Close the sinks, unless a batch is still being written after a stop: its thread may
        sit in a database socket, and its connections die with the process anyway."""
        if self._current is not None and not self._current.wait(2.0):
            return
        for sink in self._sinks:
            sink.close()


class InFlight:
    """One batch being delivered. The loop waits on it and tells it about revoked partitions."""

    def __init__(
        self,
        delivery: Delivery,
        quotes: Sequence[Quote],
        rejects: Sequence[Reject],
    ) -> None:
        self._d = delivery
        self._rejects = list(rejects)
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._revoked: set[Partition] = set()
        self._error: BaseException | None = None
        self._outcome: Outcome | None = None
        # A halt ends every wait of this batch: shutdown, or a sibling step that crashed.
        self._halt = threading.Event()
        self._backoff = Backoff(delivery._stop, self._halt, delivery._max_backoff_s)
        self._quotes, self._duplicates = _first_copies(quotes)
        # Each sink's refusals (identity -> error), set by its lane once it has written.
        self._written: dict[str, Future[dict[str, str]]] = {
            sink.name: Future() for sink in delivery._sinks
        }

    # --- What the loop sees ----------------------------------------------------------------

    def begin(self) -> None:
        d = self._d
        steps: dict[str, Future[None]] = {
            sink.name: d._lanes[sink.name].submit(lambda s=sink: self._sink_steps(s))
            for sink in d._sinks
        }
        steps["dead-letter"] = d._workers.submit(
            lambda: self._dead_letter(self._rejects, "dead-letter rejects")
        )
        d._workers.submit(lambda: self._run(steps))

    def wait(self, timeout_s: float) -> bool:
        return self._done.wait(timeout_s)

    def revoke(self, partitions: Iterable[Partition]) -> None:
        """Records of these partitions are no longer ours: stop writing them; a new owner will."""
        with self._lock:
            self._revoked.update(partitions)

    @property
    def revoked(self) -> set[Partition]:
        """Partitions revoked while this batch was in flight: none of their offsets may be
        committed, even if the partition came back, since their records were dropped."""
        with self._lock:
            return set(self._revoked)

    def outcome(self) -> Outcome:
        """The result once done; re-raises a crash of any step (a bug: the process must exit)."""
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome

    # --- The work, in background threads ---------------------------------------------------

    def _owned(self, quotes: Sequence[Quote]) -> list[Quote]:
        with self._lock:
            revoked = set(self._revoked)
        if not revoked:
            return list(quotes)
        return [q for q in quotes if (q.message.topic, q.message.partition) not in revoked]

    def _run(self, steps: dict[str, Future[None]]) -> None:
        try:
            self._gather(steps)
            self._outcome = self._finish()
        except BaseException as error:
            self._error = error
            self._halt.set()
        finally:
            self._done.set()

    def _sink_steps(self, sink: Sink) -> None:
        """One sink's part, in its lane: write; once every sink has written, commit without
        what the others refused."""
        written = self._written[sink.name]
        try:
            written.set_result(self._write(sink, self._quotes))
        except BaseException as error:
            written.set_exception(error)
            raise
        refused_by = self._refusals()
        refused = {identity for refusals in refused_by.values() for identity in refusals}
        self._commit(
            sink,
            keep=[q for q in self._quotes if q.identity not in refused],
            withdrawn=[
                q
                for q in self._quotes
                if q.identity in refused and q.identity not in refused_by[sink.name]
            ],
        )

    def _refusals(self) -> dict[str, dict[str, str]]:
        """Every sink's refusals, once all have written. A stop, or a sibling that failed (and
        reports its own error), ends the wait: this batch is not committed."""
        refused_by: dict[str, dict[str, str]] = {}
        for name, future in self._written.items():
            while name not in refused_by:
                if self._halt.is_set() or self._d._stop.is_set():
                    raise Stopped("wait for the other sinks")
                try:
                    refused_by[name] = future.result(timeout=WAIT_SLICE_S)
                except TimeoutError:
                    continue
                except BaseException:
                    raise Stopped(f"wait for {name}") from None
        return refused_by

    def _finish(self) -> Outcome:
        """Dead-letter what a database refused, and say what became of the batch."""
        refused: dict[str, tuple[str, str]] = {}  # identity -> (sink, error)
        for sink in self._d._sinks:
            for identity, error in self._written[sink.name].result().items():
                refused.setdefault(identity, (sink.name, error))
        owned = self._owned(self._quotes + self._duplicates)
        refusals = [
            Reject(q.message, f"rejected_by_{refused[q.identity][0]}", refused[q.identity][1])
            for q in owned
            if q.identity in refused
        ]
        if refusals:
            self._dead_letter(refusals, f"dead-letter {len(refusals)} refused records")
        owned_ids = {q.identity for q in owned}
        return Outcome(
            stored=[
                q for q in self._quotes if q.identity not in refused and q.identity in owned_ids
            ],
            duplicates=len(self._duplicates),
            dead_lettered=[*self._rejects, *refusals],
        )

    def _gather(self, steps: dict[str, Future[None]]) -> None:
        """Wait for every step; the first crash halts the others' waits and is raised."""
        pending = set(steps.values())
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None:
                    self._halt.set()  # ends the others' waits
                    if not isinstance(error, Stopped) or not pending:
                        raise error  # a crash: do not wait for siblings stuck in a socket

    # --- One sink --------------------------------------------------------------------------

    def _write(self, sink: Sink, quotes: Sequence[Quote]) -> dict[str, str]:
        """Write ``quotes`` until done; return what the sink refuses (identity -> error)."""
        unclassified = 0
        for attempt, delay in enumerate(self._backoff.delays(), start=1):
            batch = self._owned(quotes)
            if not batch:
                return {}  # every record was revoked: the new owner writes them
            what = f"write {len(batch)} records to {sink.name}"
            try:
                refused = self._isolate(
                    sink, batch, split_unclassified=unclassified >= UNCLASSIFIED_ATTEMPTS
                )
            except Unavailable as error:
                self._failed(sink.name, what, error, delay)
            except SinkError as error:
                unclassified += 1
                self._failed(sink.name, what, error, delay)
            else:
                self._succeeded(sink.name, what, attempt)
                return refused
            sink.rollback()
            self._backoff.wait(delay, f"write to {sink.name}")
        raise AssertionError("unreachable")

    def _isolate(
        self, sink: Sink, batch: Sequence[Quote], split_unclassified: bool
    ) -> dict[str, str]:
        """Write ``batch``; on a refusal, find exactly the refused records by halving."""
        try:
            sink.write(batch)
            return {}
        except Unavailable:
            raise
        except Refused as error:
            if error.positions is not None:
                return {batch[i].identity: str(error) for i in error.positions}
            failure: SinkError = error
        except SinkError as error:
            if not split_unclassified:
                raise
            failure = error
        if len(batch) == 1:
            log.warning("%s refuses %s: %s", sink.name, batch[0].message.record_id, failure)
            return {batch[0].identity: str(failure)}
        middle = len(batch) // 2
        return self._isolate(sink, batch[:middle], split_unclassified=True) | self._isolate(
            sink, batch[middle:], split_unclassified=True
        )

    def _commit(self, sink: Sink, keep: Sequence[Quote], withdrawn: Sequence[Quote]) -> None:
        """Commit, withdrawing what others refused. A lost transaction is written again."""
        for attempt, delay in enumerate(self._backoff.delays(), start=1):
            try:
                sink.commit(withdrawn)
                self._succeeded(sink.name, f"commit to {sink.name}", attempt)
                return
            except SinkError as error:
                self._failed(sink.name, f"commit to {sink.name}", error, delay)
            sink.rollback()
            self._backoff.wait(delay, f"commit to {sink.name}")
            # What the sink held back is gone: write it again (idempotent), then commit again.
            late = self._write(sink, keep)
            if late:
                log.error(
                    "%s refused %d records only when written again; dead-lettering them may "
                    "leave them in the other database",
                    sink.name,
                    len(late),
                )
        raise AssertionError("unreachable")

    def _dead_letter(self, rejects: Sequence[Reject], what: str) -> None:
        for attempt, delay in enumerate(self._backoff.delays(), start=1):
            try:
                self._d._dead_letters.publish(rejects)
                self._succeeded("kafka", what, attempt)
                return
            except DeadLetterError as error:
                self._failed("kafka", what, error, delay)
            self._backoff.wait(delay, what)

    def _succeeded(self, target: str, what: str, attempt: int) -> None:
        self._d._health.succeeded(target)
        if attempt > 1:
            log.info("%s: succeeded at attempt %d", what, attempt)

    def _failed(self, target: str, what: str, error: Exception, delay: float) -> None:
        self._d._health.failed(target)
        self._d._metrics.failures.labels(target).inc()
        log.warning("could not %s, retrying in %.1fs: %s", what, delay, one_line(error))


def _first_copies(quotes: Sequence[Quote]) -> tuple[list[Quote], list[Quote]]:
    """Split a batch into first copies and later copies of the same identity.

    Only the first copy is written, so both databases keep the same one; the later copies
    share its fate.
    """
    seen: set[str] = set()
    first: list[Quote] = []
    later: list[Quote] = []
    for quote in quotes:
        (later if quote.identity in seen else first).append(quote)
        seen.add(quote.identity)
    return first, later


def one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    if not lines or lines[0].endswith(": None") or lines[0] == "None":
        return type(error).__name__  # kafka-python's errors often carry no message
    return lines[0][:300]
