"""The consumer's delivery protocol as a state machine: whatever happens, in whatever order, every
record ends in both databases or in the dead-letter topic, and no committed offset is ahead of it.

The rules are the world's events: records arrive (valid quotes, invalid records, records a
database refuses, a message published twice); a database or the dead-letter topic fails, hangs,
heals, loses a COMMIT; a lane crashes on a bug (compose restarts the process); partitions are
revoked and assigned back (eager, cooperative, or a lost membership); commits are refused, and
the client rejoins as kafka-python does after each kind of refusal; Kafka goes away and comes
back; SIGTERM and a restart; SIGKILL and a restart. The invariants are the promises of
``delivery`` and ``loop``:

1. no committed offset is ahead of a record that is neither in both databases nor in the
   dead-letter topic (checked at every commit, inside the fake broker, and after every step);
2. once everything is delivered, every valid record is in both databases exactly once, and every
   invalid or refused record is dead-lettered and in neither database;
3. the loop ends only by returning after a stop (exit 0) or by raising the crash (exit 1).

The loop is the real one (``loop.run`` through its consumer-factory seam, with the real
``Delivery``); the servers are stand-ins whose state the checker reads, Jepsen's way: at the end
it heals everything, lets the loop commit every partition to its end (a bounded wait: a stall is
a failure too, reported with the threads' stacks), and accounts for every record. Stand-ins,
because these interleavings (a rebalance inside the poll that keeps a hung write alive, a COMMIT
lost after the transaction was dropped) cannot be produced on cue by real servers. The broker's
rebalances follow kafka-python 3.0.12 (kafka/coordinator/consumer.py): eager revokes every
partition while it is still assigned and keeps the position and pause of a partition it assigns
back; cooperative moves only some; a lost membership clears the assignment.

After each step the test waits until the consumer can do nothing more before the next event, so
that an example replays the same way. The loop's clocks (keep-alive, drain, outage backoff) are
shortened, so that each example takes a fraction of a second; only the waits change.

Each failure the search found is kept below as a replay of its few steps (REGRESSIONS): some need
an ordering too deep for a thousand random examples to find again reliably.

STATE_MACHINE_EXAMPLES sets the number of examples (default 200, about a minute and a quarter
here; 1000 when CI is set). CI=1 or STATE_MACHINE_DERANDOMIZE=1 makes the run derandomized (the
same examples every run); STATE_MACHINE_SEED=<n> seeds it instead. The run prints how many
examples ran and what they reached.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from kafka import OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import (
    CommitFailedError,
    CoordinatorNotAvailableError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RebalanceInProgressError,
)

from quotes_consumer import delivery as delivery_module
from quotes_consumer import loop
from quotes_consumer.deadletter import DeadLetterError, Reject
from quotes_consumer.delivery import Delivery
from quotes_consumer.health import Health, Metrics
from quotes_consumer.loop import run
from quotes_consumer.record import Message, Quote, identity
from quotes_consumer.settings import Settings, load
from quotes_consumer.sinks import Refused, SinkError, Unavailable

CI = bool(os.environ.get("CI"))
EXAMPLES = int(os.environ.get("STATE_MACHINE_EXAMPLES", "1000" if CI else "200"))
STEPS = int(os.environ.get("STATE_MACHINE_STEPS", "25"))
DERANDOMIZE = CI or os.environ.get("STATE_MACHINE_DERANDOMIZE") == "1"
SEED = os.environ.get("STATE_MACHINE_SEED")

TOPIC = "quotes"
SINKS = ("postgres", "mongo")
SERVERS = (*SINKS, "dead-letter")
MAX_RECORDS = 30
MAX_BACKOFF_S = 0.005  # Delivery's retry backoff cap
HANG_S = 1.0  # a hung call gives up after this: the sink's own deadline
STOP_WAIT_S = 5.0  # SIGTERM to exit, at most (drain, close, and a generous margin)
FINAL_WAIT_S = 5.0  # healed: every partition committed to its end within this (it takes ms)
QUIET_S = 0.012  # a step has settled when nothing progressed for this long ...
SETTLE_POLLS = 3  # ... while the loop polled at least this often (or was not running)
SETTLE_MAX_S = 1.0
IDLE_POLL_S = 0.001  # an empty poll's wait: the real one waits for records, up to its timeout
# The loop's and delivery's clocks, shortened: the same order of events, in milliseconds.
FAST_CLOCKS: tuple[tuple[object, str, float], ...] = (
    (loop, "KEEP_ALIVE_AFTER_S", 0.005),
    (loop, "OWED_RETRY_S", 0.01),
    (loop, "OUTAGE_FIRST_S", 0.002),
    (loop, "CONNECT_RETRY_MAX_S", 0.01),
    (loop, "OUTAGE_MAX_S", 0.01),
    (loop, "DRAIN_S", 0.25),
    (delivery_module, "WAIT_SLICE_S", 0.005),
    (delivery_module, "CLOSE_WAIT_S", 0.05),
)

KINDS = (
    *("valid",) * 3,
    "invalid",
    "refused_by_postgres",
    "refused_by_mongo",
    "refused_by_both",
    *("copy",) * 3,  # NiFi publishes a message again when it is unsure the first one went
)
REFUSED_BY = {
    "refused_by_postgres": "postgres",
    "refused_by_mongo": "mongo",
    "refused_by_both": "both",
}
FAILURES = ("down", "down, half done", "1 call fails", "3 calls fail", "hangs")
# A refused commit, and what kafka-python 3.0.12 does at the next poll (coordinator/consumer.py):
# rejoin keeping its generation (on_partitions_revoked, then the same partitions back with their
# positions), rejoin with its generation reset (on_partitions_lost; positions start again at the
# committed offsets), or nothing (the broker is away).
COMMIT_ERRORS: dict[str, tuple[type[KafkaError], str | None]] = {
    "RebalanceInProgressError": (RebalanceInProgressError, "revoked"),
    "CommitFailedError, rebalancing": (CommitFailedError, "revoked"),
    "CommitFailedError, kicked out": (CommitFailedError, "lost"),
    "KafkaConnectionError": (KafkaConnectionError, None),
}
# What kafka-python 3.0.12 lets out of poll() while a broker restarts: it wraps socket errors in
# its network thread, and has no NoBrokersAvailable any more.
OUTAGES: dict[str, type[Exception]] = {
    "KafkaConnectionError": KafkaConnectionError,
    "KafkaTimeoutError": KafkaTimeoutError,
    "NodeNotReadyError": NodeNotReadyError,
    "CoordinatorNotAvailableError": CoordinatorNotAvailableError,
}

examples_run = 0
# What the examples reached, summed over the run and printed at its end: a check that the
# interesting interleavings happen at all, not only that nothing failed.
coverage: Counter[str] = Counter()
T = TypeVar("T")


class Bug(Exception):
    """A crash in a lane: an exception no sink classifies, which must end the process."""


# --- The world: every server's state, read by the checker ----------------------------------------


@dataclass(frozen=True)
class Sent:
    """A record as the producer sent it, and what its content makes of it."""

    record: ConsumerRecord
    kind: str  # valid, invalid, refused_by_postgres, refused_by_mongo, refused_by_both
    identity: str  # what the databases key it by (record.identity)
    message_id: str | None

    @property
    def record_id(self) -> str:
        return f"{TOPIC}:{self.record.partition}:{self.record.offset}"


@dataclass
class Server:
    """One server's scripted faults."""

    down: bool = False
    partial: bool = False  # a failing bulk write or publish stores its first half
    flicker: int = 0  # the next calls that fail, then it works again
    hung: bool = False  # calls get no answer until healed (each gives up at its deadline)
    lost_commits: list[bool] = field(default_factory=list)  # each: was the lost COMMIT applied
    crash: Bug | None = None  # the next call raises it

    def heal(self) -> None:
        self.down = self.partial = self.hung = False
        self.flicker = 0
        self.lost_commits.clear()
        self.crash = None


