"""Contract tests for the offline quotes API (quotes-api/app.py), run as a real server.

Why a subprocess and real HTTP: NiFi's GetHTTP -> SplitJson flow and the consumer depend on the
wire format (status codes, a JSON array, field names, content type), not on Python functions.
The server binds port 0 and prints the address it got, so tests never race for a port. The
validity rules here are written independently of the server's code on purpose: they are the
contract the consumer enforces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.quotes_api_server import serve

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "quotes-api" / "app.py"
DATA = REPO / "quotes-api" / "quotes.json"
FIELDS = {"quote", "character", "image", "characterDirection"}
STARTUP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 5.0
MAX_COUNT = 50


# --- Helpers ------------------------------------------------------------------------------------


def malformation(item: Any) -> str | None:
    """None for a valid item, else the kind of defect: the consumer's acceptance rules."""
    if not isinstance(item, dict):
        return "not_an_object"
    if set(item) != FIELDS:
        return "missing_or_extra_field"
    if not all(isinstance(item[name], str) for name in FIELDS):
        return "wrong_type"
    if not item["quote"].strip() or not item["character"].strip():
        return "empty_text"
    url = urlsplit(item["image"])
    if url.scheme not in ("http", "https") or not url.netloc:
        return "bad_url"
    if item["characterDirection"] not in ("Left", "Right"):
        return "bad_direction"
    return None


def get(url: str, method: str = "GET") -> tuple[int, str, Any]:
    """(status, content type, parsed JSON body) for any status, 4xx included."""
    request = urllib.request.Request(url, method=method, data=b"" if method != "GET" else None)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, response.headers["Content-Type"], json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], json.load(error)


def fetch_items(base: str, requests: int, count: int = MAX_COUNT) -> list[Any]:
    items: list[Any] = []
    for _ in range(requests):  # bounded: `requests` round trips, each with a timeout
        status, _, body = get(f"{base}/quotes?count={count}")
        assert status == 200
        assert isinstance(body, list) and len(body) == count
        items.extend(body)
    return items


@pytest.fixture(scope="module")
def clean_server() -> Iterator[str]:
    """One server with no malformed items, shared by the read-only shape tests."""
    with serve("--malformed-rate", "0", "--seed", "1") as base:
        yield base


# --- Shape and bounds ---------------------------------------------------------------------------


def test_healthz(clean_server: str) -> None:
    status, content_type, body = get(f"{clean_server}/healthz")
    assert (status, body) == (200, {"status": "ok"})
    assert content_type.startswith("application/json")


def test_default_count_is_one(clean_server: str) -> None:
    status, content_type, body = get(f"{clean_server}/quotes")
    assert status == 200
    assert content_type == "application/json; charset=utf-8"
    assert isinstance(body, list) and len(body) == 1
    assert malformation(body[0]) is None


@pytest.mark.parametrize("count", [1, 2, 10, MAX_COUNT])
def test_count_is_honoured(clean_server: str, count: int) -> None:
    status, _, body = get(f"{clean_server}/quotes?count={count}")
    assert status == 200 and len(body) == count


def test_rate_zero_gives_only_valid_items(clean_server: str) -> None:
    items = fetch_items(clean_server, requests=20)
    defects = Counter(malformation(item) for item in items)
    assert defects == Counter({None: len(items)})
    # Drawn from the shipped data: several characters and both directions appear.
    assert len({item["character"] for item in items}) >= 10
    assert {item["characterDirection"] for item in items} == {"Left", "Right"}
    assert all(item["image"].startswith("https://") for item in items)


@pytest.mark.parametrize(
    "query",
    [
        "count=abc",
        "count=0",
        f"count={MAX_COUNT + 1}",
        "count=-3",
        "count=",
        "count=1.5",
        "count=1&count=2",
        "count=99999999999999999999",
        "cnt=3",
    ],
)
def test_bad_query_is_a_json_400(clean_server: str, query: str) -> None:
    status, content_type, body = get(f"{clean_server}/quotes?{query}")
    assert status == 400
    assert content_type.startswith("application/json")
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]


@pytest.mark.parametrize("path", ["/", "/quote", "/quotes/1", "/healthz/x"])
def test_unknown_path_is_a_json_404(clean_server: str, path: str) -> None:
    status, content_type, body = get(f"{clean_server}{path}")
    assert status == 404
    assert content_type.startswith("application/json")
    assert "error" in body


def test_post_is_a_json_405(clean_server: str) -> None:
    status, _, body = get(f"{clean_server}/quotes", method="POST")
    assert status == 405 and "error" in body


# --- Malformed items ----------------------------------------------------------------------------


def test_malformed_rate_is_honoured_statistically() -> None:
    rate, requests = 0.2, 40  # 2000 items: expected 400 malformed, standard deviation ~18
    with serve("--malformed-rate", str(rate), "--seed", "20240601") as base:
        items = fetch_items(base, requests=requests)
    defects = Counter(malformation(item) for item in items)
    observed = 1 - defects[None] / len(items)
    # +-0.04 is more than 4 standard deviations: a correct server practically never fails.
    assert abs(observed - rate) <= 0.04, f"observed malformed share {observed:.3f}"
    kinds = {kind for kind in defects if kind is not None}
    assert len(kinds) >= 5, f"malformed items should vary, saw only {sorted(kinds)}"


def test_rate_one_gives_only_malformed_items() -> None:
    with serve("--malformed-rate", "1", "--seed", "3") as base:
        items = fetch_items(base, requests=5)
    assert all(malformation(item) is not None for item in items)


def test_same_seed_gives_the_same_stream() -> None:
    streams = []
    for _ in range(2):
        with serve("--malformed-rate", "0.3", "--seed", "99") as base:
            streams.append(fetch_items(base, requests=3, count=20))
    assert streams[0] == streams[1]


# --- Configuration ------------------------------------------------------------------------------


def test_environment_sets_the_rate_and_flags_win() -> None:
    with serve(env={"QUOTES_MALFORMED_RATE": "1"}) as base:
        assert all(malformation(item) for item in fetch_items(base, requests=2))
    with serve("--malformed-rate", "0", env={"QUOTES_MALFORMED_RATE": "1"}) as base:
        assert not any(malformation(item) for item in fetch_items(base, requests=2))


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--malformed-rate", "1.5"], {}),
        (["--malformed-rate", "x"], {}),
        ([], {"QUOTES_MALFORMED_RATE": "-0.1"}),
        ([], {"QUOTES_API_PORT": "http"}),
    ],
)
def test_bad_configuration_exits_with_status_2(args: list[str], env: dict[str, str]) -> None:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("QUOTES_")}
    result = subprocess.run(
        [sys.executable, str(APP), "--port", "0", *args],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip()


def test_shipped_data_is_original_and_large_enough() -> None:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    quotes = [entry["quote"] for entry in data["quotes"]]
    assert len(quotes) >= 60
    assert len(set(quotes)) == len(quotes), "duplicate quotes"
    assert len(data["characters"]) >= 10
    for character in data["characters"]:
        wire = {
            "quote": "x",
            "character": character["name"],
            "image": character["image"],
            "characterDirection": character["direction"],
        }
        assert malformation(wire) is None, character
