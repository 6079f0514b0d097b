"""The record contract: examples for each rule, and properties over generated input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import bson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotes_consumer.record import (
    Coordinates,
    InvalidRecord,
    Quote,
    content_hash,
    normalize,
    transform,
)
from quotes_consumer.sinks.mongo import to_document

SOURCE = Coordinates("quotes", 2, 41, 1_700_000_000_123)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LIMIT = 65_536


def accept(document: Any) -> Quote:
    return transform(json.dumps(document).encode(), SOURCE, LIMIT, NOW)


def reason_for(value: bytes | None) -> str:
    with pytest.raises(InvalidRecord) as raised:
        transform(value, SOURCE, LIMIT, NOW)
    assert raised.value.detail, "every rejection says why"
    return raised.value.reason


def test_a_full_record_is_normalized_and_enriched() -> None:
    quote = accept(
        {
            "quote": "  Hello,\n\tworld   again ",
            "character": " Ada  Lovelace ",
            "image": "https://example.org/a.png",
            "characterDirection": "Left",
            "source": "api",
        }
    )
    assert quote.quote == "Hello, world again"
    assert quote.character == "Ada Lovelace"
    assert quote.image == "https://example.org/a.png"
    assert quote.character_direction == "Left"
    assert quote.word_count == 3
    assert quote.content_hash == content_hash("Hello, world again", "Ada Lovelace")
    assert quote.extra == {"source": "api"}
    assert quote.ingested_at == NOW
    assert quote.kafka_timestamp == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert quote.source.record_id == "quotes:2:41"


def test_optional_fields_may_be_absent_or_null() -> None:
    quote = accept({"quote": "q", "character": "c", "image": None})
    assert quote.image is None
    assert quote.character_direction is None


def test_the_hash_ignores_whitespace_but_not_content() -> None:
    a = accept({"quote": "To be  or not", "character": "H"})
    b = accept({"quote": " To be or\nnot ", "character": "H "})
    c = accept({"quote": "To be or not", "character": "Hamlet"})
    assert a.content_hash == b.content_hash != c.content_hash


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty_value"),
        (b"x" * (LIMIT + 1), "too_large"),
        (b"\xff\xfe", "not_utf8"),
        (b"{nope", "invalid_json"),
        (b"[" * 60_000, "invalid_json"),  # deeper than Python's recursion limit
        (b"[1, 2]", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b'{"character": "c"}', "missing_field"),
        (b'{"quote": null, "character": "c"}', "missing_field"),
        (b'{"quote": "q"}', "missing_field"),
        (b'{"quote": " \\n ", "character": "c"}', "empty_field"),
        (b'{"quote": "q", "character": ""}', "empty_field"),
        (b'{"quote": ["q"], "character": "c"}', "wrong_type"),
        (b'{"quote": "q", "character": 7}', "wrong_type"),
        (b'{"quote": "q", "character": "c", "image": 5}', "wrong_type"),
        (b'{"quote": "q", "character": "c", "image": "not a url"}', "invalid_url"),
        (b'{"quote": "q", "character": "c", "image": "javascript:alert(1)"}', "invalid_url"),
        (b'{"quote": "q", "character": "c", "image": "https://"}', "invalid_url"),
        (b'{"quote": "q", "character": "c", "characterDirection": "left"}', "invalid_direction"),
        (b'{"quote": "q", "character": "c", "characterDirection": true}', "wrong_type"),
        (b'{"quote": "a\\u0000b", "character": "c"}', "invalid_text"),
        (b'{"quote": "\\ud800", "character": "c"}', "invalid_text"),
        (b'{"quote": "q", "character": "c", "$set": 1}', "invalid_field_name"),
        (b'{"quote": "q", "character": "c", "a.b": 1}', "invalid_field_name"),
        (b'{"quote": "q", "character": "c", "x": {"$gt": 1}}', "invalid_field_name"),
        (b'{"quote": "q", "character": "c", "_id": "mine"}', "reserved_field"),
        (b'{"quote": "q", "character": "c", "n": 99999999999999999999}', "out_of_range"),
        (b'{"quote": "q", "character": "c", "x": ' + b"[" * 40 + b"]" * 40 + b"}", "too_deep"),
    ],
)
def test_each_rule_has_its_reason(value: bytes | None, reason: str) -> None:
    assert reason_for(value) == reason


def test_the_size_limit_is_the_setting() -> None:
    value = json.dumps({"quote": "q" * 500, "character": "c"}).encode()
    assert transform(value, SOURCE, len(value), NOW).quote == "q" * 500
    with pytest.raises(InvalidRecord, match="too_large"):
        transform(value, SOURCE, len(value) - 1, NOW)


# --- Properties ----------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
texts = st.text(min_size=0, max_size=60)
candidate_records = st.fixed_dictionaries(
    {},
    optional={
        "quote": texts | json_values,
        "character": texts | json_values,
        "image": st.sampled_from(["https://x.org/i.png", "http://h/p", "ftp://x", "", None])
        | json_values,
        "characterDirection": st.sampled_from(["Left", "Right", "Up", "", None]) | json_values,
        "extra": json_values,
        "$bad": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(value=st.binary(max_size=200) | candidate_records.map(lambda d: json.dumps(d).encode()))
def test_any_input_is_either_a_storable_quote_or_a_reasoned_rejection(value: bytes) -> None:
    try:
        quote = transform(value, SOURCE, LIMIT, NOW)
    except InvalidRecord as error:
        rejected = error
    else:
        rejected = None
    if rejected is not None:
        assert rejected.reason
        assert rejected.detail
        return
    # Accepted: PostgreSQL can store every text column, and MongoDB the whole document.
    for text in (quote.quote, quote.character, quote.image or "", quote.character_direction or ""):
        assert "\x00" not in text
        text.encode("utf-8")
    assert quote.quote == normalize(quote.quote) != ""
    assert quote.character == normalize(quote.character) != ""
    assert quote.word_count == len(quote.quote.split()) >= 1
    bson.encode(to_document(quote, NOW))


@settings(max_examples=300, deadline=None)
@given(
    quote=st.text(min_size=1, max_size=80).filter(lambda s: normalize(s) != ""),
    character=st.text(min_size=1, max_size=30).filter(lambda s: normalize(s) != ""),
    padding=st.sampled_from(["", " ", "\n", "\t  "]),
)
def test_valid_quotes_are_accepted_and_hash_like_their_normalized_form(
    quote: str, character: str, padding: str
) -> None:
    if any(c in quote + character for c in "\x00") or not _utf8(quote + character):
        return
    accepted = accept({"quote": padding + quote + padding, "character": character + padding})
    assert accepted.content_hash == content_hash(normalize(quote), normalize(character))
    assert accepted == accept({"quote": normalize(quote), "character": normalize(character)})


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
