"""A server that hangs: it neither answers nor fails, and the consumer must notice and ride it out.

An outage that refuses connections is the easy case: every call fails at once. A hung server
(a frozen VM, a stalled disk, a stop-the-world pause, a half-open network path) keeps its sockets
open and answers nothing, so a call without a deadline waits forever while /healthz says all is
well. These tests hang the real servers with SIGSTOP (``docker compose pause`` against the
compose stack: the cgroup freezer does the same) and check the promises:

- every call to a server has a deadline (``CONSUMER_WRITE_TIMEOUT_S``): a hung call counts as a
  failure, and the step is retried on a new connection;
- /healthz answers 503 once work has waited on one server with no progress for
  ``CONSUMER_UNHEALTHY_AFTER_S``, whatever the cause, and 200 again once it progresses;
- after the hang every record is stored once in both databases and its offset committed;
- SIGTERM ends the consumer within 10 s with exit code 0, even during a hang; with healthy
  servers it first finishes the batches in flight and commits them.

A frozen server is always thawed by the ``hang`` fixture, whatever the test did, before the
fixtures that drop the test's topics and databases need the servers again.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError
from pymongo.errors import PyMongoError

from native.servers.endpoints import Endpoints
from native.servers.process import run_dir
from tests.integration.pipeline import (
    ConsumerProcess,
    Coordinate,
    committed_offsets,
    end_offsets,
    mongo_coordinates,
    pg_coordinates,
    produce,
    quote_value,
    wait_for,
    wait_until_committed,
)
from tests.integration.test_consumer import (
    COMPOSE_SERVICE,
    Publisher,
    assert_exactly_once,
    wait_until_stored,
)

pytestmark = pytest.mark.integration

UNHEALTHY_AFTER_S = 5.0
WRITE_TIMEOUT_S = 5.0
# Time for the consumer to fetch the waiting records and for the test to poll /healthz on two
# shared, busy cores; not time the consumer may take to notice.
MARGIN_S = 3.0
# The promise: no progress for UNHEALTHY_AFTER_S is unhealthy. A hung call is known to have
# failed only at its deadline, so that much more is allowed, and no more.
UNHEALTHY_WITHIN_S = UNHEALTHY_AFTER_S + WRITE_TIMEOUT_S + MARGIN_S
HANG_SETTINGS = {
    "CONSUMER_UNHEALTHY_AFTER_S": str(UNHEALTHY_AFTER_S),
    "CONSUMER_WRITE_TIMEOUT_S": str(WRITE_TIMEOUT_S),
}
# How long the Kafka broker stays frozen. Longer than its ZooKeeper session (6 s,
# zookeeper.session.timeout.ms in native/servers/kafka.py), on purpose: a hung machine loses
# its session too, and the broker re-registers and is elected controller again by itself about
# a second after it runs again. Longer than the consumer's group session (10 s) as well, so the
# consumer is expelled from its group meanwhile and must rejoin: what a real hang does. (In
# KRaft mode the broker is its own controller and simply resumes.)
KAFKA_HANG_S = 22.0
STOP_WITHIN_S = 10.0
THAWED_WITHIN_S = 60.0


# --- Freezing a server -------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Every process whose parent is ``pid``, from /proc (what ``pgrep -P`` reads)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                children.append(int(stat.parent.name))
    return children


def _state(pid: int) -> str:
    """The process's state letter: T while stopped by SIGSTOP."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def _harness_pid(name: str) -> int:
    """The main process of the harness's server ``name``, checked to be the harness's own.

    The pid files may be stale and their pid reused, so the process's command line must name
    the harness's run folder (a config file, data folder or state folder in it).
    """
    run = run_dir()
    if name == "postgres":
        pidfile = run / "postgres" / "data" / "postmaster.pid"  # the postmaster's first line
    else:
        pidfile = run / f"{name}.pid"  # native/servers/process.py's spawn(): the server itself
    try:
        pid = int(pidfile.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError, IndexError) as error:
        raise AssertionError(f"no running {name} found from {pidfile}: {error}") from None
    assert str(run) in cmdline, f"pid {pid} from {pidfile} is not the harness's {name}: {cmdline}"
    return pid


