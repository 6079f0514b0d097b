"""The status page in headless Chromium, against the real servers with the real consumer writing.

The page (``python -m streamlab_status``) runs natively on a free loopback port, watching a fresh
topic, its dead-letter topic, the consumer's group and fresh databases; the quotes API runs too
(quotes-api/app.py). NiFi is not started here (it is optional for the page): its stage shows
"not in this lab" in grey, which the test checks as well; a harness NiFi already running
(``make nifi``) is used, and its stage must then be green. The test checks what a learner relies
on: the numbers on screen are the databases' and the topic's, and a stopped PostgreSQL turns its
stage red within 10 s. Its screenshot stays in the artifacts folder; the README shows the demo's
(tests/ui/test_demo_tour.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from selenium.webdriver.common.by import By

from native.servers import nifi as nifi_harness
from native.servers.endpoints import Endpoints
from tests.integration import quotes_api_server
from tests.integration.pipeline import (
    ConsumerProcess,
    consumer_env,
    free_port,
    mongo_collection,
    produce,
    quote_value,
)
from tests.integration.pipeline import wait_for as wait_until
from tests.integration.test_consumer import start_server, stop_server
from tests.ui.browser import artifacts_dir, chromium, wait_for
from tests.ui.pages import on_screen, topic_records, wait_stage_red

pytestmark = [pytest.mark.integration, pytest.mark.ui]

VALID = 60
INVALID = 3  # not JSON: the consumer sends them to the dead-letter topic
STEADY_BURSTS, STEADY_PER_BURST = 16, 10  # 20 records a second for 8 s


def publish_steadily(bootstrap: str, topic: str) -> None:
    """A few seconds of steady traffic, so the screenshot's sparklines show a rate."""
    for burst in range(STEADY_BURSTS):
        first = VALID + burst * STEADY_PER_BURST
        produce(bootstrap, topic, [quote_value(first + i) for i in range(STEADY_PER_BURST)])
        time.sleep(0.5)


def pg_count(endpoints: Endpoints, database: str) -> int:
    conn = psycopg2.connect(**endpoints.pg_params(database))
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM quotes")
            return int(cursor.fetchone()[0])
    finally:
        conn.close()


def mongo_count(endpoints: Endpoints, database: str) -> int:
    collection = mongo_collection(endpoints, database)
    try:
        return int(collection.count_documents({}))
    finally:
        collection.database.client.close()