@dataclass(frozen=True)
class Eager:
    """Revoke everything (or lose it), then assign ``back``, ``gap`` polls later."""

    back: frozenset[int]
    lost: bool
    gap: int


@dataclass(frozen=True)
class Cooperative:
    revoke: frozenset[int]


@dataclass(frozen=True)
class Assign:
    """Assign every partition this member does not have."""


GroupChange = Eager | Cooperative | Assign


class World:
    """Kafka's log and committed offsets, both databases and the dead-letter topic, under one
    lock, so that the checker reads one consistent moment."""

    def __init__(self, partitions: int) -> None:
        self.lock = threading.Condition()  # its RLock guards everything below
        self.partitions = partitions
        self.log: list[list[ConsumerRecord]] = [[] for _ in range(partitions)]
        self.sent: dict[str, Sent] = {}  # by record id, in order of arrival
        self.committed = [0] * partitions
        self.postgres: dict[str, str] = {}  # visible rows: identity -> record id of the row
        self.mongo: dict[str, str] = {}  # documents: _id -> record id of its kafka coordinates
        self.dead_letters: list[tuple[str, str]] = []  # (record id, reason), at least once
        self.servers = {name: Server() for name in SERVERS}
        self.kafka_down: type[Exception] | None = None
        self.commit_refusals: list[str] = []  # keys of COMMIT_ERRORS
        self.rebalances: deque[GroupChange] = deque()
        self.progress = 0  # bumped by anything that changes a store, or a poll with records
        self.polls = 0  # the loop's calls to Kafka (poll, or connect while it cannot)
        self.violations: list[str] = []  # seen inside a fake, e.g. at the moment of a commit
        self.events: deque[str] = deque(maxlen=60)  # the latest, for the failure report

    def note(self, event: str, counted: str | None = None) -> None:
        self.events.append(event)
        if counted is not None:
            coverage[counted] += 1

    def append(self, partition: int, kind: str, with_id: bool, source: int) -> None:
        """A producer sends one record; a copy repeats an earlier message, id and bytes."""
        offset, number = len(self.log[partition]), len(self.sent)
        originals = [s for s in self.sent.values() if s.message_id is not None]
        if kind == "copy" and originals:
            model = originals[-1 - source % len(originals)]  # 0: the latest, as a retry is
            kind, value, headers = model.kind, model.record.value, list(model.record.headers)
            # Published again without a key: usually to another partition.
            partition = (model.record.partition + partition) % self.partitions
            offset = len(self.log[partition])
        else:
            kind = "valid" if kind == "copy" else kind
            value = value_for(kind, number)
            headers = [("uuid", f"message-{number}".encode())] if with_id else []
        message_id = headers[0][1].decode() if headers else None
        record = ConsumerRecord(
            TOPIC, partition, -1, offset, 0, 0, None, value, headers, None, -1, len(value), -1
        )
        message = Message(TOPIC, partition, offset, 0, None, value, tuple(headers))
        sent = Sent(record, kind, identity(message, message_id), message_id)
        self.log[partition].append(record)
        self.sent[sent.record_id] = sent

    def at_end(self) -> bool:
        return all(self.committed[p] == len(self.log[p]) for p in range(self.partitions))

    # --- The checker ---------------------------------------------------------------------------

    def where(self, sent: Sent) -> str:
        places = [
            name
            for name, store in (("PostgreSQL", self.postgres), ("MongoDB", self.mongo))
            if sent.identity in store
        ]
        return "in " + " and ".join(places) if places else "in no database"

    def behind_commits(self) -> list[str]:
        """Invariant 1: every record below a committed offset is in both databases or
        dead-lettered; one dead-lettered there is in neither database."""
        dead = {record_id for record_id, _ in self.dead_letters}
        problems = []
        for partition in range(self.partitions):
            committed = self.committed[partition]
            for record in self.log[partition][:committed]:
                sent = self.sent[f"{TOPIC}:{partition}:{record.offset}"]
                stored = sent.identity in self.postgres and sent.identity in self.mongo
                accounted = (stored and sent.kind == "valid") or sent.record_id in dead
                if not accounted:
                    problems.append(
                        f"partition {partition} is committed at {committed}, but "
                        f"{sent.record_id} ({sent.kind}) is {self.where(sent)} "
                        "and not dead-lettered"
                    )
                elif sent.kind != "valid" and (
                    sent.identity in self.postgres
                    or self.mongo.get(sent.identity) == sent.record_id
                ):
                    problems.append(
                        f"partition {partition} is committed at {committed}, but "
                        f"{sent.record_id} ({sent.kind}) is dead-lettered and still visible "
                        f"{self.where(sent)}"
                    )
        return problems

    def one_database_only(self) -> list[str]:
        """PostgreSQL commits only what MongoDB holds too, at every moment."""
        return [
            f"{key} is in PostgreSQL (row of {record_id}) and not in MongoDB"
            for key, record_id in self.postgres.items()
            if key not in self.mongo
        ]

    def unaccounted(self) -> list[str]:
        """Invariant 2, at the end: every record accounted for, Jepsen's way."""
        dead = Counter(record_id for record_id, _ in self.dead_letters)
        reasons: dict[str, set[str]] = {}
        for record_id, reason in self.dead_letters:
            reasons.setdefault(record_id, set()).add(reason)
        storable = {s.identity for s in self.sent.values() if s.kind == "valid"}
        problems = []
        for sent in self.sent.values():
            if sent.kind == "valid":
                missing = [
                    name
                    for name, store in (("PostgreSQL", self.postgres), ("MongoDB", self.mongo))
                    if sent.identity not in store
                ]
                if missing:
                    problems.append(f"{sent.record_id} (valid) is missing from {missing}")
                if dead[sent.record_id]:
                    problems.append(
                        f"{sent.record_id} (valid) is dead-lettered {reasons[sent.record_id]}"
                    )
                continue
            if not dead[sent.record_id]:
                problems.append(
                    f"{sent.record_id} ({sent.kind}) is not dead-lettered; it is {self.where(sent)}"
                )
            elif not reasons[sent.record_id] & expected_reasons(sent.kind):
                problems.append(
                    f"{sent.record_id} ({sent.kind}) is dead-lettered as {reasons[sent.record_id]}"
                )
            if sent.identity in self.postgres or sent.identity in self.mongo:
                problems.append(f"{sent.record_id} ({sent.kind}) is visible {self.where(sent)}")
        for name, store in (("PostgreSQL", self.postgres), ("MongoDB", self.mongo)):
            problems += [
                f"{name} holds {key} (from {record_id}), which no valid record has"
                for key, record_id in store.items()
                if key not in storable
            ]
        return problems

    def state(self) -> str:
        lines = [
            f"log ends: {[len(records) for records in self.log]}; committed: {self.committed}",
            "records: "
            + ", ".join(f"{s.record_id}={s.kind}/{s.identity}" for s in self.sent.values()),
            f"PostgreSQL: {sorted(self.postgres.items())}",
            f"MongoDB: {sorted(self.mongo.items())}",
            f"dead letters: {self.dead_letters}",
            "latest events:",
            *(f"  {event}" for event in self.events),
        ]
        return "\n".join(lines)


