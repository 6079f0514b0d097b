"""Test support: produce records, run the consumer as a real process, read what it stored.

The consumer runs as ``python -m quotes_consumer`` in a subprocess, exactly as in its container,
so signals, exit codes, settings errors and the health endpoint are exercised for real.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import psycopg2
import pymongo
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from native.servers.endpoints import Endpoints

Coordinate = tuple[int, int]  # (partition, offset)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, every_s: float = 0.25) -> None:
    """Poll ``check`` until true; bounded in time, failing with ``what`` in the message."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def quote_value(index: int, **overrides: Any) -> bytes:
    """A valid record shaped like the quotes API's items, unique per index."""
    item: dict[str, Any] = {
        "quote": f"  Test quote   number {index}, said with   feeling. ",
        "character": f"Character {index % 7}",
        "image": f"https://example.org/images/{index % 7}.png",
        "characterDirection": "Left" if index % 2 else "Right",
    }
    item.update(overrides)
    return json.dumps(item).encode()


def produce(
    bootstrap: str,
    topic: str,
    values: Sequence[bytes | None],
    partitions: int = 3,
    headers: Sequence[tuple[str, bytes]] = (),
    key: bytes | None = None,
) -> list[Coordinate]:
    """Publish values round-robin over the partitions; return where each one landed."""
    records = [{"value": value, "key": key, "headers": list(headers)} for value in values]
    return send(bootstrap, topic, records, partitions)


def send(
    bootstrap: str, topic: str, records: Sequence[dict[str, Any]], partitions: int = 3
) -> list[Coordinate]:
    """Publish records given as ``KafkaProducer.send`` arguments (value, key, headers,
    timestamp_ms), round-robin over the partitions; return where each one landed."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        futures = [
            producer.send(topic, partition=i % partitions, **record)
            for i, record in enumerate(records)
        ]
        producer.flush(timeout=60)
        placed = [future.get(timeout=30) for future in futures]
    finally:
        producer.close(timeout=10)
    return [(meta.partition, meta.offset) for meta in placed]


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[Any]:
    """Read a topic from the beginning until ``expected`` records (or the timeout), then poll
    once more, briefly, so that a record beyond ``expected`` (a duplicate) would show."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend(batch)
    finally:
        consumer.close()
    return records


def values_by_coordinate(records: Sequence[Any]) -> dict[Coordinate, bytes]:
    return {(record.partition, record.offset): record.value for record in records}


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        return {p: consumer.committed(TopicPartition(topic, p)) for p in sorted(partitions)}
    finally:
        consumer.close()


def end_offsets(placed: Sequence[Coordinate]) -> dict[int, int]:
    """Per partition, one past the last of ``placed``: the offset a group commits once it has
    dealt with every one of those records (stored or dead-lettered, for good)."""
    ends: dict[int, int] = {}
    for partition, offset in placed:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


def wait_until_committed(
    bootstrap: str, group: str, topic: str, placed: Sequence[Coordinate], timeout_s: float = 60
) -> None:
    """Wait until ``group`` has committed every record of ``placed``, in every partition.

    The consumer commits a batch only after both databases and the dead-letter topic took it,
    so this is the effect that settles a test's final state: rows seen in the databases may
    still belong to a batch in flight (one database written, the other not yet; a document
    not yet withdrawn), and records consumed are not records stored. A broker that does not
    answer yet, after an outage, counts as "not yet".
    """
    wanted = end_offsets(placed)
    seen: dict[int, int | None] = {}

    def reached() -> bool:
        nonlocal seen
        try:
            seen = committed_offsets(bootstrap, group, topic)
        except KafkaError:
            return False
        return all(seen.get(partition) == offset for partition, offset in wanted.items())

    try:
        wait_for(f"{group} to commit {wanted}", reached, timeout_s, every_s=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}; last committed {seen}") from None


def pg_coordinates(endpoints: Endpoints, database: str) -> list[Coordinate]:
    try:
        conn = psycopg2.connect(**endpoints.pg_params(database))
    except psycopg2.OperationalError:
        return []  # the server is down for an outage test; the caller polls again
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT source_partition, source_offset FROM quotes")
            return [(int(p), int(o)) for p, o in cursor.fetchall()]
    finally:
        conn.close()


