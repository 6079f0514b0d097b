"""Dead-letter headers: what a person needs to find, understand and replay a rejected record."""

from __future__ import annotations

from quotes_consumer.deadletter import MAX_VALUE_BYTES, Reject, reason_headers
from quotes_consumer.record import Coordinates, InvalidRecord


def reject(value: bytes | None) -> Reject:
    return Reject(
        source=Coordinates("quotes", 2, 17, 1_700_000_000_000),
        key=b"k",
        value=value,
        headers=[("trace-id", b"t-1")],
        error=InvalidRecord("invalid_json", "Expecting value at line 1 col 1"),
    )


def test_headers_keep_the_originals_and_name_reason_and_source() -> None:
    headers = reason_headers(reject(b"{nope"), "quotes-consumer")
    assert headers == [
        ("trace-id", b"t-1"),
        ("dlq.reason", b"invalid_json"),
        ("dlq.error", b"Expecting value at line 1 col 1"),
        ("dlq.source.topic", b"quotes"),
        ("dlq.source.partition", b"2"),
        ("dlq.source.offset", b"17"),
        ("dlq.source.timestamp", b"1700000000000"),
        ("dlq.consumer.group", b"quotes-consumer"),
    ]


def test_a_value_too_big_for_kafka_is_marked_as_cut() -> None:
    big = b"x" * (MAX_VALUE_BYTES + 10)
    headers = dict(reason_headers(reject(big), "g"))
    assert headers["dlq.value.truncated.from"] == str(len(big)).encode()
    assert "dlq.value.truncated.from" not in dict(reason_headers(reject(b"small"), "g"))
