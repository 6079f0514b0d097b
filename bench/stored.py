"""Read back what a run stored: counts, start time and latency percentiles per sink (which
timestamps: ``bench/README.md``, *Reading the report*).

Why read it back instead of trusting the consumer: completion is only real when the rows are
there, and latency is measured from timestamps the pipeline itself wrote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime

import psycopg2

from bench.infra import Endpoints

PERCENTILES = (0.50, 0.95, 0.99)


@dataclass(frozen=True)
class Percentiles:
    """Milliseconds at p50, p95 and p99."""

    p50: float
    p95: float
    p99: float

    @staticmethod
    def of(values_ms: Sequence[float]) -> Percentiles:
        ordered = sorted(values_ms)
        return Percentiles(*(percentile(ordered, q) for q in PERCENTILES))


def percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    if not ordered:
        return math.nan
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class SinkReadback:
    count: int
    first_ingested: float  # epoch seconds of the first batch's transform, or nan
    kafka_to_write: Percentiles
    poll_to_write: Percentiles


def postgres(endpoints: Endpoints, dbname: str) -> SinkReadback:
    """Percentiles computed by PostgreSQL itself, over every row."""
    with closing(psycopg2.connect(**endpoints.pg_params(dbname))) as conn, conn.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*),
                   extract(epoch FROM min(ingested_at)),
                   percentile_cont(%(qs)s) WITHIN GROUP (
                       ORDER BY extract(epoch FROM written_at - kafka_timestamp)),
                   percentile_cont(%(qs)s) WITHIN GROUP (
                       ORDER BY extract(epoch FROM written_at - ingested_at))
            FROM quotes
            """,
            {"qs": list(PERCENTILES)},
        )
        count, first, kafka_q, poll_q = cursor.fetchone()
    if not count:
        nothing = Percentiles(math.nan, math.nan, math.nan)
        return SinkReadback(0, math.nan, nothing, nothing)
    return SinkReadback(
        int(count),
        float(first),
        Percentiles(*(float(v) * 1000 for v in kafka_q)),
        Percentiles(*(float(v) * 1000 for v in poll_q)),
    )


def mongo(endpoints: Endpoints, dbname: str) -> SinkReadback:
    """Every document's three timestamps, percentiles computed here (FerretDB 1.x has no
    $percentile); a projection keeps the transfer small."""
    kafka_ms: list[float] = []
    poll_ms: list[float] = []
    first = math.inf
    with closing(endpoints.mongo_client()) as client:
        cursor = client[dbname]["quotes"].find(
            {}, {"_id": 0, "kafka.timestamp": 1, "written_at": 1, "ingested_at": 1}
        )
        for doc in cursor.batch_size(10_000):
            written: datetime = doc["written_at"]
            ingested: datetime = doc["ingested_at"]
            sent: datetime | None = doc["kafka"]["timestamp"]
            if sent is not None:
                kafka_ms.append((written - sent).total_seconds() * 1000)
            poll_ms.append((written - ingested).total_seconds() * 1000)
            first = min(first, ingested.timestamp())
    return SinkReadback(
        len(poll_ms),
        first if poll_ms else math.nan,
        Percentiles.of(kafka_ms),
        Percentiles.of(poll_ms),
    )


def quix_count(endpoints: Endpoints, sink: str, dbname: str) -> int:
    """What Quix Streams stored: rows in the table its PostgreSQLSink created (none if it never
    wrote), or documents in ``quotes`` (a small collection: FerretDB counts slowly)."""
    if sink == "mongo":
        with closing(endpoints.mongo_client()) as client:
            return int(client[dbname]["quotes"].count_documents({}))
    with closing(psycopg2.connect(**endpoints.pg_params(dbname))) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass('public.quix_quotes') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return 0
        cursor.execute("SELECT count(*) FROM public.quix_quotes")
        return int(cursor.fetchone()[0])