def pg_rows(endpoints: Endpoints, database: str) -> list[dict[str, Any]]:
    conn = psycopg2.connect(**endpoints.pg_params(database))
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT * FROM quotes ORDER BY source_partition, source_offset")
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        conn.close()


def mongo_collection(endpoints: Endpoints, database: str) -> Any:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        endpoints.mongo_uri, serverSelectionTimeoutMS=3000, tz_aware=True
    )
    return client[database]["quotes"]


def mongo_coordinates(endpoints: Endpoints, database: str) -> list[Coordinate]:
    collection = mongo_collection(endpoints, database)
    try:
        return [
            (doc["kafka"]["partition"], doc["kafka"]["offset"])
            for doc in collection.find({}, {"kafka": 1})
        ]
    except pymongo.errors.PyMongoError:
        return []
    finally:
        collection.database.client.close()


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the test process dies, however it dies, so
    that a killed test run (or soak) leaves no consumer writing behind it."""
    pr_set_pdeathsig = 1  # from linux/prctl.h
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class ConsumerProcess:
    """The consumer service as a child process, with its log kept for the failure message."""

    started: ClassVar[list[ConsumerProcess]] = []  # so that a failed test leaves none running

    def __init__(self, env: dict[str, str], workdir: Path, name: str = "consumer") -> None:
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "POSTGRES_"))},
            **env,
            "CONSUMER_METRICS_PORT": str(self.port),
        }
        self.log_path = workdir / f"{name}.log"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ConsumerProcess:
        ConsumerProcess.started.append(self)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "quotes_consumer"],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        wait_for("the consumer's /healthz", lambda: self.health_status() == 200, 30)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health_status(self) -> int | None:
        if not self.alive():
            raise AssertionError(
                f"consumer exited ({self.proc and self.proc.returncode}):\n{self.log()}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return None

    def health_report(self) -> str:
        """The /healthz body, for a failure message: which target stalled and the last errors."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                return r.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.read().decode(errors="replace")
        except OSError as error:
            return f"no answer: {error}"

    def metrics(self) -> dict[str, float]:
        """Prometheus text format to {sample name with labels: value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            text = r.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            match = re.match(r"^([a-zA-Z_:][^ ]*) ([0-9.eE+-]+|NaN)$", line)
            if match:
                samples[match.group(1)] = float(match.group(2))
        return samples

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM, as ``docker compose stop`` does; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(
                f"consumer ignored SIGTERM for {timeout_s}s:\n{self.log()}"
            ) from None

    @classmethod
    def kill_all(cls) -> None:
        """After each test: a consumer a failed assertion left running must not go on writing."""
        for process in cls.started:
            process.kill()
        cls.started.clear()

    def kill(self) -> None:
        """SIGKILL: the crash a container gets when its host dies or the OOM killer strikes."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=10)


def consumer_env(
    endpoints: Endpoints, topic: str, database: str, mongo_db: str, **overrides: str
) -> dict[str, str]:
    """The consumer's settings for one test: its own topic, group and databases."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka,
        "KAFKA_TOPIC": topic,
        "KAFKA_GROUP_ID": f"{topic}-group",
        "POSTGRES_HOST": endpoints.pg_host,
        "POSTGRES_PORT": str(endpoints.pg_port),
        "POSTGRES_DB": database,
        # The least-privilege login, as in compose: INSERT and SELECT on quotes, nothing else.
        "POSTGRES_USER": endpoints.consumer_user,
        "POSTGRES_PASSWORD": endpoints.consumer_password,
        "MONGO_URI": endpoints.mongo_uri,
        "MONGO_DB": mongo_db,
        "CONSUMER_BATCH_SIZE": "100",
        "CONSUMER_BATCH_TIMEOUT_MS": "200",
        "CONSUMER_RETRY_MAX_BACKOFF_S": "2",
        "LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env
