"""Delivery of one batch: every valid quote in both databases, every other record dead-lettered.

The promise, whatever the input and whichever single server fails, hangs or comes back:

- a quote ends in both databases or in the dead-letter topic, never in one database only once
  its partition's owner has delivered it;
- each sink's steps (``steps``) are retried until they succeed; every call has a deadline;
- a crash (a bug) ends the batch with the crash, never as a stop.

Both databases are written at once, each by its own lane (one thread per sink), in two phases:

1. each sink writes the quotes it still owns and finds what it refuses;
2. once every sink has written, ``keep`` is what every sink holds. The sink that holds writes
   back (PostgreSQL's open transaction) commits exactly ``keep``: a record another sink refused,
   or one another sink never wrote because its partition was revoked meanwhile, is never
   visible. The sinks that cannot hold back (MongoDB) delete what the others refused. A record
   the holding sink refuses only when written again after a lost COMMIT (a late refusal) is
   deleted from the others too, before the batch is done. So a record is committed in one
   database only if every sink wrote it or will withdraw it. A revoked record that only MongoDB
   wrote stays there: its partition's new owner reads it again from the last committed offset
   and writes it to both.

A lane takes batches in the order they were handed over and holds one at a time, so commits
follow batch order. The next batch may be handed over while one is still being written
(:data:`MAX_OUTSTANDING`): each lane starts it the moment it finished the previous one.

The work runs in background threads so that the loop keeps polling Kafka while a database is
away (see ``loop``). This module knows nothing of Kafka's consumer: it receives quotes, rejects
and a publisher for the dead-letter topic.
"""

from __future__ import annotations

import contextlib
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
from quotes_consumer.sinks import Sink
from quotes_consumer.steps import Attempts, Backoff, SinkSteps, Stopped

log = logging.getLogger("quotes_consumer")

T = TypeVar("T")
# Batches handed to delivery and not yet done: one being written, the next queued behind it.
MAX_OUTSTANDING = 2
# How often a step waiting for the other sinks checks whether a sibling failed.
WAIT_SLICE_S = 0.1
# How long close() waits for the lanes to close their own sinks (a lane may sit in a hung call).
CLOSE_WAIT_S = 1.0
Partition = tuple[str, int]

__all__ = ["MAX_OUTSTANDING", "Delivery", "InFlight", "Outcome", "Stopped"]


class DeadLetters(Protocol):
    def publish(self, rejects: Sequence[Reject]) -> None: ...


@dataclass
class Outcome:
    """What became of a batch once every step finished."""

    stored: list[Quote] = field(default_factory=list)  # in both databases (or already there)
    duplicates: int = 0  # a second copy of a message id in the same batch
    dead_lettered: list[Reject] = field(default_factory=list)


class Workers:
    """A few threads, started once, that run the steps of each batch; one thread is a lane.

    Started once because starting threads for every batch cost milliseconds of the batch's
    latency (each start waits for the new thread to get the interpreter lock); daemon threads
    because a step stuck in a database socket must never delay the process's exit.
    """

    def __init__(self, count: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], Future[object]] | None] = (
            queue.SimpleQueue()
        )
        self._count = count
        self._closed = False
        for number in range(count):
            threading.Thread(target=self._work, name=f"{name}-{number}", daemon=True).start()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        if self._closed:
            raise RuntimeError("the delivery is closed")
        future: Future[T] = Future()
        self._jobs.put((job, future))  # type: ignore[arg-type]
        return future

    def close(self) -> None:
        """Each thread ends once the jobs queued before this are done; one stuck in a hung
        call ends when the call does (or with the process)."""
        self._closed = True
        for _ in range(self._count):
            self._jobs.put(None)

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, future = item
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
        if sum(sink.holds_back for sink in sinks) > 1:
            # A late refusal in one could not be withdrawn from another that committed.
            raise ValueError("at most one sink may hold writes back until its commit")
        self._sinks = list(sinks)
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._health = health
        self._stop = stop
        self._max_backoff_s = max_backoff_s
        self._lanes = {sink.name: Workers(1, f"sink-{sink.name}") for sink in self._sinks}
        # Per outstanding batch: one thread to see it through, one for its dead letters.
        self._workers = Workers(2 * MAX_OUTSTANDING, "delivery")

    def start(self, quotes: Sequence[Quote], rejects: Sequence[Reject]) -> InFlight:
        """Begin delivering a batch in the background, after those handed over before it.

        The caller keeps at most :data:`MAX_OUTSTANDING` batches not yet done.
        """
        flight = InFlight(self, quotes, rejects)
        flight.begin()
        return flight

    @property
    def sink_names(self) -> list[str]:
        return [sink.name for sink in self._sinks]

    def close(self) -> None:
        """Each lane closes its own sink once it is idle; a lane still sitting in a call after
        a stop is not waited for (its connection dies with the process), so closing never
        waits on a connection a hung call holds. Every thread of the delivery ends once its
        queued work is done: a closed delivery takes no more batches."""
        closing = [self._lanes[sink.name].submit(sink.close) for sink in self._sinks]
        for workers in (*self._lanes.values(), self._workers):
            workers.close()
        deadline = time.monotonic() + CLOSE_WAIT_S
        for future in closing:
            with contextlib.suppress(Exception):
                future.result(timeout=max(0.0, deadline - time.monotonic()))