def value_for(kind: str, number: int) -> bytes:
    if kind == "invalid":
        return b'{"quote": 42, "character": "c"}' if number % 2 else b"not json"
    document = {"quote": f"quote {number}", "character": "c"}
    if kind in REFUSED_BY:
        document["refuse"] = REFUSED_BY[kind]  # an extra field: stored as is by both sinks
    return json.dumps(document).encode()


def refuses(sink: str, quote: Quote) -> bool:
    """A database refuses a record for its content, every time: deterministically by record."""
    return quote.extra.get("refuse") in (sink, "both")


def expected_reasons(kind: str) -> set[str]:
    if kind == "invalid":
        return {"invalid_json", "wrong_type"}
    refused_by = REFUSED_BY[kind]
    return {f"rejected_by_{s}" for s in SINKS if refused_by in (s, "both")}


# --- The servers, as one process's connections to them -------------------------------------------


class Connection:
    """What every fake server does to a call before answering: a crash (a bug on our side), no
    answer until healed or the call's deadline, a failure, or a closed connection once the
    process that held it has exited."""

    name: str
    failure: type[Exception] = Unavailable

    def __init__(self, world: World, process: Process) -> None:
        self._world = world
        self._process = process

    @property
    def server(self) -> Server:
        return self._world.servers[self.name]

    def _answer(self, call: str, before_failing: Callable[[], None] = lambda: None) -> None:
        """Under the world's lock; raises whatever the server's state makes of the call."""
        world, server = self._world, self.server
        if self._process.dead:
            raise self.failure(f"{self.name}: connection closed, the process is gone")
        if server.crash is not None:
            crash, server.crash = server.crash, None
            self._process.crashes.append(crash)
            world.note(f"{self._process.name}: {self.name}.{call} crashes", "crashes raised")
            raise crash
        deadline = time.monotonic() + HANG_S
        coverage["calls hung"] += server.hung
        while server.hung and not self._process.dead:
            left = deadline - time.monotonic()
            if left <= 0:
                coverage["calls given up on a hung server"] += 1
                raise self.failure(f"{self.name}: no answer within the deadline")
            world.lock.wait(left)
        if self._process.dead:
            raise self.failure(f"{self.name}: connection closed, the process is gone")
        if server.down or server.flicker:
            server.flicker = max(0, server.flicker - 1)
            coverage["calls failed"] += 1
            if server.partial:
                coverage["calls failed half done"] += 1
                before_failing()
            raise self.failure(f"{self.name}: connection refused")


class FakePostgres(Connection):
    """PostgreSQL through PostgresSink's protocol: writes go into one open transaction (a
    refused INSERT rolls back to its savepoint and names no row), and commit makes exactly
    ``keep`` visible, writing it again first when the transaction holds anything else."""

    name = "postgres"
    holds_back = True

    def __init__(self, world: World, process: Process) -> None:
        super().__init__(world, process)
        self._transaction: dict[str, str] = {}  # identity -> record id, not yet visible

    def write(self, batch: Sequence[Quote]) -> None:
        if not batch:
            return
        with self._world.lock:
            try:
                self._answer("write")
            except SinkError:
                self._transaction.clear()  # the connection is gone, and its transaction
                raise
            if any(refuses(self.name, quote) for quote in batch):
                coverage["writes refused"] += 1
                raise Refused("PostgreSQL: value too long for type text [22001]")
            for quote in batch:
                self._transaction.setdefault(quote.identity, quote.message.record_id)
            self._world.progress += 1

    def commit(self, keep: Sequence[Quote], withdrawn: Sequence[Quote]) -> None:
        del withdrawn  # whatever is not in keep is never committed
        world = self._world
        with world.lock:
            if set(self._transaction) != {quote.identity for quote in keep}:
                self._transaction.clear()
                self.write(keep)
            try:
                self._answer("commit")
            except SinkError:
                self._transaction.clear()
                raise
            if self.server.lost_commits:
                applied = self.server.lost_commits.pop(0)
                if applied:
                    self._apply()
                self._transaction.clear()
                world.note(
                    f"{self._process.name}: PostgreSQL COMMIT lost (applied: {applied})",
                    "COMMITs lost",
                )
                raise Unavailable("PostgreSQL: server closed the connection unexpectedly")
            self._apply()

    def _apply(self) -> None:
        for key, record_id in self._transaction.items():
            self._world.postgres.setdefault(key, record_id)  # ON CONFLICT DO NOTHING
        self._transaction.clear()
        self._world.progress += 1

    def rollback(self) -> None:
        with self._world.lock:
            self._transaction.clear()

    def close(self) -> None:
        self.rollback()


