"""The PostgreSQL sink's payload: one JSON array per batch, an array of values per row, that the
INSERT reads back by position.

No server here: these check what the client sends. tests/integration/test_sinks.py checks the
rows PostgreSQL makes of it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from quotes_consumer.record import Message, Quote, transform
from quotes_consumer.sinks import Refused
from quotes_consumer.sinks.postgres import (
    COLUMN_NAMES,
    COLUMNS,
    INSERT,
    PostgresConfig,
    PostgresSink,
    to_json,
    to_row,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, 123_456, tzinfo=UTC)


def quote(value: dict[str, object], timestamp_ms: int | None = 1_700_000_000_123) -> Quote:
    message = Message("quotes", 1, 7, timestamp_ms, None, json.dumps(value).encode())
    return transform(message, 65_536, NOW)


def test_every_column_goes_with_its_value_and_dates_keep_their_microseconds() -> None:
    accepted = quote(
        {
            "quote": 'Naïve "quotes", \\ back\tslashes — and 🍩',
            "character": "Homer",
            "image": "https://example.com/h.png",
            "characterDirection": "Left",
        }
    )
    [values] = json.loads(to_json([accepted]))
    row = dict(zip(COLUMN_NAMES, values, strict=True))  # the INSERT reads each by its position
    for name, value in zip(COLUMN_NAMES, to_row(accepted), strict=True):
        if isinstance(value, datetime):
            assert datetime.fromisoformat(row[name]) == value
        else:
            assert row[name] == value
    assert datetime.fromisoformat(row["ingested_at"]).microsecond == 123_456


def test_absent_values_are_null() -> None:
    accepted = quote({"quote": "q", "character": "c"}, timestamp_ms=None)
    [values] = json.loads(to_json([accepted]))
    row = dict(zip(COLUMN_NAMES, values, strict=True))
    assert row["kafka_timestamp"] is None and row["image"] is None and row["message_id"] is None


def test_the_statement_has_one_parameter_for_the_whole_batch() -> None:
    assert INSERT.count("%s") == 1 and "jsonb_array_elements(%s::jsonb)" in INSERT
    assert all(f'"{name}"' in INSERT for name in COLUMN_NAMES)
    # Each column is read from its own position of the row's array, cast to its own type.
    for index, (_, kind, _) in enumerate(COLUMNS):
        assert f"(r ->> {index})::{kind}" in INSERT


def test_a_value_json_cannot_carry_is_a_refusal_before_any_connection() -> None:
    """The record contract rejects lone surrogates first; if one slipped through, the batch is
    refused (and split to find it), never a crash. No server runs here: nothing connects."""
    bad = quote({"quote": "q", "character": "c"})._replace(character="\ud800")
    sink = PostgresSink(PostgresConfig("127.0.0.1", 1, "none", "none", "none"))
    with pytest.raises(Refused):
        sink.write([bad])
