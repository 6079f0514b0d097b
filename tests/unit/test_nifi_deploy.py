"""nifi/deploy.py's start logic and upload-error reading, against a local stand-in of NiFi's REST.

Why a stand-in here: the harness NiFi (1.18.0) validates a new group's processors before the
first status request returns, so the start race of NiFi 1.28.1 cannot be provoked there on
demand. This server applies the rule read in NiFi 1.28.1's source
(``ProcessGroup.START_PROCESSORS_FILTER``: a group start skips every processor that is not
VALID) to processors that stay VALIDATING for a few status requests, so a start that does not
wait for validation fails here every time. The harness tests (tests/integration/test_nifi.py)
then check the end state against a real NiFi.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

DEPLOY_PATH = Path(__file__).resolve().parents[2] / "nifi" / "deploy.py"
GROUP = "group-1"


def load_deploy() -> Any:
    spec = importlib.util.spec_from_file_location("nifi_deploy", DEPLOY_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nifi_deploy"] = module
    spec.loader.exec_module(module)
    return module


deploy = load_deploy()


class FakeGroup:
    """Processors that finish validating after a number of status reads, as NiFi's do."""

    def __init__(self, validating_reads: dict[str, int]) -> None:
        self.validating_reads = dict(validating_reads)
        self.state = {name: "STOPPED" for name in validating_reads}
        self.start_requests = 0
        self.lock = threading.Lock()

    def status(self) -> list[dict[str, Any]]:
        with self.lock:
            entities = []
            for name, left in self.validating_reads.items():
                entities.append(
                    {
                        "id": name,
                        "component": {
                            "name": name,
                            "state": self.state[name],
                            "validationStatus": "VALIDATING" if left > 0 else "VALID",
                        },
                    }
                )
                self.validating_reads[name] = max(0, left - 1)
            return entities

    def start(self) -> None:
        with self.lock:
            self.start_requests += 1
            for name, left in self.validating_reads.items():
                if left == 0:  # START_PROCESSORS_FILTER: only VALID processors start
                    self.state[name] = "RUNNING"


@pytest.fixture
def fake_nifi() -> Iterator[tuple[str, FakeGroup]]:
    group = FakeGroup({"Fetch": 0, "Split": 2, "Publish": 4, "Log": 1})

    class Handler(BaseHTTPRequestHandler):
        def reply(self, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            assert self.path == f"/nifi-api/process-groups/{GROUP}/processors"
            self.reply({"processors": group.status()})

        def do_PUT(self) -> None:
            assert self.path == f"/nifi-api/flow/process-groups/{GROUP}"
            length = int(self.headers["Content-Length"])
            assert json.loads(self.rfile.read(length))["state"] == "RUNNING"
            group.start()
            self.reply({"id": GROUP, "state": "RUNNING"})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/nifi-api", group
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def client(api_url: str) -> Any:
    cfg = deploy.Config(
        api_url=api_url,
        username="user",
        password="x" * 12,
        ca_cert=None,
        wait_timeout_s=5,
        variables={},
        template=deploy.TEMPLATE,
    )
    return deploy.NiFi(cfg)


def test_start_waits_for_validation_and_every_processor_runs(
    fake_nifi: tuple[str, FakeGroup], monkeypatch: pytest.MonkeyPatch
) -> None:
    api_url, group = fake_nifi
    monkeypatch.setattr(deploy, "POLL_S", 0.01)
    requests = client(api_url).start(GROUP, timeout_s=10)
    assert set(group.state.values()) == {"RUNNING"}
    assert requests == group.start_requests >= 1


def test_a_single_start_request_leaves_processors_stopped(
    fake_nifi: tuple[str, FakeGroup],
) -> None:
    """The race itself: what deploy.py did before (one start request right away)."""
    api_url, group = fake_nifi
    nifi = client(api_url)
    nifi.processors(GROUP)
    nifi.set_state(GROUP, "RUNNING")
    assert sorted(n for n, s in group.state.items() if s == "STOPPED") == ["Publish", "Split"]


def test_start_gives_up_with_the_states_in_one_line(
    fake_nifi: tuple[str, FakeGroup], monkeypatch: pytest.MonkeyPatch
) -> None:
    api_url, group = fake_nifi
    group.validating_reads["Publish"] = 10**9  # never finishes validating
    monkeypatch.setattr(deploy, "POLL_S", 0.01)
    with pytest.raises(deploy.DeployError) as raised:
        client(api_url).start(GROUP, timeout_s=0.5)
    assert "processors not running after" in str(raised.value)
    assert "Publish=STOPPED" in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        # exactly as NiFi 1.28.1 writes them (ProcessGroupResource.uploadTemplate), HTTP 200
        (
            '<errorResponse status="400" statusText="The specified template is not in a valid '
            'format."/>',
            "The specified template is not in a valid format.",
        ),
        (
            '<errorResponse status="500" statusText="Unable to import the specified template: '
            'Template &quot;Quotes to Kafka&quot; already\nexists &eacute;"/>',
            'Unable to import the specified template: Template "Quotes to Kafka" already exists é',
        ),
        ('<errorResponse status="400"/>', "error status 400"),
    ],
)
def test_upload_error_is_one_line_from_status_text(answer: str, reason: str) -> None:
    assert deploy.upload_error(answer) == reason


def test_an_accepted_upload_is_no_error() -> None:
    accepted = "<templateEntity><template><id>abc</id></template></templateEntity>"
    assert deploy.upload_error(accepted) is None
