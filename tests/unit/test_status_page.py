"""The status page's data API and its rules, without servers: probes are plain callables here.

What is real: the HTTP server (on a free loopback port), the poller's threads and deadlines, the
history and the verdicts. What is not: the servers behind the probes; tests/ui/test_status_page.py
runs the page against the real ones.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from streamlab_status import settings
from streamlab_status.history import History
from streamlab_status.poller import Poller, ProbeSpec
from streamlab_status.probes import STAGES, NifiProbe, Reading, _find_processor
from streamlab_status.server import StatusServer
from streamlab_status.verdict import LAG_LOOKS, LAG_SERIES, STALL_S, judge

SECRET = "s3cret-password-never-shown"
REQUIRED = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "POSTGRES_HOST": "127.0.0.1",
    "POSTGRES_DB": "quotes",
    "POSTGRES_USER": "reader",
    "POSTGRES_PASSWORD": SECRET,
    "MONGO_URI": f"mongodb://reader:{SECRET}@127.0.0.1:27017/quotes",
}


# --- Settings -----------------------------------------------------------------------------------


def test_settings_defaults_and_required() -> None:
    loaded = settings.load(REQUIRED)
    assert (loaded.host, loaded.port, loaded.refresh_s) == ("127.0.0.1", 8088, 2.0)
    assert (loaded.topic, loaded.dlq_topic, loaded.group_id) == (
        "quotes",
        "quotes.dlq",
        "quotes-consumer",
    )
    assert loaded.nifi_api_url == "" and loaded.quotes_api_url == ""


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"POSTGRES_HOST": ""}, "POSTGRES_HOST is not set"),
        ({"STATUS_PORT": "80a"}, "STATUS_PORT='80a'"),
        ({"STATUS_PORT": "70000"}, "STATUS_PORT"),
        ({"STATUS_REFRESH_S": "0"}, "STATUS_REFRESH_S"),
        ({"STATUS_PROBE_TIMEOUT_S": "x"}, "STATUS_PROBE_TIMEOUT_S"),
        ({"MONGO_URI": "http://x"}, "MONGO_URI"),
        ({"NIFI_API_URL": "https://nifi:8443/nifi-api"}, "NIFI_USERNAME or NIFI_PASSWORD"),
        ({"NIFI_API_URL": "ftp://nifi"}, "NIFI_API_URL"),
        ({"KAFKA_DLQ_TOPIC": "quotes"}, "KAFKA_DLQ_TOPIC"),
    ],
)
def test_a_bad_setting_is_named_in_one_line(override: dict[str, str], named: str) -> None:
    with pytest.raises(settings.SettingsError) as caught:
        settings.load({**REQUIRED, **override})
    assert named in str(caught.value) and "\n" not in str(caught.value)


# --- History and verdicts -------------------------------------------------------------------------


def test_history_rates_sparkline_and_window() -> None:
    history = History(window_s=300)
    for second in range(0, 20, 2):
        history.add("topic", 1000.0 + second, 5 * second)  # 5 records a second
    assert history.rate("topic", 1018.0) == pytest.approx(5.0)
    assert all(rate == pytest.approx(5.0) for _t, rate in history.sparkline("topic"))
    history.add("topic", 1020.0, None)  # a failed look leaves a gap, not a zero
    assert history.samples("topic")[-1] == (1018.0, 90)
    history.add("topic", 1400.0, 0)  # a recreated topic: older samples age out, no negative rate
    assert history.samples("topic") == [(1400.0, 0)]
    assert history.changed_within("topic", 1400.0, 30) is None, "not watched 30 s yet"


def reading(count: int, **detail: Any) -> dict[str, Any]:
    return {"count": count, "detail": detail}


def test_verdict_down_on_error() -> None:
    history = History()
    assert judge("postgres", {"error": "connection refused"}, {}, history, 0.0) == (
        "down",
        "connection refused",
    )
    assert judge("postgres", None, {}, history, 0.0)[0] == "down"


def test_verdict_consumer_behind_when_lag_keeps_growing() -> None:
    history = History()
    for look in range(LAG_LOOKS):
        history.add(LAG_SERIES, float(look * 2), 10 * (look + 1))
    growing = reading(50, members=1, group="g", total_lag=50)
    assert judge("consumer", growing, {}, history, 10.0)[0] == "behind"
    history.add(LAG_SERIES, 10.0, 40)  # it caught up a little: fine again
    assert judge("consumer", reading(50, members=1, group="g", total_lag=40), {}, history, 10.0)[
        0
    ] == ("ok")
    empty_group = reading(50, members=0, group="g", total_lag=3)
    state, reason = judge("consumer", empty_group, {}, history, 10.0)
    assert state == "behind" and "no consumer" in reason


def test_verdict_sink_behind_when_topic_moves_and_it_does_not() -> None:
    history = History()
    for second in range(0, 41, 2):
        history.add("topic", float(second), 100 + second)
        history.add("postgres", float(second), 100)
        history.add("mongo", float(second), 100 + second)
    readings = {"consumer": reading(100, members=1, group="g", total_lag=40)}
    state, reason = judge("postgres", reading(100), readings, history, 40.0)
    assert state == "behind" and f"{STALL_S:.0f} s" in reason
    assert judge("mongo", reading(140), readings, history, 40.0)[0] == "ok"
    caught_up = {"consumer": reading(140, members=1, group="g", total_lag=0)}
    assert judge("postgres", reading(100), caught_up, history, 40.0)[0] == "ok"


def test_nifi_processor_found_in_nested_groups() -> None:
    status = {
        "processorStatusSnapshots": [],
        "processGroupStatusSnapshots": [
            {
                "processGroupStatusSnapshot": {
                    "processorStatusSnapshots": [
                        {"processorStatusSnapshot": {"type": "SplitJson", "taskCount": 1}},
                        {"processorStatusSnapshot": {"type": "GetHTTP", "taskCount": 7}},
                    ]
                }
            }
        ],
    }
    found = _find_processor(status, "GetHTTP")
    assert found is not None and found["taskCount"] == 7
    assert _find_processor(status, "PublishKafka_2_6") is None


# --- The data API over HTTP -----------------------------------------------------------------------


class Counter:
    """A probe whose count grows by ``step`` at each look."""

    def __init__(self, stages: tuple[str, ...], step: int = 10) -> None:
        self.stages, self.step, self.count = stages, step, 0

    def __call__(self) -> dict[str, Reading]:
        self.count += self.step
        return {stage: Reading(self.count, {"password_seen": False}) for stage in self.stages}


def fake_probes(**replace: Callable[[], dict[str, Reading]]) -> dict[str, ProbeSpec]:
    def kafka() -> dict[str, Reading]:
        return {
            "topic": Reading(30, {"partitions": {"0": 10, "1": 10, "2": 10}}),
            "consumer": Reading(30, {"group": "g", "members": 1, "lag": {"0": 0}, "total_lag": 0}),
            "dlq": Reading(1),
        }

    probes: dict[str, ProbeSpec] = {
        "quotes-api": (lambda: {"api": Reading(None, {"answer_ms": 1})}, ("api",)),
        "nifi": (lambda: {"nifi": Reading(0, {"queued": 0, "last_poll": None})}, ("nifi",)),
        "kafka": (kafka, ("topic", "consumer", "dlq")),
        "postgres": (Counter(("postgres",)), ("postgres",)),
        "mongo": (Counter(("mongo",)), ("mongo",)),
    }
    for name, probe in replace.items():
        probes[name] = (probe, probes[name][1])
    return probes


@pytest.fixture
def serve() -> Iterator[Callable[[Poller], str]]:
    started: list[tuple[Poller, StatusServer]] = []

    def start(poller: Poller) -> str:
        server = StatusServer("127.0.0.1", 0, poller).start()
        started.append((poller, server))
        return f"http://127.0.0.1:{server.port}"

    yield start
    for poller, server in started:
        server.stop()
        poller.stop()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), dict(error.headers), error.read()


def test_api_serves_every_stage_with_counts_rates_and_sparklines(
    serve: Callable[[Poller], str],
) -> None:
    poller = Poller(fake_probes(), refresh_s=2, timeout_s=1)
    for _ in range(3):
        poller.look()
    url = serve(poller)
    status, headers, body = get(f"{url}/api/status")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    snapshot = json.loads(body)
    stages = {stage["id"]: stage for stage in snapshot["stages"]}
    assert list(stages) == list(STAGES), "left to right, as drawn"
    assert stages["postgres"]["count"] == 30 and stages["postgres"]["state"] == "ok"
    assert stages["topic"]["detail"]["partitions"] == {"0": 10, "1": 10, "2": 10}
    assert stages["postgres"]["rate"] > 0 and len(stages["postgres"]["spark"]) == 2
    assert stages["api"]["state"] == "ok" and stages["api"]["count"] is None


def test_a_failing_probe_turns_only_its_stages_red(serve: Callable[[Poller], str]) -> None:
    def refused() -> dict[str, Reading]:
        raise OSError("connection to server failed\n  Connection refused")

    poller = Poller(fake_probes(postgres=refused), refresh_s=2, timeout_s=1)
    poller.look()
    snapshot = json.loads(get(f"{serve(poller)}/api/status")[2])
    states = {stage["id"]: (stage["state"], stage["reason"]) for stage in snapshot["stages"]}
    assert states["postgres"][0] == "down" and "\n" not in states["postgres"][1]
    assert states["mongo"][0] == "ok" and states["topic"][0] == "ok"


def test_a_server_left_out_of_the_lab_is_grey_not_red(serve: Callable[[Poller], str]) -> None:
    """NiFi with its URL left empty (make demo's stand-in produces): "off", never "down"."""
    loaded = settings.load(REQUIRED)
    poller = Poller(fake_probes(nifi=NifiProbe(loaded)), refresh_s=2, timeout_s=1)
    poller.look()
    snapshot = json.loads(get(f"{serve(poller)}/api/status")[2])
    states = {stage["id"]: (stage["state"], stage["reason"]) for stage in snapshot["stages"]}
    assert states["nifi"] == (
        "off",
        "not in this lab: NIFI_API_URL is empty: the Python stand-in produces",
    )
    assert states["postgres"][0] == "ok"


def test_logins_and_passwords_never_reach_the_page(serve: Callable[[Poller], str]) -> None:
    """A driver's message naming the login (or worse) is masked before the data API has it."""
    loaded = settings.load({**REQUIRED, "MONGO_URI": f"mongodb://mongo-user:{SECRET}@h/quotes"})
    secrets = settings.secret_values(loaded)
    assert set(secrets) == {"reader", SECRET, "mongo-user"}

    def refused() -> dict[str, Reading]:
        raise OSError(f'password authentication failed for user "reader" ({SECRET})')

    poller = Poller(fake_probes(postgres=refused), refresh_s=2, timeout_s=1, secrets=secrets)
    poller.look()
    body = get(f"{serve(poller)}/api/status")[2]
    assert b"reader" not in body and SECRET.encode() not in body
    reason = {s["id"]: s["reason"] for s in json.loads(body)["stages"]}["postgres"]
    assert reason == 'password authentication failed for user "***" (***)'


def test_a_hanging_server_never_blocks_the_page(serve: Callable[[Poller], str]) -> None:
    release = threading.Event()

    def hangs() -> dict[str, Reading]:
        release.wait(30)
        return {"topic": Reading(1), "consumer": Reading(1), "dlq": Reading(1)}

    poller = Poller(fake_probes(kafka=hangs), refresh_s=2, timeout_s=0.5)
    try:
        started = time.monotonic()
        snapshot = poller.look()
        poller.look()  # the stuck probe is not started a second time
        assert time.monotonic() - started < 2.5
        stages = {stage["id"]: stage for stage in snapshot["stages"]}
        for stage in ("topic", "consumer", "dlq"):
            assert stages[stage]["state"] == "down"
            assert "no answer within 0.5 s" in stages[stage]["reason"]
        assert stages["postgres"]["state"] == "ok"
    finally:
        release.set()


def test_page_is_static_read_only_and_carries_no_credentials(
    serve: Callable[[Poller], str],
) -> None:
    poller = Poller(fake_probes(), refresh_s=2, timeout_s=1)
    poller.look()
    url = serve(poller)
    status, headers, page = get(f"{url}/")
    assert status == 200 and b'<script src="/app.js">' in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    script = get(f"{url}/app.js")[2]
    assert b"/api/status" in script and b"http" not in script.replace(b"/api/status", b"").replace(
        b"http://www.w3.org/2000/svg", b""
    ), "no third-party URL in the page's script"
    for path in ("/", "/app.js", "/style.css", "/api/status", "/healthz"):
        assert SECRET.encode() not in get(f"{url}{path}")[2]
    request = urllib.request.Request(f"{url}/api/status", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 405
    assert get(f"{url}/nope")[0] == 404
    assert json.loads(get(f"{url}/healthz")[2]) == {"status": "ok"}
