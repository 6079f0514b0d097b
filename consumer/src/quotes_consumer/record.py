"""The record contract: decode, validate, normalize and enrich one Kafka message.

Pure functions, no I/O: everything here is unit-tested without a server, and a record that this
module accepts is guaranteed to be storable by both sinks. That guarantee matters: a record that
passed validation but then made a batch insert fail would block its partition forever, so every
way a value could break PostgreSQL (NUL characters, lone surrogates) or MongoDB (``$`` or ``.`` in
field names, integers beyond 64 bits) is rejected here, with a reason, to the dead-letter topic.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

DIRECTIONS = ("Left", "Right")
KNOWN_FIELDS = ("quote", "character", "image", "characterDirection")
# Names the consumer adds to the MongoDB document; an incoming field may not shadow them.
RESERVED_FIELDS = frozenset(
    {"_id", "content_hash", "word_count", "kafka", "ingested_at", "written_at"}
)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 32


class InvalidRecord(ValueError):
    """Why a message was rejected: a stable ``reason`` code and a human ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Coordinates:
    """Where a message came from; the idempotency key of everything written for it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None

    @property
    def record_id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Quote:
    """A validated, normalized and enriched quote, ready for both sinks."""

    source: Coordinates
    quote: str
    character: str
    image: str | None
    character_direction: str | None
    content_hash: str
    word_count: int
    ingested_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kafka_timestamp(self) -> datetime | None:
        if self.source.timestamp_ms is None or self.source.timestamp_ms < 0:
            return None
        return datetime.fromtimestamp(self.source.timestamp_ms / 1000, tz=UTC)


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
    """Bytes to a JSON object, or InvalidRecord saying which step failed."""
    if value is None:
        raise InvalidRecord("empty_value", "the message has no value (tombstone)")
    if len(value) > max_bytes:
        raise InvalidRecord("too_large", f"{len(value)} bytes, limit is {max_bytes}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRecord("not_utf8", f"invalid UTF-8 at byte {error.start}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        detail = f"{error.msg} at line {error.lineno} col {error.colno}"
        raise InvalidRecord("invalid_json", detail) from None
    except RecursionError:
        raise InvalidRecord("invalid_json", "nested too deeply") from None
    if not isinstance(document, dict):
        raise InvalidRecord("not_an_object", f"expected a JSON object, got {_json_type(document)}")
    return document


def transform(value: bytes | None, source: Coordinates, max_bytes: int, now: datetime) -> Quote:
    """Validate one message and enrich it; raise InvalidRecord for anything off-contract."""
    document = decode(value, max_bytes)
    quote = _required_text(document, "quote")
    character = _required_text(document, "character")
    image = _optional_url(document, "image")
    direction = _optional_direction(document, "characterDirection")
    extra = {key: item for key, item in document.items() if key not in KNOWN_FIELDS}
    for key, item in extra.items():
        if key in RESERVED_FIELDS:
            raise InvalidRecord("reserved_field", f"field {key!r} is set by the consumer")
        _check_storable(item, key, depth=1)
        _check_field_name(key, key)
    return Quote(
        source=source,
        quote=quote,
        character=character,
        image=image,
        character_direction=direction,
        content_hash=content_hash(quote, character),
        word_count=len(quote.split()),
        ingested_at=now,
        extra=extra,
    )


# --- Field checks --------------------------------------------------------------------------------


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _check_text(value: str, name: str) -> None:
    """Reject what PostgreSQL text and UTF-8 cannot hold."""
    if "\x00" in value:
        raise InvalidRecord("invalid_text", f"{name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRecord("invalid_text", f"{name} contains an unpaired surrogate") from None


def _required_text(document: dict[str, Any], name: str) -> str:
    if name not in document or document[name] is None:
        raise InvalidRecord("missing_field", f"{name} is required")
    value = document[name]
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
    parts = urlsplit(value) if " " not in value else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRecord("invalid_url", f"{name} must be an http(s) URL, got {value[:80]!r}")
    return value


def _optional_direction(document: dict[str, Any], name: str) -> str | None:
    value = _optional_text(document, name)
    if value is None:
        return None
    if value not in DIRECTIONS:
        raise InvalidRecord(
            "invalid_direction", f"{name} must be Left or Right, got {value[:40]!r}"
        )
    return value


def _check_field_name(key: str, path: str) -> None:
    if key.startswith("$") or "." in key or not key:
        raise InvalidRecord("invalid_field_name", f"field name {path!r} cannot be stored")
    _check_text(key, f"field name {path!r}")


def _check_storable(value: Any, path: str, depth: int) -> None:
    """Walk an extra field: every key, string and integer must fit BSON and UTF-8."""
    if depth > MAX_DEPTH:
        raise InvalidRecord("too_deep", f"{path} nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidRecord("out_of_range", f"{path} does not fit in 64 bits")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_field_name(key, f"{path}.{key}")
            _check_storable(item, f"{path}.{key}", depth + 1)
