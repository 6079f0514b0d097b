"""The record contract: examples for each rule, and properties over generated input."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotes_consumer import record
from quotes_consumer.deadletter import MAX_DEAD_LETTER_BYTES, Reject, dead_letter
from quotes_consumer.record import (
    REASONS,
    InvalidRecord,
    Message,
    Quote,
    content_hash,
    normalize,
    transform,
)
from quotes_consumer.sinks.mongo import to_document
from quotes_consumer.sinks.postgres import COLUMNS, to_json, to_row
from tests import json_parity

TIMESTAMP_MS = 1_700_000_000_123


def message(value: bytes | None, **fields: Any) -> Message:
    """A record at quotes/2/41, with ``fields`` overriding any part of it."""
    parts: dict[str, Any] = {
        "topic": "quotes",
        "partition": 2,
        "offset": 41,
        "timestamp_ms": TIMESTAMP_MS,
        "key": None,
        "value": value,
    }
    return Message(**(parts | fields))


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LIMIT = 65_536


def accept(document: Any) -> Quote:
    return transform(message(json.dumps(document).encode()), LIMIT, NOW)


def reason_for(value: bytes | None) -> str:
    with pytest.raises(InvalidRecord) as raised:
        transform(message(value), LIMIT, NOW)
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
    assert quote.message.record_id == "quotes:2:41"


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
    assert transform(message(value), len(value), NOW).quote == "q" * 500
    with pytest.raises(InvalidRecord, match="too_large"):
        transform(message(value), len(value) - 1, NOW)


# --- Properties ----------------------------------------------------------------------------------


class Literal:
    """A JSON fragment written as is: what ``json.dumps`` cannot write (an integer of thousands
    of digits, ``1e400``) or will not (``NaN``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Literal({self.text[:30]!r}{'...' if len(self.text) > 30 else ''})"


def dumps(value: Any, ensure_ascii: bool = True) -> bytes:
    """``value`` as a producer might send it, ``Literal`` fragments spliced in. A lone
    surrogate is escaped (ensure_ascii) or sent as the invalid UTF-8 some producers send."""

    def write(item: Any) -> str:
        if isinstance(item, Literal):
            return item.text
        if isinstance(item, list):
            return "[" + ",".join(write(child) for child in item) + "]"
        if isinstance(item, dict):
            members = (f"{write(str(k))}:{write(v)}" for k, v in item.items())
            return "{" + ",".join(members) + "}"
        return json.dumps(item, ensure_ascii=ensure_ascii)

    return write(value).encode("utf-8", "surrogatepass")


# Any code point, lone surrogates included (hypothesis leaves them out unless asked), and the
# characters the contract has a rule for, often enough to matter.
odd_chars = st.sampled_from(["\x00", "\ud800", "\udfff", "$", ".", "\n", "\u2028", "\U0001f600"])
any_chars = st.characters(exclude_categories=()) | odd_chars
any_texts = st.text(any_chars, max_size=20)
any_keys = any_texts | st.sampled_from(["_id", "$set", "a.b", "", "message_id", "kafka", "\ud800"])
big_integers = st.builds(
    lambda digits, sign: Literal(sign + "9" * digits),
    st.sampled_from([19, 20, 640, 641, 4300, 4301, 6000]) | st.integers(1, 8000),
    st.sampled_from(["", "-"]),
)
float_literals = st.sampled_from(
    [
        *("1e400", "-1e400", "1e-400", "-0", "-0.0", "5e-324", "1.7976931348623159e308"),
        *("NaN", "Infinity", "-Infinity"),
    ]
).map(Literal)
numbers = (
    st.integers()
    | st.integers(-(2**64), 2**64)
    | big_integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | float_literals
)
urls = st.sampled_from(
    [
        "https://x.org/i.png",
        "http://h/p",
        "http://[::1]/i.png",
        "http://[::1",
        "http://a]/",
        "https://a:99999",
        "http://a:x/",
        "http://",
        "http://a b",
        "http://a\nb/",
        "http://a\u2100b/",
        "ftp://x",
        "",
    ]
) | st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
    st.sampled_from(["http", "https", "HTTP", "ftp"]),
    any_texts,
    st.sampled_from(["", ":", ":80", ":99999", ":-1", ":x"]),
    any_texts,
)
json_scalars = st.none() | st.booleans() | numbers | any_texts | urls
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_keys, children, max_size=4)
    ),
    max_leaves=20,
)
texts = st.text(min_size=0, max_size=60) | any_texts
candidate_records = st.fixed_dictionaries(
    {},
    optional={
        "quote": texts | json_values,
        "character": texts | json_values,
        "image": urls | st.none() | json_values,
        "characterDirection": st.sampled_from(["Left", "Right", "Up", "", None]) | json_values,
        "extra": json_values,
        "$bad": json_values,
    },
).flatmap(
    lambda record: st.dictionaries(any_keys, json_values, max_size=3).map(
        lambda extras: extras | record
    )
)
values = st.builds(dumps, candidate_records, st.booleans())


