"""One sink's steps of a batch, each retried until it succeeds: write, isolate, commit.

- A failing server (:class:`~quotes_consumer.sinks.Unavailable`, a call with no answer within
  its deadline included) is waited out with capped exponential backoff, retrying only the step
  that failed;
- a record a database refuses (:class:`~quotes_consumer.sinks.Refused`) is isolated by splitting
  the batch in halves, so finding k bad records among n costs about 2k·log2(n) writes, not n, as
  the Confluent JDBC sink unrolls a batch to report only the record the database refuses;
- a failure no one classified is retried a few times, then isolated the same way; if every
  record of the batch fails alike, the server is in a state no record causes, and the failure
  is waited out like an outage rather than dead-lettering the whole batch.

Health is judged by progress: each step keeps its sink's clock running while it waits and
restarts it on success (see ``health``). This module knows neither Kafka nor the other sinks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from quotes_consumer.health import Health, Metrics
from quotes_consumer.record import Quote
from quotes_consumer.sinks import Refused, Sink, SinkError, Unavailable

log = logging.getLogger("quotes_consumer")

R = TypeVar("R")
FIRST_BACKOFF_S = 0.5
# How often a failure nobody classified is retried before the batch is split to isolate it.
UNCLASSIFIED_ATTEMPTS = 3


class Stopped(Exception):
    """Shutdown (or a failed sibling step) ended a wait; the batch stays uncommitted."""


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


@dataclass(frozen=True)
class Attempts:
    """What every step needs to retry and to report: health, metrics, backoff."""

    health: Health
    metrics: Metrics
    backoff: Backoff

    def retry(
        self,
        target: str,
        what: str,
        step: Callable[[], R],
        failures: tuple[type[Exception], ...],
        after_failure: Callable[[Exception], None] = lambda error: None,
    ) -> R:
        """Run ``step`` until it returns, and return what it returns. Each of ``failures`` is
        reported, handed to ``after_failure`` (which readies the next attempt) and waited out;
        anything else, a stop included, ends the retries."""
        with self.health.waiting(target):
            for attempt, delay in enumerate(self.backoff.delays(), start=1):
                try:
                    result = step()
                except failures as error:
                    self.failed(target, what, error, delay)
                    after_failure(error)
                else:
                    self.succeeded(target, what, attempt)
                    return result
                self.backoff.wait(delay, what)
        raise AssertionError("unreachable: delays() never ends")

    def succeeded(self, target: str, what: str, attempt: int) -> None:
        self.health.progressed(target)
        if attempt > 1:
            log.info("%s: succeeded at attempt %d", what, attempt)

    def failed(self, target: str, what: str, error: Exception, delay: float) -> None:
        self.health.failed(target, one_line(error))
        self.metrics.failures.labels(target).inc()
        log.warning("could not %s, retrying in %.1fs: %s", what, delay, one_line(error))


class NotTheRecords(SinkError):
    """Every record of a batch failed alike with an unclassified error: the server's state."""


class SinkSteps:
    """Write and commit one batch to one sink. Runs in the sink's lane, one batch at a time."""

    def __init__(
        self, sink: Sink, attempts: Attempts, owned: Callable[[Sequence[Quote]], list[Quote]]
    ) -> None:
        self.sink = sink
        self._attempts = attempts
        self._owned = owned  # drops the quotes of partitions revoked meanwhile

    def write(self, quotes: Sequence[Quote]) -> tuple[list[Quote], dict[str, str]]:
        """Write the owned ``quotes`` until done: (what the sink holds, what it refused).

        Refusals map each refused quote's identity to the database's reason.
        """
        unclassified = 0  # attempts in a row that failed with an error no one classified

        def attempt() -> tuple[list[Quote], dict[str, str]]:
            batch = self._owned(quotes)
            if not batch:
                return [], {}  # every record was revoked: the new owner writes them
            refused = self.isolate(batch, unclassified >= UNCLASSIFIED_ATTEMPTS)
            return [q for q in batch if q.identity not in refused], refused

        def after_failure(error: Exception) -> None:
            nonlocal unclassified
            if isinstance(error, NotTheRecords):
                unclassified = 0  # the whole batch again, a few times, before splitting
            elif not isinstance(error, Unavailable):
                unclassified += 1
            self.sink.rollback()

        what = f"write {len(quotes)} records to {self.sink.name}"
        return self._attempts.retry(self.sink.name, what, attempt, (SinkError,), after_failure)

    def isolate(self, batch: Sequence[Quote], split_unclassified: bool) -> dict[str, str]:
        """Write ``batch``; on a refusal, find exactly the refused records by halving."""
        refused, unclassified = self._isolate(batch, split_unclassified)
        if refused and unclassified == len(batch):
            raise NotTheRecords(
                f"{self.sink.name}: every record of the batch fails alike: "
                f"{next(iter(refused.values()))}"
            )
        return refused

    def _isolate(
        self, batch: Sequence[Quote], split_unclassified: bool
    ) -> tuple[dict[str, str], int]:
        """(refusals, how many of them come from unclassified failures)."""
        try:
            self.sink.write(batch)
            return {}, 0
        except Unavailable:
            raise
        except Refused as error:
            if error.positions is not None:
                return {batch[i].identity: str(error) for i in error.positions}, 0
            failure: SinkError = error
        except SinkError as error:
            if not split_unclassified:
                raise
            failure = error
        if len(batch) == 1:
            log.warning("%s refuses %s: %s", self.sink.name, batch[0].message.record_id, failure)
            kind = 0 if isinstance(failure, Refused) else 1
            return {batch[0].identity: str(failure)}, kind
        middle = len(batch) // 2
        left, left_unclassified = self._isolate(batch[:middle], True)
        right, right_unclassified = self._isolate(batch[middle:], True)
        return left | right, left_unclassified + right_unclassified

    def commit(self, keep: Sequence[Quote], withdrawn: Sequence[Quote]) -> dict[str, str]:
        """Commit ``keep`` and take back ``withdrawn``; return the late refusals.

        A sink that holds writes back may lose them (its COMMIT failed, the transaction is gone):
        ``keep`` is then written again, idempotently, before the next COMMIT. A record refused
        only then is a late refusal: it is left out of the commit, and the caller dead-letters
        it and withdraws it from the other sinks.
        """
        sink = self.sink
        late: dict[str, str] = {}
        kept = list(keep)
        lost = False  # the held-back writes are gone with a failed COMMIT

        def attempt() -> None:
            nonlocal kept
            if lost and kept:
                late.update(self.isolate(kept, split_unclassified=True))
                kept = [q for q in kept if q.identity not in late]
            sink.commit(kept, withdrawn)

        def after_failure(error: Exception) -> None:
            nonlocal lost
            sink.rollback()
            lost = sink.holds_back  # what it held back is gone: write it again first

        what = f"commit {len(kept)} records to {sink.name}"
        self._attempts.retry(sink.name, what, attempt, (SinkError,), after_failure)
        if late:
            log.warning(
                "%s refused %d records only when written again after a lost commit; they are "
                "dead-lettered and withdrawn",
                sink.name,
                len(late),
            )
        return late


def one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    if not lines or lines[0].endswith(": None") or lines[0] == "None":
        return type(error).__name__  # kafka-python's errors often carry no message
    return lines[0][:300]