class Hang:
    """Freezes servers the way a hung machine does, and thaws them again.

    PostgreSQL is a postmaster and one process per connection (plus its background workers):
    stopping only the postmaster would leave the consumer's open connections answering. So the
    postmaster is stopped first (it can start no new process then) and every child after it,
    as a frozen machine would have them. The Kafka test stops the broker's JVM only, never
    ZooKeeper: the hang is the broker's.
    """

    def __init__(self, endpoints: Endpoints) -> None:
        self._endpoints = endpoints
        self._frozen: list[int] = []
        self._paused: list[str] = []
        self._servers: list[str] = []  # to wait for after the thaw

    def freeze(self, name: str) -> None:
        self._servers.append(name)
        if not self._endpoints.harness:
            # The compose stack: the cgroup freezer stops every process of the container.
            service = COMPOSE_SERVICE[name]
            self._paused.append(service)
            subprocess.run(["docker", "compose", "pause", service], check=True, timeout=60)
            return
        pid = _harness_pid(name)
        self._stop(pid)
        if name == "postgres":
            for child in _children(pid):
                self._stop(child)
        frozen = list(self._frozen)
        wait_for(
            f"{name} to be stopped",
            lambda: all(_state(pid) in ("T", "gone") for pid in frozen),
            5,
            every_s=0.05,
        )

    def _stop(self, pid: int) -> None:
        self._frozen.append(pid)  # listed first: thawed even if the signal raced an exit
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT in the reverse order, children before the postmaster; then wait until each
        thawed server serves again. Idempotent."""
        while self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._frozen.pop(), signal.SIGCONT)
        while self._paused:
            service = self._paused.pop()
            subprocess.run(["docker", "compose", "unpause", service], check=False, timeout=60)
        while self._servers:
            name = self._servers.pop()
            wait_for(
                f"{name} to serve again after the hang",
                lambda name=name: serves(self._endpoints, name),
                THAWED_WITHIN_S,
                every_s=0.5,
            )


def serves(endpoints: Endpoints, name: str) -> bool:
    """One real request to the server succeeds.

    For Kafka, a topic made and deleted: after a hang longer than its ZooKeeper session, the
    broker runs again at once but takes a moment to notice the session expired, resign as
    controller and be elected again; a topic deleted meanwhile (the ``fresh_topic`` fixture's
    teardown) fails with an unknown error.
    """
    try:
        if name == "kafka":
            admin = KafkaAdminClient(
                bootstrap_servers=endpoints.kafka, client_id="tests", request_timeout_ms=10_000
            )
            try:
                probe = f"hang-probe-{uuid.uuid4().hex[:10]}"
                admin.create_topics([NewTopic(probe, 1, 1)], timeout_ms=10_000)
                admin.delete_topics([probe], timeout_ms=10_000)
            finally:
                admin.close()
        elif name == "postgres":
            conn = psycopg2.connect(**endpoints.pg_params("postgres"))
            try:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT 1")
            finally:
                conn.close()
        else:
            client = endpoints.mongo_client()
            try:
                client.admin.command("ping")
            finally:
                client.close()
    except (KafkaError, psycopg2.Error, PyMongoError):
        return False
    return True


@pytest.fixture
def hang(setup: dict[str, Any]) -> Iterator[Hang]:
    """A :class:`Hang` thawed after the test, whatever happened, and at exit if pytest dies.

    It depends on ``setup``, so it is torn down first: the topics and databases are dropped
    from running servers, and the next test finds them running.
    """
    frozen = Hang(setup["endpoints"])
    atexit.register(frozen.thaw)
    try:
        yield frozen
    finally:
        frozen.thaw()
        atexit.unregister(frozen.thaw)


# --- Checks ------------------------------------------------------------------------------------


def wait_for_health(
    consumer: ConsumerProcess, status: int, since: float, within_s: float, what: str
) -> float:
    """Poll /healthz until it answers ``status``, at most ``within_s`` after ``since``; return
    how long after ``since`` it did. The failure shows the /healthz body and the log's end."""
    answered: int | None = None
    while True:
        answered = consumer.health_status()  # raises if the consumer exited
        took = time.monotonic() - since
        if answered == status:
            return took
        if took > within_s:
            raise AssertionError(
                f"/healthz answered {answered}, not {status}, {took:.1f}s after {what} "
                f"(bound {within_s:.0f}s); /healthz: {consumer.health_report()}\n"
                f"consumer log, last lines:\n{tail(consumer)}"
            )
        time.sleep(0.25)


def tail(consumer: ConsumerProcess, lines: int = 25) -> str:
    return "\n".join(consumer.log().splitlines()[-lines:])


