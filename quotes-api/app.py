"""Offline stand-in for the public quotes API that the original lab polled.

Why it exists: the public API the lab was written against is gone, and the lab must run with no
internet at all. This server keeps the same response shape (a JSON array of
``{"quote", "character", "image", "characterDirection"}`` objects) so NiFi's GetHTTP ->
SplitJson flow needs no change, and it deliberately emits a configurable share of malformed
items so the consumer's validation and dead-letter path get exercised on every run.

Standard library only, one file, so the image is a plain ``python:*-slim`` with nothing to
install and the test suite can start it as a subprocess.

Run: ``python quotes-api/app.py --host 0.0.0.0 --port 8080 --malformed-rate 0.02 --seed 7``.
The port and rate can also come from ``QUOTES_API_PORT`` and ``QUOTES_MALFORMED_RATE``
(command-line flags win). ``--port 0`` picks a free port; the first line on stdout always
names the address actually bound, so a test harness can read it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_DATA_FILE = Path(__file__).with_name("quotes.json")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MALFORMED_RATE = 0.02
MIN_COUNT = 1
MAX_COUNT = 50
DIRECTIONS = ("Left", "Right")

# One JSON-serialisable item as sent on the wire; malformed items need not be objects.
Item = Any


@dataclass(frozen=True)
class Quote:
    """One well-formed record, exactly as the consumer expects to receive it."""

    quote: str
    character: str
    image: str
    direction: str

    def to_wire(self) -> dict[str, str]:
        """Field names follow the original API (camelCase ``characterDirection``)."""
        return {
            "quote": self.quote,
            "character": self.character,
            "image": self.image,
            "characterDirection": self.direction,
        }


def load_quotes(path: Path) -> list[Quote]:
    """Read and check the shipped data file.

    Checked at start so a typo in ``quotes.json`` stops the server with a clear message instead
    of leaking an unintended malformed record that the tests would count against the rate.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    characters: dict[str, dict[str, str]] = {}
    for entry in data["characters"]:
        name = entry["name"]
        if entry["direction"] not in DIRECTIONS:
            raise ValueError(f"{path}: character {name!r} has direction {entry['direction']!r}")
        if not entry["image"].startswith(("https://", "http://")):
            raise ValueError(f"{path}: character {name!r} has a non-http image URL")
        characters[name] = entry
    quotes: list[Quote] = []
    for entry in data["quotes"]:
        who = characters.get(entry["character"])
        if who is None:
            raise ValueError(f"{path}: quote names unknown character {entry['character']!r}")
        text = entry["quote"].strip()
        if not text:
            raise ValueError(f"{path}: empty quote for {entry['character']!r}")
        quotes.append(Quote(text, who["name"], who["image"], who["direction"]))
    if not quotes:
        raise ValueError(f"{path}: no quotes")
    return quotes


# --- Malformed items --------------------------------------------------------------------------
# Each corruption breaks exactly one rule of the contract, so a consumer test can tell which
# check caught it. They are listed by name to keep the kinds visible in logs and tests.


def _missing_quote(item: dict[str, str], rng: random.Random) -> Item:
    del item["quote"]
    return item


def _empty_character(item: dict[str, str], rng: random.Random) -> Item:
    item["character"] = rng.choice(["", "   "])
    return item


def _wrong_type(item: dict[str, str], rng: random.Random) -> Item:
    field = rng.choice(["quote", "character", "characterDirection"])
    bad: Any = rng.choice([42, 3.5, None, True, ["not", "a", "string"], {"text": "nested"}])
    item[field] = bad
    return item


def _bad_url(item: dict[str, str], rng: random.Random) -> Item:
    item["image"] = rng.choice(
        ["not a url", "ftp://files.example.org/pic.png", "//missing-scheme.example.org/a.png", ""]
    )
    return item


def _bad_direction(item: dict[str, str], rng: random.Random) -> Item:
    item["characterDirection"] = rng.choice(["Up", "Down", "Sideways", "", "left", "RIGHT"])
    return item


def _not_an_object(item: dict[str, str], rng: random.Random) -> Item:
    return rng.choice([item["quote"], 17, None, [item["quote"], item["character"]], True])


CORRUPTIONS: dict[str, Callable[[dict[str, str], random.Random], Item]] = {
    "missing_quote": _missing_quote,
    "empty_character": _empty_character,
    "wrong_type": _wrong_type,
    "bad_url": _bad_url,
    "bad_direction": _bad_direction,
    "not_an_object": _not_an_object,
}


