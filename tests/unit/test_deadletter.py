"""Dead letters: what a person needs to find, understand and replay a rejected record, and a
size that Kafka always accepts, whatever the source record's sizes."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from quotes_consumer.deadletter import (
    MAX_CONTEXT_CHARS,
    MAX_DEAD_LETTER_BYTES,
    MAX_ERROR_CHARS,
    DeadLetterPublisher,
    Reject,
    dead_letter,
)
from quotes_consumer.record import Message


def reject(
    value: bytes | None, key: bytes | None = b"k", headers=(("trace-id", b"t-1"),)
) -> Reject:
    return Reject(
        Message("quotes", 2, 17, 1_700_000_000_000, key, value, tuple(headers)),
        "invalid_json",
        "Expecting value at line 1 col 1",
    )


def test_headers_keep_the_originals_and_name_reason_and_source() -> None:
    letter = dead_letter(reject(b"{nope"), "quotes-consumer")
    assert letter.key == b"k" and letter.value == b"{nope"
    assert letter.headers == [
        ("trace-id", b"t-1"),
        ("dlq.reason", b"invalid_json"),
        ("dlq.error", b"Expecting value at line 1 col 1"),
        ("dlq.source.topic", b"quotes"),
        ("dlq.source.partition", b"2"),
        ("dlq.source.offset", b"17"),
        ("dlq.source.timestamp", b"1700000000000"),
        ("dlq.consumer.group", b"quotes-consumer"),
    ]


def test_a_value_too_big_for_kafka_is_cut_and_marked() -> None:
    big = b"x" * MAX_DEAD_LETTER_BYTES
    letter = dead_letter(reject(big), "g")
    assert dict(letter.headers)["dlq.value.truncated.from"] == str(len(big)).encode()
    assert letter.size() <= MAX_DEAD_LETTER_BYTES
    assert big.startswith(letter.value or b"")
    assert "dlq.value.truncated.from" not in dict(dead_letter(reject(b"small"), "g").headers)


def test_a_huge_key_and_huge_headers_are_cut_and_marked() -> None:
    headers = [(f"h{i}", b"v" * 50_000) for i in range(30)]
    letter = dead_letter(reject(b"{}", key=b"k" * 2_000_000, headers=headers), "g")
    marks = dict(letter.headers)
    assert marks["dlq.key.truncated.from"] == b"2000000"
    assert marks["dlq.headers.truncated.from"] == b"30"
    assert letter.value == b"{}"
    assert letter.size() <= MAX_DEAD_LETTER_BYTES


def test_a_record_with_neither_key_nor_value_gets_an_empty_key() -> None:
    letter = dead_letter(reject(None, key=None), "g")
    assert letter.key == b"" and letter.value is None


sizes = st.sampled_from([0, 1, 100, 16_384, 16_385, 900_000, 1_100_000])
# Any code point, lone surrogates included: a detail may quote a field name that holds one.
any_chars = st.characters(exclude_categories=()) | st.sampled_from(["\ud800", "\udfff", "\x00"])
any_texts = st.text(any_chars, max_size=40)
long_texts = st.builds(
    lambda text, times: text * times, any_texts, st.sampled_from([1, 1000, 60_000])
)
any_ints = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([2**64, 10**5000, -(10**5000)])


@settings(max_examples=120, deadline=None)
@given(
    key_size=st.none() | sizes,
    value_size=st.none() | sizes,
    header_count=st.integers(0, 40),
    header_size=sizes,
    name_size=st.integers(0, 3000),
    detail=st.text(any_chars, max_size=2000),
)
def test_every_dead_letter_fits_and_every_cut_is_marked(
    key_size: int | None,
    value_size: int | None,
    header_count: int,
    header_size: int,
    name_size: int,
    detail: str,
) -> None:
    key = None if key_size is None else b"k" * key_size
    value = None if value_size is None else b"v" * value_size
    headers = tuple((("n" * name_size) + str(i), b"h" * header_size) for i in range(header_count))
    message = Message("quotes", 0, 1, None, key, value, headers)
    letter = dead_letter(Reject(message, "reason", detail), "group")
    marks = dict(letter.headers)
    assert letter.size() <= MAX_DEAD_LETTER_BYTES
    assert (letter.value != value) == ("dlq.value.truncated.from" in marks)
    assert (key is not None and letter.key != key) == ("dlq.key.truncated.from" in marks)
    kept_originals = [h for h in letter.headers if not h[0].startswith("dlq.")]
    assert (len(kept_originals) < header_count) == ("dlq.headers.truncated.from" in marks)


@settings(max_examples=150, deadline=None)
@given(
    reason=any_texts | long_texts,
    detail=any_texts | long_texts,
    group=any_texts | long_texts,
    topic=any_texts | long_texts,
    coordinates=st.tuples(any_ints, any_ints, st.none() | any_ints),
    headers=st.lists(
        st.tuples(any_texts | long_texts, st.none() | st.binary(max_size=30)), max_size=6
    ),
    value_size=st.none() | sizes,
)
def test_any_reject_gives_a_dead_letter_that_encodes_and_fits(
    reason: str,
    detail: str,
    group: str,
    topic: str,
    coordinates: tuple[int, int, int | None],
    headers: list[tuple[str, bytes | None]],
    value_size: int | None,
) -> None:
    """Whatever the texts (lone surrogates, megabytes) and numbers: no exception, and a record
    the Kafka client can send (it encodes header names strictly) within the budget."""
    partition, offset, timestamp = coordinates
    value = None if value_size is None else b"v" * value_size
    message = Message(topic, partition, offset, timestamp, b"k", value, tuple(headers))
    letter = dead_letter(Reject(message, reason, detail), group)
    assert letter.size() <= MAX_DEAD_LETTER_BYTES
    for name, data in letter.headers:
        name.encode("utf-8")
        assert isinstance(data, bytes)
    marks = dict(letter.headers)
    assert marks["dlq.reason"] == reason[:MAX_CONTEXT_CHARS].encode("utf-8", "backslashreplace")
    assert len(marks["dlq.error"]) <= 6 * MAX_ERROR_CHARS
    assert (letter.value != value) == ("dlq.value.truncated.from" in marks)


def test_closing_does_not_wait_for_a_producer_still_bootstrapping() -> None:
    """Kafka away since startup: the background connect waits up to the publish deadline (here
    30 s) to bootstrap, and a SIGTERM meanwhile must still end the process within seconds.
    Nothing listens on port 9: the connection is refused at once, and retried."""
    publisher = DeadLetterPublisher("127.0.0.1:9", "quotes.dlq", "group", timeout_s=30.0)
    publisher.connect_soon()
    time.sleep(0.2)  # the connect thread holds the producer's lock by now
    started = time.monotonic()
    publisher.close(timeout_s=0.5)
    assert time.monotonic() - started < 5.0