def stored_by_partition(coordinates: list[Coordinate], name: str) -> dict[int, set[int]]:
    """Offsets stored per partition; duplicates fail at once."""
    duplicates = [c for c, n in collections.Counter(coordinates).items() if n > 1]
    assert not duplicates, f"{name} holds records twice: {duplicates[:5]}"
    offsets: dict[int, set[int]] = collections.defaultdict(set)
    for partition, offset in coordinates:
        offsets[partition].add(offset)
    return offsets


# --- The tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["postgres", "ferretdb"])
def test_a_hung_database_turns_healthz_503_then_everything_is_stored_once(
    setup: dict[str, Any], hang: Hang, server: str
) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    database, mongo_db = setup["database"], setup["mongo_db"]
    consumer = ConsumerProcess({**setup["env"], **HANG_SETTINGS}, setup["tmp"]).start()
    placed = produce(endpoints.kafka, topic, [quote_value(i) for i in range(60)])
    # Stored first: the consumer's connections are open and in use when the server hangs.
    wait_until_stored(endpoints, database, mongo_db, len(placed))

    hang.freeze(server)
    placed += produce(endpoints.kafka, topic, [quote_value(i) for i in range(60, 90)])
    waiting_since = time.monotonic()  # records are in the topic, and the server is hung
    publisher = Publisher(endpoints.kafka, topic, bursts=10, per_burst=10)
    publisher.start()  # and more keep arriving during the hang
    took = wait_for_health(
        consumer, 503, waiting_since, UNHEALTHY_WITHIN_S, f"{server} hung with records waiting"
    )
    print(f"/healthz 503 {took:.1f}s after records waited on a hung {server}")
    time.sleep(2)  # a little longer hung, records still arriving
    assert consumer.alive(), consumer.log()
    hang.thaw()

    publisher.join(timeout=60)
    assert not publisher.is_alive(), "publishing took over 60 s"
    placed += publisher.placed
    assert len(placed) == 190
    wait_until_stored(endpoints, database, mongo_db, len(placed), timeout_s=90)
    wait_until_committed(endpoints.kafka, f"{topic}-group", topic, placed, timeout_s=60)
    wait_for_health(consumer, 200, time.monotonic(), 30, f"{server} came back")
    assert consumer.alive(), consumer.log()
    assert consumer.terminate() == 0, consumer.log()
    assert_exactly_once(endpoints, database, mongo_db, placed)


def test_a_hung_kafka_broker_turns_healthz_503_then_everything_is_stored_and_committed(
    setup: dict[str, Any], hang: Hang
) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    database, mongo_db = setup["database"], setup["mongo_db"]
    placed = produce(endpoints.kafka, topic, [quote_value(i) for i in range(1500)])
    env = {**setup["env"], **HANG_SETTINGS, "CONSUMER_BATCH_SIZE": "20"}
    consumer = ConsumerProcess(env, setup["tmp"]).start()
    wait_for(
        "some records stored",
        lambda: len(pg_coordinates(endpoints, database)) >= 100,
        60,
        every_s=0.05,
    )

    # Mid-stream: records fetched and being written, offsets owed, more records in the topic.
    hang.freeze("kafka")
    frozen_at = time.monotonic()
    took = wait_for_health(
        consumer, 503, frozen_at, UNHEALTHY_WITHIN_S, "the broker hung mid-stream"
    )
    print(f"/healthz 503 {took:.1f}s after the broker hung")
    time.sleep(max(0.0, frozen_at + KAFKA_HANG_S - time.monotonic()))
    assert consumer.alive(), consumer.log()
    hang.thaw()

    wait_until_stored(endpoints, database, mongo_db, len(placed), timeout_s=120)
    wait_until_committed(endpoints.kafka, f"{topic}-group", topic, placed, timeout_s=120)
    assert end_offsets(placed) == {0: 500, 1: 500, 2: 500}
    wait_for_health(consumer, 200, time.monotonic(), 60, "the broker came back")
    assert consumer.alive(), consumer.log()
    assert consumer.terminate() == 0, consumer.log()
    assert_exactly_once(endpoints, database, mongo_db, placed)


