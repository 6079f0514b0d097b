"""mongo-express, used the way the README tells a learner to: basic auth, database, collection,
and a document the consumer wrote.

mongo-express 1.0.2 runs natively (native/servers/mongo_express.py) with the compose file's
``ME_CONFIG_*`` variables, as ``docker compose config`` resolves them; only the MongoDB URL (the
harness's FerretDB instead of the ``mongo`` service) and the secrets differ. The browser is the
system's headless Chromium.
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from native.servers.endpoints import Endpoints
from native.servers.mongo_express import MongoExpress
from tests.integration.pipeline import free_port
from tests.ui.browser import artifacts_dir, chromium, wait_for
from tests.ui.conftest import Consumed
from tests.ui.pages import mongo_express_collection

pytestmark = [pytest.mark.integration, pytest.mark.ui]

COLLECTION = "quotes"
MONGO_EXPRESS_CUT = 45  # characters of a long value the collection view shows before "…"
# Values that name the compose network or come from .env; everything else is taken as is.
REPLACED = {
    "ME_CONFIG_MONGODB_URL",
    "ME_CONFIG_BASICAUTH_USERNAME",
    "ME_CONFIG_BASICAUTH_PASSWORD",
    "ME_CONFIG_SITE_COOKIESECRET",
    "ME_CONFIG_SITE_SESSIONSECRET",
}


@pytest.fixture
def mongo_express(
    endpoints: Endpoints, compose_services: dict[str, Any], tmp_path: Path
) -> Iterator[MongoExpress]:
    compose_env = compose_services["mongo-express"]["environment"]
    config = {k: v for k, v in compose_env.items() if k.startswith("ME_CONFIG_")}
    assert set(config) >= REPLACED, "the compose file no longer sets what this test replaces"
    config.update(
        ME_CONFIG_MONGODB_URL=endpoints.mongo_uri,
        ME_CONFIG_BASICAUTH_USERNAME="learner",
        ME_CONFIG_BASICAUTH_PASSWORD=secrets.token_urlsafe(16),
        ME_CONFIG_SITE_COOKIESECRET=secrets.token_urlsafe(24),
        ME_CONFIG_SITE_SESSIONSECRET=secrets.token_urlsafe(24),
    )
    instance = MongoExpress(tmp_path, free_port(), config)
    try:
        yield instance.start()
    finally:
        instance.stop()


def status_without_credentials(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_collection_page_shows_the_consumers_documents(
    mongo_express: MongoExpress, consumed: Consumed
) -> None:
    # The compose file's ME_CONFIG_BASICAUTH is honoured: no credentials, no page.
    assert status_without_credentials(f"{mongo_express.url}/") == 401
    user = mongo_express.config["ME_CONFIG_BASICAUTH_USERNAME"]
    password = mongo_express.config["ME_CONFIG_BASICAUTH_PASSWORD"]
    with chromium() as driver:
        mongo_express_collection(
            driver, mongo_express.url, (user, password), consumed.mongo_db, COLLECTION
        )
        # Each document by its _id (the consumer's topic:partition:offset) and the start of its
        # quote: the list view cuts values longer than 50 characters.
        expected = {str(document["_id"]) for document in consumed.documents} | {
            document["quote"][:MONGO_EXPRESS_CUT] for document in consumed.documents
        }
        wait_for(
            "the consumer's documents on the collection page",
            lambda: all(text in driver.find_element(By.TAG_NAME, "body").text for text in expected),
        )
        page = driver.find_element(By.TAG_NAME, "body").text
        assert f"Delete all {len(consumed.documents)} documents retrieved" in page
        driver.save_screenshot(str(artifacts_dir() / "mongo-express-collection.png"))
