"""Entry point: ``quotes-consumer`` or ``python -m quotes_consumer``.

Reads settings (environment, then a ``.env`` file in the working directory), builds the loop's
parts (sinks, dead-letter publisher, Kafka consumer factory), starts the health server, and runs
the loop until SIGTERM or SIGINT, which end it with exit code 0 within a few seconds, even in the
middle of a retry. A bug ends it with exit code 1 and a traceback, so that compose restarts it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from dotenv import load_dotenv

from quotes_consumer import sinks
from quotes_consumer.deadletter import DeadLetterPublisher
from quotes_consumer.delivery import Delivery
from quotes_consumer.health import Health, HealthServer, Metrics
from quotes_consumer.loop import kafka_consumer, run
from quotes_consumer.settings import Settings, SettingsError, load

SinkBuilder = Callable[[Settings], Sequence[sinks.Sink]]
EXIT_BUG = 1
EXIT_BAD_SETTINGS = 2
# Container allocations (net of frees) between two collections of the youngest generation;
# Python's default is 700. See tune_garbage_collector.
GC_YOUNG_THRESHOLD = 20_000
log = logging.getLogger("quotes_consumer")


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas before any thread starts.

    glibc gives each thread that allocates its own arena (up to 8 per core), and freed memory
    stays in the arena that held it. With large records, the poll, delivery and client threads
    each kept tens of megabytes this way: peak RSS grew well past the batch's own size. On a
    C library without ``mallopt`` (musl) there is nothing to tune.
    """
    m_arena_max = -8  # from glibc's malloc.h
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(m_arena_max, arenas)


def tune_garbage_collector() -> None:
    """Make Python's cyclic garbage collector cheap for a stream of short-lived records.

    Each record makes a few dozen containers (named tuples, dicts, lists) that reference
    counting frees; none is part of a cycle. But while a batch is in flight they are alive, and
    with the default thresholds (700, 10, 10) each is scanned several times before it dies,
    while every full collection also walks every object the libraries made at import. On 100k
    records that was about 0.33 s of collections, 3 us of CPU per record. So, once startup is
    done: collect, then freeze what is left (modules, classes, clients: never garbage, never
    scanned again), and collect the youngest generation every 20,000 allocations. Collections
    then took 0.04 s. Cycles are still collected, a little later: peak RSS rose by 1-4 MB.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


def main(build_sinks: SinkBuilder = sinks.build) -> int:
    """Run the service; ``build_sinks`` is the seam the benchmark uses to switch a sink off."""
    limit_malloc_arenas()
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
    # The Kafka client's own warnings (a broker gone, a rebalance) are worth seeing; its INFO
    # lines are not, unless asked for.
    logging.getLogger("kafka").setLevel(
        logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING
    )

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
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
    dead_letters = DeadLetterPublisher(
        settings.kafka_bootstrap_servers,
        settings.kafka_dlq_topic,
        settings.kafka_group_id,
        timeout_s=settings.consumer_write_timeout_s,
    )
    dead_letters.connect_soon()
    delivery = Delivery(
        build_sinks(settings),
        dead_letters,
        metrics,
        health,
        stop,
        settings.consumer_retry_max_backoff_s,
    )
    tune_garbage_collector()  # what startup built stays for the process's life
    try:
        run(settings, kafka_consumer(settings), delivery, stop, metrics, health)
    except Exception:
        log.exception("stopping on an unexpected error; the batch in flight stays uncommitted")
        return EXIT_BUG
    finally:
        health.running = False
        server.stop()
        delivery.close()
        dead_letters.close(timeout_s=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
