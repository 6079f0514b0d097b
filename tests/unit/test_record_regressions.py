"""Crashes found by fuzzing the record path (tests/fuzz): one test per class, input inline.

Each of these once escaped as an exception other than InvalidRecord from ``record.transform``,
or made ``deadletter.dead_letter`` raise or overflow its budget: either one stops the consumer
on a single record. A new crash found by the fuzzer gets a test here before its fix.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import bson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotes_consumer import record
from quotes_consumer.deadletter import MAX_DEAD_LETTER_BYTES, DeadLetter, Reject, dead_letter
from quotes_consumer.record import InvalidRecord, Message, Quote, transform
from quotes_consumer.sinks.mongo import to_document

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LIMIT = 65_536


def message(value: bytes | None, **fields: object) -> Message:
    parts: dict[str, object] = {
        "topic": "quotes",
        "partition": 0,
        "offset": 1,
        "timestamp_ms": None,
        "key": None,
        "value": value,
    }
    return Message(**(parts | fields))  # type: ignore[arg-type]


def quote_with(extra: bytes) -> bytes:
    """A valid quote with ``extra`` spliced in as raw JSON members."""
    return b'{"quote": "q", "character": "c", ' + extra + b"}"


def rejection(value: bytes, **fields: object) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as raised:
        transform(message(value, **fields), LIMIT, NOW)
    return raised.value


def fits(letter: DeadLetter) -> DeadLetter:
    """What the Kafka client needs of a dead letter: every header name encodes, and it fits."""
    for name, data in letter.headers:
        name.encode("utf-8")
        assert isinstance(data, bytes)
    assert letter.size() <= MAX_DEAD_LETTER_BYTES
    return letter


# --- record.transform ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        "http://[::1",  # urlsplit: ValueError: Invalid IPv6 URL
        "http://a]/",  # the same, from an unbalanced bracket
        "http://a\u2100b/",  # urlsplit: ValueError: netloc ... invalid characters under NFKC
    ],
)
def test_an_image_url_that_urlsplit_refuses_is_invalid_url(image: str) -> None:
    value = quote_with(b'"image": "' + image.encode() + b'"')
    assert rejection(value).reason == "invalid_url"


@pytest.mark.parametrize(
    "image",
    [
        "https://a:99999",  # .port: ValueError: Port out of range 0-65535
        "http://[::1]:99999/",
        "http://a:x/",  # .port: ValueError: Port could not be cast to integer value
        "http://a:-1/",
    ],
)
def test_an_image_url_with_a_bad_port_is_invalid_url(image: str) -> None:
    value = quote_with(b'"image": "' + image.encode() + b'"')
    assert rejection(value).reason == "invalid_url"


@pytest.mark.parametrize("image", ["http://a\\nb/", "http://a\\tb/", "http://a\\rb/", "http://a b"])
def test_an_image_url_with_whitespace_is_invalid_url(image: str) -> None:
    """urlsplit drops tabs and newlines before parsing, so "http://a\\nb/" passed as host "ab"
    and was stored with its newline."""
    value = quote_with(b'"image": "' + image.encode() + b'"')
    assert rejection(value).reason == "invalid_url"


@pytest.mark.parametrize("digits", [4301, 5000])
def test_an_integer_literal_past_pythons_digit_limit_is_invalid_json(digits: int) -> None:
    """json.loads raised plain ValueError ("Exceeds the limit (4300 digits) for integer string
    conversion"), not JSONDecodeError, for a number that cannot fit 64 bits anyway."""
    assert rejection(quote_with(b'"n": ' + b"1" * digits)).reason == "invalid_json"
    assert rejection(quote_with(b'"n": [-' + b"9" * digits + b"]")).reason == "invalid_json"
    assert rejection(b'{"quote": ' + b"7" * digits + b', "character": "c"}').reason == (
        "invalid_json"
    )


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_literals_are_invalid_json(literal: bytes) -> None:
    """Python's json accepts them; RFC 8259 has no such numbers, and no other parser reads them."""
    assert rejection(quote_with(b'"n": ' + literal)).reason == "invalid_json"


@pytest.mark.parametrize("literal", [b"1e400", b"-1e400", b"1" * 400 + b".0"])
def test_a_float_literal_beyond_64_bits_is_out_of_range(literal: bytes) -> None:
    """json.loads turns 1e400 into inf: a value the producer did not send, which BSON stores
    and no JSON reader gives back. Rejected like an integer beyond 64 bits."""
    assert rejection(quote_with(b'"n": {"x": ' + literal + b"}")).reason == "out_of_range"


def test_a_tiny_float_and_negative_zero_are_stored_as_parsed() -> None:
    quote = transform(message(quote_with(b'"small": 1e-400, "zero": -0.0')), LIMIT, NOW)
    assert quote.extra == {"small": 0.0, "zero": -0.0}
    bson.encode(to_document(quote, NOW))


def test_an_extra_message_id_field_is_reserved() -> None:
    """to_document sets message_id for a record with a uuid header, after the extras: an extra
    "message_id" was silently replaced, or stored as if the consumer had set it."""
    assert rejection(quote_with(b'"message_id": "mine"')).reason == "reserved_field"


# --- dead letters of what transform rejects ------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        b'"x": {"\\ud800": "\\u0000"}',  # invalid_text at path x.<surrogate>
        b'"\\ud800": "\\u0000"',  # invalid_text at a top-level name with a surrogate
        b'"x": {"\\ud800": 99999999999999999999}',  # out_of_range
        b'"x": {"\\udc00$": 1}',  # invalid_field_name
    ],
)
def test_a_rejection_detail_naming_a_surrogate_field_is_readable_and_dead_letters(
    extra: bytes,
) -> None:
    """The detail named the field with its lone surrogate; dead_letter's ``text.encode()``
    raised UnicodeEncodeError, which stopped the consumer."""
    value = quote_with(extra)
    error = rejection(value)
    error.detail.encode("utf-8")
    assert "\\ud800" in error.detail or "\\udc00" in error.detail, error.detail
    letter = fits(dead_letter(Reject(message(value), error.reason, error.detail), "g"))
    assert letter.value == value


