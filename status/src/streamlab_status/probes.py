"""One look at each server, read-only, returning a count per pipeline stage.

Why these ways of looking, each cheap enough to run every 2 s for days:

- Kafka: offsets only, no record is read. Records in a topic are the sum over partitions of end
  minus beginning offset. The consumer group is read with the admin API (DescribeGroups for its
  members, OffsetFetch for its committed offsets): the page never joins the group, so it never
  takes a partition from the consumer nor triggers a rebalance.
- PostgreSQL: ``SELECT count(*) FROM quotes`` in a read-only transaction, nothing else.
- MongoDB: the ``count`` of ``collStats``, which FerretDB answers from its tables in
  milliseconds; ``count_documents`` and ``estimated_document_count`` read every document there
  (seconds at 100k). On a server without ``collStats`` the estimated count is used.
- NiFi: its REST API (single-user login -> bearer token): the root group's queued FlowFiles,
  and GetHTTP's runs (``taskCount``) in NiFi's 5-minute window, whose changes tell when it
  last polled.
- quotes API: its ``/healthz``.

A probe raises on any failure; the poller (``poller.py``) turns that into a "down" stage. Each
probe keeps its client open between looks and drops it after an error, so a restarted server is
reconnected on the next look.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import pymongo
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from streamlab_status.settings import Settings

# Stage ids, left to right; the page draws them in this order.
STAGES = ("api", "nifi", "topic", "consumer", "postgres", "mongo", "dlq")


class NotInThisLab(LookupError):
    """The stage's server is not part of this lab (its URL is left empty): the page shows it
    "off", in grey, rather than red, since nothing is wrong."""


@dataclass
class Reading:
    """What one look found for one stage: its headline count and the details to show."""

    count: int | None
    detail: dict[str, Any] = field(default_factory=dict)


Probe = Callable[[], dict[str, Reading]]


class KafkaProbe:
    """The topic, the consumer group and the dead-letter topic: one set of clients for all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Requests end on their own within a few seconds, so a probe stuck on a dead broker
        # frees its thread soon after the poller stopped waiting for it.
        request_ms = max(int(settings.probe_timeout_s * 2000), 5000)
        self._client_config: dict[str, Any] = {
            "bootstrap_servers": settings.kafka_bootstrap.split(","),
            "client_id": "streamlab-status",
            "request_timeout_ms": request_ms,
            "bootstrap_timeout_ms": request_ms,
        }
        self._offsets: KafkaConsumer | None = None
        self._admin: KafkaAdminClient | None = None

    def close(self) -> None:
        for client in (self._offsets, self._admin):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._offsets = self._admin = None

    def _ends(self, topic: str) -> tuple[dict[int, int], dict[int, int]]:
        """Beginning and end offset per partition; an unknown topic has none."""
        if self._offsets is None:
            # No group_id: this consumer only asks for offsets; it commits and joins nothing.
            self._offsets = KafkaConsumer(
                enable_auto_commit=False,
                # Unused without a group, but must stay below the request timeout.
                session_timeout_ms=self._client_config["request_timeout_ms"] - 500,
                **self._client_config,
            )
        found = self._offsets.partitions_for_topic(topic) or set()
        partitions = [TopicPartition(topic, p) for p in sorted(found)]
        first = self._offsets.beginning_offsets(partitions)
        end = self._offsets.end_offsets(partitions)
        return {tp.partition: first[tp] for tp in first}, {tp.partition: end[tp] for tp in end}

    def _group(self, topic: str) -> tuple[int, dict[int, int]]:
        """Members of the group and its committed offset per partition of ``topic``."""
        if self._admin is None:
            self._admin = KafkaAdminClient(**self._client_config)
        group = self.settings.group_id
        described = self._admin.describe_groups([group]).get(group, {})
        members = len(described.get("members") or [])
        committed = self._admin.list_group_offsets({group: None}).get(group, {})
        offsets = {
            tp.partition: int(meta.offset)
            for tp, meta in committed.items()
            if tp.topic == topic and meta.offset is not None and meta.offset >= 0
        }
        return members, offsets

    def __call__(self) -> dict[str, Reading]:
        try:
            return self._look()
        except Exception:
            self.close()
            raise

    def _look(self) -> dict[str, Reading]:
        topic = self.settings.topic
        first, end = self._ends(topic)
        if not end:
            raise LookupError(f"topic {topic} does not exist")
        per_partition = {p: end[p] - first[p] for p in end}
        members, committed = self._group(topic)
        lag = {p: end[p] - committed.get(p, first[p]) for p in end}
        dlq_first, dlq_end = self._ends(self.settings.dlq_topic)
        readings = {
            "topic": Reading(
                sum(per_partition.values()),
                {"partitions": {str(p): n for p, n in sorted(per_partition.items())}},
            ),
            # The group's progress: records it has committed (all partitions, from the start).
            "consumer": Reading(
                sum(committed.get(p, first[p]) - first[p] for p in end),
                {
                    "group": self.settings.group_id,
                    "members": members,
                    "lag": {str(p): n for p, n in sorted(lag.items())},
                    "total_lag": sum(lag.values()),
                },
            ),
        }
        if dlq_end:
            readings["dlq"] = Reading(sum(dlq_end[p] - dlq_first[p] for p in dlq_end))
        else:
            readings["dlq"] = Reading(None, {"error": f"topic {self.settings.dlq_topic} missing"})
        return readings