def check_rejection(whole: Message, error: InvalidRecord) -> None:
    assert error.reason in REASONS
    assert error.detail
    error.detail.encode("utf-8")  # readable in a log and a dead-letter header
    letter = dead_letter(Reject(whole, error.reason, error.detail), "group")
    assert letter.size() <= MAX_DEAD_LETTER_BYTES


def check_outcome(whole: Message) -> Quote | None:
    """The contract's promise for any record: a storable quote, or a reasoned rejection whose
    dead letter can be built; never another exception."""
    try:
        quote = transform(whole, LIMIT, NOW)
    except InvalidRecord as error:
        check_rejection(whole, error)
        return None
    # Accepted: PostgreSQL can store every text column, and MongoDB the whole document.
    for text in (quote.quote, quote.character, quote.image or "", quote.character_direction or ""):
        assert "\x00" not in text
        text.encode("utf-8")
    assert quote.quote == normalize(quote.quote) != ""
    assert quote.character == normalize(quote.character) != ""
    assert quote.word_count == len(quote.quote.split()) >= 1
    assert len(to_row(quote)) == len(COLUMNS)
    to_json([quote])  # what the record contract accepts, PostgreSQL's payload can carry
    stored = bson.decode(bson.encode(to_document(quote, NOW)))
    for name, item in quote.extra.items():
        assert stored[name] == item, f"extra field {name!r} is stored as sent"
    return quote


@settings(max_examples=400, deadline=None)
@given(value=st.binary(max_size=200) | values)
def test_any_input_is_either_a_storable_quote_or_a_reasoned_rejection(value: bytes) -> None:
    check_outcome(message(value))


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
    plain = accept({"quote": normalize(quote), "character": normalize(character)})
    assert accepted._replace(message=plain.message) == plain


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- Metadata: timestamp, headers, key ----------------------------------------------------------

VALID = json.dumps({"quote": "q", "character": "c"}).encode()


@pytest.mark.parametrize(
    ("timestamp_ms", "stored"),
    [
        (None, None),
        (-1, None),  # Kafka's "no timestamp"
        (-(2**63), None),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (253_402_300_799_999, datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)),
        (253_402_300_800_000, None),  # year 10000: no date type here holds it
        (10**15, None),  # year 33658, the record that used to crash the consumer
        (2**63 - 1, None),
    ],
)
def test_any_timestamp_gives_a_date_or_null_never_a_crash(
    timestamp_ms: int | None, stored: datetime | None
) -> None:
    quote = transform(message(VALID, timestamp_ms=timestamp_ms), LIMIT, NOW)
    assert quote.kafka_timestamp == stored
    to_row(quote)
    to_json([quote])
    bson.encode(to_document(quote, NOW))


def test_the_uuid_header_is_the_identity_and_coordinates_are_the_fallback() -> None:
    plain = transform(message(VALID), LIMIT, NOW)
    assert plain.message_id is None and plain.identity == "quotes:2:41"
    first = transform(message(VALID, headers=(("uuid", b"abc-1"), ("x", None))), LIMIT, NOW)
    again = transform(message(VALID, offset=99, headers=(("uuid", b"abc-1"),)), LIMIT, NOW)
    assert first.message_id == "abc-1"
    assert first.identity == again.identity == "quotes:id:abc-1"
    assert to_document(first, NOW)["_id"] == "quotes:id:abc-1"


