"""The README's tour, in headless Chromium, against ``make demo`` itself.

Why against the demo and not against test databases: the tour's pictures and steps should be
the lab a newcomer gets. So ``make demo`` runs as a person runs it (a fresh lab directory, free
ports, the Python stand-in producing), and the browser walks the README: the status page with
every count equal to the servers'; pgAdmin's pre-registered server and the README's first query;
mongo-express's collection and an Advanced query; PostgreSQL stopped (``make demo-stop``) and its
stage red, then started again and caught up. Each step's screenshot goes to the artifacts folder
under the name the README gives it in docs/. Ctrl-C then must leave no process behind.
"""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from native import lab_uis
from native.layout import Layout
from native.servers import mongo_express, pgadmin
from tests.integration.demo_lab import Demo, demo_lab, text, wait_exit
from tests.integration.pipeline import wait_for as wait_until
from tests.ui.browser import artifacts_dir, chromium, wait_for
from tests.ui.pages import (
    mongo_express_collection,
    on_screen,
    pgadmin_query,
    shown,
    topic_records,
    total_rows,
    wait_stage_red,
)

pytestmark = [pytest.mark.integration, pytest.mark.ui]

UP_TIMEOUT_S = 120.0  # warm caches: seconds (docs/without-docker.md); CI installs the UIs first
README_ROWS = 20  # the README's first query: LIMIT 20
CHARACTER = "Nell Huckabee"  # the README's Advanced query
# The stages the stand-in producer's lab has; NiFi's is grey, "not in this lab", unless
# PRODUCER=nifi.
PIPELINE = ("api", "topic", "consumer", "postgres", "mongo", "dlq")
# mongo-express settings that name the compose network or come from .env.
ME_REPLACED = {
    "ME_CONFIG_MONGODB_URL",
    "ME_CONFIG_BASICAUTH_USERNAME",
    "ME_CONFIG_BASICAUTH_PASSWORD",
    "ME_CONFIG_SITE_COOKIESECRET",
    "ME_CONFIG_SITE_SESSIONSECRET",
}


def screenshot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(artifacts_dir() / name))


def servers_counts(demo: Demo) -> dict[str, int]:
    bootstrap = f"127.0.0.1:{demo.ports['kafka']}"
    topic = topic_records(bootstrap, "quotes")
    return {
        "topic": topic,
        "dlq": topic_records(bootstrap, "quotes.dlq"),
        "postgres": demo.rows(),
        "mongo": demo.documents(),
        "consumer": topic,  # everything consumed and committed
    }


def page_equals_servers(driver: WebDriver, demo: Demo) -> dict[str, tuple[str, str]] | None:
    """The screen, if every count on it is the servers' and both stores hold every valid
    record (the stand-in publishes every 5 s: polled until a look falls between two)."""
    screen = on_screen(driver)
    counts = servers_counts(demo)
    if not counts["postgres"] == counts["mongo"] == counts["topic"] - counts["dlq"] > 0:
        return None
    ok = all(screen.get(stage, ("", ""))[1] == str(n) for stage, n in counts.items())
    green = all(screen.get(stage, ("", ""))[0] == "ok" for stage in PIPELINE)
    return screen if ok and green else None


def test_the_compose_settings_the_demo_copies_still_hold(compose_services: dict[str, Any]) -> None:
    """``make demo`` has no Compose to read the file with, so it carries the literal settings."""
    admin = compose_services["pgadmin"]["environment"]
    assert {k: v for k, v in admin.items() if k.startswith("PGADMIN_CONFIG_")} == (
        pgadmin.COMPOSE_CONFIG
    )
    express = compose_services["mongo-express"]["environment"]
    literal = {k: v for k, v in express.items() if k.startswith("ME_CONFIG_")}
    assert set(literal) >= ME_REPLACED
    assert {k: v for k, v in literal.items() if k not in ME_REPLACED} == (
        mongo_express.COMPOSE_CONFIG
    )


