"""Each sink alone against its real database: a batch written twice is stored once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from native.servers.endpoints import Endpoints
from quotes_consumer.record import Message, transform
from quotes_consumer.sinks import SinkError
from quotes_consumer.sinks.mongo import MongoSink
from quotes_consumer.sinks.postgres import PostgresConfig, PostgresSink
from tests.integration.pipeline import mongo_collection, pg_rows, quote_value

pytestmark = pytest.mark.integration


def batch(n: int, topic: str = "sink-test"):
    now = datetime.now(UTC)
    return [
        transform(
            Message(topic, i % 2, i, 1_700_000_000_000 + i, None, quote_value(i, mood="calm")),
            65_536,
            now,
        )
        for i in range(n)
    ]


def postgres_sink(endpoints: Endpoints, database: str, password: str | None = None) -> PostgresSink:
    return PostgresSink(
        PostgresConfig(
            host=endpoints.pg_host,
            port=endpoints.pg_port,
            dbname=database,
            user=endpoints.pg_user,
            password=password or endpoints.pg_password,
        )
    )


def test_postgres_batch_is_idempotent(endpoints: Endpoints, fresh_database: str) -> None:
    sink = postgres_sink(endpoints, fresh_database)
    first = batch(50)
    sink.write(first)
    sink.commit(first, [])
    rows = pg_rows(endpoints, fresh_database)
    # The same records again, transformed later: nothing changes, not even ingested_at.
    again = batch(50)
    sink.write(again)
    sink.commit(again, [])
    sink.close()
    assert pg_rows(endpoints, fresh_database) == rows
    assert len(rows) == 50
    assert rows[0]["ingested_at"] == first[0].ingested_at


def test_postgres_views_answer_the_lab_questions(endpoints: Endpoints, fresh_database: str) -> None:
    import psycopg2

    sink = postgres_sink(endpoints, fresh_database)
    now = datetime.now(UTC)
    same = b'{"quote": "Again and again", "character": "Echo"}'
    quotes = [
        transform(Message("t", 0, offset, None, None, same), 1024, now) for offset in range(3)
    ] + [
        transform(Message("t", 0, 3, None, None, b'{"quote":"Once","character":"Echo"}'), 1024, now)
    ]
    sink.write(quotes)
    sink.commit(quotes, [])
    sink.close()
    conn = psycopg2.connect(**endpoints.pg_params(fresh_database))
    with conn, conn.cursor() as cursor:
        cursor.execute("SELECT character, quotes, distinct_quotes FROM quotes_per_character")
        assert cursor.fetchall() == [("Echo", 4, 2)]
        cursor.execute("SELECT quote, times_seen FROM distinct_quotes ORDER BY times_seen DESC")
        assert cursor.fetchall() == [("Again and again", 3), ("Once", 1)]
    conn.close()


def test_postgres_failure_is_a_sink_error_not_a_crash(
    endpoints: Endpoints, fresh_database: str
) -> None:
    sink = postgres_sink(endpoints, fresh_database, password="wrong-password")
    with pytest.raises(SinkError, match=r"^PostgreSQL: "):
        sink.write(batch(1))


def test_mongo_batch_is_idempotent(endpoints: Endpoints, fresh_mongo_db: str) -> None:
    sink = MongoSink(endpoints.mongo_uri, fresh_mongo_db, "quotes")
    sink.write(batch(40))
    collection = mongo_collection(endpoints, fresh_mongo_db)
    docs = sorted(collection.find(), key=lambda d: d["_id"])
    sink.write(batch(40))
    sink.write(batch(45))  # overlapping batch: only the five new ones are added
    sink.close()
    after = sorted(collection.find(), key=lambda d: d["_id"])
    assert len(after) == 45
    assert [d for d in after if d["_id"] in {x["_id"] for x in docs}] == docs
    doc = collection.find_one({"_id": "sink-test:1:1"})
    assert doc["mood"] == "calm", "unknown fields are kept"
    assert doc["kafka"] == {
        "topic": "sink-test",
        "partition": 1,
        "offset": 1,
        "timestamp": datetime(2023, 11, 14, 22, 13, 20, 1000, tzinfo=UTC),
    }
    collection.database.client.close()


def test_mongo_unreachable_is_a_sink_error(fresh_mongo_db: str) -> None:
    sink = MongoSink(
        "mongodb://127.0.0.1:1/", fresh_mongo_db, "quotes", timeout_ms=500, call_timeout_s=1
    )
    with pytest.raises(SinkError, match=r"^MongoDB: "):
        sink.write(batch(1))
    sink.close()
