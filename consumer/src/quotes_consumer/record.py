"""The record contract: decode, validate, normalize and enrich one Kafka message.

Pure functions, no I/O: everything here is unit-tested without a server. Every part of a record
is untrusted: value, key, headers and timestamp. What this module can know breaks a database
(NUL characters, lone surrogates, ``$`` or ``.`` in field names, numbers beyond 64 bits) is
rejected here, with a reason, so that it never costs a database round trip. What only a database
can know (an index limit, a size limit) is found by the delivery step, which isolates the
refused record; see ``delivery``.

:func:`transform` is total: for any value, key, headers and timestamp it returns a :class:`Quote`
or raises :class:`InvalidRecord`, never anything else, since any other exception would stop the
consumer on one record. The standard library's parsers raise more than their documented errors
(``json.loads`` a plain ValueError for a long integer, ``urlsplit`` a ValueError for a bad host),
so each is wrapped here, and ``tests/fuzz`` checks the whole path.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson

DIRECTIONS = ("Left", "Right")
KNOWN_FIELDS = ("quote", "character", "image", "characterDirection")
# Names the consumer adds to the MongoDB document; an incoming field may not shadow them.
RESERVED_FIELDS = frozenset(
    {"_id", "content_hash", "word_count", "kafka", "ingested_at", "written_at", "message_id"}
)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 32
# Digits in an integer literal that decode() reads. Python refuses to convert more than 4300 by
# default (a guard against quadratic time) with a plain ValueError, and a process may lower that
# to 640; no integer beyond 19 digits fits 64 bits, so 640 is far enough and holds whatever the
# process's setting.
MAX_INTEGER_DIGITS = 640
# Levels of nesting that decode_stdlib reads. json's own limit is the interpreter's recursion
# limit counted from wherever it is called, so a record about 1,000 levels deep was refused or
# not depending on the call stack (found by the fuzzer). Past this many levels it is refused
# before json reads it, the same way from any caller; a record deeper than MAX_DEPTH is refused
# anyway, as too_deep.
MAX_JSON_NESTING = 500
# What no URL holds unescaped: whitespace (``str.isspace``, which ``\s`` matches in a str
# pattern) and control characters (category Cc: C0, DEL and C1).
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
# How much of a field's path a rejection's detail shows: characters of each name (escapes
# counted as written), and names of a deep path.
MAX_SHOWN_NAME_CHARS = 40
MAX_SHOWN_STEPS = 6
# The longest image URL whose check is remembered (see _is_known_http_url).
MAX_REMEMBERED_URL_CHARS = 2_048
# The header NiFi fills from each FlowFile's uuid attribute (PublishKafka's attribute-name regex).
MESSAGE_ID_HEADER = "uuid"
MAX_MESSAGE_ID_BYTES = 200
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The last millisecond of 9999-12-31: the end of what a Python datetime (and so a BSON date
# built from one) can hold.
MAX_TIMESTAMP_MS = (datetime(9999, 12, 31, tzinfo=UTC) - EPOCH) // timedelta(
    milliseconds=1
) + 86_399_999


# Every reason a rejection may give: stable codes, since the dead-letter topic's readers and the
# consumer's metrics key on them (the table in docs/records.md explains each).
REASONS = frozenset(
    {
        "empty_value",
        "too_large",
        "not_utf8",
        "invalid_json",
        "too_deep",
        "not_an_object",
        "reserved_field",
        "missing_field",
        "wrong_type",
        "empty_field",
        "invalid_text",
        "invalid_url",
        "invalid_direction",
        "invalid_field_name",
        "out_of_range",
        "invalid_message_id",
    }
)


class InvalidRecord(ValueError):
    """Why a message was rejected: a stable ``reason`` code (one of :data:`REASONS`) and a
    human ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


Header = tuple[str, bytes | None]


class Message(NamedTuple):
    """One Kafka record as it arrived: where it sits, and every byte a producer chose.

    Plain data, independent of the Kafka client, so that the contract below is tested without
    one. Only the coordinates are trusted (the broker assigned them); the timestamp, key, value
    and headers are whatever a producer sent. A named tuple, like Quote: immutable, and
    cheaper to build for every record than a frozen dataclass (whose fields are each set
    through ``object.__setattr__``).
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()

    @property
    def record_id(self) -> str:
        """The record's Kafka coordinates, unique in the cluster."""
        return f"{self.topic}:{self.partition}:{self.offset}"


class Quote(NamedTuple):
    """A validated, normalized and enriched quote, ready for both sinks (immutable, as both sink
    lanes read it at once)."""

    message: Message
    message_id: str | None
    identity: str  # see identity(); computed once, as every step of delivery keys by it
    kafka_timestamp: datetime | None
    quote: str
    character: str
    image: str | None
    character_direction: str | None
    content_hash: str
    word_count: int
    ingested_at: datetime
    extra: dict[str, Any]  # the record's other fields, checked storable; never changed after


