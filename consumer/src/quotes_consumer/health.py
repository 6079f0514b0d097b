"""``/healthz`` for the Docker healthcheck and ``/metrics`` for Prometheus, on one small server.

Health means "making progress": the service turns unhealthy when work has waited on one target
(Kafka, a database, the dead-letter topic) with nothing done for longer than the threshold, so an
orchestrator sees a stuck consumer whether its server refuses, fails or hangs without a word.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class Metrics:
    """The service's counters, in a registry of its own so tests can make fresh ones."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.consumed = Counter(
            "quotes_consumer_records_consumed",
            "Kafka records read and processed",
            registry=self.registry,
        )
        self.written = Counter(
            "quotes_consumer_records_written",
            "Records written, per sink (replays included; writes are idempotent)",
            ["sink"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "quotes_consumer_records_dead_lettered",
            "Records sent to the dead-letter topic, per reason",
            ["reason"],
            registry=self.registry,
        )
        self.failures = Counter(
            "quotes_consumer_write_failures",
            "Failed attempts to write a batch, per target (each is retried)",
            ["target"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "quotes_consumer_batch_duration_seconds",
            "Time from a batch's first record polled to its offsets committed",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.lag = Gauge(
            "quotes_consumer_lag",
            "Records behind the end of each assigned partition",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.commits = Counter(
            "quotes_consumer_commits", "Offset commits to Kafka", registry=self.registry
        )


class Health:
    """Progress per target (``kafka``, each sink, ``dead-letter``); thread-safe.

    Health is judged by progress, not by errors: a call that hangs raises nothing, and a retry
    loop that never succeeds raises nothing new. So each target keeps one clock: it starts when
    work for that target begins waiting, restarts at every success, and stops when no work is
    waiting. A target whose clock runs longer than the threshold is stalled, and ``/healthz``
    answers 503, whatever the cause: an error, a hang, a refusal loop, a missing topic. A short
    database restart, which the loop rides out, does not flap the status. Targets never share a
    clock: success on one never hides another's stall.
    """

    def __init__(
        self, unhealthy_after_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._unhealthy_after_s = unhealthy_after_s
        self._clock = clock
        self._waiting: dict[str, int] = {}  # target -> pieces of work waiting on it
        self._since: dict[str, float] = {}  # target -> last progress, or when work began waiting
        self._failing: dict[str, str] = {}  # target -> the last error, for people
        self._lock = threading.Lock()
        self.running = True

    @contextmanager
    def waiting(self, target: str) -> Iterator[None]:
        """Work for ``target`` is waiting while the block runs; the clock runs until it ends."""
        with self._lock:
            if not self._waiting.get(target):
                self._since[target] = self._clock()
            self._waiting[target] = self._waiting.get(target, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._waiting[target] -= 1
                if not self._waiting[target]:
                    del self._waiting[target], self._since[target]
                    self._failing.pop(target, None)

    def progressed(self, target: str) -> None:
        """Something for ``target`` succeeded: its clock starts again."""
        with self._lock:
            if target in self._since:
                self._since[target] = self._clock()
            self._failing.pop(target, None)

    def failed(self, target: str, error: str) -> None:
        """An attempt failed; shown in the report. Only the clock decides health."""
        with self._lock:
            self._failing[target] = error

    def report(self) -> tuple[bool, dict[str, object]]:
        now = self._clock()
        with self._lock:
            waiting = {name: round(now - since, 1) for name, since in self._since.items()}
            failing = dict(self._failing)
        stalled = sorted(name for name, s in waiting.items() if s > self._unhealthy_after_s)
        healthy = self.running and not stalled
        return healthy, {
            "healthy": healthy,
            "running": self.running,
            "stalled": stalled,
            "no_progress_for_s": waiting,
            "last_errors": failing,
        }


class HealthServer:
    """Serves both endpoints from a daemon thread."""

    def __init__(self, port: int, health: Health, metrics: Metrics, host: str = "0.0.0.0") -> None:
        handler = _handler(health, metrics)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(health: Health, metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                healthy, body = health.report()
                self._send(200 if healthy else 503, "application/json", json.dumps(body).encode())
            elif self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            else:
                self._send(404, "application/json", b'{"error": "try /healthz or /metrics"}')

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Healthchecks every few seconds would drown the batch log lines."""

    return Handler
