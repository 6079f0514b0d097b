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


def typed(value: Any) -> Any:
    """``value`` with every item tagged by its type, floats by their exact bits, and objects
    as their ordered (key, value) pairs, since key order reaches the stored document."""
    if isinstance(value, dict):
        return ("object", [(key, typed(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("array", [typed(item) for item in value])
    if isinstance(value, float):
        return ("float", value.hex())
    return (type(value).__name__, value)


def outcome(decoder: Decoder, value: bytes | None, max_bytes: int) -> tuple[Any, ...]:
    """The decoded document, typed, or the rejection's reason and detail."""
    try:
        return ("decoded", typed(decoder(value, max_bytes)))
    except InvalidRecord as error:
        return ("rejected", error.reason, error.detail)