def test_a_rejection_detail_stays_short_whatever_the_field_name() -> None:
    error = rejection(quote_with(b'"' + b"k" * 30_000 + b'": {"' + b"n" * 30_000 + b'": 1e400}'))
    assert error.reason == "out_of_range"
    assert len(error.detail) < 500


def test_a_rejection_detail_stays_short_for_a_deep_path_of_escaped_names() -> None:
    """Found by the fuzzer: each name was cut to 40 characters before escaping, so names of
    supplementary code points (ten characters each as ``\\U000f0f0f``) three levels deep made
    a 1,050-character detail; at ``MAX_DEPTH`` levels it could pass 14,000."""
    name = "\U000f0f0f" * 100
    value: object = "\x00"
    for _ in range(record.MAX_DEPTH - 1):
        value = {name: value}
    error = rejection(quote_with(b'"x": ' + json.dumps(value).encode()))
    assert error.reason == "invalid_text"
    assert len(error.detail) < 500, len(error.detail)
    assert "levels)" in error.detail and "(100 chars)" in error.detail


@given(
    st.lists(
        st.one_of(
            st.text(min_size=1, max_size=120),
            st.text(min_size=40).map(lambda s: s * 3),  # names past the cut, often
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=record.MAX_DEPTH - 1,
    )
)
@settings(max_examples=300, deadline=None)
def test_a_rejection_detail_is_short_and_readable_whatever_the_path(
    path: list[str | int],
) -> None:
    """Any path of names and list indexes down to a NUL: the detail names it in a bounded,
    UTF-8-encodable text, or the record is refused earlier for one of its names."""
    value: object = "\x00"
    for step in reversed(path):
        value = [None] * step + [value] if isinstance(step, int) else {step: value}
    error = rejection(quote_with(b'"x": ' + json.dumps(value).encode()))
    assert error.reason in {"invalid_text", "invalid_field_name"}, error
    assert len(error.detail) < 500, len(error.detail)
    error.detail.encode("utf-8")


# --- dead_letter ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "detail", "group"),
    [
        ("\ud800", "d", "g"),
        ("r", "\ud800", "g"),
        ("r", "x" * 499 + "\udfff", "g"),
        ("r", "d", "\udc80"),
    ],
)
def test_a_dead_letter_with_a_lone_surrogate_in_its_texts_is_built(
    reason: str, detail: str, group: str
) -> None:
    letter = fits(dead_letter(Reject(message(b"{"), reason, detail), group))
    headers = dict(letter.headers)
    assert b"\\ud" in headers["dlq.reason"] + headers["dlq.error"] + headers["dlq.consumer.group"]


def test_a_dead_letter_for_a_header_name_with_a_lone_surrogate_is_built() -> None:
    """_headers_size called ``name.encode()`` on the original header names."""
    letter = fits(dead_letter(Reject(message(b"{", headers=(("\ud800", b"v"),)), "r", "d"), "g"))
    assert ("\\ud800", b"v") in letter.headers


