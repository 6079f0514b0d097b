"""nifi/deploy.py and nifi/quotes-flow.xml against a real, running NiFi (``make test-nifi``).

The harness (native/servers/nifi.py) lays NiFi out from Maven Central and starts it on
127.0.0.1; deploy.py then installs the template twice, and quotes served by the real quotes API
must arrive in a fresh Kafka topic through NiFi; a changed template replaces the group; a batch
that Kafka partly refuses is re-sent with the same ``uuid`` headers. What is real and what is a
double here is in native/servers/nifi/stand-ins/README.md: NiFi 1.18.0 framework and standard
processors are Apache's; the login, the authorizer and PublishKafka_2_6 are test doubles.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from native.servers import nifi as harness
from native.servers.endpoints import Endpoints
from tests.integration.pipeline import (
    ConsumerProcess,
    consumer_env,
    mongo_coordinates,
    pg_rows,
    read_topic,
    values_by_coordinate,
    wait_for,
    wait_until_committed,
)
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
        assert "instantiated" not in second.stdout and "replacing" not in second.stdout

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
        digest = hashlib.sha256(DEPLOY.with_name("quotes-flow.xml").read_bytes()).hexdigest()
        comments = api.get(f"/process-groups/{group_id}")["component"]["comments"]
        assert f"deploy.py template sha256: {digest}" in comments

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


def test_changed_template_replaces_the_group(
    nifi: harness.Settings, kafka_bootstrap: str, fresh_topic: str, tmp_path: Path
) -> None:
    api = Api(nifi)
    url = "http://127.0.0.1:9/quotes?count=1"  # nothing listens: the flow need not fetch
    first = deploy(nifi, fresh_topic, url, kafka_bootstrap)
    assert first.returncode == 0, first.stderr
    old_id = api.flow_groups()[0]["id"]

    changed = tmp_path / "quotes-flow.xml"
    original = (REPO / "nifi" / "quotes-flow.xml").read_text()
    edited = original.replace(
        "<yieldDuration>1 sec</yieldDuration>", "<yieldDuration>2 sec</yieldDuration>"
    )
    assert edited != original
    changed.write_text(edited)
    again = deploy(nifi, fresh_topic, url, kafka_bootstrap, "--template", str(changed))
    assert again.returncode == 0, again.stderr
    assert f"replacing process group {old_id}: template changed" in again.stdout
    groups = api.flow_groups()
    assert len(groups) == 1 and groups[0]["id"] != old_id
    new_id = groups[0]["id"]
    processors = api.get(f"/process-groups/{new_id}/processors")["processors"]
    assert {p["component"]["config"]["yieldDuration"] for p in processors} == {"2 sec"}
    assert {p["component"]["state"] for p in processors} == {"RUNNING"}

    unchanged = deploy(nifi, fresh_topic, url, kafka_bootstrap, "--template", str(changed))
    assert unchanged.returncode == 0, unchanged.stderr
    assert f"reusing process group {new_id}" in unchanged.stdout
    assert [g["id"] for g in api.flow_groups()] == [new_id]
    api.send("PUT", f"/flow/process-groups/{new_id}", {"id": new_id, "state": "STOPPED"})


def test_template_refused_by_nifi_is_one_line_and_keeps_the_flow(
    nifi: harness.Settings, kafka_bootstrap: str, fresh_topic: str, tmp_path: Path
) -> None:
    """NiFi answers HTTP 200 with an errorResponse: deploy must say why, in one line."""
    api = Api(nifi)
    url = "http://127.0.0.1:9/quotes?count=1"
    assert deploy(nifi, fresh_topic, url, kafka_bootstrap).returncode == 0
    before = [g["id"] for g in api.flow_groups()]
    # Well-formed XML (deploy reads its name), but NiFi's reader refuses DTD entities.
    refused = tmp_path / "refused.xml"
    refused.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE template [<!ENTITY flow "Quotes to Kafka">]>\n'
        '<template encoding-version="1.3"><name>&flow;</name><snippet/></template>\n'
    )
    done = deploy(nifi, fresh_topic, url, kafka_bootstrap, "--template", str(refused))
    assert done.returncode == 1
    assert done.stderr == (
        "error: template rejected by NiFi: The specified template is not in a valid format.\n"
    )
    assert [g["id"] for g in api.flow_groups()] == before
    api.send("PUT", f"/flow/process-groups/{before[0]}", {"id": before[0], "state": "STOPPED"})


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


# --- the uuid header, and a batch re-sent after a failure --------------------------------------

SMALL_QUOTES = 4
# The broker refuses the one big quote, and only it: the big record exceeds the producer's
# 16 KiB batch.size, so it travels alone in its own batch (a batch mixing it with others would be
# split and retried by the Kafka client until the acknowledgement wait ran out).
TOPIC_MAX_MESSAGE_BYTES = 20_000
FAILED_QUEUE = "failed FlowFiles (inspect, then replay or empty)"


@pytest.fixture
def one_bad_batch() -> Iterator[str]:
    """An HTTP API answering one array of 4 small quotes and 1 too big for the topic, then []."""
    quotes = [
        {
            "quote": f"Small quote {i} {uuid.uuid4().hex}",
            "character": "Tester",
            "image": "https://example.org/tester.png",
            "characterDirection": "Left",
        }
        for i in range(SMALL_QUOTES)
    ]
    big = {**quotes[0], "quote": "x" * (2 * TOPIC_MAX_MESSAGE_BYTES)}
    answers = [json.dumps([*quotes[:2], big, *quotes[2:]]).encode()]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers.pop(0) if answers else b"[]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/quotes"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def small_records_topic(kafka_bootstrap: str) -> Iterator[str]:
    """A one-partition topic whose broker refuses records over TOPIC_MAX_MESSAGE_BYTES."""
    name = f"test-small-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="tests")
    config = {"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)}
    admin.create_topics([NewTopic(name, 1, 1, topic_configs=config)])
    try:
        yield name
    finally:
        admin.delete_topics([name])
        admin.close()


def queued_uuids(api: Api, connection_id: str) -> list[str]:
    """The uuid attribute of every FlowFile waiting in a connection (NiFi's queue listing)."""
    listing = api.send("POST", f"/flowfile-queues/{connection_id}/listing-requests")
    path = f"/flowfile-queues/{connection_id}/listing-requests/{listing['listingRequest']['id']}"
    deadline = time.monotonic() + 30
    while not listing["listingRequest"]["finished"] and time.monotonic() < deadline:
        time.sleep(0.5)
        listing = api.get(path)
    api.send("DELETE", path)
    assert listing["listingRequest"]["finished"], "queue listing did not finish in 30 s"
    return [f["uuid"] for f in listing["listingRequest"].get("flowFileSummaries", [])]


def empty_queues(api: Api) -> None:
    """Stop the flow groups left by earlier tests and drop every FlowFile queued in them."""
    for group in api.flow_groups():
        group_id = group["id"]
        api.send("PUT", f"/flow/process-groups/{group_id}", {"id": group_id, "state": "STOPPED"})
        connections = api.get(f"/process-groups/{group_id}/connections")["connections"]
        for conn in connections:
            drop = api.send("POST", f"/flowfile-queues/{conn['id']}/drop-requests")
            path = f"/flowfile-queues/{conn['id']}/drop-requests/{drop['dropRequest']['id']}"
            deadline = time.monotonic() + 30
            while not drop["dropRequest"]["finished"] and time.monotonic() < deadline:
                time.sleep(0.5)
                drop = api.get(path)
            api.send("DELETE", path)
            assert drop["dropRequest"]["finished"], "emptying a queue took over 30 s"


def records_with_headers(bootstrap: str, topic: str) -> list[Any]:
    """Every record of a one-partition topic, read up to its end offset (bounded in time)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    end = consumer.end_offsets([partition])[partition]
    records: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while consumer.position(partition) < end and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    assert len(records) == end, f"read {len(records)} of {end} records in 30 s"
    return records


def test_uuid_header_and_a_batch_resent_after_a_failure(
    nifi: harness.Settings,
    kafka_bootstrap: str,
    small_records_topic: str,
    one_bad_batch: str,
    endpoints: Endpoints,
    fresh_database: str,
    fresh_mongo_db: str,
    tmp_path: Path,
) -> None:
    """One refused record fails the whole batch; the retries re-send the others, same uuid.

    This is the duplicate the consumer must absorb: the same FlowFile (same ``uuid``) at
    several offsets. The ``uuid`` header must equal the FlowFile's uuid attribute in NiFi.
    """
    api = Api(nifi)
    empty_queues(api)
    done = deploy(nifi, small_records_topic, one_bad_batch, kafka_bootstrap)
    assert done.returncode == 0, done.stderr
    group_id = api.flow_groups()[0]["id"]
    connections = api.get(f"/process-groups/{group_id}/connections")["connections"]
    failed = next(c["id"] for c in connections if c["component"]["name"] == FAILED_QUEUE)

    # The 5 FlowFiles of the batch end, after the template's 3 retries, in the failure queue.
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    parked: list[str] = []
    while time.monotonic() < deadline:
        parked = queued_uuids(api, failed)
        if len(parked) >= SMALL_QUOTES + 1:
            break
        time.sleep(2)
    empty_queues(api)  # stops the group too
    assert len(parked) == SMALL_QUOTES + 1, f"failure queue holds {parked}"

    records = records_with_headers(kafka_bootstrap, small_records_topic)
    by_uuid: dict[str, list[Any]] = {}
    for record in records:
        headers = dict(record.headers)
        assert set(headers) == {"uuid"}, f"offset {record.offset} headers {record.headers}"
        by_uuid.setdefault(headers["uuid"].decode(), []).append(record)
    # Only the 4 small quotes reached Kafka, each identified by its FlowFile's uuid ...
    assert len(by_uuid) == SMALL_QUOTES
    assert set(by_uuid) < set(parked)
    for message_id, copies in by_uuid.items():
        # ... and each more than once: sent, then re-sent by every retry of the failed batch.
        assert len(copies) >= 2, f"{message_id} was not re-sent"
        assert len({c.value for c in copies}) == 1, f"{message_id} changed between sends"
        assert len({c.offset for c in copies}) == len(copies)
        assert set(json.loads(copies[0].value)) == QUOTE_FIELDS
    copies_per_id = sorted(len(c) for c in by_uuid.values())
    print(f"{len(records)} records for {len(by_uuid)} message ids, copies {copies_per_id}")

    # End to end: the consumer stores each FlowFile once, whatever the number of copies.
    # Waited for are the effects asserted, not records consumed: a batch consumed may not be
    # written yet. First every message id in both databases; then every copy's offset
    # committed, so that the later copies, which must add nothing, have been dealt with too.
    env = consumer_env(endpoints, small_records_topic, fresh_database, fresh_mongo_db)
    consumer = ConsumerProcess(env, tmp_path).start()
    wait_for(
        "every message id in both databases",
        lambda: (
            {row["message_id"] for row in pg_rows(endpoints, fresh_database)} >= set(by_uuid)
            and len(mongo_coordinates(endpoints, fresh_mongo_db)) >= SMALL_QUOTES
        ),
        60,
    )
    wait_until_committed(
        kafka_bootstrap,
        env["KAFKA_GROUP_ID"],
        small_records_topic,
        [(record.partition, record.offset) for record in records],
        60,
    )
    assert consumer.terminate() == 0, consumer.log()
    rows = pg_rows(endpoints, fresh_database)
    assert sorted(row["message_id"] for row in rows) == sorted(by_uuid)
    assert len(mongo_coordinates(endpoints, fresh_mongo_db)) == SMALL_QUOTES
