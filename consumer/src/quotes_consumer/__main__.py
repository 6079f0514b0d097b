"""Entry point: ``quotes-consumer`` or ``python -m quotes_consumer``.

Reads settings (environment, then a ``.env`` file in the working directory), starts the health
server, and runs the loop until SIGTERM or SIGINT, which end it cleanly with exit code 0.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from dotenv import load_dotenv

from quotes_consumer.health import Health, HealthServer, Metrics
from quotes_consumer.loop import run
from quotes_consumer.settings import SettingsError, load

EXIT_BAD_SETTINGS = 2


def main() -> int:
    load_dotenv(Path(".env"), override=False)  # the working directory's; the environment wins
    try:
        settings = load(os.environ)
    except SettingsError as error:
        print(f"quotes-consumer: {error}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    # The Kafka client logs every reconnect attempt at WARNING/ERROR; the loop already logs one
    # line per failed attempt, which is what a person needs.
    if settings.log_level != "DEBUG":
        logging.getLogger("kafka").setLevel(logging.CRITICAL)

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("quotes_consumer").info(
            "%s received, stopping", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    metrics, health = Metrics(), Health(settings.consumer_unhealthy_after_s)
    try:
        server = HealthServer(settings.consumer_metrics_port, health, metrics)
    except OSError as error:
        print(
            f"quotes-consumer: CONSUMER_METRICS_PORT={settings.consumer_metrics_port} "
            f"cannot be served: {error.strerror}",
            file=sys.stderr,
        )
        return EXIT_BAD_SETTINGS
    server.start()
    try:
        run(settings, stop, metrics, health)
    finally:
        health.running = False
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