def identity(message: Message, message_id: str | None) -> str:
    """What makes two records the same quote for the databases.

    A producer-given message id (the ``uuid`` header NiFi sends) when there is one, so that a
    message published twice is stored once; otherwise the Kafka coordinates, so that a record
    read twice is stored once.
    """
    if message_id is not None:
        return f"{message.topic}:id:{message_id}"
    return message.record_id


def kafka_timestamp(timestamp_ms: int | None) -> datetime | None:
    """The record's timestamp as a date, or None when it is absent or no date can hold it.

    Kafka sends -1 for "no timestamp"; a producer may set any other 64-bit value. Anything before
    1970 or after 9999-12-31 (Python's and BSON's common range) is stored as NULL rather than
    rejecting an otherwise valid quote: the timestamp is metadata, and the raw value stays in
    the topic.
    """
    if timestamp_ms is None or not 0 <= timestamp_ms <= MAX_TIMESTAMP_MS:
        return None
    # Positional (days, seconds, microseconds, milliseconds): a quarter quicker than keywords.
    return EPOCH + timedelta(0, 0, 0, timestamp_ms)


def message_id(headers: Sequence[Header]) -> str | None:
    """The producer's message id from the ``uuid`` header, checked like any other input."""
    values = [value for name, value in headers if name == MESSAGE_ID_HEADER]
    if not values:
        return None
    if len(set(values)) > 1:
        raise InvalidRecord(
            "invalid_message_id", f"{len(values)} different {MESSAGE_ID_HEADER} headers"
        )
    raw = values[0]
    if raw is None or not 0 < len(raw) <= MAX_MESSAGE_ID_BYTES:
        raise InvalidRecord(
            "invalid_message_id",
            f"the {MESSAGE_ID_HEADER} header must hold 1-{MAX_MESSAGE_ID_BYTES} bytes",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRecord(
            "invalid_message_id", f"the {MESSAGE_ID_HEADER} header is not UTF-8"
        ) from None
    if not text.isprintable() or text != text.strip():
        raise InvalidRecord(
            "invalid_message_id",
            f"the {MESSAGE_ID_HEADER} header has control characters or surrounding spaces",
        )
    return text


def normalize(text: str) -> str:
    """Trim and collapse every run of whitespace to one space, so equal quotes hash equal."""
    return " ".join(text.split())


def content_hash(quote: str, character: str) -> str:
    """A stable hash of the normalized quote and character.

    The newline separator cannot occur inside either normalized value, so no two different
    pairs produce the same input.
    """
    return hashlib.sha256(f"{quote}\n{character}".encode()).hexdigest()


def decode(value: bytes | None, max_bytes: int) -> dict[str, Any]:
    """Bytes to a JSON object, or InvalidRecord saying which step failed.

    Two parsers, one outcome. orjson reads most records in a fraction of the standard library's
    time, straight from the bytes; :func:`decode_stdlib` reads what orjson refuses, and gives
    every rejection its reason and detail. The two differ in what orjson accepts in two ways:
    an integer beyond 64 bits, which orjson turns into a float and json keeps exact (to be
    refused as out of range), and nesting between json's recursion limit (about 1,000 levels,
    less deep in the call stack) and orjson's (1,024). So orjson reads only a value with no run
    of 19 digits (the shortest such integer) and at most MAX_DEPTH opening brackets in all,
    which cannot nest past MAX_DEPTH; json reads the rest, shallow or not (a quote has one
    bracket). Everything else orjson refuses (lone surrogates, NaN, a BOM, 1e400) falls
    through to json. tests/unit and the fuzzer hold the two to the same result for any bytes.
    """
    if value is not None and len(value) <= max_bytes:
        shape = value.translate(_SHAPE)
        if _LONG_DIGIT_RUN not in shape and shape.count(b"[") <= MAX_DEPTH:
            try:
                document = orjson.loads(value)
            except orjson.JSONDecodeError:
                pass
            else:
                if type(document) is dict:
                    return document
    return decode_stdlib(value, max_bytes)


def decode_stdlib(value: bytes | None, max_bytes: int) -> dict[str, Any]:
    """:func:`decode` with the standard library's parser alone: the reference that names every
    rejection."""
    if value is None:
        raise InvalidRecord("empty_value", "the message has no value (tombstone)")
    if len(value) > max_bytes:
        raise InvalidRecord("too_large", f"{len(value)} bytes, limit is {max_bytes}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRecord("not_utf8", f"invalid UTF-8 at byte {error.start}") from None
    try:
        if text.startswith("\ufeff"):  # as json.loads refuses it, before decoding
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        if _nests_too_deep(text):
            raise RecursionError  # what json would raise, at a depth that does not move
        document = _JSON.decode(text)
    except json.JSONDecodeError as error:
        detail = f"{error.msg} at line {error.lineno} col {error.colno}"
        raise InvalidRecord("invalid_json", detail) from None
    except RecursionError:  # also json's own, should a process set a lower recursion limit
        raise InvalidRecord("invalid_json", "nested too deeply") from None
    if not isinstance(document, dict):
        raise InvalidRecord("not_an_object", f"expected a JSON object, got {_json_type(document)}")
    return document


def transform(message: Message, max_bytes: int, now: datetime) -> Quote:
    """Validate one message and enrich it; raise InvalidRecord for anything off-contract."""
    identifier = message_id(message.headers)
    document = decode(message.value, max_bytes)
    quote = _required_text(document, "quote")
    character = _required_text(document, "character")
    image = _optional_url(document, "image")
    direction = _optional_direction(document, "characterDirection")
    extra = {key: item for key, item in document.items() if key not in KNOWN_FIELDS}
    for key, item in extra.items():
        if key in RESERVED_FIELDS:
            raise InvalidRecord("reserved_field", f"field {key!r} is set by the consumer")
        _check_field_name(key, (key,))
        _check_storable(item, (key,), depth=1)
    # Positional, in the order Quote declares its fields: keywords cost a named tuple about
    # 0.3 us more per record. tests/unit/test_record.py checks every field by name.
    return Quote(
        message,
        identifier,  # message_id
        identity(message, identifier),
        kafka_timestamp(message.timestamp_ms),
        quote,
        character,
        image,
        direction,  # character_direction
        content_hash(quote, character),
        quote.count(" ") + 1,  # word_count; normalized: one space between words
        now,  # ingested_at
        extra,
    )


def _nests_too_deep(text: str) -> bool:
    """Whether the text's brackets nest deeper than MAX_JSON_NESTING, outside strings.

    A text with fewer opening brackets cannot (a quote has one). Otherwise, with every escaped
    backslash and escaped quote taken out, each quote left opens or closes a string, so every
    other piece between quotes is outside strings; the depth is the running sum of its
    brackets. String methods, a regular expression without backtracking and ``accumulate``:
    linear, and no Python step per character.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_NESTING:
        return False
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    brackets = _NOT_A_BRACKET.sub("", "".join(unescaped.split('"')[::2]))
    depths = itertools.accumulate(map(_NESTING_STEP.__getitem__, brackets))
    return max(depths, default=0) > MAX_JSON_NESTING


_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_NESTING_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


# --- JSON numbers --------------------------------------------------------------------------------


def _parse_int(literal: str) -> int:
    """An integer literal, or invalid_json when it is too long to convert.

    ``int()`` of more digits than ``sys.get_int_max_str_digits()`` raises a plain ValueError,
    which ``json.loads`` lets through: it is not a JSONDecodeError. RFC 8259 lets a parser limit
    numbers; this one reads at most :data:`MAX_INTEGER_DIGITS` digits, whatever the setting.
    """
    digits = len(literal) - literal.startswith("-")
    if digits > MAX_INTEGER_DIGITS:
        raise InvalidRecord(
            "invalid_json",
            f"an integer of {digits} digits; at most {MAX_INTEGER_DIGITS} are read",
        )
    return int(literal)


def _parse_constant(name: str) -> float:
    """Python's json reads ``NaN``, ``Infinity`` and ``-Infinity``; RFC 8259 has no such
    numbers and other JSON readers refuse them, so neither is stored."""
    raise InvalidRecord("invalid_json", f"{name} is not a JSON number")


# One decoder for every record: json.loads with hooks builds a new one per call.
_JSON = json.JSONDecoder(parse_int=_parse_int, parse_constant=_parse_constant)
# What decode looks at before orjson may read a value: its digits (each mapped to 0) and its
# opening brackets (each mapped to [), every other byte a space. Nineteen zeros in a row are
# the shortest literal of an integer beyond 64 bits; the count of [ bounds the nesting. Over a
# quote, the translate and the search for digits took 0.33 us; a regular expression, 1.97.
_SHAPE = bytes(
    ord("0") if byte in b"0123456789" else ord("[") if byte in b"[{" else ord(" ")
    for byte in range(256)
)
_LONG_DIGIT_RUN = b"0" * 19


# --- Field checks --------------------------------------------------------------------------------


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _text_problem(value: str) -> str | None:
    """What PostgreSQL text and UTF-8 cannot hold in ``value``, if anything."""
    if "\x00" in value:
        return "contains a NUL character"
    if value.isascii():  # a flag CPython keeps on the string: no surrogate, nothing to encode
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate"
    return None


def _check_text(value: str, name: str) -> None:
    problem = _text_problem(value)
    if problem is not None:
        raise InvalidRecord("invalid_text", f"{name} {problem}")


def _required_text(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if value is None:
        raise InvalidRecord("missing_field", f"{name} is required")
    if not isinstance(value, str):
        raise InvalidRecord("wrong_type", f"{name} must be a string, got {_json_type(value)}")
    _check_text(value, name)
    normalized = normalize(value)
    if not normalized:
        raise InvalidRecord("empty_field", f"{name} must not be empty")
    return normalized


def _optional_text(document: dict[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRecord("wrong_type", f"{name} must be a string, got {_json_type(value)}")
    _check_text(value, name)
    return value.strip()


def _optional_url(document: dict[str, Any], name: str) -> str | None:
    value = _optional_text(document, name)
    if value is None:
        return None
    checked = _is_known_http_url if len(value) <= MAX_REMEMBERED_URL_CHARS else _is_http_url
    if not checked(value):
        raise InvalidRecord("invalid_url", f"{name} must be an http(s) URL, got {value[:80]!r}")
    return value


def _is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host, and a port that is a number if there is one.

    ``urlsplit`` raises ValueError for some hosts (an unbalanced ``[``, characters that NFKC
    turns into delimiters) and ``.port`` for a port out of range or not a number, so both count
    as "not a URL" here. It also drops tabs and newlines before parsing: whitespace and control
    characters are refused first, as no URL holds them unescaped.
    """
    if _SPACE_OR_CONTROL.search(value):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises for a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# The same few image URLs come back with every quote of a character: each is parsed once. A
# pure function of the text, so remembering its answer changes no outcome; the bound keeps the
# memory small (at most 1,024 URLs of at most 2,048 characters).
_is_known_http_url = functools.lru_cache(maxsize=1024)(_is_http_url)


def _optional_direction(document: dict[str, Any], name: str) -> str | None:
    value = _optional_text(document, name)
    if value is None:
        return None
    if value not in DIRECTIONS:
        raise InvalidRecord(
            "invalid_direction", f"{name} must be Left or Right, got {value[:40]!r}"
        )
    return value


# Where a value sits in an extra field: its names and list indexes, outermost first. Kept as a
# tuple and written out only for a rejection's detail, so that a long name is not copied into a
# new path string for every item below it.
FieldPath = tuple[str | int, ...]


def _shown(path: FieldPath) -> str:
    """A path as a detail shows it, e.g. ``tags[2].name``. Names are written with ``repr``'s
    escapes, so that a lone surrogate, a NUL or a newline in a name is visible and the detail
    stays valid UTF-8 for a log line or a dead-letter header. Each name is cut to a few escaped
    characters and a deep path to its two ends, so the detail stays short whatever the path: an
    escape takes up to ten characters, and a path may be ``MAX_DEPTH`` names deep."""
    steps = [f"[{step}]" if isinstance(step, int) else f".{_shown_name(step)}" for step in path]
    if len(steps) > MAX_SHOWN_STEPS:
        head = MAX_SHOWN_STEPS // 2
        tail = MAX_SHOWN_STEPS - head
        steps[head:-tail] = [f"...({len(steps) - MAX_SHOWN_STEPS} levels)"]
    return "".join(steps).removeprefix(".")


def _shown_name(name: str) -> str:
    """At most ``MAX_SHOWN_NAME_CHARS`` characters of a name's escaped form, never cutting an
    escape in two, and the name's length when it was cut."""
    shown, width = [], 0
    for char in name[:MAX_SHOWN_NAME_CHARS]:
        escaped = repr(char)[1:-1]
        if width + len(escaped) > MAX_SHOWN_NAME_CHARS:
            break
        shown.append(escaped)
        width += len(escaped)
    if len(shown) < len(name):
        shown.append(f"...({len(name)} chars)")
    return "".join(shown)


def _check_field_name(key: str, path: FieldPath) -> None:
    if key.startswith("$") or "." in key or not key:
        raise InvalidRecord("invalid_field_name", f"field name '{_shown(path)}' cannot be stored")
    problem = _text_problem(key)
    if problem is not None:
        raise InvalidRecord("invalid_text", f"field name '{_shown(path)}' {problem}")


def _check_storable(value: Any, path: FieldPath, depth: int) -> None:
    """Walk an extra field: every key, string and number must fit BSON and UTF-8."""
    if depth > MAX_DEPTH:
        raise InvalidRecord("too_deep", f"{_shown(path)} nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem is not None:
            raise InvalidRecord("invalid_text", f"{_shown(path)} {problem}")
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, float):
        # Only an overflowing literal (1e400) gets here as inf; NaN never does (_parse_constant).
        if not math.isfinite(value):
            raise InvalidRecord("out_of_range", f"{_shown(path)} does not fit a 64-bit float")
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidRecord("out_of_range", f"{_shown(path)} does not fit in 64 bits")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(item, (*path, index), depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_field_name(key, (*path, key))
            _check_storable(item, (*path, key), depth + 1)