def test_a_dead_letter_for_a_topic_with_a_lone_surrogate_is_built() -> None:
    letter = fits(dead_letter(Reject(message(b"{", topic="q\udfff"), "r", "d"), "g"))
    assert dict(letter.headers)["dlq.source.topic"] == b"q\\udfff"


@pytest.mark.parametrize("field", ["reason", "group", "topic"])
def test_a_dead_letter_with_a_huge_context_text_still_fits(field: str) -> None:
    """Only the detail was cut: a reason (or group, or topic) of 2 MB made a 2 MB dead letter."""
    huge = "r" * 2_000_000
    source = message(b"v" * 500_000, topic=huge if field == "topic" else "quotes")
    reason = huge if field == "reason" else "r"
    letter = fits(dead_letter(Reject(source, reason, "d"), huge if field == "group" else "g"))
    assert letter.value == b"v" * 500_000


@pytest.mark.parametrize("number", [10**5000, -(10**5000)], ids=["10**5000", "-10**5000"])
def test_a_dead_letter_for_coordinates_past_pythons_digit_limit_is_built(number: int) -> None:
    """str() of an integer over 4300 digits raises ValueError; a dead letter names any message."""
    source = message(b"{", partition=number, offset=number, timestamp_ms=number)
    fits(dead_letter(Reject(source, "r", "d"), "g"))


def test_a_valid_quote_still_passes() -> None:
    assert isinstance(transform(message(quote_with(b'"n": 1')), LIMIT, NOW), Quote)


# --- Faster, and the same: each shortcut against what it replaced -------------------------------


def test_the_url_check_refuses_exactly_whitespace_and_control_characters() -> None:
    """One regular expression replaced a per-character test: the same verdict for every
    code point."""
    differ = [
        code
        for code in range(sys.maxunicode + 1)
        if bool(record._SPACE_OR_CONTROL.search(chr(code)))
        != (chr(code).isspace() or unicodedata.category(chr(code)) == "Cc")
    ]
    assert differ == []


def decode_as_before(value: bytes) -> dict[str, Any]:
    """``record.decode`` as it was, with ``json.loads`` and its hooks (a decoder per call)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRecord("not_utf8", f"invalid UTF-8 at byte {error.start}") from None
    try:
        document = json.loads(
            text, parse_int=record._parse_int, parse_constant=record._parse_constant
        )
    except json.JSONDecodeError as error:
        detail = f"{error.msg} at line {error.lineno} col {error.colno}"
        raise InvalidRecord("invalid_json", detail) from None
    except RecursionError:
        raise InvalidRecord("invalid_json", "nested too deeply") from None
    if not isinstance(document, dict):
        raise InvalidRecord("not_an_object", "")
    return document


def decoded(decode: Callable[[bytes], dict[str, Any]], value: bytes) -> object:
    try:
        return decode(value)
    except InvalidRecord as error:
        return (error.reason, "" if error.reason == "not_an_object" else error.detail)


JSONISH = st.from_regex(r"\A\ufeff?[\[\]{}\",:0-9eE.+\-a-zNIfy \n]*\Z")


@given(st.one_of(st.text(), JSONISH, st.binary()))
@settings(max_examples=1000, deadline=None)
def test_one_shared_decoder_reads_and_refuses_as_json_loads_did(text: str | bytes) -> None:
    """The module's decoder replaced ``json.loads`` with hooks: the same document, or the same
    rejection and detail, for any bytes."""
    value = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    now = decoded(lambda v: record.decode(v, len(v) + 1), value)
    assert now == decoded(decode_as_before, value)


@given(st.lists(st.one_of(st.text(max_size=60), st.sampled_from(["http://a/", "https://h:1/x"]))))
@settings(max_examples=200, deadline=None)
def test_a_remembered_url_verdict_is_the_parsers_verdict(images: list[str]) -> None:
    """The image check remembers its answers: seen twice or once, every URL gets the verdict
    the parser gives it fresh."""
    for image in images + images:
        assert record._is_known_http_url(image) == record._is_http_url(image)


def test_the_remembered_url_checks_stay_bounded() -> None:
    """At most ``maxsize`` URLs are remembered, and none past ``MAX_REMEMBERED_URL_CHARS``."""
    long_url = "http://h/" + "p" * record.MAX_REMEMBERED_URL_CHARS
    before = record._is_known_http_url.cache_info()
    record.transform(
        message(json.dumps({"quote": "q", "character": "c", "image": long_url}).encode()),
        LIMIT,
        NOW,
    )
    assert record._is_known_http_url.cache_info() == before
    for number in range(1_100):
        record._is_known_http_url(f"http://h{number}/")
    info = record._is_known_http_url.cache_info()
    assert info.currsize == info.maxsize == 1_024
