"""The integration tests' shared fixture: one consumer's world, fresh for each test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from native.servers.endpoints import Endpoints
from tests.integration.pipeline import consumer_env


@pytest.fixture
def setup(
    endpoints: Endpoints, fresh_topic: str, fresh_database: str, fresh_mongo_db: str, tmp_path: Path
) -> dict[str, Any]:
    return {
        "endpoints": endpoints,
        "topic": fresh_topic,
        "database": fresh_database,
        "mongo_db": fresh_mongo_db,
        "env": consumer_env(endpoints, fresh_topic, fresh_database, fresh_mongo_db),
        "tmp": tmp_path,
    }
