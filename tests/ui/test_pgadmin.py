"""pgAdmin, used the way the README tells a learner to: log in, open the pre-registered server
without a password prompt, run a README query in the Query Tool, see the consumer's rows.

pgAdmin 9.8 runs natively (native/servers/pgadmin.py) with the server list and ``.pgpass`` that
``pgadmin/render_config.py`` renders, the compose file's ``PGADMIN_CONFIG_*`` settings and its
login e-mail; only the database address differs (the harness's PostgreSQL instead of the
``postgres`` service). The browser is the system's headless Chromium.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from native.servers.endpoints import Endpoints
from native.servers.pgadmin import Database, Login, PgAdmin
from tests.integration.pipeline import free_port
from tests.ui.browser import artifacts_dir, chromium, wait_for
from tests.ui.conftest import REPO, Consumed

pytestmark = [pytest.mark.integration, pytest.mark.ui]

SERVER_GROUP = "streamlab"
# The README's first query in "Query PostgreSQL".
README_QUERY_START = "SELECT kafka_timestamp, character, quote, word_count"


def readme_query() -> str:
    """The query as the README prints it, so a README edit that breaks it fails here."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(README_QUERY_START)
    return text[start : text.index(";", start) + 1]


@pytest.fixture
def pgadmin(
    endpoints: Endpoints,
    consumed: Consumed,
    compose_services: dict[str, Any],
    tmp_path: Path,
) -> Iterator[PgAdmin]:
    environment = compose_services["pgadmin"]["environment"]
    instance = PgAdmin(
        tmp_path / "pgadmin",
        free_port(),
        Login(environment["PGADMIN_DEFAULT_EMAIL"], secrets.token_urlsafe(16)),
        # pgAdmin logs in as the database owner, as in compose (POSTGRES_USER).
        Database(
            endpoints.pg_host,
            endpoints.pg_port,
            consumed.database,
            endpoints.pg_user,
            endpoints.pg_password,
        ),
        {k: v for k, v in environment.items() if k.startswith("PGADMIN_CONFIG_")},
    )
    instance.workdir.mkdir()
    try:
        yield instance.start()
    finally:
        instance.stop()


def tree_node(driver: WebDriver, name: str) -> WebElement | None:
    """The object explorer's entry labelled ``name``, if shown."""
    for entry in driver.find_elements(By.CSS_SELECTOR, ".file-entry"):
        if entry.find_element(By.CSS_SELECTOR, ".file-name").text == name:
            return entry
    return None


def visible_password_fields(driver: WebDriver) -> list[WebElement]:
    return [
        e for e in driver.find_elements(By.CSS_SELECTOR, "input[type=password]") if e.is_displayed()
    ]


def test_query_tool_shows_the_consumers_rows(pgadmin: PgAdmin, consumed: Consumed) -> None:
    rendered = json.loads((pgadmin.data_dir / "servers.json").read_text(encoding="utf-8"))
    server_name = next(iter(rendered["Servers"].values()))["Name"]
    with chromium() as driver:
        driver.get(pgadmin.url)
        email = wait_for("the login form", lambda: driver.find_element(By.NAME, "email"))
        email.send_keys(pgadmin.login.email)
        driver.find_element(By.NAME, "password").send_keys(pgadmin.login.password)
        driver.find_element(By.NAME, "internal_button").click()

        group = wait_for("the server group", lambda: tree_node(driver, SERVER_GROUP))
        group.find_element(By.CSS_SELECTOR, ".directory-toggle").click()
        server = wait_for("the pre-registered server", lambda: tree_node(driver, server_name))
        server.find_element(By.CSS_SELECTOR, ".file-name").click()  # connects and expands
        databases = wait_for("the server's Databases", lambda: tree_node(driver, "Databases"))
        assert not visible_password_fields(driver), "pgAdmin asked for the database password"
        databases.find_element(By.CSS_SELECTOR, ".directory-toggle").click()
        database = wait_for("the database", lambda: tree_node(driver, consumed.database))
        database.find_element(By.CSS_SELECTOR, ".file-name").click()

        tools = wait_for(
            "the Tools menu",
            lambda: [b for b in driver.find_elements(By.TAG_NAME, "button") if b.text == "Tools"],
        )
        tools[0].click()
        query_tool = wait_for(
            "Tools -> Query Tool",
            lambda: [
                item
                for item in driver.find_elements(By.CSS_SELECTOR, "[role=menuitem]")
                if item.text.startswith("Query Tool")
            ],
        )
        query_tool[0].click()
        # The Query Tool renders in an iframe of its own.
        frame = wait_for(
            "the Query Tool",
            lambda: [
                f
                for f in driver.find_elements(By.CSS_SELECTOR, "iframe[id^='id-query-tool']")
                if f.is_displayed()
            ],
        )
        driver.switch_to.frame(frame[-1])
        editor = wait_for(
            "the query editor",
            lambda: [
                e for e in driver.find_elements(By.CSS_SELECTOR, ".cm-content") if e.is_displayed()
            ],
        )
        editor[0].click()
        ActionChains(driver).send_keys(readme_query()).perform()
        ActionChains(driver).send_keys(Keys.F5).perform()  # Execute

        expected = {row["quote"] for row in consumed.rows}
        cells = wait_for(
            "the query's rows in Data Output",
            lambda: (
                found
                if expected
                <= (
                    found := {
                        c.text for c in driver.find_elements(By.CSS_SELECTOR, "[role=gridcell]")
                    }
                )
                else None
            ),
        )
        assert {row["character"] for row in consumed.rows} <= cells
        status = driver.find_element(By.TAG_NAME, "body").text
        assert re.search(rf"Total rows:\s*{len(consumed.rows)}\b", status), status[-400:]
        driver.switch_to.default_content()
        # The "Successfully run" notice hides itself after a few seconds; the screenshot is
        # clearer without it over the last row (cosmetic: bounded, and not a failure).
        deadline = time.monotonic() + 15
        while (
            time.monotonic() < deadline
            and "Successfully run" in driver.find_element(By.TAG_NAME, "body").text
        ):
            time.sleep(0.5)
        driver.save_screenshot(str(artifacts_dir() / "pgadmin-query-tool.png"))