class InFlight:
    """One batch being delivered: what the loop sees of it, and the thread that sees it through.

    The work is split by concern: each sink's part runs in its lane (:meth:`_sink_part`, with
    ``steps`` writing, isolating by halving and committing); :class:`Written` is where the lanes
    meet between the two phases; :meth:`_settle` withdraws late refusals, dead-letters what a
    database refused and says what became of the batch.
    """

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
        # A halt ends every wait of this batch: shutdown during a retry, or a sibling crashed.
        self._halt = threading.Event()
        self._attempts = Attempts(
            delivery._health,
            delivery._metrics,
            Backoff(delivery._stop, self._halt, delivery._max_backoff_s),
        )
        self._quotes, self._duplicates = _first_copies(quotes)
        self._written = Written(delivery.sink_names, self._halt)

    # --- What the loop sees ----------------------------------------------------------------

    def begin(self) -> None:
        d = self._d
        parts: dict[str, Future[dict[str, str]]] = {
            sink.name: d._lanes[sink.name].submit(lambda s=sink: self._sink_part(s))
            for sink in d._sinks
        }
        parts["dead-letter"] = d._workers.submit(
            lambda: self._dead_letter(self._rejects, "dead-letter rejects") or {}
        )
        d._workers.submit(lambda: self._run(parts))

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
        """The result once done; re-raises a crash of any step (a bug: the process must exit),
        or Stopped when a stop ended a retry."""
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome

    # --- Seeing it through, in a worker thread ---------------------------------------------

    def _owned(self, quotes: Sequence[Quote]) -> list[Quote]:
        with self._lock:
            revoked = set(self._revoked)
        if not revoked:
            return list(quotes)
        return [q for q in quotes if (q.message.topic, q.message.partition) not in revoked]

    def _run(self, parts: dict[str, Future[dict[str, str]]]) -> None:
        try:
            self._outcome = self._settle(self._gather(parts))
        except BaseException as error:
            self._error = error
            self._halt.set()
        finally:
            self._done.set()

    def _gather(self, parts: dict[str, Future[dict[str, str]]]) -> dict[str, str]:
        """Wait for every part; return the late refusals (identity -> reason). A crash halts
        the others' waits and is raised at once, and wins over any Stopped it caused: a bug
        must never look like a requested stop."""
        pending = set(parts.values())
        stopped: BaseException | None = None
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
            errors = [error for f in done if (error := f.exception()) is not None]
            crashes = [error for error in errors if not isinstance(error, Stopped)]
            if crashes:
                self._halt.set()  # ends the others' waits; do not wait for one stuck in a socket
                raise crashes[0]
            if errors:
                self._halt.set()
                stopped = stopped or errors[0]
        if stopped is not None:
            raise stopped
        return {k: v for future in parts.values() for k, v in future.result().items()}

    # --- One sink's part, in its lane ------------------------------------------------------

    def _sink_part(self, sink: Sink) -> dict[str, str]:
        """Phase 1, then phase 2 once every sink has written; returns the late refusals.

        Whatever ends it early (a stop, a crash, a sibling's failure), nothing it held back is
        left open for the next batch to commit by accident.
        """
        steps = SinkSteps(sink, self._attempts, self._owned)
        try:
            held, _ = self._written.write(sink.name, lambda: steps.write(self._quotes))
            results = self._written.all()
            refused = refused_by(results)
            # Later copies too: one may have written the document in an earlier try of this
            # partition that never finished (a crash), and they share the first copy's fate.
            copies = self._owned(self._duplicates)
            withdrawn = [q for q in (*held, *copies) if q.identity in refused]
            return steps.commit(held_by_all(self._quotes, results), withdrawn)
        except BaseException:
            with contextlib.suppress(Exception):
                sink.rollback()
            raise

    # --- Settling the batch ----------------------------------------------------------------

    def _settle(self, late: dict[str, str]) -> Outcome:
        """Withdraw the late refusals, dead-letter what a database refused, and say what became
        of the batch."""
        results = self._written.results()
        refused = refused_by(results)
        if late:
            self._withdraw_late(late)
            holding = next(sink.name for sink in self._d._sinks if sink.holds_back)
            for identity, reason in late.items():
                refused.setdefault(identity, (holding, reason))
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
                q
                for q in held_by_all(self._quotes, results)
                if q.identity not in refused and q.identity in owned_ids
            ],
            duplicates=len(self._duplicates),
            dead_lettered=[*self._rejects, *refusals],
        )

    def _withdraw_late(self, late: dict[str, str]) -> None:
        """Delete the late refusals from the sinks that cannot hold back. Queued in their
        lanes, behind whatever they are writing now: never two calls on one connection."""
        d = self._d
        # Every copy: a later one may have written the document in an earlier, unfinished try.
        quotes = [q for q in self._owned(self._quotes + self._duplicates) if q.identity in late]
        jobs = {
            sink.name: d._lanes[sink.name].submit(
                lambda s=sink: SinkSteps(s, self._attempts, self._owned).commit((), quotes)
            )
            for sink in d._sinks
            if not sink.holds_back
        }
        for name, job in jobs.items():
            unless_halted(job, self._halt, f"withdraw from {name}")

    def _dead_letter(self, rejects: Sequence[Reject], what: str) -> None:
        if rejects:
            self._attempts.retry(
                "dead-letter",
                what,
                lambda: self._d._dead_letters.publish(rejects),
                (DeadLetterError,),
            )