class FakeMongo(Connection):
    """MongoDB through MongoSink's protocol: an unordered bulk insert, visible at once,
    idempotent by ``_id``, naming the documents it refuses; commit deletes ``withdrawn``, each
    only where the document is this very record's."""

    name = "mongo"
    holds_back = False

    def write(self, batch: Sequence[Quote]) -> None:
        if not batch:
            return
        with self._world.lock:
            self._answer("write", lambda: self._insert(batch[: len(batch) // 2]))
            refused = [i for i, quote in enumerate(batch) if refuses(self.name, quote)]
            self._insert([quote for i, quote in enumerate(batch) if i not in refused])
            if refused:
                coverage["writes refused"] += 1
                raise Refused("MongoDB: document failed validation [code 121]", refused)

    def _insert(self, quotes: Sequence[Quote]) -> None:
        for quote in quotes:
            if not refuses(self.name, quote) and quote.identity not in self._world.mongo:
                self._world.mongo[quote.identity] = quote.message.record_id
                self._world.progress += 1

    def commit(self, keep: Sequence[Quote], withdrawn: Sequence[Quote]) -> None:
        del keep  # visible already
        if not withdrawn:
            return
        world = self._world
        with world.lock:
            self._answer("commit")
            lost = self.server.lost_commits.pop(0) if self.server.lost_commits else None
            if lost is None or lost:
                for quote in withdrawn:
                    if world.mongo.get(quote.identity) == quote.message.record_id:
                        del world.mongo[quote.identity]
                world.progress += 1
            if lost is not None:
                world.note(
                    f"{self._process.name}: MongoDB delete's answer lost (applied: {lost})",
                    "COMMITs lost",
                )
                raise Unavailable("MongoDB: connection reset")

    def rollback(self) -> None:
        """Nothing is held back."""

    def close(self) -> None:
        """Nothing to close."""


class FakeDeadLetters(Connection):
    name = "dead-letter"
    failure = DeadLetterError

    def publish(self, rejects: Sequence[Reject]) -> None:
        if not rejects:
            return
        with self._world.lock:
            self._answer("publish", lambda: self._append(rejects[: len(rejects) // 2]))
            self._append(rejects)

    def _append(self, rejects: Sequence[Reject]) -> None:
        world = self._world
        known = {record_id for record_id, _ in world.dead_letters}
        world.dead_letters += [(r.message.record_id, r.reason) for r in rejects]
        world.progress += any(r.message.record_id not in known for r in rejects)


# --- Kafka, as one member of the group -----------------------------------------------------------


class Heartbeat:
    """kafka-python's heartbeat clocks (kafka/coordinator/heartbeat.py)."""

    def __init__(self) -> None:
        self.last_send = self.last_receive = self.last_poll = float("-inf")
        self.last_reset = time.monotonic()


class Coordinator:
    """The two things the loop reads of kafka-python's group coordinator."""

    def __init__(self, world: World) -> None:
        self._world = world
        self.heartbeat = Heartbeat()

    def coordinator_unknown(self) -> bool:
        return self._world.kafka_down is not None


class FakeConsumer:
    """Enough of KafkaConsumer for the loop. The group's rebalances run inside ``poll()``, as
    kafka-python runs them, calling the loop's listener; a partition newly assigned starts at
    its committed offset when it is first fetched."""

    def __init__(self, world: World, process: Process, listener: Any, max_records: int) -> None:
        self._world = world
        self._process = process
        self._listener = listener
        self._max_records = max_records
        self._positions: dict[TopicPartition, int | None] = {}  # the assignment
        self._paused: set[TopicPartition] = set()
        self._joined = False
        self._eager: Eager | None = None  # revoked, not assigned yet
        self._gap = 0
        self._closed = False
        self._coordinator = Coordinator(world)

    def _usable(self) -> None:
        if self._process.dead:
            raise KafkaConnectionError("the process is gone")
        if self._closed:
            raise IllegalStateError("KafkaConsumer is closed")

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        world = self._world
        with world.lock:
            world.polls += 1
            self._usable()
            if world.kafka_down is not None:
                coverage["polls during a Kafka outage"] += 1
                raise world.kafka_down("poll: Kafka unavailable")
            heartbeat = self._coordinator.heartbeat
            heartbeat.last_poll = heartbeat.last_send = heartbeat.last_receive = time.monotonic()
        self._rebalance()
        with world.lock:
            records = self._fetch(max_records or self._max_records)
            if records:
                world.progress += 1
        if not records:
            time.sleep(IDLE_POLL_S)
        return records

    def _fetch(self, limit: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        if self._eager is not None:
            return {}  # pending revocation: nothing is fetched until the new assignment
        fetched = {}
        for tp in sorted(self._positions):
            if tp in self._paused or limit <= 0:
                continue
            position = self._positions[tp]
            if position is None:
                position = self._world.committed[tp.partition]
            records = self._world.log[tp.partition][position : position + limit]
            self._positions[tp] = position + len(records)
            if records:
                fetched[tp] = list(records)
                limit -= len(records)
        return fetched

    def _tell(self, method: str, partitions: set[TopicPartition]) -> None:
        """Call the listener; an exception in it comes out of poll() as a KafkaError, as in
        kafka-python, and is a bug whatever the loop makes of it."""
        world = self._world
        with world.lock:
            world.note(f"{self._process.name}: {method}({sorted(t.partition for t in partitions)})")
        try:
            getattr(self._listener, method)(set(partitions))
        except Exception as error:
            with self._world.lock:
                self._world.violations.append(
                    f"the rebalance listener's {method} raised {error!r}:\n"
                    + traceback.format_exc()
                )
            raise KafkaError("User rebalance callback throws an error") from error

    def _count_revocation(self, partitions: set[TopicPartition]) -> None:
        world = self._world
        with world.lock:
            unread = {
                t: world.log[t.partition][world.committed[t.partition] : self._positions[t] or 0]
                for t in self._positions
            }
            lost = {
                world.sent[f"{TOPIC}:{r.partition}:{r.offset}"].identity
                for t in partitions
                for r in unread.get(t, [])
            }
            kept = {
                world.sent[f"{TOPIC}:{r.partition}:{r.offset}"].identity
                for t, records in unread.items()
                if t not in partitions
                for r in records
            }
            if lost:
                coverage["revocations of records read and not committed"] += 1
            if lost & kept:
                coverage["revocations parting copies of a message read and not committed"] += 1

    def _rebalance(self) -> None:
        world = self._world
        if not self._joined:
            with world.lock:
                self._joined = True
                self._positions = {tp(p): None for p in range(world.partitions)}
            self._tell("on_partitions_assigned", set(self._positions))
            return
        if self._eager is not None:
            self._gap -= 1
            if self._gap <= 0:
                self._assign_eagerly()
            return
        with world.lock:
            event = world.rebalances.popleft() if world.rebalances else None
        if isinstance(event, Eager):
            current = set(self._positions)
            self._count_revocation(current)
            if event.lost:
                self._tell("on_partitions_lost", current)
                with world.lock:
                    self._positions.clear()  # no state survives a lost membership
                    self._paused.clear()
            else:
                self._tell("on_partitions_revoked", current)  # still assigned, not fetched
            self._eager, self._gap = event, event.gap
            if event.gap == 0:
                self._assign_eagerly()
        elif isinstance(event, Cooperative):
            with world.lock:
                revoked = {t for t in self._positions if t.partition in event.revoke}
                self._count_revocation(revoked)
                for t in revoked:
                    del self._positions[t]
                    self._paused.discard(t)
            if revoked:
                self._tell("on_partitions_revoked", revoked)
        elif isinstance(event, Assign):
            with world.lock:
                added = {tp(p) for p in range(world.partitions)} - set(self._positions)
                self._positions.update(dict.fromkeys(added))
            if added:
                self._tell("on_partitions_assigned", added)

    def _assign_eagerly(self) -> None:
        event = self._eager
        assert event is not None
        with self._world.lock:
            new = {tp(p) for p in event.back if p < self._world.partitions}
            # A partition assigned back keeps its position and pause (assign_from_subscribed).
            self._positions = {t: self._positions.get(t) for t in new}
            self._paused &= new
            self._eager = None
        self._tell("on_partitions_assigned", new)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], timeout_ms: int = 0) -> None:
        world = self._world
        with world.lock:
            self._usable()
            if world.kafka_down is not None:
                raise KafkaConnectionError("commit: Kafka unavailable")
            if self._eager is not None:
                coverage["commits refused"] += 1
                raise RebalanceInProgressError("the group is rebalancing")
            if world.commit_refusals:
                coverage["commits refused"] += 1
                error, rejoin = COMMIT_ERRORS[world.commit_refusals.pop(0)]
                if rejoin is not None:
                    # This member rejoins at its next poll and, the group being stable
                    # otherwise, gets its partitions back (eager).
                    mine = frozenset(t.partition for t in self._positions)
                    world.rebalances.appendleft(Eager(mine, lost=rejoin == "lost", gap=0))
                raise error("commit refused")
            for t, meta in offsets.items():
                world.committed[t.partition] = meta.offset
            world.progress += 1
            shown = {t.partition: meta.offset for t, meta in offsets.items()}
            world.note(f"{self._process.name}: commit {shown}")
            world.violations += [
                f"right after {self._process.name} committed {shown}: {problem}"
                for problem in world.behind_commits()
            ]

    def assignment(self) -> set[TopicPartition]:
        with self._world.lock:
            return set(self._positions)

    def pause(self, *partitions: TopicPartition) -> None:
        with self._world.lock:
            for t in partitions:
                if t not in self._positions:
                    raise KeyError(t)  # kafka-python: subscription.assignment[partition]
                self._paused.add(t)

    def resume(self, *partitions: TopicPartition) -> None:
        with self._world.lock:
            for t in partitions:
                if t not in self._positions:
                    raise KeyError(t)
                self._paused.discard(t)

    def paused(self) -> set[TopicPartition]:
        with self._world.lock:
            return self._paused & set(self._positions)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        with self._world.lock:
            if partition not in self._positions:
                raise ValueError("Unassigned partition")
            self._positions[partition] = offset
            self._world.note(
                f"{self._process.name}: seek {partition.partition} to {offset}",
                "rewinds to records a rebalance dropped",
            )

    def highwater(self, partition: TopicPartition) -> int | None:
        with self._world.lock:
            if partition not in self._positions:
                raise IllegalStateError("Partition is not assigned")
            return len(self._world.log[partition.partition])

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None:
        """Leaving the group revokes what this member holds, as kafka-python's close does."""
        if self._closed:
            return
        with self._world.lock:
            reachable = not self._process.dead and self._world.kafka_down is None
            current = set(self._positions)
        if reachable and current:
            self._tell("on_partitions_revoked", current)
        with self._world.lock:
            self._closed = True
            self._positions.clear()
        if not reachable:
            raise KafkaConnectionError("close: Kafka unavailable")


def tp(partition: int) -> TopicPartition:
    return TopicPartition(TOPIC, partition)


# --- One run of the service ----------------------------------------------------------------------


class Retired(SystemExit):
    """Ends a delivery worker thread once its process has exited: the real process's threads
    die with it, and a thousand examples must not leave thousands of idle threads behind."""


class _RetiredTicket:
    def set_running_or_notify_cancel(self) -> bool:
        raise Retired


def ignoring_retirements(previous: Callable[[Any], object]) -> Callable[[Any], object]:
    def hook(args: Any) -> None:
        if args.exc_type is not None and issubclass(args.exc_type, Retired):
            return
        previous(args)

    return hook


class Process:
    """One run of the consumer service, as ``__main__`` runs it: its own connections, delivery
    and loop; once it exits, nothing it still does reaches a server."""

    def __init__(self, world: World, settings: Settings, number: int) -> None:
        self.world = world
        self.name = f"process {number}"
        self.stop = threading.Event()
        self.stop_requested_at: float | None = None
        self.killed = False
        self.dead = False
        self.crashes: list[BaseException] = []
        self.outcome: tuple[str, BaseException | None] | None = None
        self._settings = settings
        before = set(threading.enumerate())
        self.delivery = Delivery(
            [FakePostgres(world, self), FakeMongo(world, self)],
            FakeDeadLetters(world, self),
            Metrics(),
            Health(60),
            self.stop,
            MAX_BACKOFF_S,
        )
        self.workers = set(threading.enumerate()) - before
        self.thread = threading.Thread(target=self._main, name=f"loop-{number}", daemon=True)
        world.note(f"{self.name}: starts")
        self.thread.start()

    def _connect(self, listener: Any) -> FakeConsumer:
        with self.world.lock:
            self.world.polls += 1  # the loop's activity, as a poll is
            if self.dead or self.world.kafka_down is not None:
                raise KafkaConnectionError("connect: Kafka unavailable")
        return FakeConsumer(self.world, self, listener, self._settings.consumer_batch_size)

    def _main(self) -> None:
        try:
            run(self._settings, self._connect, self.delivery, self.stop, Metrics(), Health(60))  # type: ignore[arg-type]
        except BaseException as error:
            self.outcome = ("raised", error)
            self.world.note(f"{self.name}: raised {error!r}", "processes that raised")
        else:
            self.outcome = ("returned", None)
            self.world.note(f"{self.name}: returned", "processes that returned")
        finally:
            self.delivery.close()
            self._exit()

    def _exit(self) -> None:
        with self.world.lock:
            self.dead = True
            self.world.progress += 1
            self.world.lock.notify_all()
        self.stop.set()  # what is left of it ends its retries
        lanes = [*self.delivery._lanes.values(), self.delivery._workers]
        for workers in lanes:
            for _ in self.workers:
                workers._jobs.put((None, _RetiredTicket()))  # type: ignore[arg-type]

    def sigterm(self) -> None:
        self.stop_requested_at = time.monotonic()
        self.stop.set()

    def sigkill(self) -> None:
        """Gone at once: no drain, no commit; its connections close with it."""
        self.killed = True
        with self.world.lock:
            self.dead = True
            self.world.lock.notify_all()
            self.world.note(f"{self.name}: SIGKILL", "SIGKILLs")
        self.stop.set()

    def stacks(self) -> str:
        """Where each of its threads is: what a stall report needs."""
        frames = sys._current_frames()
        shown = []
        for thread in sorted((self.thread, *self.workers), key=lambda t: t.name):
            frame = frames.get(thread.ident) if thread.ident is not None else None
            if frame is not None:
                stack = "".join(traceback.format_stack(frame)[-8:])
                shown.append(f"--- {self.name}, thread {thread.name}:\n{stack}")
        return "\n".join(shown)

    def ending_problems(self) -> list[str]:
        """Invariant 3: the loop ends only by returning after a stop or raising the crash."""
        if self.killed:
            return []
        problems = []
        if self.outcome is None:
            asked = self.stop_requested_at
            if asked is not None and time.monotonic() - asked > STOP_WAIT_S:
                problems.append(f"{self.name} still runs {STOP_WAIT_S} s after SIGTERM")
            return problems
        kind, error = self.outcome
        if kind == "returned" and self.stop_requested_at is None:
            problems.append(f"{self.name}: the loop returned, and no stop was requested")
        if kind == "raised" and not any(error is crash for crash in self.crashes):
            assert error is not None
            shown = "".join(traceback.format_exception(error))
            problems.append(
                f"{self.name}: the loop raised {error!r}, which is not a crash of a lane "
                f"(stop requested: {self.stop_requested_at is not None}):\n{shown}"
            )
        return problems


def consumer_settings(batch_size: int) -> Settings:
    return load(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
            "KAFKA_TOPIC": TOPIC,
            "POSTGRES_HOST": "h",
            "POSTGRES_DB": "d",
            "POSTGRES_USER": "u",
            "POSTGRES_PASSWORD": "p",
            "MONGO_URI": "mongodb://h/",
            "CONSUMER_BATCH_SIZE": str(batch_size),
            "CONSUMER_BATCH_TIMEOUT_MS": "5",
            "CONSUMER_RETRY_MAX_BACKOFF_S": str(MAX_BACKOFF_S),
        }
    )


# --- The state machine ---------------------------------------------------------------------------


def step(method: Callable[..., T]) -> Callable[..., T]:
    """Remembers that a step failed, so that teardown only cleans up after it."""

    @functools.wraps(method)
    def wrapper(self: ProtocolStates, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.failed = True
            raise

    return wrapper


partitions_drawn = st.frozensets(st.integers(0, 2), max_size=3)
moving = st.frozensets(st.integers(0, 2), min_size=1, max_size=2)
# (partition, kind, with a message id, which earlier message a copy repeats); NiFi gives most
# records a message id (its uuid header), the rest are keyed by their coordinates.
arrivals = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(KINDS),
        st.sampled_from((True, True, True, False)),
        st.integers(0, 29),
    ),
    min_size=1,
    max_size=6,
)


class ProtocolStates(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world: World | None = None
        self.settings: Settings | None = None
        self.processes: list[Process] = []
        self.failed = False

    @property
    def process(self) -> Process:
        return self.processes[-1]

    def _start(self) -> None:
        assert self.world is not None and self.settings is not None
        coverage["processes started"] += 1
        with self.world.lock:
            self.world.rebalances.clear()  # a new member joins and gets every partition
        self.processes.append(Process(self.world, self.settings, len(self.processes) + 1))

    def _settle(self) -> None:
        """Wait until the consumer can do nothing more before the world's next event: nothing
        progressed for a while and the loop kept polling (or is not running)."""
        world = self.world
        assert world is not None
        started = time.monotonic()
        with world.lock:
            last, polls_then = world.progress, world.polls
        quiet_since = started
        while time.monotonic() - started < SETTLE_MAX_S:
            time.sleep(0.003)
            now = time.monotonic()
            with world.lock:
                progress, polls = world.progress, world.polls
            if progress != last:
                last, polls_then, quiet_since = progress, polls, now
            elif now - quiet_since >= QUIET_S and (
                polls - polls_then >= SETTLE_POLLS or self.process.outcome is not None
            ):
                break
        crashed = self.process
        if crashed.outcome is not None and crashed.stop_requested_at is None:
            crashed.thread.join(STOP_WAIT_S)  # exit 1: compose restarts it
            self._start()
            self._settle()

    def _server(self, name: str, change: Callable[[Server], None]) -> None:
        assert self.world is not None
        with self.world.lock:
            change(self.world.servers[name])
            self.world.lock.notify_all()
        self._settle()

    # --- Rules: the world's events -------------------------------------------------------------

    @initialize(partitions=st.integers(1, 3), batch_size=st.integers(1, 5))
    @step
    def start(self, partitions: int, batch_size: int) -> None:
        self.world = World(partitions)
        self.settings = consumer_settings(batch_size)
        self._start()
        self._settle()

    @rule(records=arrivals)
    @step
    def records_arrive(self, records: list[tuple[int, str, bool, int]]) -> None:
        assert self.world is not None
        with self.world.lock:
            for partition, kind, with_id, source in records:
                if len(self.world.sent) < MAX_RECORDS:
                    self.world.append(partition % self.world.partitions, kind, with_id, source)
        self._settle()

    @rule(records=arrivals)
    @step
    def more_records_arrive(self, records: list[tuple[int, str, bool, int]]) -> None:
        """The same event as records_arrive: twice as likely as a single rule."""
        self.records_arrive(records)

    @rule(server=st.sampled_from(SERVERS), how=st.sampled_from(FAILURES))
    @step
    def server_fails(self, server: str, how: str) -> None:
        """Down until healed (a bulk write or publish may get half done first), a few calls
        failing, or no answer until healed (each call gives up at its deadline)."""

        def fail(s: Server) -> None:
            if how.startswith("down"):
                s.down, s.partial = True, how == "down, half done"
            elif how == "hangs":
                s.hung = True
            else:
                s.flicker = int(how.split()[0])

        self._server(server, fail)

    @precondition(lambda self: any(s.down or s.hung for s in self.world.servers.values()))
    @rule(server=st.sampled_from(SERVERS))
    @step
    def server_heals(self, server: str) -> None:
        """The server is back; a lost COMMIT or a crash already scheduled still happens."""

        def heal(s: Server) -> None:
            s.down = s.partial = s.hung = False
            s.flicker = 0

        self._server(server, heal)

    @rule(database=st.sampled_from(SINKS), applied=st.booleans())
    @step
    def database_loses_a_commit(self, database: str, applied: bool) -> None:
        self._server(database, lambda s: s.lost_commits.append(applied))

    @rule(server=st.sampled_from(SERVERS))
    @step
    def lane_crashes(self, server: str) -> None:
        def arm(s: Server) -> None:
            s.crash = Bug(f"a bug in the {server} lane")

        self._server(server, arm)

    @rule(back=partitions_drawn, lost=st.booleans(), gap=st.integers(0, 2))
    @step
    def eager_rebalance(self, back: frozenset[int], lost: bool, gap: int) -> None:
        assert self.world is not None
        with self.world.lock:
            self.world.rebalances.append(Eager(back, lost, gap))
        self._settle()

    @rule(revoke=moving)
    @step
    def cooperative_revoke(self, revoke: frozenset[int]) -> None:
        """Some partitions move to another member (cooperative): the others stay."""
        assert self.world is not None
        with self.world.lock:
            self.world.rebalances.append(Cooperative(revoke))
        self._settle()

    @rule(revoke=moving)
    @step
    def another_cooperative_revoke(self, revoke: frozenset[int]) -> None:
        """The same event as cooperative_revoke: twice as likely as most."""
        self.cooperative_revoke(revoke)

    @rule()
    @step
    def partitions_assigned_back(self) -> None:
        assert self.world is not None
        with self.world.lock:
            self.world.rebalances.append(Assign())
        self._settle()

    @rule(errors=st.lists(st.sampled_from(sorted(COMMIT_ERRORS)), min_size=1, max_size=3))
    @step
    def commits_refused(self, errors: list[str]) -> None:
        """The next commits are refused, each followed by what the client does about it."""
        assert self.world is not None
        with self.world.lock:
            self.world.commit_refusals += errors
        self._settle()

    @rule(error=st.sampled_from(sorted(OUTAGES)))
    @step
    def kafka_goes_away(self, error: str) -> None:
        assert self.world is not None
        with self.world.lock:
            self.world.kafka_down = OUTAGES[error]
        self._settle()

    @precondition(lambda self: self.world.kafka_down is not None)
    @rule()
    @step
    def kafka_comes_back(self) -> None:
        assert self.world is not None
        with self.world.lock:
            self.world.kafka_down = None
        self._settle()

    @rule()
    @step
    def sigterm(self) -> None:
        process = self.process
        if process.outcome is None and process.stop_requested_at is None:
            process.sigterm()
        process.thread.join(STOP_WAIT_S)
        self._settle()

    @precondition(lambda self: self.process.stop_requested_at is not None)
    @rule()
    @step
    def restart(self) -> None:
        """Started again after a SIGTERM (a crashed process is restarted at once, as compose
        does: see _settle)."""
        self.process.thread.join(STOP_WAIT_S)
        self._start()
        self._settle()

    @rule()
    @step
    def sigkill_and_restart(self) -> None:
        if self.process.thread.is_alive():
            self.process.sigkill()
        self._start()
        self._settle()

    # --- Invariants: the promises --------------------------------------------------------------

    @invariant()
    @step
    def no_commit_is_ahead_of_storage(self) -> None:
        if self.world is None:
            return
        with self.world.lock:
            problems = self.world.violations + self.world.behind_commits()
            state = self.world.state()
        assert not problems, "\n".join([*problems, state])

    @invariant()
    @step
    def postgres_commits_only_what_mongo_holds(self) -> None:
        if self.world is None:
            return
        with self.world.lock:
            problems = self.world.one_database_only()
            state = self.world.state()
        assert not problems, "\n".join([*problems, state])

    @invariant()
    @step
    def the_loop_ends_only_by_a_stop_or_a_crash(self) -> None:
        if self.world is None:
            return
        problems = [problem for p in self.processes for problem in p.ending_problems()]
        assert not problems, "\n".join(problems)

    # --- The end: heal everything, let it finish, account for every record ---------------------

    def teardown(self) -> None:
        global examples_run
        examples_run += 1
        try:
            if self.world is not None and not self.failed:
                self._finish_and_check()
        finally:
            self._shut_down()

    def _finish_and_check(self) -> None:
        world = self.world
        assert world is not None
        with world.lock:
            for server in world.servers.values():
                server.heal()
            world.kafka_down = None
            world.commit_refusals.clear()
            world.rebalances.append(Assign())
            world.lock.notify_all()
            world.note("test: everything healed")
        deadline = time.monotonic() + FINAL_WAIT_S
        restarts = 0
        while True:
            problems = [problem for p in self.processes for problem in p.ending_problems()]
            assert not problems, "\n".join(problems)
            if self.process.outcome is not None:
                self.process.thread.join(STOP_WAIT_S)
                restarts += 1
                assert restarts <= 3, "the consumer keeps exiting once everything is healed"
                self._start()
            with world.lock:
                if world.at_end():
                    break
                state = world.state()
            assert time.monotonic() < deadline, (
                f"healed, the consumer did not commit every partition to its end within "
                f"{FINAL_WAIT_S} s\n{state}\n{self.process.stacks()}"
            )
            time.sleep(0.005)
        process = self.process
        process.sigterm()
        process.thread.join(STOP_WAIT_S)
        problems = process.ending_problems()
        assert process.outcome is not None, f"{process.name} did not stop after SIGTERM"
        assert not problems, "\n".join(problems)
        with world.lock:
            problems = world.violations + world.behind_commits() + world.unaccounted()
            state = world.state()
            coverage["records accounted for"] += len(world.sent)
            coverage["valid records stored"] += len(world.postgres)
            coverage["records dead-lettered"] += len({r for r, _ in world.dead_letters})
        assert not problems, "\n".join([*problems, state])

    def _shut_down(self) -> None:
        if self.world is None:
            return
        with self.world.lock:
            for server in self.world.servers.values():
                server.hung = False
            self.world.lock.notify_all()
        for process in self.processes:
            if process.outcome is None:
                process.sigkill()
        deadline = time.monotonic() + STOP_WAIT_S
        for process in self.processes:
            for thread in (process.thread, *process.workers):
                thread.join(max(0.0, deadline - time.monotonic()))


@pytest.fixture
def fast_consumer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The loop's clocks shortened, retired worker threads silent, and the consumer's log quiet
    (retries log a warning each; thousands of examples need not keep them all)."""
    for module, name, value in FAST_CLOCKS:
        monkeypatch.setattr(module, name, value, raising=False)
    monkeypatch.setattr(threading, "excepthook", ignoring_retirements(threading.excepthook))
    logger = logging.getLogger("quotes_consumer")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@pytest.mark.usefixtures("fast_consumer")
def test_every_record_is_stored_or_dead_lettered_whatever_happens(
    capsys: pytest.CaptureFixture[str],
) -> None:
    machine: type[ProtocolStates] = ProtocolStates
    if SEED is not None:
        machine = seed(int(SEED))(ProtocolStates)
    started, before = time.monotonic(), examples_run
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
                **({"derandomize": True, "database": None} if DERANDOMIZE else {}),
            ),
        )
    finally:
        with capsys.disabled():
            print(
                f"\nprotocol state machine: {examples_run - before} examples "
                f"(max_examples={EXAMPLES}, steps={STEPS}, derandomized={DERANDOMIZE}) "
                f"in {time.monotonic() - started:.0f} s; threads alive: {threading.active_count()}"
            )
            print("reached: " + ", ".join(f"{k} {v}" for k, v in sorted(coverage.items())))


# Failures the machine found, shrunk by hand to their few steps and replayed through the same
# machine and checker: each is a test of its own, whatever the random search finds next time.
Steps = list[tuple[str, dict[str, Any]]]
REGRESSIONS: dict[str, Steps] = {
    # The first copy's partition is revoked mid-batch; the copy's partition is committed, and
    # the message is in MongoDB only until the first copy's new owner delivers it.
    "copy-committed-unwritten": [
        ("start", {"partitions": 2, "batch_size": 5}),
        ("server_fails", {"server": "postgres", "how": "down"}),
        ("records_arrive", {"records": [(0, "valid", True, 0), (1, "copy", True, 0)]}),
        ("cooperative_revoke", {"revoke": frozenset({0})}),
        ("server_heals", {"server": "postgres"}),
    ],
    # The same with a message PostgreSQL refuses: the copy is never dead-lettered.
    "copy-committed-never-dead-lettered": [
        ("start", {"partitions": 2, "batch_size": 5}),
        ("server_fails", {"server": "postgres", "how": "down"}),
        (
            "records_arrive",
            {"records": [(0, "refused_by_postgres", True, 0), (1, "copy", True, 0)]},
        ),
        ("cooperative_revoke", {"revoke": frozenset({0})}),
        ("server_heals", {"server": "postgres"}),
    ],
    # A copy wrote the message to MongoDB in a batch that never finished; delivered again with
    # the first copy ahead of it, the refused message is withdrawn by the first copy's
    # coordinates only, and stays in MongoDB for good.
    "refused-copy-stays-in-mongo": [
        ("start", {"partitions": 2, "batch_size": 2}),
        ("cooperative_revoke", {"revoke": frozenset({0})}),
        ("server_fails", {"server": "postgres", "how": "down"}),
        (
            "records_arrive",
            {"records": [(0, "refused_by_postgres", True, 0), (1, "copy", True, 0)]},
        ),
        ("sigkill_and_restart", {}),
        ("server_heals", {"server": "postgres"}),
    ],
    # The same within one partition: a later copy of a refused message wrote it to MongoDB in a
    # batch that never finished (PostgreSQL away, then SIGKILL) while the first copy's batch was
    # done but not committed; delivered again together, only the first copy is withdrawn.
    "refused-copy-in-one-partition-stays-in-mongo": [
        ("start", {"partitions": 1, "batch_size": 2}),
        ("server_fails", {"server": "dead-letter", "how": "down"}),
        ("records_arrive", {"records": [(0, "refused_by_postgres", True, 0)]}),
        ("server_fails", {"server": "postgres", "how": "down"}),
        ("records_arrive", {"records": [(0, "copy", True, 0)]}),
        ("commits_refused", {"errors": ["KafkaConnectionError"]}),
        ("server_heals", {"server": "dead-letter"}),
        ("sigkill_and_restart", {}),
        ("server_heals", {"server": "postgres"}),
    ],
    # A commit refused because the group rebalances; the rebalance (eager) gives the partition
    # back with its position kept: the delivered batch's offsets are forgotten, never committed.
    "owed-offsets-forgotten-on-eager-rebalance": [
        ("start", {"partitions": 1, "batch_size": 1}),
        ("commits_refused", {"errors": ["CommitFailedError, rebalancing"]}),
        ("records_arrive", {"records": [(0, "valid", True, 0)]}),
    ],
}


@pytest.mark.usefixtures("fast_consumer")
@pytest.mark.parametrize("steps", REGRESSIONS.values(), ids=REGRESSIONS.keys())
def test_a_failure_once_found_stays_fixed(steps: Steps) -> None:
    machine = ProtocolStates()
    try:
        for name, arguments in steps:
            getattr(machine, name)(**arguments)
            machine.no_commit_is_ahead_of_storage()
            machine.postgres_commits_only_what_mongo_holds()
            machine.the_loop_ends_only_by_a_stop_or_a_crash()
    finally:
        machine.teardown()