class StatusPage:
    """``python -m streamlab_status`` as a child process, with its output kept for failures."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "status-page.log"
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        self.env = {**keep, **env, "STATUS_PORT": str(self.port)}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> StatusPage:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlab_status"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until("the status page's /healthz", self.healthy, 20)
        return self

    def healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log()
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return int(response.status) == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"the status page ignored SIGTERM:\n{self.log()}") from None


def harness_nifi() -> dict[str, str]:
    """The harness NiFi's settings when one runs already (``make nifi``), else none.

    Starting NiFi would add half a minute or more to this test, and the page works without it,
    so it is only used when it is up; tests/integration/test_status_nifi.py always checks it.
    """
    if nifi_harness._pid(nifi_harness.settings()) is None:
        return {}
    username, password = nifi_harness.credentials()
    return {
        "NIFI_API_URL": nifi_harness.settings().api_url,
        "NIFI_USERNAME": username,
        "NIFI_PASSWORD": password,
    }


@pytest.fixture
def quotes_api() -> Iterator[str]:
    with quotes_api_server.serve() as url:
        yield url


def test_status_page_shows_the_pipeline_and_a_stopped_postgres_in_red(
    endpoints: Endpoints,
    fresh_topic: str,
    fresh_database: str,
    fresh_mongo_db: str,
    quotes_api: str,
    tmp_path: Path,
) -> None:
    topic, dlq = fresh_topic, f"{fresh_topic}.dlq"
    values = [quote_value(i) for i in range(VALID)] + [b"not json {"] * INVALID
    produce(endpoints.kafka, topic, values)
    env = consumer_env(endpoints, topic, fresh_database, fresh_mongo_db, KAFKA_DLQ_TOPIC=dlq)
    consumer = ConsumerProcess(env, tmp_path).start()
    page_env = {
        "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka,
        "KAFKA_TOPIC": topic,
        "KAFKA_DLQ_TOPIC": dlq,
        "KAFKA_GROUP_ID": env["KAFKA_GROUP_ID"],
        "POSTGRES_HOST": endpoints.pg_host,
        "POSTGRES_PORT": str(endpoints.pg_port),
        "POSTGRES_DB": fresh_database,
        # The consumer's least-privilege login, as in compose.
        "POSTGRES_USER": endpoints.consumer_user,
        "POSTGRES_PASSWORD": endpoints.consumer_password,
        "MONGO_URI": endpoints.mongo_uri,
        "MONGO_DB": fresh_mongo_db,
        "QUOTES_API_URL": quotes_api,
        **harness_nifi(),
    }
    try:
        with StatusPage(page_env, tmp_path) as page, chromium() as driver:
            driver.get(page.url)

            # 1. The counts on screen are the databases' and the topic's, once the consumer has
            #    stored everything (the page refreshes every 2 s: polled, bounded).
            def matches() -> dict[str, tuple[str, str]] | None:
                shown = on_screen(driver)
                expected = {
                    "topic": topic_records(endpoints.kafka, topic),
                    "dlq": topic_records(endpoints.kafka, dlq),
                    "postgres": pg_count(endpoints, fresh_database),
                    "mongo": mongo_count(endpoints, fresh_mongo_db),
                    "consumer": VALID + INVALID,  # everything consumed and committed
                }
                if expected["postgres"] != VALID or expected["mongo"] != VALID:
                    return None  # the consumer is still writing
                ok = all(shown.get(k, ("", ""))[1] == str(v) for k, v in expected.items())
                return shown if ok else None

            shown = wait_for("the page's counts to equal the servers'", matches, 60)
            assert shown["topic"][1] == str(VALID + INVALID) and shown["dlq"][1] == str(INVALID)
            for stage in ("api", "topic", "consumer", "postgres", "mongo", "dlq"):
                assert shown[stage][0] == "ok", (stage, shown, page.log())
            if "NIFI_API_URL" in page_env:
                assert shown["nifi"][0] == "ok", (shown["nifi"], page.log())
            else:
                assert shown["nifi"][0] == "off", "NiFi is not in this test's lab: grey, not red"
            group = driver.find_element(By.ID, "stage-consumer").text
            assert "1 member(s)" in group and "lag 0" in group, group

            # 2. Records keep flowing for a few seconds, so the sparklines have a curve; the
            #    screenshot is the README's.
            publisher = threading.Thread(
                target=publish_steadily, args=(endpoints.kafka, topic), daemon=True
            )
            publisher.start()
            publisher.join(timeout=60)
            assert not publisher.is_alive(), "publishing took over 60 s"
            wait_for(
                "the page to catch up with the last records",
                lambda: (
                    on_screen(driver).get("postgres", ("", ""))[1]
                    == str(pg_count(endpoints, fresh_database))
                    == str(VALID + STEADY_BURSTS * STEADY_PER_BURST)
                ),
                30,
            )
            driver.save_screenshot(str(artifacts_dir() / "status-page.png"))

            # 3. PostgreSQL stops: its stage turns red within 10 s.
            stop_server(endpoints, "postgres")
            try:
                wait_stage_red(driver, "postgres")
                card = driver.find_element(By.ID, "stage-postgres")
                color = card.value_of_css_property("border-top-color")
                assert color.replace(" ", "") in ("rgba(198,40,40,1)", "rgb(198,40,40)"), color
                assert on_screen(driver)["topic"][0] == "ok", "only PostgreSQL's stage is down"
                driver.save_screenshot(str(artifacts_dir() / "status-page-postgres-down.png"))
            finally:
                start_server(endpoints, "postgres")
    finally:
        consumer.kill()
