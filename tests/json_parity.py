"""What a decoder makes of some bytes, in a form where parsers can be compared.

``record.decode`` reads with orjson first and falls back to ``record.decode_stdlib``; the two
must agree on every input, down to the type of each number and the detail of each rejection.
Python's ``==`` cannot say so alone (``1 == 1.0 == True``, ``0.0 == -0.0``), hence :func:`typed`.
The unit tests and the fuzzer both hold the two decoders to this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quotes_consumer.record import InvalidRecord

Decoder = Callable[[bytes | None, int], dict[str, Any]]


class _Key(str):
    """An object's key on the walk's stack, told apart from a string value."""


def typed(value: Any) -> list[tuple[str, Any]]:
    """``value`` as a list of tokens, in document order: each container with its length, each
    object key, and each scalar with its type (floats by their exact bits). Objects keep their
    key order, since it reaches the stored document. A walk with a stack, not recursion: a
    record may nest as deep as either parser goes (orjson: 1,024 levels)."""
    tokens: list[tuple[str, Any]] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Key):
            tokens.append(("key", str(item)))
        elif isinstance(item, dict):
            tokens.append(("object", len(item)))
            for key, child in reversed(item.items()):
                stack += [child, _Key(key)]
        elif isinstance(item, list):
            tokens.append(("array", len(item)))
            stack += reversed(item)
        elif isinstance(item, float):
            tokens.append(("float", item.hex()))
        else:
            tokens.append((type(item).__name__, item))
    return tokens


def outcome(decoder: Decoder, value: bytes | None, max_bytes: int) -> tuple[Any, ...]:
    """The decoded document, typed, or the rejection's reason and detail."""
    try:
        return ("decoded", typed(decoder(value, max_bytes)))
    except InvalidRecord as error:
        return ("rejected", error.reason, error.detail)
