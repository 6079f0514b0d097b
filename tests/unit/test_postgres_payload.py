"""The PostgreSQL sink's payload: one JSON array per batch that json_to_recordset reads back.

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
    [row] = json.loads(to_json([accepted]))
    assert list(row) == list(COLUMN_NAMES), "json_to_recordset matches keys to column names"
    for name, value in zip(COLUMN_NAMES, to_row(accepted), strict=True):
        if isinstance(value, datetime):
            assert datetime.fromisoformat(row[name]) == value
        else:
            assert row[name] == value
    assert datetime.fromisoformat(row["ingested_at"]).microsecond == 123_456


def test_absent_values_are_null() -> None:
    accepted = quote({"quote": "q", "character": "c"}, timestamp_ms=None)
    [row] = json.loads(to_json([accepted]))
    assert row["kafka_timestamp"] is None and row["image"] is None and row["message_id"] is None


def test_the_statement_has_one_parameter_for_the_whole_batch() -> None:
    assert INSERT.count("%s") == 1 and "json_to_recordset(%s)" in INSERT
    assert all(f'"{name}"' in INSERT for name in COLUMN_NAMES)


def test_a_value_json_cannot_carry_is_a_refusal_before_any_connection() -> None:
    """The record contract rejects lone surrogates first; if one slipped through, the batch is
    refused (and split to find it), never a crash. No server runs here: nothing connects."""
    bad = quote({"quote": "q", "character": "c"})._replace(character="\ud800")
    sink = PostgresSink(PostgresConfig("127.0.0.1", 1, "none", "none", "none"))
    with pytest.raises(Refused):
        sink.write([bad])
