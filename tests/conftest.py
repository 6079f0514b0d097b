"""Shared fixtures: where the real servers are, and fresh topics and databases for each test.

Endpoints come from the environment (so the same tests run against the compose stack), falling
back to the settings file the native harness writes (``python -m native.servers up``). A server
that cannot be reached fails the test with a message saying how to start it: never a skip.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import UnknownTopicOrPartitionError

from native.servers.endpoints import (
    EndpointError,
    Endpoints,
    create_database,
    drop_database,
)
from native.servers.endpoints import load as load_endpoints

PARTITIONS = 3


@pytest.fixture(autouse=True)
def no_consumer_left_running() -> Iterator[None]:
    yield
    from tests.integration.pipeline import ConsumerProcess

    ConsumerProcess.kill_all()


@pytest.fixture(scope="session")
def endpoints() -> Endpoints:
    try:
        return load_endpoints()
    except EndpointError as error:
        pytest.fail(str(error))


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
    admin.close()
    try:
        yield name
    finally:
        # A new client: the first one's connection may not have survived a broker restart.
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="tests")
        with contextlib.suppress(UnknownTopicOrPartitionError):
            admin.delete_topics(topics, timeout_ms=30_000)
        admin.close()


@pytest.fixture
def fresh_database(endpoints: Endpoints) -> Iterator[str]:
    """A new PostgreSQL database with the lab's schema; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    create_database(endpoints, name)
    try:
        yield name
    finally:
        drop_database(endpoints, name)


@pytest.fixture
def fresh_mongo_db(endpoints: Endpoints) -> Iterator[str]:
    """A MongoDB database name no one used; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    yield name
    client = endpoints.mongo_client()
    try:
        client.drop_database(name)
    finally:
        client.close()
