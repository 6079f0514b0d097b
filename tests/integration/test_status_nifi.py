"""The status page's NiFi probe against the harness NiFi running the flow (``make test-nifi``).

The browser test (tests/ui/test_status_page.py) runs without NiFi, to stay fast; this one checks
what the page reads from NiFi's REST API: the login, the root group's queued FlowFiles, and
GetHTTP's runs, whose change marks the "last poll".
"""

from __future__ import annotations

import time
import urllib.error

import pytest

from native.servers import nifi as harness
from streamlab_status import settings as status_settings
from streamlab_status.probes import NifiProbe
from tests.integration.quotes_api_server import serve
from tests.integration.test_nifi import deploy, nifi  # noqa: F401  (the module's NiFi fixture)

pytestmark = [pytest.mark.integration, pytest.mark.nifi]

POLL_WAIT_S = 30.0  # GetHTTP runs every 5 s


def probe_settings(api_url: str, username: str, password: str) -> status_settings.Settings:
    return status_settings.load(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_DB": "unused",
            "POSTGRES_USER": "unused",
            "POSTGRES_PASSWORD": "unused",
            "MONGO_URI": "mongodb://127.0.0.1:1/",
            "NIFI_API_URL": api_url,
            "NIFI_USERNAME": username,
            "NIFI_PASSWORD": password,
            "STATUS_PROBE_TIMEOUT_S": "10",
        }
    )


def test_nifi_probe_reads_queue_and_last_poll(
    nifi: harness.Settings,  # noqa: F811
    kafka_bootstrap: str,
    fresh_topic: str,
) -> None:
    username, password = harness.credentials()
    with serve("--seed", "7", "--malformed-rate", "0") as base:
        deployed = deploy(nifi, fresh_topic, f"{base}/quotes?count=5", kafka_bootstrap)
        assert deployed.returncode == 0, deployed.stderr
        probe = NifiProbe(probe_settings(nifi.api_url, username, password))
        first = probe()["nifi"]
        assert isinstance(first.count, int) and first.count >= 0
        assert first.detail["queued"] == first.count
        deadline = time.monotonic() + POLL_WAIT_S
        reading = first
        while probe.last_poll is None and time.monotonic() < deadline:
            time.sleep(1)
            reading = probe()["nifi"]
        assert probe.last_poll is not None, f"GetHTTP did not run within {POLL_WAIT_S:.0f} s"
        assert reading.detail["polls_5min"] >= 1
        assert abs(reading.detail["last_poll"] - time.time()) < POLL_WAIT_S + 5

    wrong = NifiProbe(probe_settings(nifi.api_url, username, password + "x"))
    with pytest.raises(urllib.error.HTTPError):
        wrong()
