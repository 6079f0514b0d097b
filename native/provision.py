"""Set-up at every start: the topics, as the compose file's kafka-init makes them, and sql/.

Why not run ``kafka/create-topics.sh`` itself: it calls ``kafka-topics`` seven times, and each
call starts a JVM (seconds each on two cores), so a warm start would no longer take seconds.
The rules are the script's: ``quotes`` with 3 partitions and ``quotes.dlq`` with 1, created
if missing, grown if an existing topic has fewer partitions, never shrunk.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from pathlib import Path

import psycopg2
from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from native.layout import LabError

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
TOPIC = "quotes"
DLQ_TOPIC = "quotes.dlq"
GROUP = "quotes-consumer"
# The partition counts docker-compose.yml gives kafka-init (KAFKA_TOPIC_PARTITIONS and
# KAFKA_DLQ_TOPIC_PARTITIONS).
TOPICS = {TOPIC: 3, DLQ_TOPIC: 1}


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    return {
        topic["name"]: len(topic["partitions"])
        for topic in admin.describe_topics(names)
        if topic.get("error_code", 0) == 0
    }


def ensure_topics(bootstrap: str, wanted: Mapping[str, int] = TOPICS) -> dict[str, int]:
    """Create or grow the topics; returns their partition counts. Retried for 30 s while the
    broker finishes registering, as kafka-init's bounded wait does."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return _ensure_topics(bootstrap, wanted)
        except KafkaError as error:
            if time.monotonic() > deadline:
                raise LabError(f"could not create the topics on {bootstrap}: {error}") from None
            time.sleep(1)


def _ensure_topics(bootstrap: str, wanted: Mapping[str, int]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamlab-lab")
    try:
        current = _partition_counts(admin, list(wanted))
        missing = {name: n for name, n in wanted.items() if name not in current}
        if missing:
            # A topic made in between by someone else is fine: it is checked below.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(
                    {
                        name: {"num_partitions": n, "replication_factor": 1}
                        for name, n in missing.items()
                    }
                )
        current = _partition_counts(admin, list(wanted))
        short = {name: n for name, n in wanted.items() if current.get(name, 0) < n}
        if short:
            admin.create_partitions(short)
            current = _partition_counts(admin, list(wanted))
        if any(current.get(name, 0) < n for name, n in wanted.items()):
            raise KafkaError(f"topics not ready yet: {current}")
        return current
    finally:
        admin.close()


def apply_schema(params: Mapping[str, object]) -> list[str]:
    """Run ``sql/*.sql`` in name order, as the postgres container does on its first start.

    The files are idempotent, so running them at every start also brings an older lab's
    schema up to date. Returns the files run.
    """
    files = sorted(SQL_DIR.glob("*.sql"))
    conn = psycopg2.connect(**params)
    try:
        with conn, conn.cursor() as cursor:
            for path in files:
                cursor.execute(path.read_text())
    finally:
        conn.close()
    return [path.name for path in files]
