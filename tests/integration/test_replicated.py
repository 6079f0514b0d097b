"""The replicated variant, for real: three KRaft brokers, and the partition leader SIGKILLed.

``make up-replicated`` promises that losing one broker loses nothing and stops nothing, and that
losing two makes producers wait instead of dropping records. This test runs three native Kafka
4.x brokers (each broker and controller, as docker-compose.replicated.yml does), a topic with
replication factor 3 and ``min.insync.replicas=2``, the real consumer given all three bootstrap
addresses, and an ``acks=all`` producer streaming in the background; then it kills brokers with
SIGKILL, the way a crashed host goes, and checks every promise against both databases.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from native.servers.endpoints import Endpoints
from native.servers.kafka import KraftNode, kraft_cluster_id, kraft_command, kraft_started
from native.servers.process import is_listening, wait_until
from tests.integration.pipeline import (
    ConsumerProcess,
    Coordinate,
    consumer_env,
    free_port,
    mongo_coordinates,
    pg_coordinates,
    quote_value,
    read_topic,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.replicated]

BROKERS = 3
PARTITIONS = 3
HEAP = "256m"  # as docker-compose.replicated.yml


class Cluster:
    """Three KRaft nodes as child processes of the test, each with its own log file."""

    def __init__(self, home: Path) -> None:
        self.nodes = [
            KraftNode(i, free_port(), free_port(), home / f"node{i}") for i in range(1, BROKERS + 1)
        ]
        cluster_id = kraft_cluster_id()
        self.commands = {
            node.node_id: kraft_command(node, self.nodes, cluster_id, HEAP) for node in self.nodes
        }
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def log_path(self, node_id: int) -> Path:
        return self.nodes[node_id - 1].home / "broker.log"

    def start(self, node_id: int) -> int:
        """Start a node; return the log offset its start-up message will come after."""
        log_path = self.log_path(node_id)
        offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            self.procs[node_id] = subprocess.Popen(
                self.commands[node_id],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return offset

    def wait_started(self, node_id: int, offset: int, timeout_s: float = 120) -> None:
        node = self.nodes[node_id - 1]
        wait_until(
            f"KRaft node {node_id}",
            lambda: kraft_started(self.log_path(node_id), offset) and is_listening(node.port),
            timeout_s,
            self.log_path(node_id),
            self.procs[node_id],
        )

    def kill(self, node_id: int) -> None:
        """SIGKILL: no controlled shutdown, no leadership handed over first."""
        proc = self.procs[node_id]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def peak_rss_mib(self, node_id: int) -> float:
        """VmHWM, the process's peak resident memory, from /proc."""
        status = Path(f"/proc/{self.procs[node_id].pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
        return kib / 1024

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


class Streamer(threading.Thread):
    """An ``acks=all`` idempotent producer sending one record every few milliseconds, bounded.

    Each acknowledgement is recorded with its time, so the test can tell what was written
    while a broker was down.
    """

    def __init__(self, bootstrap: str, topic: str, limit: int = 20_000) -> None:
        super().__init__(daemon=True)
        self.topic, self.limit = topic, limit
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[tuple[float, Coordinate]] = []
        self.failed: list[str] = []
        self.sent = 0

    def _on_ack(self, meta: Any) -> None:
        with self.lock:
            self.acked.append((time.monotonic(), (meta.partition, meta.offset)))

    def _on_error(self, error: Exception) -> None:
        with self.lock:
            self.failed.append(repr(error))

    def run(self) -> None:
        while not self.stop.is_set() and self.sent < self.limit:
            future = self.producer.send(self.topic, value=quote_value(self.sent))
            future.add_callback(self._on_ack).add_errback(self._on_error)
            self.sent += 1
            time.sleep(0.004)
        self.producer.flush(timeout=60)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=90)
        assert not self.is_alive(), "the streaming producer did not finish within 90 s"
        self.producer.close(timeout=10)

    def acked_after(self, moment: float) -> int:
        with self.lock:
            return sum(1 for at, _ in self.acked if at > moment)


def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests")
    try:
        described = admin.describe_topics([topic])
    finally:
        admin.close()
    return {p["partition_index"]: p["leader_id"] for p in described[0]["partitions"]}


def create_topics(bootstrap: str, topics: list[str]) -> None:
    """Replication factor 3 and min.insync.replicas=2, as kafka-init makes them in the variant."""
    config = {"min.insync.replicas": "2"}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests")
    try:
        admin.create_topics(
            [NewTopic(t, PARTITIONS, BROKERS, topic_configs=config) for t in topics]
        )
    finally:
        admin.close()
    wait_for(
        "every partition to have a leader",
        lambda: (
            len([p for p, n in partition_leaders(bootstrap, topics[0]).items() if n >= 0])
            == PARTITIONS
        ),
        30,
    )


def stored_once(endpoints: Endpoints, database: str, mongo_db: str) -> dict[str, list[Coordinate]]:
    return {
        "PostgreSQL": pg_coordinates(endpoints, database),
        "MongoDB": mongo_coordinates(endpoints, mongo_db),
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "kraft")
    try:
        offsets = {node.node_id: cluster.start(node.node_id) for node in cluster.nodes}
        for node_id, offset in offsets.items():
            cluster.wait_started(node_id, offset)
        yield cluster
    finally:
        cluster.stop_all()