# What one sink wrote in phase 1: the quotes it holds, and its refusals (identity -> reason).
Phase1 = tuple[list[Quote], dict[str, str]]


class Written:
    """Where the lanes meet between the phases: each sink's phase 1, and the wait for all.

    Phase 2 starts only once every sink has written the batch, since what a sink commits
    depends on what the others hold and refused.
    """

    def __init__(self, names: Sequence[str], halt: threading.Event) -> None:
        self._futures: dict[str, Future[Phase1]] = {name: Future() for name in names}
        self._halt = halt

    def write(self, name: str, step: Callable[[], Phase1]) -> Phase1:
        """Run one sink's phase 1 and tell the others how it ended."""
        future = self._futures[name]
        try:
            future.set_result(step())
        except BaseException as error:
            future.set_exception(error)
            raise
        return future.result()

    def all(self) -> dict[str, Phase1]:
        """Every sink's phase 1, once all have written; a failed sibling (which reports its own
        error) or a halt ends the wait: the batch is not committed."""
        return {
            name: unless_halted(future, self._halt, name) for name, future in self._futures.items()
        }

    def results(self) -> dict[str, Phase1]:
        """Every sink's phase 1, once every part has finished."""
        return {name: future.result() for name, future in self._futures.items()}


def held_by_all(quotes: Sequence[Quote], results: dict[str, Phase1]) -> list[Quote]:
    """``keep``: the quotes every sink holds, in batch order.

    What a sink holds is a sub-list of ``quotes`` (``SinkSteps.write`` keeps the ones it wrote,
    in order), so a sink that holds as many holds them all: the usual batch, nothing refused or
    revoked, is answered without building a set per sink.
    """
    if all(len(held) == len(quotes) for held, _ in results.values()):
        return list(quotes)
    held = [{q.identity for q in quotes} for quotes, _ in results.values()]
    common = set.intersection(*held) if held else set()
    return [q for q in quotes if q.identity in common]


def refused_by(results: dict[str, Phase1]) -> dict[str, tuple[str, str]]:
    """identity -> (the first sink that refused it, its reason)."""
    refused: dict[str, tuple[str, str]] = {}
    for name, (_, refusals) in results.items():
        for identity, reason in refusals.items():
            refused.setdefault(identity, (name, reason))
    return refused


def unless_halted(future: Future[T], halt: threading.Event, name: str) -> T:
    """The future's result, unless a halt comes first or the future failed (whoever ran it
    reports that): then Stopped."""
    while True:
        if halt.is_set():
            raise Stopped(f"wait for {name}")
        try:
            return future.result(timeout=WAIT_SLICE_S)
        except TimeoutError:
            continue
        except BaseException:
            raise Stopped(f"wait for {name}") from None


def _first_copies(quotes: Sequence[Quote]) -> tuple[list[Quote], list[Quote]]:
    """Split a batch into first copies and later copies of the same identity in one partition.

    Only the first copy is written, so both databases keep the same one; the later copies
    share its fate, which they can, since a partition is revoked as a whole. Copies in other
    partitions are written too: their partitions may be revoked apart, so each must be able to
    stand alone, and the databases' idempotence (the unique message id) stores the message once.
    """
    seen: set[tuple[str, int, str]] = set()
    first: list[Quote] = []
    later: list[Quote] = []
    for quote in quotes:
        key = (quote.message.topic, quote.message.partition, quote.identity)
        (later if key in seen else first).append(quote)
        seen.add(key)
    return first, later
