"""Looks at every server on a timer, in the background, and keeps the latest snapshot.

Why a background poller: the page's requests only read the last snapshot, so a browser never
waits on a server, and ten open tabs cost the servers nothing more than one. Each probe runs on a
thread of its own with a deadline: a server that hangs makes its own stages "down" at the next
look and never delays the others. A probe still stuck from an earlier look is not started again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from streamlab_status.history import History
from streamlab_status.probes import STAGES, NotInThisLab, Reading
from streamlab_status.verdict import LAG_SERIES, judge

# A probe: callable returning readings by stage; with the stages it is responsible for.
ProbeSpec = tuple[Callable[[], dict[str, Reading]], tuple[str, ...]]


def one_line(error: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """An exception as one short line for the page, with every secret value masked.

    Drivers' messages name the login ("password authentication failed for user ..."); the page
    must not carry a login name or a password to the browser, whatever a driver puts in them.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text[:200]


class Poller:
    """Runs the probes every ``refresh_s`` and builds the snapshot the data API serves."""

    def __init__(
        self,
        probes: dict[str, ProbeSpec],
        refresh_s: float,
        timeout_s: float,
        history: History | None = None,
        clock: Callable[[], float] = time.time,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.probes = probes
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self.history = history or History()
        self.clock = clock
        self.secrets = secrets
        self._executors = {
            name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"probe-{name}")
            for name in probes
        }
        self._pending: dict[str, Future[dict[str, Reading]]] = {}
        self._snapshot: dict[str, Any] = {"time": None, "refresh_s": refresh_s, "stages": []}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout_s + self.refresh_s + 1)
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        for probe, _stages in self.probes.values():
            close = getattr(probe, "close", None)
            if close is not None:
                close()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.look()
            self._stop.wait(max(0.0, self.refresh_s - (time.monotonic() - started)))

    def look(self) -> dict[str, Any]:
        """Run every probe once (in parallel, bounded by the timeout) and publish the result."""
        for name, (probe, _stages) in self.probes.items():
            if name not in self._pending:
                self._pending[name] = self._executors[name].submit(probe)
        deadline = time.monotonic() + self.timeout_s
        readings: dict[str, dict[str, Any] | None] = {}
        for name, (_probe, stages) in self.probes.items():
            future = self._pending[name]
            try:
                found = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                error = f"no answer within {self.timeout_s:g} s"
                readings.update({s: {"error": error} for s in stages})
                continue  # still running: left pending, not started again
            except Exception as exc:  # a server down: its stages are red, the rest go on
                del self._pending[name]
                error = {"error": one_line(exc, self.secrets), "off": isinstance(exc, NotInThisLab)}
                readings.update({s: dict(error) for s in stages})
                continue
            del self._pending[name]
            for stage in stages:
                reading = found.get(stage)
                if reading is None:
                    readings[stage] = {"error": "no reading"}
                elif "error" in reading.detail and reading.count is None:
                    readings[stage] = {"error": reading.detail["error"]}
                else:
                    readings[stage] = {"count": reading.count, "detail": reading.detail}
        return self._publish(readings)

    def _publish(self, readings: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
        now = self.clock()
        for stage in STAGES:
            reading = readings.get(stage)
            count = None if reading is None or "error" in reading else reading.get("count")
            self.history.add(stage, now, count)
        consumer = readings.get("consumer")
        if consumer and "error" not in consumer:
            self.history.add(LAG_SERIES, now, int(consumer["detail"].get("total_lag", 0)))
        stages = []
        for stage in STAGES:
            reading = readings.get(stage)
            state, reason = judge(stage, reading, readings, self.history, now)
            ok = reading is not None and "error" not in reading
            stages.append(
                {
                    "id": stage,
                    "state": state,
                    "reason": reason,
                    "count": reading.get("count") if ok and reading else None,
                    "detail": reading.get("detail", {}) if ok and reading else {},
                    "rate": self.history.rate(stage, now) if ok else None,
                    "spark": [
                        [round(t - now, 1), round(r, 3)] for t, r in self.history.sparkline(stage)
                    ],
                }
            )
        snapshot = {"time": now, "refresh_s": self.refresh_s, "stages": stages}
        with self._lock:
            self._snapshot = snapshot
        return snapshot
