"""Looking at the running lab: the live status line, ``counts``, ``topic`` and ``dlq``.

Why these ways of counting, each cheap enough to run every 2 s for days:

- Kafka: records in a topic are the sum over partitions of end minus beginning offset; the
  consumer's lag is end minus the group's committed offset. Offsets only, no record is read.
- PostgreSQL: ``count(*)`` on ``quotes``; an index-only count stays in milliseconds at the
  sizes a lab reaches (one row per quote, 2 a second).
- MongoDB (FerretDB here): the ``count`` of ``collStats``. FerretDB 1.24 answers both
  ``countDocuments`` and the "estimated" count by reading every document (measured on
  100,000 documents: about 2.5 s and 1.9 s), but ``collStats`` from its SQLite tables
  (about 0.05 s, and exact). Falls back to the estimated count on a server without it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg2
import pymongo
from kafka import KafkaConsumer, TopicPartition

from native.provision import DLQ_TOPIC, GROUP, TOPIC

TIMEOUT_MS = 3000


@dataclass(frozen=True)
class Stats:
    """One look at the pipeline; None where a server did not answer in time."""

    records: int | None
    lag: int | None
    rows: int | None
    documents: int | None
    dead_letters: int | None

    def line(self) -> str:
        def show(value: int | None) -> str:
            return "?" if value is None else f"{value:,}"

        clock = dt.datetime.now().strftime("%H:%M:%S")
        return (
            f"{clock}  topic {TOPIC}: {show(self.records)} records | consumer lag "
            f"{show(self.lag)} | PostgreSQL: {show(self.rows)} rows | MongoDB: "
            f"{show(self.documents)} documents | dead letters: {show(self.dead_letters)}"
        )


class Probe:
    """Clients kept open between looks, so a look costs a few round trips and no connects."""

    def __init__(self, bootstrap: str, pg_params: Mapping[str, Any], mongo_uri: str) -> None:
        self.bootstrap = bootstrap
        self.pg_params = dict(pg_params)
        self.mongo = pymongo.MongoClient(
            mongo_uri, serverSelectionTimeoutMS=TIMEOUT_MS, socketTimeoutMS=TIMEOUT_MS
        )
        self.pg: Any = None
        self.kafka: KafkaConsumer | None = None

    def close(self) -> None:
        self.mongo.close()
        if self.pg is not None:
            with contextlib.suppress(psycopg2.Error):
                self.pg.close()
        if self.kafka is not None:
            self.kafka.close()

    def _consumer(self) -> KafkaConsumer:
        if self.kafka is None:
            # The lab's group id, for reading its committed offsets; it never subscribes, so
            # it never joins the group nor takes a partition from the consumer.
            self.kafka = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=GROUP,
                enable_auto_commit=False,
                client_id="streamlab-lab-status",
                request_timeout_ms=TIMEOUT_MS * 2,
            )
        return self.kafka

    def partitions(self, topic: str) -> list[TopicPartition]:
        found = self._consumer().partitions_for_topic(topic) or set()
        return [TopicPartition(topic, p) for p in sorted(found)]

    def offsets(self, topic: str) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """Beginning and end offset of every partition of ``topic``."""
        partitions = self.partitions(topic)
        consumer = self._consumer()
        return consumer.beginning_offsets(partitions), consumer.end_offsets(partitions)

    def records(self, topic: str) -> int:
        first, end = self.offsets(topic)
        return sum(end[tp] - first[tp] for tp in end)

    def lag_by_partition(self) -> dict[int, tuple[int | None, int, int]]:
        """Per partition of the main topic: (committed offset or None, end offset, lag)."""
        first, end = self.offsets(TOPIC)
        result = {}
        for tp in sorted(end, key=lambda t: t.partition):
            committed = self._consumer().committed(tp)
            result[tp.partition] = (
                committed,
                end[tp],
                end[tp] - (committed if committed is not None else first[tp]),
            )
        return result

    def rows(self) -> int:
        if self.pg is None or self.pg.closed:
            self.pg = psycopg2.connect(**self.pg_params, connect_timeout=3)
            self.pg.autocommit = True
        try:
            with self.pg.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM quotes")
                return int(cursor.fetchone()[0])
        except psycopg2.Error:
            with contextlib.suppress(psycopg2.Error):
                self.pg.close()
            self.pg = None
            raise

    def documents(self) -> int:
        database = self.mongo["quotes"]
        try:
            return int(database.command("collStats", "quotes")["count"])
        except (pymongo.errors.OperationFailure, KeyError):
            return int(database["quotes"].estimated_document_count())

    @staticmethod
    def _try(what: Any) -> int | None:
        try:
            return int(what())
        except Exception:  # a server restarting: show "?" this time, try again next time
            return None

    def lag(self) -> int:
        return sum(lag for _committed, _end, lag in self.lag_by_partition().values())

    def look(self) -> Stats:
        return Stats(
            records=self._try(lambda: self.records(TOPIC)),
            lag=self._try(self.lag),
            rows=self._try(self.rows),
            documents=self._try(self.documents),
            dead_letters=self._try(lambda: self.records(DLQ_TOPIC)),
        )


def print_counts(probe: Probe) -> None:
    """``make demo-counts``: the numbers of ``make counts``, from the native lab."""
    stats = probe.look()

    def show(value: int | None) -> str:
        return "?" if value is None else str(value)

    print(f"kafka records ({TOPIC}):   {show(stats.records)}")
    print(f"kafka dead letters:       {show(stats.dead_letters)}")
    print(f"postgres rows:            {show(stats.rows)}")
    print(f"mongo documents:          {show(stats.documents)}")
    print(f"\nconsumer group {GROUP}, topic {TOPIC}:")
    print(f"{'PARTITION':>9}  {'COMMITTED':>10}  {'END':>10}  {'LAG':>6}")
    for partition, (committed, end, lag) in probe.lag_by_partition().items():
        shown = "-" if committed is None else str(committed)
        print(f"{partition:>9}  {shown:>10}  {end:>10}  {lag:>6}")


def _text(raw: bytes | None) -> str:
    return "null" if raw is None else raw.decode("utf-8", errors="replace")


def print_latest(probe: Probe, topic: str, count: int, headers: bool) -> int:
    """The topic's partitions, then its latest ``count`` records, oldest first.

    Reads each partition from ``end - count`` to its end with a plain assigned consumer (no
    group, nothing committed); returns how many records it printed.
    """
    first, end = probe.offsets(topic)
    if not end:
        print(f"topic {topic} does not exist (start the lab with `make demo`)")
        return 0
    print(f"topic {topic}: {len(end)} partition(s)")
    for tp in sorted(end, key=lambda t: t.partition):
        count_in = end[tp] - first[tp]
        print(f"  partition {tp.partition}: offsets {first[tp]}..{end[tp]} ({count_in} records)")
    reader = KafkaConsumer(
        bootstrap_servers=probe.bootstrap, enable_auto_commit=False, client_id="streamlab-lab-read"
    )
    records: list[Any] = []
    try:
        wanted = {tp: end[tp] for tp in end if end[tp] > first[tp]}
        reader.assign(list(wanted))
        for tp in wanted:
            reader.seek(tp, max(first[tp], end[tp] - count))
        deadline = time.monotonic() + 15
        while wanted and time.monotonic() < deadline:
            for tp, batch in reader.poll(timeout_ms=500).items():
                records.extend(r for r in batch if r.offset < end[tp])
            wanted = {tp: e for tp, e in wanted.items() if reader.position(tp) < e}
    finally:
        reader.close()
    latest = sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset))[-count:]
    print(f"latest {len(latest)} record(s):")
    for record in latest:
        when = dt.datetime.fromtimestamp(record.timestamp / 1000).isoformat(timespec="seconds")
        print(f"partition {record.partition} offset {record.offset} {when}  {_text(record.value)}")
        if headers:
            for key, value in record.headers:
                print(f"    {key}: {_text(value)}")
    return len(latest)
