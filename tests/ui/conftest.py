"""Fixtures for the UI tests: rows the real consumer wrote, and the compose file's settings.

The UIs must show what a learner would see, so the data comes from the consumer process
(``python -m quotes_consumer``) reading a topic, never from an INSERT in the test; and each UI is
configured from the compose file's own environment, as ``docker compose config`` resolves it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from native.servers.endpoints import Endpoints
from tests import compose_cli
from tests.integration.pipeline import (
    ConsumerProcess,
    consumer_env,
    mongo_collection,
    pg_rows,
    produce,
    quote_value,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
# A few quotes with words a reader recognizes in a screenshot; characters repeat, so the
# README's per-character query has something to count.
QUOTES = [
    ("The sea was angry that day, my friends.", "Nell Huckabee"),
    ("Every record lands exactly once, or the offset waits.", "Otto Offset"),
    ("I only read what was committed.", "Ada Isolation"),
    ("Three partitions, one group, no duplicates.", "Otto Offset"),
    ("A dead letter still deserves a reason.", "Nell Huckabee"),
    ("Back-pressure is just politeness under load.", "Ada Isolation"),
]


@dataclass(frozen=True)
class Consumed:
    """What the consumer stored: the PostgreSQL rows and the MongoDB documents."""

    database: str
    mongo_db: str
    rows: list[dict[str, Any]]
    documents: list[dict[str, Any]]


@pytest.fixture
def consumed(
    endpoints: Endpoints,
    fresh_topic: str,
    fresh_database: str,
    fresh_mongo_db: str,
    tmp_path: Path,
) -> Consumed:
    """Produce the quotes, let the real consumer store them in both databases, stop it."""
    values = [
        quote_value(i, quote=quote, character=character)
        for i, (quote, character) in enumerate(QUOTES)
    ]
    produce(endpoints.kafka, fresh_topic, values)
    env = consumer_env(endpoints, fresh_topic, fresh_database, fresh_mongo_db)
    consumer = ConsumerProcess(env, tmp_path).start()
    try:
        wait_for(
            "the consumer to store every quote in PostgreSQL",
            lambda: len(pg_rows(endpoints, fresh_database)) == len(QUOTES),
            60,
        )
        collection = mongo_collection(endpoints, fresh_mongo_db)
        try:
            wait_for(
                "the consumer to store every quote in MongoDB",
                lambda: collection.count_documents({}) == len(QUOTES),
                60,
            )
            documents = list(collection.find({}))
        finally:
            collection.database.client.close()
    finally:
        assert consumer.terminate() == 0, consumer.log()
    return Consumed(fresh_database, fresh_mongo_db, pg_rows(endpoints, fresh_database), documents)


@pytest.fixture(scope="session")
def compose_services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The compose file's services as ``docker compose config`` resolves them with .env.example."""
    try:
        binary = compose_cli.install()
    except compose_cli.ComposeUnavailable as error:
        pytest.fail(f"docker-compose is needed to read the compose file's settings: {error}")
    env_file = tmp_path_factory.mktemp("ui-compose") / ".env"
    shutil.copyfile(REPO / ".env.example", env_file)
    command = [str(binary), "--project-directory", str(REPO), "--env-file", str(env_file)]
    result = subprocess.run(
        [*command, "-f", str(REPO / "docker-compose.yml"), "config", "--format", "json"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(env_file.parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    return services