def test_leader_killed_mid_stream_loses_nothing_and_two_down_blocks_producers(
    cluster: Cluster,
    endpoints: Endpoints,
    fresh_database: str,
    fresh_mongo_db: str,
    tmp_path: Path,
) -> None:
    topic = f"test-{uuid.uuid4().hex[:10]}"
    create_topics(cluster.bootstrap, [topic, f"{topic}.dlq"])
    env = consumer_env(
        endpoints,
        topic,
        fresh_database,
        fresh_mongo_db,
        KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap,
        KAFKA_DLQ_TOPIC=f"{topic}.dlq",
    )
    consumer = ConsumerProcess(env, tmp_path).start()
    streamer = Streamer(cluster.bootstrap, topic)
    streamer.start()

    def stored() -> int:
        return len(pg_coordinates(endpoints, fresh_database))

    wait_for("records streaming into PostgreSQL", lambda: stored() >= 200, 60)

    # One broker down: the leader of partition 0, SIGKILLed mid-stream.
    leader = partition_leaders(cluster.bootstrap, topic)[0]
    assert leader in cluster.procs, f"partition 0's leader {leader} is not one of ours"
    peak_rss = {n: cluster.peak_rss_mib(n) for n in cluster.procs}
    killed_at = time.monotonic()
    cluster.kill(leader)
    stored_at_kill = stored()
    wait_for(
        "acks=all writes with one broker down", lambda: streamer.acked_after(killed_at) >= 300, 60
    )
    new_leader = partition_leaders(cluster.bootstrap, topic)[0]
    assert new_leader not in (leader, -1), f"partition 0 has no new leader ({new_leader})"
    wait_for(
        "the consumer to store records written after the kill",
        lambda: stored() >= stored_at_kill + 300,
        60,
    )
    assert consumer.alive(), f"the consumer stopped when a broker died:\n{consumer.log()}"
    streamer.finish()
    assert not streamer.failed, f"acks=all sends failed with one broker down: {streamer.failed[:3]}"

    # Two brokers down: no in-sync majority, so acks=all sends must wait, not be acknowledged.
    second = next(n for n in cluster.procs if n != leader and cluster.procs[n].poll() is None)
    cluster.kill(second)
    blocked = KafkaProducer(
        bootstrap_servers=cluster.bootstrap,
        acks="all",
        enable_idempotence=True,
        delivery_timeout_ms=110_000,
        request_timeout_ms=10_000,
    )
    try:
        pending = [
            blocked.send(topic, value=quote_value(100_000 + i), partition=i % PARTITIONS)
            for i in range(30)
        ]
        time.sleep(8)
        early = [f for f in pending if f.is_done and f.succeeded()]
        assert not early, f"{len(early)} records acknowledged with two of three brokers down"
        lost = [f.exception for f in pending if f.is_done and f.failed()]
        assert not lost, f"sends gave up instead of waiting: {lost[:3]}"

        # One broker back: the blocked sends go through, each exactly once.
        back_offset = cluster.start(second)
        cluster.wait_started(second, back_offset)
        deadline = time.monotonic() + 90
        results = []
        for future in pending:
            try:
                results.append(future.get(timeout=max(1.0, deadline - time.monotonic())))
            except KafkaError as error:
                pytest.fail(f"a blocked send failed after a broker returned: {error!r}")
    finally:
        blocked.close(timeout=10)

    acked = {coordinate for _, coordinate in streamer.acked}
    acked |= {(meta.partition, meta.offset) for meta in results}
    in_topic = read_topic(cluster.bootstrap, topic, len(acked), timeout_s=60)
    topic_coordinates = {(r.partition, r.offset) for r in in_topic}
    assert acked <= topic_coordinates, (
        f"acknowledged but not in Kafka: {sorted(acked - topic_coordinates)[:5]}"
    )
    values = collections.Counter(r.value for r in in_topic)
    assert not [v for v, n in values.items() if n > 1], "a record is in Kafka twice"

    wait_for(
        "every record in both databases",
        lambda: all(
            len(set(c)) >= len(topic_coordinates)
            for c in stored_once(endpoints, fresh_database, fresh_mongo_db).values()
        ),
        90,
    )
    for name, coordinates in stored_once(endpoints, fresh_database, fresh_mongo_db).items():
        duplicates = [c for c, n in collections.Counter(coordinates).items() if n > 1]
        assert not duplicates, f"{name} holds records twice: {duplicates[:5]}"
        assert set(coordinates) == topic_coordinates, (
            f"{name}: missing {sorted(topic_coordinates - set(coordinates))[:5]}, "
            f"extra {sorted(set(coordinates) - topic_coordinates)[:5]}"
        )
    assert consumer.alive(), f"the consumer stopped:\n{consumer.log()}"
    report = os.environ.get("STREAMLAB_REPLICATED_MEMORY_REPORT")
    if report:  # docs/memory.md's table: peak RSS of each broker before the kill
        Path(report).write_text(
            "".join(f"node {n}: VmHWM {mib:.0f} MiB (heap {HEAP})\n" for n, mib in peak_rss.items())
        )
