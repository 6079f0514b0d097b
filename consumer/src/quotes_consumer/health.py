"""``/healthz`` for the Docker healthcheck and ``/metrics`` for Prometheus, on one small server.

Health means "making progress or able to": the service turns unhealthy when a sink (or Kafka)
has been failing continuously for longer than the threshold, so an orchestrator can see a stuck
consumer, while a short database restart, which the loop rides out, does not flap the status.
"""

from __future__ import annotations

import json
import threading
import time
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
    """Tracks since when each dependency has been failing; thread-safe."""

    def __init__(self, unhealthy_after_s: float) -> None:
        self._unhealthy_after_s = unhealthy_after_s
        self._failing_since: dict[str, float] = {}
        self._lock = threading.Lock()
        self.running = True

    def failed(self, target: str) -> None:
        with self._lock:
            self._failing_since.setdefault(target, time.monotonic())

    def succeeded(self, target: str) -> None:
        with self._lock:
            self._failing_since.pop(target, None)

    def report(self) -> tuple[bool, dict[str, object]]:
        now = time.monotonic()
        with self._lock:
            failing = {name: round(now - since, 1) for name, since in self._failing_since.items()}
        too_long = [name for name, seconds in failing.items() if seconds > self._unhealthy_after_s]
        healthy = self.running and not too_long
        return healthy, {"healthy": healthy, "running": self.running, "failing_for_s": failing}


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
