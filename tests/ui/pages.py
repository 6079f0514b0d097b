"""The status page, pgAdmin and mongo-express as the README walks a learner through them.

Why shared: the UI tests (a UI over rows the consumer wrote to test databases) and the tour of
``make demo`` click the same way, so a change in a UI's markup is fixed once.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.ui.browser import artifacts_dir, wait_for

REPO = Path(__file__).resolve().parents[2]
SERVER_GROUP = "streamlab"  # pgadmin/servers.json
# The README's first query in "Query PostgreSQL".
README_QUERY_START = "SELECT kafka_timestamp, character, quote, word_count"
# How soon a stage turns red once its server stops (the README's promise for the status page).
RED_WITHIN_S = 10.0


def readme_query() -> str:
    """The query as the README prints it, so a README edit that breaks it fails here."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(README_QUERY_START)
    return text[start : text.index(";", start) + 1]


def tree_node(driver: WebDriver, name: str) -> WebElement | None:
    """pgAdmin's object explorer entry labelled ``name``, if shown."""
    for entry in driver.find_elements(By.CSS_SELECTOR, ".file-entry"):
        if entry.find_element(By.CSS_SELECTOR, ".file-name").text == name:
            return entry
    return None


def visible_password_fields(driver: WebDriver) -> list[WebElement]:
    return [
        e for e in driver.find_elements(By.CSS_SELECTOR, "input[type=password]") if e.is_displayed()
    ]


def pgadmin_query(
    driver: WebDriver,
    url: str,
    login: tuple[str, str],
    server_name: str,
    database: str,
    rows_shown: Callable[[set[str]], bool],
) -> set[str]:
    """Log in, open the pre-registered server (failing on a password prompt), run the README's
    first query in the Query Tool; returns the Data Output's cells once ``rows_shown`` accepts
    them. Leaves the browser on the result, the "Successfully run" notice gone if it goes."""
    driver.get(url)
    email = wait_for("the login form", lambda: driver.find_element(By.NAME, "email"))
    email.send_keys(login[0])
    driver.find_element(By.NAME, "password").send_keys(login[1])
    driver.find_element(By.NAME, "internal_button").click()

    group = wait_for("the server group", lambda: tree_node(driver, SERVER_GROUP))
    group.find_element(By.CSS_SELECTOR, ".directory-toggle").click()
    server = wait_for("the pre-registered server", lambda: tree_node(driver, server_name))
    server.find_element(By.CSS_SELECTOR, ".file-name").click()  # connects and expands
    databases = wait_for("the server's Databases", lambda: tree_node(driver, "Databases"))
    assert not visible_password_fields(driver), "pgAdmin asked for the database password"
    databases.find_element(By.CSS_SELECTOR, ".directory-toggle").click()
    node = wait_for("the database", lambda: tree_node(driver, database))
    node.find_element(By.CSS_SELECTOR, ".file-name").click()

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

    def cells() -> set[str] | None:
        found = {c.text for c in driver.find_elements(By.CSS_SELECTOR, "[role=gridcell]")}
        return found if rows_shown(found) else None

    try:
        # Generous: on 2 busy cores pgAdmin's first query (connect, plan, render) can take long.
        shown = wait_for("the query's rows in Data Output", cells, 60)
    except AssertionError as error:
        driver.save_screenshot(str(artifacts_dir() / "pgadmin-query-failed.png"))
        said = driver.find_element(By.TAG_NAME, "body").text[-600:]
        raise AssertionError(f"{error}; the Query Tool shows: {said!r}") from None
    driver.switch_to.default_content()
    # The "Successfully run" notice hides itself after a few seconds; the screenshot is
    # clearer without it over the last row (cosmetic: bounded, and not a failure).
    deadline = time.monotonic() + 15
    while (
        time.monotonic() < deadline
        and "Successfully run" in driver.find_element(By.TAG_NAME, "body").text
    ):
        time.sleep(0.5)
    return shown


def total_rows(driver: WebDriver) -> int | None:
    """The Query Tool's "Total rows: N", read from inside its frame."""
    frames = [
        f
        for f in driver.find_elements(By.CSS_SELECTOR, "iframe[id^='id-query-tool']")
        if f.is_displayed()
    ]
    driver.switch_to.frame(frames[-1])
    try:
        found = re.search(r"Total rows:\s*(\d+)", driver.find_element(By.TAG_NAME, "body").text)
    finally:
        driver.switch_to.default_content()
    return int(found.group(1)) if found else None


def shown(driver: WebDriver, selector: str) -> list[WebElement]:
    """The elements matching ``selector`` that are on screen (menus hide copies of links)."""
    return [e for e in driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed()]


def mongo_express_collection(
    driver: WebDriver, url: str, login: tuple[str, str], database: str, collection: str
) -> None:
    """Basic auth, the index page, the database, the collection: as a learner clicks."""
    token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
    # Basic auth as a header on every request of the page (the browser's login dialog cannot
    # be typed into from WebDriver).
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
    )
    driver.get(f"{url}/")
    link = wait_for(
        f"database {database} on the index page",
        lambda: shown(driver, f"a[href$='/db/{database}/']"),
    )
    link[0].click()
    link = wait_for(
        f"collection {collection} on the database page",
        lambda: shown(driver, f"a[href$='/db/{database}/{collection}']"),
    )
    link[0].click()


def topic_records(bootstrap: str, topic: str) -> int:
    """End minus beginning offsets, summed over partitions: what the page should show."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        first, end = consumer.beginning_offsets(partitions), consumer.end_offsets(partitions)
        return sum(end[tp] - first[tp] for tp in partitions)
    finally:
        consumer.close()


def wait_stage_red(driver: WebDriver, stage: str) -> None:
    """Called as ``stage``'s server stops: wait, at most ``RED_WITHIN_S``, for its card to say
    the server is away (down, or behind when it was caught mid-batch), and log how long."""
    since = time.monotonic()
    wait_for(
        f"the {stage} stage to turn red",
        lambda: on_screen(driver)[stage][0] in ("down", "behind"),
        RED_WITHIN_S,
    )
    print(f"{stage} stage red {time.monotonic() - since:.1f} s after its server stopped")


def on_screen(driver: WebDriver) -> dict[str, tuple[str, str]]:
    """Each stage's (state, exact count) as the page shows them (data-count is the raw number)."""
    found = {}
    for card in driver.find_elements(By.CSS_SELECTOR, "section.stage"):
        value = card.find_element(By.CSS_SELECTOR, ".value")
        found[card.get_attribute("data-stage") or ""] = (
            card.get_attribute("data-state") or "",
            value.get_attribute("data-count") or "",
        )
    return found
