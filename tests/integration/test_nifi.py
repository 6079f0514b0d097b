"""nifi/deploy.py and nifi/quotes-flow.xml against a real, running NiFi (``make test-nifi``).

The harness (tests/harness/nifi.py) lays NiFi out from Maven Central and starts it on
127.0.0.1; deploy.py then installs the template twice, and quotes served by the real quotes API
must arrive in a fresh Kafka topic through NiFi. What is real and what is a double here is in
tests/harness/nifi/testdoubles/README.md: NiFi 1.18.0 framework and standard processors are
Apache's; the login, the authorizer and PublishKafka_2_6 are test doubles.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import nifi as harness
from tests.integration.pipeline import read_topic, values_by_coordinate
from tests.integration.quotes_api_server import serve

pytestmark = pytest.mark.nifi

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "nifi" / "deploy.py"
FLOW_NAME = "Quotes to Kafka"
ARRIVAL_TIMEOUT_S = 120.0
QUOTE_FIELDS = {"quote", "character", "image", "characterDirection"}


class Api:
    """Just enough of the NiFi REST API to inspect what deploy.py did."""

    def __init__(self, settings: harness.Settings) -> None:
        self.settings = settings
        self.token = harness.token(settings, *harness.credentials())

    def get(self, path: str) -> Any:
        return self.send("GET", path)

    def send(self, method: str, path: str, payload: Any = None) -> Any:
        req = urllib.request.Request(
            self.settings.api_url + path,
            data=None if payload is None else json.dumps(payload).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(req, context=harness.insecure_context(), timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body.strip() else None

    def flow_groups(self) -> list[dict[str, Any]]:
        groups = self.get("/process-groups/root/process-groups")["processGroups"]
        return [g for g in groups if g["component"]["name"].endswith(FLOW_NAME)]


@pytest.fixture(scope="module")
def nifi() -> Iterator[harness.Settings]:
    """A running harness NiFi; stopped afterwards only if this fixture started it."""
    already = harness._pid(harness.settings()) is not None
    began = time.monotonic()
    try:
        settings = harness.start()
    except harness.NifiHarnessError as exc:
        pytest.fail(f"NiFi did not start: {exc}")
    print(f"NiFi ready in {time.monotonic() - began:.0f}s")
    yield settings
    if not already:
        harness.stop()


def deploy(
    settings: harness.Settings,
    topic: str,
    api_url: str,
    bootstrap: str,
    *args: str,
    **overrides: str,
) -> subprocess.CompletedProcess[str]:
    username, password = harness.credentials()
    env = {
        **os.environ,
        "NIFI_API_URL": settings.api_url,
        "NIFI_USERNAME": username,
        "NIFI_PASSWORD": password,
        "NIFI_WAIT_TIMEOUT": "60",
        "QUOTES_API_URL": api_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC": topic,
        **overrides,
    }
    return subprocess.run(
        [sys.executable, str(DEPLOY), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_deploy_twice_one_running_copy_and_quotes_reach_kafka(
    nifi: harness.Settings, kafka_bootstrap: str, fresh_topic: str
) -> None:
    api = Api(nifi)
    with serve("--seed", "21", "--malformed-rate", "0") as base:
        url = f"{base}/quotes?count=5"
        first = deploy(nifi, fresh_topic, url, kafka_bootstrap)
        assert first.returncode == 0, first.stderr
        second = deploy(nifi, fresh_topic, url, kafka_bootstrap)
        assert second.returncode == 0, second.stderr
        assert "reusing process group" in second.stdout

        groups = api.flow_groups()
        assert len(groups) == 1
        group_id = groups[0]["id"]
        variables = api.get(f"/process-groups/{group_id}/variable-registry")
        values = {
            v["variable"]["name"]: v["variable"]["value"]
            for v in variables["variableRegistry"]["variables"]
        }
        assert values == {
            "quotes.api.url": url,
            "kafka.bootstrap.servers": kafka_bootstrap,
            "kafka.topic": fresh_topic,
        }
        processors = api.get(f"/process-groups/{group_id}/processors")["processors"]
        assert len(processors) == 4
        assert {p["component"]["state"] for p in processors} == {"RUNNING"}

        # GetHTTP polls every 5 s and each poll yields 5 quotes: wait for two polls' worth.
        consumed = read_until(kafka_bootstrap, fresh_topic, 10)
    assert len(consumed) >= 10
    for value in consumed:
        assert set(json.loads(value)) == QUOTE_FIELDS


def read_until(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    """Read the topic until ``expected`` records arrived or ARRIVAL_TIMEOUT_S passed."""
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    records: dict[tuple[int, int], bytes] = {}
    for _ in range(20):
        records = values_by_coordinate(read_topic(bootstrap, topic, expected))
        if len(records) >= expected or time.monotonic() > deadline:
            break
    return list(records.values())


def test_deploy_removes_extra_copies(
    nifi: harness.Settings, kafka_bootstrap: str, fresh_topic: str
) -> None:
    api = Api(nifi)
    url = "http://127.0.0.1:9/quotes?count=1"  # nothing listens: the copies need not fetch
    assert deploy(nifi, fresh_topic, url, kafka_bootstrap).returncode == 0
    # a second copy, as a user clicking "instantiate template" again would make
    templates = api.get("/flow/templates")["templates"]
    template_id = next(t["id"] for t in templates if t["template"]["name"] == FLOW_NAME)
    api.send(
        "POST",
        "/process-groups/root/template-instance",
        {"templateId": template_id, "originX": 600.0, "originY": 600.0},
    )
    assert len(api.flow_groups()) >= 2  # NiFi names it "Copy of Quotes to Kafka"
    again = deploy(nifi, fresh_topic, url, kafka_bootstrap)
    assert again.returncode == 0, again.stderr
    assert "removing extra copy" in again.stdout
    assert len(api.flow_groups()) == 1
    # leave the shared instance quiet: stop the flow this test pointed at a dead URL
    group_id = api.flow_groups()[0]["id"]
    api.send("PUT", f"/flow/process-groups/{group_id}", {"id": group_id, "state": "STOPPED"})


def test_wrong_password_is_one_clear_line(nifi: harness.Settings, fresh_topic: str) -> None:
    done = deploy(nifi, fresh_topic, "http://x/", "x:1", NIFI_PASSWORD="not-the-password-at-all")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "rejected the credentials" in done.stderr


def test_bad_template_is_rejected(nifi: harness.Settings, fresh_topic: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text("<template><name>Quotes to Kafka</name><snippet>")
    done = deploy(nifi, fresh_topic, "http://x/", "x:1", "--template", str(broken))
    assert done.returncode == 1
    assert done.stderr.startswith("error: template rejected")
    assert done.stderr.strip().count("\n") == 0


def test_nifi_not_up_times_out(fresh_topic: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before deploy runs: nothing listens there
    settings = harness.Settings(port, "1g", Path("/nonexistent"), Path("/nonexistent"))
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(DEPLOY), "--wait-timeout", "3"],
        env={**os.environ, "NIFI_API_URL": settings.api_url, "NIFI_PASSWORD": "x" * 12},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "NiFi not up at" in done.stderr and "after 3s" in done.stderr
    assert time.monotonic() - began < 30
