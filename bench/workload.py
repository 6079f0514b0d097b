"""Synthetic quote records, and publishing them to Kafka at full speed or at a fixed rate.

Why synthetic and deterministic: every consumer variant and every raw ceiling must see the same
bytes, and a rerun must see the same bytes as the last run, so the records are a pure function of
their index. They are shaped like the quotes API's items (quote, character, image,
characterDirection) with quotes of varying length, and every 50th record (2 %) is invalid in one
of several ways the consumer must dead-letter, so validation and the dead-letter path are part of
what is measured.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer

from quotes_consumer.record import InvalidRecord, Message, Quote, transform
from quotes_consumer.settings import SPEC

INVALID_EVERY = 50  # index % 50 == 49 is invalid: exactly 2 % of any multiple of 50
# The consumer's defaults: every run keeps them, but for the few consumer_env() sets.
CONSUMER_DEFAULTS = {setting.name: setting.default for setting in SPEC}
MAX_RECORD_BYTES = int(CONSUMER_DEFAULTS["CONSUMER_MAX_RECORD_BYTES"])
SEED = 20_240_601

CAST = (
    "Homer Simpson, Marge Simpson, Bart Simpson, Lisa Simpson, Maggie Simpson, Ned Flanders, "
    "Moe Szyslak, Apu Nahasapeemapetilon, Mr. Burns, Waylon Smithers, Chief Wiggum, "
    "Milhouse Van Houten"
)
CHARACTERS = tuple(CAST.split(", "))
VOCABULARY = (
    "donut doh beer nuclear plant springfield school excellent release hounds okily "
    "dokily eat my shorts cowabunga kwik-e-mart thank you come again duff everything's "
    "coming up stupid sexy flanders me fail english that's unpossible mmm forbidden the "
    "goggles do nothing"
)
WORDS = tuple(VOCABULARY.split())
INVALID_VALUES: tuple[bytes, ...] = (
    b'{"quote": "unterminated',  # invalid_json
    json.dumps({"character": "Nobody"}).encode(),  # missing_field
    json.dumps({"quote": 42, "character": "Numbers"}).encode(),  # wrong_type
    json.dumps({"quote": "x", "character": "Y", "image": "ftp://e.org/a.png"}).encode(),
    b'["quote", "character"]',  # not_an_object
    b'{"quote": "caf\xe9", "character": "X"}',  # not_utf8
)
BIG_RECORD_BYTES = 60_000  # the memory phase's record size (issue 8: "60 KB records")
Source = Callable[[int], Iterator[bytes]]


def is_valid(index: int) -> bool:
    return index % INVALID_EVERY != INVALID_EVERY - 1


def counts(total: int) -> tuple[int, int]:
    """(valid, invalid) among records 0..total-1."""
    invalid = total // INVALID_EVERY
    return total - invalid, invalid


def values(total: int) -> Iterator[bytes]:
    """The record values in index order; one random stream, so generation is fast and fixed."""
    rng = random.Random(SEED)
    for index in range(total):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30)))
        character = rng.randrange(len(CHARACTERS))
        if not is_valid(index):
            yield _invalid(index)
        else:
            direction = "Left" if rng.random() < 0.5 else "Right"
            yield _record(f"{text[0].upper()}{text[1:]}. (#{index})", character, direction)


def big_values(total: int, size: int = BIG_RECORD_BYTES) -> Iterator[bytes]:
    """Records of about ``size`` bytes: each valid one is a quote of that length.

    Why a long quote rather than a large extra field: the quote is stored in both databases (an
    extra field only in MongoDB), so every byte of the record goes through both writers. The
    invalid records are the same ones, at the same indexes, as in :func:`values`, so
    :func:`counts` holds for these topics too.
    """
    rng = random.Random(SEED)
    for index in range(total):
        if not is_valid(index):
            yield _invalid(index)
            continue
        words: list[str] = []
        length = 0
        while length < size - 200:  # room for the other fields and the JSON around them
            words.append(rng.choice(WORDS))
            length += len(words[-1]) + 1
        character = rng.randrange(len(CHARACTERS))
        yield _record(f"{' '.join(words)} (#{index})", character, "Left" if index % 2 else "Right")


def _invalid(index: int) -> bytes:
    return INVALID_VALUES[(index // INVALID_EVERY) % len(INVALID_VALUES)]


def _record(quote: str, character: int, direction: str) -> bytes:
    """A valid record, shaped like the quotes API's items."""
    item = {
        "quote": quote,
        "character": CHARACTERS[character],
        "image": f"https://cdn.example.org/simpsons/{character}.png",
        "characterDirection": direction,
    }
    return json.dumps(item).encode()