@pytest.mark.parametrize(
    "headers",
    [
        (("uuid", None),),
        (("uuid", b""),),
        (("uuid", b"x" * 201),),
        (("uuid", b"\xff"),),
        (("uuid", b"a\nb"),),
        (("uuid", b" padded"),),
        (("uuid", b"a"), ("uuid", b"b")),
    ],
)
def test_a_malformed_message_id_is_rejected(headers: tuple) -> None:
    with pytest.raises(InvalidRecord) as raised:
        transform(message(VALID, headers=headers), LIMIT, NOW)
    assert raised.value.reason == "invalid_message_id"


timestamps = st.none() | st.integers(-(2**63), 2**63 - 1) | st.sampled_from([-1, 0, 10**15])
header_names = st.sampled_from(["uuid", "trace-id", "", "\ud800"]) | any_texts
header_values = st.none() | st.binary(max_size=40) | st.sampled_from([b"id-1", b"id-2", b"\xff"])
whole_messages = st.builds(
    Message,
    topic=st.just("quotes"),
    partition=st.integers(0, 2**31 - 1),
    offset=st.integers(0, 2**63 - 1),
    timestamp_ms=timestamps,
    key=st.none() | st.binary(max_size=60),
    value=st.none() | st.binary(max_size=200) | values,
    headers=st.lists(st.tuples(header_names, header_values), max_size=5).map(tuple),
)


@settings(max_examples=400, deadline=None)
@given(whole=whole_messages)
def test_any_whole_record_is_a_storable_quote_or_a_reasoned_rejection(whole: Message) -> None:
    """Value, key, headers and timestamp all generated: nothing but InvalidRecord escapes."""
    quote = check_outcome(whole)
    if quote is not None:
        assert quote.kafka_timestamp is None or quote.kafka_timestamp.tzinfo is UTC
        assert quote.identity.startswith("quotes:")


# --- Two parsers, one outcome ---------------------------------------------------------------


def spliced(value: bytes, at: int, cut: int, insert: bytes) -> bytes:
    """``value`` with ``cut`` bytes at ``at`` replaced by ``insert``: a near miss of JSON."""
    at %= len(value) + 1
    return value[:at] + insert + value[at + cut :]


documents = st.builds(dumps, candidate_records | json_values, st.booleans())
near_misses = st.builds(
    spliced,
    documents,
    st.integers(0, 400),
    st.integers(0, 3),
    st.binary(max_size=3) | st.sampled_from([b"\xef\xbb\xbf", b"\\ud800", b"0" * 19, b"\\u"]),
)


@settings(max_examples=800, deadline=None)
@given(
    value=st.binary(max_size=200) | documents | near_misses,
    max_bytes=st.sampled_from([LIMIT, 8]),
)
def test_orjson_and_the_standard_library_decode_every_input_alike(
    value: bytes, max_bytes: int
) -> None:
    """decode reads with orjson and falls back to decode_stdlib: the same document, with the
    same type for every number and the same key order, or the same reason and detail."""
    fast = json_parity.outcome(record.decode, value, max_bytes)
    assert fast == json_parity.outcome(record.decode_stdlib, value, max_bytes)


@pytest.mark.parametrize("depth", [31, 32, 33, 900, 990, 1_010, 1_020, 1_100, 5_000])
def test_a_deeply_nested_document_decodes_alike_with_both_parsers(depth: int) -> None:
    """Found by the fuzzer, twice: a document nested hundreds of levels deep broke the
    comparison itself (it recursed), and then one about 1,000 levels deep was read by orjson
    (up to 1,024) where json had hit its recursion limit: "too_deep" against "invalid_json".
    A value with more than MAX_DEPTH opening brackets now goes to json alone."""
    value = b'{"quote": "q", "character": "c", "deep": ' + b"[" * depth + b"]" * depth + b"}"
    fast = json_parity.outcome(record.decode, value, LIMIT)
    assert fast == json_parity.outcome(record.decode_stdlib, value, LIMIT)
    if depth <= record.MAX_DEPTH:  # the object holding "deep" is level 0
        assert accept(json.loads(value)).extra["deep"] is not None
    else:
        assert reason_for(value) in {"too_deep", "invalid_json"}