class QuoteGenerator:
    """Draws items from the shipped quotes, corrupting each with probability ``malformed_rate``.

    One seeded RNG behind a lock: requests are served on threads, and a shared, locked RNG keeps
    a sequential client's stream reproducible for a given seed.
    """

    def __init__(self, quotes: Sequence[Quote], malformed_rate: float, seed: int | None) -> None:
        if not 0.0 <= malformed_rate <= 1.0:
            raise ValueError("malformed_rate must be between 0 and 1")
        self._quotes = list(quotes)
        self._rate = malformed_rate
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._corruptions = list(CORRUPTIONS.values())

    def batch(self, count: int) -> list[Item]:
        """Return ``count`` items; a rate of 0 never corrupts and a rate of 1 always does."""
        with self._lock:
            items: list[Item] = []
            for _ in range(count):
                item: Item = self._rng.choice(self._quotes).to_wire()
                if self._rng.random() < self._rate:
                    item = self._rng.choice(self._corruptions)(item, self._rng)
                items.append(item)
            return items


# --- HTTP ------------------------------------------------------------------------------------


class QueryError(ValueError):
    """A bad request; the message goes back to the client in the JSON error body."""


def parse_count(query: str) -> int:
    """Parse ``count`` strictly: no default-on-garbage, so NiFi misconfigurations show up."""
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - {"count"})
    if unknown:
        raise QueryError(f"unknown query parameter(s): {', '.join(unknown)}")
    values = params.get("count")
    if values is None:
        return 1
    if len(values) != 1:
        raise QueryError("count must be given at most once")
    raw = values[0].strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,6}", raw):
        raise QueryError(f"count must be an integer from {MIN_COUNT} to {MAX_COUNT}")
    count = int(raw)
    if not MIN_COUNT <= count <= MAX_COUNT:
        raise QueryError(f"count must be an integer from {MIN_COUNT} to {MAX_COUNT}")
    return count


class QuotesHandler(BaseHTTPRequestHandler):
    """Routes ``GET /quotes`` and ``GET /healthz``; everything else is a JSON 404/405."""

    server_version = "streamlab-quotes-api/1"
    generator: QuoteGenerator  # set on a subclass by make_server()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._send_json(HTTPStatus.OK, {"status": "ok"})
            return
        if url.path != "/quotes":
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such path: {url.path}"})
            return
        try:
            count = parse_count(url.query)
        except QueryError as error:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        self._send_json(HTTPStatus.OK, self.generator.batch(count))

    def _method_not_allowed(self) -> None:
        self._send_json(
            HTTPStatus.METHOD_NOT_ALLOWED, {"error": "only GET is supported"}, allow="GET"
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = _method_not_allowed  # noqa: N815

    def _send_json(self, status: HTTPStatus, body: Any, allow: str | None = None) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # One line per request on stderr, as the container log; stdout is kept for the
        # "listening on" line that test harnesses parse.
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def make_server(host: str, port: int, generator: QuoteGenerator) -> ThreadingHTTPServer:
    """Bind the server; a handler subclass carries the generator instead of a global."""
    handler = type("BoundQuotesHandler", (QuotesHandler,), {"generator": generator})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def _rate(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {raw!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


def parse_args(argv: Sequence[str] | None, environ: dict[str, str]) -> argparse.Namespace:
    """Flags win over the environment, which wins over the built-in defaults."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=environ.get("QUOTES_API_HOST", DEFAULT_HOST))
    parser.add_argument(
        "--port",
        type=_port,
        default=_port(environ.get("QUOTES_API_PORT", str(DEFAULT_PORT))),
        help="0 picks a free port (env QUOTES_API_PORT)",
    )
    parser.add_argument(
        "--malformed-rate",
        type=_rate,
        default=_rate(environ.get("QUOTES_MALFORMED_RATE", str(DEFAULT_MALFORMED_RATE))),
        help="probability that an item is malformed (env QUOTES_MALFORMED_RATE)",
    )
    seed_env = environ.get("QUOTES_API_SEED", "").strip()
    parser.add_argument(
        "--seed",
        type=int,
        default=int(seed_env) if seed_env else None,
        help="RNG seed for a reproducible stream (env QUOTES_API_SEED; default: random)",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_FILE, help="quotes file")
    return parser.parse_args(argv)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted or terminated."""
    try:
        args = parse_args(argv, dict(os.environ))
    except argparse.ArgumentTypeError as error:  # a bad environment variable
        print(f"quotes-api: {error}", file=sys.stderr)
        return 2
    generator = QuoteGenerator(load_quotes(args.data), args.malformed_rate, args.seed)
    server = make_server(args.host, args.port, generator)
    # As PID 1 in a container, SIGTERM is ignored unless handled: without this, `docker stop`
    # would wait its full grace period and then SIGKILL.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    print(
        f"quotes-api listening on http://{host}:{port} "
        f"(malformed_rate={args.malformed_rate}, seed={args.seed})",
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