def _transformed(topic: str, index: int, partitions: int, value: bytes) -> Quote | None:
    """Record ``index`` as the consumer transforms it where it lands (round-robin partitions,
    one producer, so offsets follow), or None if the consumer rejects it."""
    message = Message(
        topic, index % partitions, index // partitions, int(time.time() * 1000), None, value
    )
    try:
        return transform(message, MAX_RECORD_BYTES, datetime.now(UTC))
    except InvalidRecord:
        return None


def transformed_batches(
    topic: str, total: int, partitions: int, batch_size: int
) -> Iterator[list[Quote]]:
    """The valid records as the consumer would transform them, batch by batch.

    For the raw database ceilings: they insert exactly the rows and documents the consumer
    writes, prepared outside the timed region, one batch at a time so that a 1M-record run does
    not hold a million objects.
    """
    batch: list[Quote] = []
    for index, value in enumerate(values(total)):
        quote = _transformed(topic, index, partitions, value)
        if quote is not None:
            batch.append(quote)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def check_classification(sample: int = 500) -> None:
    """The consumer must reject exactly the records this module calls invalid.

    Otherwise the completion check (valid in both databases, invalid in the dead-letter topic)
    would wait for a count that can never be reached; fail fast instead.
    """
    for index, value in enumerate(values(sample)):
        accepted = _transformed("check", index, 1, value) is not None
        if accepted != is_valid(index):
            raise AssertionError(
                f"record {index}: the consumer accepts={accepted}, the bench expects the opposite"
            )


@dataclass(frozen=True)
class Published:
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def publish(
    bootstrap: str,
    topic: str,
    total: int,
    partitions: int,
    *,
    rate: float | None = None,
    progress: Any = None,
    source: Source = values,
) -> Published:
    """Pre-load a topic as fast as kafka-python can, or publish at ``rate`` while a consumer runs.

    At a rate, each record is sent when its slot comes (record i at start + i/rate), with no
    linger, so the Kafka timestamp is the moment the record was produced and the measured
    latency is the consumer's; bounded by twice the planned duration. ``progress`` is an
    optional tqdm bar.
    """
    failed: list[Exception] = []  # appended from the producer's callback thread
    options = {"linger_ms": 0} if rate else {"linger_ms": 50, "batch_size": 512 * 1024}
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","), acks="all", client_id="streamlab-bench", **options
    )
    every = 100 if rate else 1000
    started = time.monotonic()
    try:
        for index, value in enumerate(source(total)):
            if rate:
                due, now = started + index / rate, time.monotonic()
                if now > started + 2 * total / rate + 30:
                    raise RuntimeError(
                        f"publishing at {rate:.0f}/s fell behind: {index} of {total}"
                    )
                if due > now:
                    time.sleep(due - now)
            producer.send(topic, value=value, partition=index % partitions).add_errback(
                failed.append
            )
            if progress is not None and index % every == every - 1:
                progress.update(every)
        producer.flush(timeout=60 if rate else max(60.0, total / 2000))
    finally:
        producer.close(timeout=10)
    if progress is not None:
        progress.update(total % every)
    if failed:
        raise RuntimeError(f"{len(failed)} records not published; first error {failed[0]!r}")
    return Published(total, time.monotonic() - started)