class PostgresProbe:
    """Rows in ``quotes``, through a read-only session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: Any = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
        self._conn = None

    def __call__(self) -> dict[str, Reading]:
        s = self.settings
        timeout_ms = int(s.probe_timeout_s * 1000)
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg2.connect(
                    host=s.pg_host,
                    port=s.pg_port,
                    dbname=s.pg_db,
                    user=s.pg_user,
                    password=s.pg_password,
                    connect_timeout=max(1, round(s.probe_timeout_s)),
                    application_name="streamlab-status",
                    # Belt and braces: even a login that may write cannot from this session.
                    options=(
                        f"-c default_transaction_read_only=on -c statement_timeout={timeout_ms}"
                    ),
                )
                self._conn.autocommit = True
            with self._conn.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM quotes")
                (count,) = cursor.fetchone()
            return {"postgres": Reading(int(count), {"table": "quotes"})}
        except Exception:
            self.close()
            raise


class MongoProbe:
    """Documents in the collection, from ``collStats`` (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        timeout_ms = int(settings.probe_timeout_s * 1000)
        self._client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            settings.mongo_uri,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
            appname="streamlab-status",
        )

    def close(self) -> None:
        self._client.close()

    def __call__(self) -> dict[str, Reading]:
        database = self._client[self.settings.mongo_db]
        name = self.settings.mongo_collection
        try:
            count = int(database.command("collStats", name)["count"])
            how = "collStats"
        except (pymongo.errors.OperationFailure, KeyError):
            count = int(database[name].estimated_document_count())
            how = "estimated_document_count"
        return {"mongo": Reading(count, {"collection": name, "counted_with": how})}


class NifiProbe:
    """Queued FlowFiles and GetHTTP's last poll, from NiFi's REST API."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self._token: str | None = None
        # NiFi's out-of-the-box certificate is self-signed and names its own host; the page
        # only reads counters from it, over the compose network or loopback.
        self._tls = ssl.create_default_context()
        self._tls.check_hostname = False
        self._tls.verify_mode = ssl.CERT_NONE
        self._invocations: int | None = None
        self.last_poll: float | None = None

    def close(self) -> None:
        self._token = None

    def _request(self, path: str, data: bytes | None = None) -> bytes:
        # The login answers text/plain (the token), the status calls JSON; NiFi refuses a
        # request whose Accept excludes what it answers (406).
        headers: dict[str, str] = {}
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Accept"] = "text/plain"
        else:
            headers["Accept"] = "application/json"
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(
            self.settings.nifi_api_url + path, data=data, headers=headers
        )
        context = self._tls if request.type == "https" else None
        with urllib.request.urlopen(
            request, timeout=self.settings.probe_timeout_s, context=context
        ) as response:
            return bytes(response.read())

    def _login(self) -> None:
        form = urllib.parse.urlencode(
            {"username": self.settings.nifi_username, "password": self.settings.nifi_password}
        ).encode()
        self._token = self._request("/access/token", form).decode().strip()

    def __call__(self) -> dict[str, Reading]:
        if not self.settings.nifi_api_url:
            raise NotInThisLab("NIFI_API_URL is empty: the Python stand-in produces")
        path = "/flow/process-groups/root/status?recursive=true"
        try:
            if self._token is None:
                self._login()
            body = self._request(path)
        except urllib.error.HTTPError as error:
            if error.code != 401:
                raise
            self._login()  # the token expired
            body = self._request(path)
        status = json.loads(body)["processGroupStatus"]["aggregateSnapshot"]
        get_http = _find_processor(status, "GetHTTP")
        if get_http is not None:
            # NiFi 1.x names the 5-minute run count taskCount ("invocations" in the UI).
            invocations = int(get_http.get("taskCount", get_http.get("invocations", 0)))
            if self._invocations is not None and invocations != self._invocations:
                self.last_poll = self.clock()
            self._invocations = invocations
        detail: dict[str, Any] = {
            "queued": int(status.get("flowFilesQueued", 0)),
            "last_poll": self.last_poll,
            "polls_5min": None if get_http is None else self._invocations,
        }
        return {"nifi": Reading(detail["queued"], detail)}


def _find_processor(group: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The first processor of type ``kind`` in a group status snapshot, searched recursively."""
    for entity in group.get("processorStatusSnapshots", []):
        snapshot = entity.get("processorStatusSnapshot", {})
        if snapshot.get("type") == kind:
            found: dict[str, Any] = snapshot
            return found
    for entity in group.get("processGroupStatusSnapshots", []):
        found_in = _find_processor(entity.get("processGroupStatusSnapshot", {}), kind)
        if found_in is not None:
            return found_in
    return None


class QuotesApiProbe:
    """The quotes API's /healthz, and how long it took to answer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def close(self) -> None:
        """Nothing kept open."""

    def __call__(self) -> dict[str, Reading]:
        if not self.settings.quotes_api_url:
            raise NotInThisLab("QUOTES_API_URL is empty")
        started = time.monotonic()
        url = self.settings.quotes_api_url + "/healthz"
        with urllib.request.urlopen(url, timeout=self.settings.probe_timeout_s) as response:
            response.read()
        return {"api": Reading(None, {"answer_ms": round((time.monotonic() - started) * 1000)})}


def all_probes(settings: Settings) -> dict[str, Any]:
    """Every probe by name, with the stages each one reports."""
    return {
        "quotes-api": (QuotesApiProbe(settings), ("api",)),
        "nifi": (NifiProbe(settings), ("nifi",)),
        "kafka": (KafkaProbe(settings), ("topic", "consumer", "dlq")),
        "postgres": (PostgresProbe(settings), ("postgres",)),
        "mongo": (MongoProbe(settings), ("mongo",)),
    }
