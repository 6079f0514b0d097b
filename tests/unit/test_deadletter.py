"""Dead letters: what a person needs to find, understand and replay a rejected record, and a
size that Kafka always accepts, whatever the source record's sizes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from quotes_consumer.deadletter import (
    MAX_DEAD_LETTER_BYTES,
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


@settings(max_examples=120, deadline=None)
@given(
    key_size=st.none() | sizes,
    value_size=st.none() | sizes,
    header_count=st.integers(0, 40),
    header_size=sizes,
    name_size=st.integers(0, 3000),
    detail=st.text(max_size=2000),
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
