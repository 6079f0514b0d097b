"""Shared fixtures: where the real servers are, and fresh topics and databases for each test.

Endpoints come from the environment (so the same tests run against the compose stack), falling
back to the settings file the native harness writes (``python -m tests.harness up``). A server
that cannot be reached fails the test with a message saying how to start it: never a skip.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pymongo
import pytest
from dotenv import dotenv_values
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import UnknownTopicOrPartitionError

from tests.harness import servers

REPO = Path(__file__).resolve().parents[1]
SQL_DIR = REPO / "sql"
ENDPOINT_NAMES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_DB",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "MONGO_URI",
)
PARTITIONS = 3


@dataclass(frozen=True)
class Endpoints:
    kafka: str
    pg_host: str
    pg_port: int
    pg_db: str
    pg_user: str
    pg_password: str
    mongo_uri: str
    # True when the servers are the native harness's, which tests may stop and start.
    harness: bool

    def pg_params(self, dbname: str | None = None) -> dict[str, object]:
        return {
            "host": self.pg_host,
            "port": self.pg_port,
            "dbname": dbname or self.pg_db,
            "user": self.pg_user,
            "password": self.pg_password,
            "connect_timeout": 5,
        }


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def endpoints() -> Endpoints:
    from_harness = dotenv_values(servers.env_file()) if servers.env_file().exists() else {}
    values = {name: os.environ.get(name) or from_harness.get(name) for name in ENDPOINT_NAMES}
    missing = [name for name, value in values.items() if not value]
    if missing:
        pytest.fail(
            f"test servers not configured ({', '.join(missing)} unset): run `make test`, "
            "or `python -m tests.harness up`, or export the compose stack's endpoints"
        )
    result = Endpoints(
        kafka=str(values["KAFKA_BOOTSTRAP_SERVERS"]),
        pg_host=str(values["POSTGRES_HOST"]),
        pg_port=int(str(values["POSTGRES_PORT"])),
        pg_db=str(values["POSTGRES_DB"]),
        pg_user=str(values["POSTGRES_USER"]),
        pg_password=str(values["POSTGRES_PASSWORD"]),
        mongo_uri=str(values["MONGO_URI"]),
        harness=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") is None,
    )
    kafka_host, kafka_port = result.kafka.split(",")[0].rsplit(":", 1)
    mongo_host_port = pymongo.uri_parser.parse_uri(result.mongo_uri)["nodelist"][0]
    for name, (host, port) in {
        "Kafka": (kafka_host, int(kafka_port)),
        "PostgreSQL": (result.pg_host, result.pg_port),
        "MongoDB": mongo_host_port,
    }.items():
        if not _reachable(host, port):
            pytest.fail(
                f"{name} is not reachable at {host}:{port}: run `python -m tests.harness up`"
            )
    return result


@pytest.fixture(scope="session")
def kafka_bootstrap(endpoints: Endpoints) -> str:
    return endpoints.kafka


@pytest.fixture
def fresh_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A new topic with several partitions, and its dead-letter topic; deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    topics = [name, f"{name}.dlq"]
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="tests")
    admin.create_topics([NewTopic(topic, PARTITIONS, 1) for topic in topics])
    try:
        yield name
    finally:
        with contextlib.suppress(UnknownTopicOrPartitionError):
            admin.delete_topics(topics)
        admin.close()


def apply_schema(params: dict[str, object]) -> None:
    """Run ``sql/*.sql`` in order: the same files that initialize the compose container."""
    conn = psycopg2.connect(**params)
    try:
        with conn, conn.cursor() as cursor:
            for path in sorted(SQL_DIR.glob("*.sql")):
                cursor.execute(path.read_text())
    finally:
        conn.close()


def _admin_execute(endpoints: Endpoints, statement: str) -> None:
    """Run one statement outside a transaction, on a connection of its own (tests may restart
    the server in between, so no connection is kept)."""
    conn = psycopg2.connect(**endpoints.pg_params("postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def fresh_database(endpoints: Endpoints) -> Iterator[str]:
    """A new PostgreSQL database with the lab's schema; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"  # a generated identifier, never input
    _admin_execute(endpoints, f'CREATE DATABASE "{name}"')
    try:
        apply_schema(endpoints.pg_params(name))
        yield name
    finally:
        _admin_execute(endpoints, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_mongo_db(endpoints: Endpoints) -> Iterator[str]:
    """A MongoDB database name no one used; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    yield name
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        endpoints.mongo_uri, serverSelectionTimeoutMS=10_000
    )
    try:
        client.drop_database(name)
    finally:
        client.close()