def called_deeper(frames: int, call: Callable[[], Any]) -> Any:
    """``call()``, made ``frames`` calls further down the stack."""
    return call() if frames == 0 else called_deeper(frames - 1, call)


@pytest.mark.parametrize("depth", [499, 500, 501, 960, 990, 1_000])
def test_a_deep_document_gets_one_verdict_wherever_it_is_decoded(depth: int) -> None:
    """Found by the fuzzer: json's nesting limit is the recursion limit counted from its caller,
    so a document about 1,000 levels deep was refused as invalid_json from one caller and
    read (then refused as too_deep) from a deeper or shallower one. Past MAX_JSON_NESTING
    levels it is refused before json reads it; below, json has room from any sane caller."""
    value = b'{"quote": "q", "character": "c", "deep": ' + b"[" * depth + b"]" * depth + b"}"
    verdicts = [
        called_deeper(frames, lambda: json_parity.outcome(record.decode_stdlib, value, LIMIT))
        for frames in (0, 100, 300)
    ]
    verdict = verdicts[0]
    assert verdicts == [verdict] * 3
    levels = depth + 1  # the record's own object is a level too
    expected = ("rejected", "invalid_json") if levels > record.MAX_JSON_NESTING else ("decoded",)
    assert verdict[: len(expected)] == expected


def nesting_by_walking(text: str) -> int:
    """The definition: walk the text one character at a time, strings and escapes included."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


# Brackets, punctuation and string literals holding brackets, quotes and backslashes: JSON's
# shapes, valid or not. (A backslash outside a string is not JSON: json refuses such a text
# whatever the check says.)
json_ish = st.lists(
    st.sampled_from(list("[]{}:,a "))
    | st.text(st.sampled_from('[]{}"\\a'), max_size=6).map(json.dumps),
    max_size=30,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(text=json_ish, limit=st.integers(0, 6))
def test_the_nesting_check_agrees_with_a_walk_over_the_text(text: str, limit: int) -> None:
    """_nests_too_deep works on whole strings (no Python step per character) and is held here
    to a plain walk, at small limits so that short texts reach them."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(record, "MAX_JSON_NESTING", limit)
        assert record._nests_too_deep(text) == (nesting_by_walking(text) > limit)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = "[" * 2 * record.MAX_JSON_NESTING
    assert accept({"quote": text, "character": "c", "n": {"s": '"\\' + text}}).quote == text


@pytest.mark.parametrize(
    "literal",
    [b"9223372036854775808", b"-9223372036854775809", b"18446744073709551616", b"9" * 30],
)
def test_an_integer_beyond_64_bits_is_out_of_range_not_a_float(literal: bytes) -> None:
    """orjson would read these as floats, and a float of that size is storable; json keeps
    them exact, and the contract refuses them. A long run of digits goes to json."""
    value = b'{"quote": "q", "character": "c", "n": ' + literal + b"}"
    assert reason_for(value) == "out_of_range"


def test_a_plain_record_is_read_by_orjson_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is taken: without it the property above holds, and the time is lost."""

    def refuse(value: bytes | None, max_bytes: int) -> dict[str, Any]:
        raise AssertionError("read by the standard library")

    monkeypatch.setattr(record, "decode_stdlib", refuse)
    document = {"quote": "q", "character": "c", "n": -(10**17), "f": 0.5, "l": [None, True]}
    assert accept(document).extra == {"n": -(10**17), "f": 0.5, "l": [None, True]}


def test_every_reason_the_contract_raises_is_listed_and_documented() -> None:
    """REASONS is the one list: each code record.py raises is in it, and docs/records.md's
    dead-letter table names each one, so a new code cannot go unlisted or undocumented."""
    source = Path(record.__file__).read_text()
    raised = {
        node.args[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "InvalidRecord"
        and isinstance(node.args[0], ast.Constant)
    }
    assert raised == REASONS
    table = (Path(__file__).resolve().parents[2] / "docs" / "records.md").read_text()
    assert {reason for reason in REASONS if f"`{reason}`" not in table} == set()