def test_the_readme_tour_against_make_demo() -> None:
    began = time.monotonic()
    with demo_lab() as demo:
        proc, log = demo.start()
        try:
            wait_until(
                "make demo to come up",
                lambda: proc.poll() is not None or "[lab] lab up in" in text(log),
                UP_TIMEOUT_S,
            )
            assert proc.poll() is None, text(log)
            up_s = time.monotonic() - began
            who = lab_uis.logins(Layout(demo.root))
            wait_until(f"{README_ROWS} rows in PostgreSQL", lambda: demo.rows() >= README_ROWS, 60)
            with chromium() as driver:
                walk(driver, demo, who)
            print(f"make demo up in {up_s:.1f}s; tour done {time.monotonic() - began:.1f}s in")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it
                wait_exit(proc, log)
        output = text(log)
        for name in ("pgadmin", "mongo-express"):
            assert f"[lab] {name}: stopped" in output, output
        assert demo.leftovers() == [], "processes left after Ctrl-C"


def walk(driver: WebDriver, demo: Demo, who: lab_uis.Logins) -> None:
    status_url = f"http://127.0.0.1:{demo.ports['status']}/"
    # 1. The status page: every count is the servers', every pipeline stage green.
    driver.get(status_url)
    screen = wait_for(
        "the page's counts to equal the servers'", lambda: page_equals_servers(driver, demo), 60
    )
    assert screen["nifi"][0] == "off", "NiFi is not in the default demo: grey, never red"
    screenshot(driver, "demo-status-page.png")

    # 2. pgAdmin: log in, the pre-registered server without a password prompt, the query.
    conn = demo.pg()
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT DISTINCT quote FROM quotes")
            stored = {row[0] for row in cursor.fetchall()}
    finally:
        conn.close()
    password = who.pgadmin_password_file.read_text().strip()
    pgadmin_query(
        driver,
        f"http://127.0.0.1:{demo.ports['pgadmin']}",
        (who.pgadmin_email, password),
        lab_uis.SERVER_NAME,
        "quotes",
        lambda found: bool(found & stored),
    )
    assert total_rows(driver) == README_ROWS
    screenshot(driver, "demo-pgadmin-query-tool.png")

    # 3. mongo-express: the collection, then the README's Advanced query.
    wait_until(
        f"a quote of {CHARACTER} in MongoDB",
        lambda: character_documents(demo) > 0,
        90,
        every_s=1.0,
    )
    url = f"http://127.0.0.1:{demo.ports['mongo-express']}"
    password = who.mongo_express_password_file.read_text().strip()
    mongo_express_collection(driver, url, (who.mongo_express_user, password), "quotes", "quotes")
    wait_for("the collection's documents", lambda: "documents retrieved" in body(driver))
    advanced = wait_for("the Advanced tab", lambda: shown(driver, "a[href='#advanced']"))
    advanced[0].click()
    box = wait_for("the Advanced query box", lambda: shown(driver, "#advanced textarea#query"))
    box[0].clear()
    box[0].send_keys(f'{{"character": "{CHARACTER}"}}')
    driver.find_element(By.CSS_SELECTOR, "#advanced button[type=submit]").click()
    retrieved = wait_for(
        "the query's documents",
        lambda: (
            re.search(r"Delete all (\d+) documents retrieved", body(driver))
            if "query=" in driver.current_url
            else None
        ),
    )
    shown_count = int(retrieved.group(1))
    assert 0 < shown_count <= character_documents(demo), body(driver)[-600:]
    screenshot(driver, "demo-mongo-express-query.png")

    # 4. PostgreSQL stopped on purpose: its stage turns red, the rest of the lab runs on.
    driver.get(status_url)
    wait_for("the status page", lambda: on_screen(driver).get("postgres"))
    stop = demo.make("demo-stop", "SERVICE=postgres")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    try:
        wait_stage_red(driver, "postgres")
        topic_then = servers_counts(demo)["topic"]
        wait_until(
            "new records while PostgreSQL is away",
            lambda: servers_counts(demo)["topic"] >= topic_then + 10,
            30,
        )
        screenshot(driver, "demo-status-postgres-down.png")
    finally:
        start = demo.make("demo-start", "SERVICE=postgres")
    assert start.returncode == 0, start.stdout + start.stderr
    # 5. Started again: green, and the rows caught up with the topic.
    wait_for("the page to show PostgreSQL caught up", lambda: page_equals_servers(driver, demo), 60)
    screenshot(driver, "demo-status-caught-up.png")


def body(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text)


def character_documents(demo: Demo) -> int:
    client = demo.mongo()
    try:
        return int(client["quotes"]["quotes"].count_documents({"character": CHARACTER}))
    finally:
        client.close()