def test_sigterm_during_a_postgres_hang_exits_0_within_10_seconds(
    setup: dict[str, Any], hang: Hang
) -> None:
    endpoints, topic = setup["endpoints"], setup["topic"]
    database, mongo_db = setup["database"], setup["mongo_db"]
    # The call's deadline is longer than the stop's: only abandoning the hung call meets it.
    env = {**setup["env"], "CONSUMER_WRITE_TIMEOUT_S": "15"}
    first = ConsumerProcess(env, setup["tmp"], "first").start()
    placed = produce(endpoints.kafka, topic, [quote_value(i) for i in range(30)])
    wait_until_stored(endpoints, database, mongo_db, len(placed))

    hang.freeze("postgres")
    placed += produce(endpoints.kafka, topic, [quote_value(i) for i in range(30, 60)])
    # Not the effect under test, the situation it needs: the new records are handed over to
    # the databases, so PostgreSQL's part is a call into the frozen server.
    wait_for(
        "the records handed to the databases",
        lambda: first.metrics().get("quotes_consumer_records_consumed_total") == len(placed),
        30,
    )
    time.sleep(1)  # well inside the hung call
    started = time.monotonic()
    code = first.terminate(timeout_s=STOP_WITHIN_S + 10)
    took = time.monotonic() - started
    hang.thaw()
    assert code == 0, first.log()
    assert took < STOP_WITHIN_S, f"SIGTERM took {took:.1f}s during a hang:\n{tail(first)}"

    second = ConsumerProcess(env, setup["tmp"], "second").start()
    wait_until_stored(endpoints, database, mongo_db, len(placed), timeout_s=90)
    wait_until_committed(endpoints.kafka, f"{topic}-group", topic, placed, timeout_s=60)
    assert second.terminate() == 0, second.log()
    assert_exactly_once(endpoints, database, mongo_db, placed)


def test_sigterm_with_healthy_servers_commits_every_record_it_stored(setup: dict[str, Any]) -> None:
    """What is deterministic after a graceful stop, whenever the signal lands: per partition,
    the records in PostgreSQL, the records in MongoDB and the records below the committed
    offset are the same set, a prefix of the partition. Commits never run ahead of storage (a
    crash may leave them behind it, which is the at-least-once part); a graceful stop leaves
    them neither ahead nor behind: the batches in flight finish and are committed."""
    endpoints, topic = setup["endpoints"], setup["topic"]
    database, mongo_db = setup["database"], setup["mongo_db"]
    # Small batches: many round trips, so that the stop finds batches in flight.
    env = {**setup["env"], "CONSUMER_BATCH_SIZE": "10"}
    consumer = ConsumerProcess(env, setup["tmp"]).start()
    placed = produce(endpoints.kafka, topic, [quote_value(i) for i in range(100)])
    wait_for("records flowing", lambda: len(pg_coordinates(endpoints, database)) >= 10, 60)

    placed += produce(endpoints.kafka, topic, [quote_value(i) for i in range(100, 5000)])
    started = time.monotonic()
    code = consumer.terminate(timeout_s=STOP_WITHIN_S + 10)  # right after sending
    took = time.monotonic() - started
    assert code == 0, consumer.log()
    assert took < STOP_WITHIN_S, f"SIGTERM took {took:.1f}s:\n{tail(consumer)}"

    committed = committed_offsets(endpoints.kafka, f"{topic}-group", topic)
    in_pg = stored_by_partition(pg_coordinates(endpoints, database), "PostgreSQL")
    in_mongo = stored_by_partition(mongo_coordinates(endpoints, mongo_db), "MongoDB")
    stored = sum(len(offsets) for offsets in in_pg.values())
    print(f"stopped with {stored} of {len(placed)} stored; committed {committed}")
    assert stored < len(placed), "the stop must land mid-stream; send more records"
    for partition in sorted(end_offsets(placed)):
        below = set(range(committed.get(partition) or 0))
        pg, mongo = in_pg.get(partition, set()), in_mongo.get(partition, set())
        where = f"partition {partition}, committed {committed.get(partition)}"
        assert below <= pg and below <= mongo, (
            f"{where}: committed ahead of storage; missing in PostgreSQL "
            f"{sorted(below - pg)[:5]}, in MongoDB {sorted(below - mongo)[:5]}"
        )
        assert pg == mongo, (
            f"{where}: the stop left a batch half-written; only in PostgreSQL "
            f"{sorted(pg - mongo)[:5]}, only in MongoDB {sorted(mongo - pg)[:5]}"
        )
        assert pg == below, (
            f"{where}: {len(pg - below)} records stored in both databases but not committed "
            f"(first {sorted(pg - below)[:5]}): the stop did not commit its batches in flight"
        )

    # Nothing was lost either: a new consumer takes over from the commit and finishes.
    second = ConsumerProcess(env, setup["tmp"], "second").start()
    wait_until_committed(endpoints.kafka, f"{topic}-group", topic, placed, timeout_s=120)
    assert second.terminate() == 0, second.log()
    assert_exactly_once(endpoints, database, mongo_db, placed)
