"""The three steps of the flow (fetch, split, publish) and the synthetic load generator.

Kept free of argument parsing so the tests call the same functions the CLI does.
"""

from __future__ import annotations

import json
import random
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer

FETCH_TIMEOUT_S = 30.0
# How long close()/flush() may wait for the broker's acknowledgements before giving up.
FLUSH_TIMEOUT_S = 60.0

CHARACTERS = (
    ("Grandma Ivy Thistlewood", "Left"),
    ("Nell Huckabee", "Right"),
    ("Oswin the Parrot", "Left"),
    ("Captain Marlow Finch", "Right"),
)
WORDS = (
    "kettle", "garden", "storm", "lantern", "biscuit", "harbour", "ledger", "thimble",
    "compass", "pudding", "meadow", "anchor", "sparrow", "teapot", "quill", "orchard",
)  # fmt: skip


class FetchError(RuntimeError):
    """The API did not return a JSON array; the message says what it returned instead."""


def fetch_quotes(api_url: str, timeout_s: float = FETCH_TIMEOUT_S) -> list[Any]:
    """GET the API and return the decoded JSON array (GetHTTP + the array check of SplitJson)."""
    req = urllib.request.Request(api_url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        body = resp.read()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise FetchError(f"{api_url} did not return JSON: {body[:120]!r}") from exc
    if not isinstance(data, list):
        raise FetchError(f"{api_url} returned a JSON {type(data).__name__}, not an array")
    return data


def split_records(items: Iterable[Any]) -> Iterator[bytes]:
    """One compact JSON document per array element, as SplitJson with ``$.*`` emits them.

    Elements are not validated here: a malformed quote is the consumer's to reject (it sends it
    to the dead-letter topic), exactly as with the NiFi flow.
    """
    for item in items:
        yield json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


def make_producer(bootstrap: str, client_id: str = "quotes-producer") -> KafkaProducer:
    """A producer with the flow's delivery guarantee: acks=all, in order, retried.

    One request in flight per connection keeps records in send order within a partition even
    when a batch is retried.
    """
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        retries=5,
        max_in_flight_requests_per_connection=1,
        linger_ms=5,
        request_timeout_ms=30_000,
    )


@dataclass
class PublishResult:
    """What was sent where, in send order: lets a caller check count, placement and ordering."""

    count: int = 0
    # (partition, offset) of record i, for every record in send order
    placements: list[tuple[int, int]] = field(default_factory=list)


def publish(
    producer: KafkaProducer,
    topic: str,
    records: Iterable[bytes],
    on_sent: Callable[[], None] | None = None,
    pace: Callable[[int], None] | None = None,
) -> PublishResult:
    """Send records, wait until every one is acknowledged, and report where they landed.

    Raises the first delivery error (after the client's retries): a record is never dropped
    silently.
    """
    futures = []
    for index, record in enumerate(records):
        if pace is not None:
            pace(index)
        futures.append(producer.send(topic, value=record))
        if on_sent is not None:
            on_sent()
    producer.flush(timeout=FLUSH_TIMEOUT_S)
    result = PublishResult()
    for future in futures:
        meta = future.get(timeout=FLUSH_TIMEOUT_S)
        result.count += 1
        result.placements.append((meta.partition, meta.offset))
    return result


def synthetic_quote(rng: random.Random, seq: int) -> dict[str, str]:
    """A well-formed quote with the API's four fields."""
    character, direction = rng.choice(CHARACTERS)
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10)))
    slug = character.lower().replace(" ", "-")
    return {
        "quote": f"{words.capitalize()} (#{seq}).",
        "character": character,
        "image": f"https://static.example.org/streamlab/characters/{slug}.png",
        "characterDirection": direction,
    }


def invalid_record(rng: random.Random, seq: int) -> bytes:
    """One of the ways a record can be wrong, each of which the consumer must reject."""
    good = synthetic_quote(rng, seq)
    kind = rng.randrange(4)
    if kind == 0:
        return b'{"quote": "truncated'  # not JSON
    if kind == 1:
        del good["character"]  # missing field
    elif kind == 2:
        good["quote"] = ""  # empty text
    else:
        good["characterDirection"] = 42  # type: ignore[assignment]  # wrong type
    return json.dumps(good, separators=(",", ":")).encode()


def synthetic_records(count: int, invalid_rate: float, seed: int | None) -> Iterator[bytes]:
    """``count`` records; each is invalid with probability ``invalid_rate`` (reproducible)."""
    rng = random.Random(seed)
    for seq in range(count):
        if invalid_rate > 0 and rng.random() < invalid_rate:
            yield invalid_record(rng, seq)
        else:
            yield json.dumps(synthetic_quote(rng, seq), separators=(",", ":")).encode()


def pacer(rate: float) -> Callable[[int], None]:
    """Sleep so that record ``i`` is sent no earlier than ``i / rate`` s after the first."""
    start = time.monotonic()

    def wait(index: int) -> None:
        if rate <= 0:
            return
        delay = start + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    return wait
