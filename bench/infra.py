"""Where the servers are, throwaway topics, groups and databases, and what every run is handed.

Why a module of its own: every measurement must start from nothing (a fresh topic, consumer
group, PostgreSQL database and MongoDB database), or a second run would find the first run's rows
and measure idempotent no-op writes instead of inserts. Everything created here is registered in
a :class:`Scratch` and removed when it closes, also when a measurement fails halfway, so an
interrupted benchmark does not leave gigabytes of FerretDB files behind.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pymongo
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import KafkaError
from tqdm import tqdm

from native.servers.endpoints import (
    EndpointError,
    Endpoints,
    create_database,
    drop_database,
    load,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ALLOWED_HOSTS = ("127.0.0.1", "localhost")


class BenchError(RuntimeError):
    """The benchmark cannot go on; ``str()`` is the one line to show."""


def load_endpoints() -> Endpoints:
    """The tests' endpoints (environment, then the harness's file), and loopback only."""
    try:
        endpoints = load()
    except EndpointError as error:
        raise BenchError(str(error)) from None
    for name, (host, _port) in endpoints.addresses().items():
        if host not in ALLOWED_HOSTS:
            raise BenchError(f"{name} is at {host}: the benchmark only talks to 127.0.0.1")
    return endpoints


def unique(prefix: str) -> str:
    """A name no earlier run used: ``prefix`` plus 10 random hex digits."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class Scratch:
    """Creates throwaway Kafka topics, groups and databases, and removes them all on exit."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.admin = KafkaAdminClient(
            bootstrap_servers=endpoints.kafka.split(","), client_id="streamlab-bench"
        )
        self._topics: list[str] = []
        self._groups: list[str] = []
        self._pg_databases: list[str] = []
        self._mongo_databases: list[str] = []

    def topic(self, prefix: str, partitions: int) -> str:
        name = unique(prefix)
        self.admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1}},
            wait_for_metadata=True,
        )
        self._topics.append(name)
        return name

    def group(self, prefix: str) -> str:
        """A group id to delete afterwards; Kafka creates the group on the first join."""
        return self.adopt_group(unique(prefix))

    def adopt_group(self, name: str) -> str:
        """A group id named by someone else (a Kafka Connect worker names its connectors'
        groups), deleted afterwards with the bench's own."""
        self._groups.append(name)
        return name

    def pg_database(self, prefix: str = "bench_") -> str:
        name = unique(prefix)  # generated, never user input, so safe to quote into SQL
        create_database(self.endpoints, name)
        self._pg_databases.append(name)
        return name

    def mongo_database(self, prefix: str = "bench_") -> str:
        """A name only: MongoDB creates the database on the first insert."""
        name = unique(prefix)
        self._mongo_databases.append(name)
        return name

    def release_databases(self) -> None:
        """Drop the databases made so far: one 1M-record run holds gigabytes in FerretDB."""
        for name in self._pg_databases:
            with contextlib.suppress(psycopg2.Error):
                drop_database(self.endpoints, name)
        self._pg_databases.clear()
        if self._mongo_databases:
            with contextlib.closing(self.endpoints.mongo_client()) as client:
                for name in self._mongo_databases:
                    with contextlib.suppress(pymongo.errors.PyMongoError):
                        client.drop_database(name)
        self._mongo_databases.clear()

    def release_kafka(self) -> None:
        if self._groups:
            with contextlib.suppress(KafkaError):
                self.admin.delete_groups(self._groups)
            self._groups.clear()
        if self._topics:
            with contextlib.suppress(KafkaError):
                self.admin.delete_topics(self._topics)
            self._topics.clear()

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *_: object) -> None:
        try:
            self.release_databases()
            self.release_kafka()
        finally:
            self.admin.close()

    # --- Kafka look-ups used while measuring ----------------------------------------------------

    def end_offsets(self, topic: str, partitions: int) -> int:
        """How many records a fresh topic holds: the sum of its partitions' end offsets."""
        specs = {TopicPartition(topic, p): OffsetSpec.LATEST for p in range(partitions)}
        found = self.admin.list_partition_offsets(specs)
        return sum(int(item.offset) for item in found.values())

    def committed(self, group: str, topic: str) -> int:
        """How many records of ``topic`` the group has committed (sum over partitions)."""
        try:
            offsets = self.admin.list_group_offsets({group: None}).get(group, {})
        except KafkaError:
            return 0  # the group has no coordinator state yet
        return sum(max(0, int(meta.offset)) for tp, meta in offsets.items() if tp.topic == topic)


@dataclass
class Context:
    """What every measurement is handed: servers, scratch space, consumer settings, output."""

    endpoints: Endpoints
    scratch: Scratch
    logs: Path
    batch_size: int
    batch_timeout_ms: int
    partitions: int = 3
    progress: bool = True

    def bar(self, total: int, desc: str, unit: str = "rec") -> tqdm[Any]:
        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            unit_scale=True,
            leave=False,
            dynamic_ncols=True,
            disable=None if self.progress else True,  # None: only on a terminal
        )
