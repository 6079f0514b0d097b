"""``python -m tests.soak --minutes M``: the chaos soak of the package docstring.

Exit 0 when every check holds, else 1 with one line per failed check.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, NoReturn

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from native import servers
from native.servers.endpoints import EndpointError, Endpoints, create_database, drop_database, load
from tests.integration.pipeline import consumer_env
from tests.soak import accounting
from tests.soak.faults import FAULTS, ferretdb_pid
from tests.soak.load import DELIVERY_TIMEOUT_MS, SteadyProducer
from tests.soak.replicas import Replicas

PARTITIONS = 3
WARMUP_S = 10
SETTLE_MAX_S = 60  # after --quiet, the longest wait for the group to catch up after a fault
OVERRUN_S = 240  # how far the first round of faults may run past --minutes
SETUP_S = 300  # in the hard deadline: setup, the producer's flush, the accounting, clean-up
RSS_GROWTH = 1.25  # the last third's peak over the first third's, at most
MIN_RSS_SAMPLES = 30  # a replica sampled fewer seconds than this is not judged


class Deadline(BaseException):
    """A BaseException, so that no ``except Exception`` on the way swallows it."""


def _interrupted(signum: int, _frame: object) -> NoReturn:
    """SIGALRM (the deadline) or SIGTERM: unwind through every ``finally``, so that no child
    is left running and every server is back."""
    raise Deadline("the hard deadline passed" if signum == signal.SIGALRM else "SIGTERM")


class Soak:
    """One soak's world (topic, group, databases, replicas, producer), its run and figures."""

    def __init__(self, args: argparse.Namespace, endpoints: Endpoints) -> None:
        self.args, self.endpoints = args, endpoints
        suffix = uuid.uuid4().hex[:10]
        self.topic, self.database = f"soak-{suffix}", f"soak_{suffix}"  # Mongo's name too
        self.dlq, self.group = f"{self.topic}.dlq", f"{self.topic}-group"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.topic}-"))
        self.began = time.monotonic()
        self.failures: list[str] = []
        self.faults: list[dict[str, Any]] = []
        self.figures: dict[str, Any] = {"topic": self.topic, "database": self.database}
        quick = {"CONSUMER_UNHEALTHY_AFTER_S": "2", "CONSUMER_RETRY_MAX_BACKOFF_S": "2"}
        env = consumer_env(endpoints, self.topic, self.database, self.database, **quick)
        self.replicas = Replicas(env, self.workdir)
        limit = int(args.rate * (args.minutes * 60 + OVERRUN_S))
        self.producer = SteadyProducer(endpoints.kafka, self.topic, args.rate, limit, PARTITIONS)

    def elapsed(self) -> float:
        return round(time.monotonic() - self.began, 1)

    def say(self, message: str) -> None:
        print(f"[soak {self.elapsed():6.1f}s] {message}", flush=True)

    def pause(self, seconds: float) -> None:
        """Wait, replacing (and reporting) any replica that died unasked meanwhile."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            self.replicas.heal()
            time.sleep(min(1.0, left))
        self.replicas.heal()

    def offsets(self) -> list[tuple[int, int]] | None:
        """(committed, end) per partition, or None while Kafka does not answer."""
        with contextlib.suppress(KafkaError, OSError):
            return accounting.kafka_offsets(
                self.endpoints.kafka, self.group, self.topic, PARTITIONS
            )
        return None

    def create(self) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.endpoints.kafka, client_id="soak")
        try:
            admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (self.topic, self.dlq)])
        finally:
            admin.close()
        create_database(self.endpoints, self.database)

    def run(self) -> None:
        self.replicas.start()
        self.replicas.start()
        self.producer.start()
        self.say(f"2 replicas consume {self.topic}; {self.args.rate:.0f} records/s produced")
        self.pause(WARMUP_S)
        cycle = [FAULTS[name] for name in self.args.faults.split(",")]
        while len(self.faults) < len(cycle) or self.elapsed() < self.args.minutes * 60:
            if self.elapsed() > self.args.minutes * 60 + OVERRUN_S:
                self.failures.append(f"only {len(self.faults)} of {len(cycle)} faults fitted")
                break
            fault, began = cycle[len(self.faults) % len(cycle)], self.elapsed()
            try:
                detail = fault(self.replicas, self.pause)
            except Exception as error:  # not applied; the soak goes on
                detail = f"failed: {type(error).__name__}: {error}"
                self.failures.append(f"fault {fault.__name__} {detail}")
            took = round(self.elapsed() - began, 1)
            self.say(f"{fault.__name__}: {detail}")
            caught_up, backlog = self.settle()
            self.say(f"caught up {caught_up}s after it ended; backlog peaked at {backlog}")
            self.faults.append(
                {"fault": fault.__name__, "at_s": began, "took_s": took, "detail": detail}
                | {"caught_up_after_s": caught_up, "peak_backlog": backlog}
            )
        self.producer.stop.set()
        self.producer.join(timeout=DELIVERY_TIMEOUT_MS / 1000 + 60)
        self.say(f"producer stopped; {len(self.producer.valid)} valid records acknowledged")
        self.drain()
        self.figures["survivors"] = [replica.name for replica in self.replicas.live()]
        self.replicas.stop()
        self.account()

    def settle(self) -> tuple[float | None, int]:
        """Quiet time: at least --quiet seconds, and until the backlog (records sent, not yet
        committed) is under two seconds' worth (SETTLE_MAX_S more at most). Returns since when
        it has been, None if never, and the largest backlog seen."""
        began, caught_up, peak, quiet = time.monotonic(), None, 0, self.args.quiet
        while (waited := time.monotonic() - began) < quiet + SETTLE_MAX_S:
            if (offsets := self.offsets()) is not None:
                backlog = self.producer.sent - self.producer.failed - sum(c for c, _ in offsets)
                peak = max(peak, backlog)
                if backlog > 2 * self.args.rate:
                    caught_up = None
                elif caught_up is None:
                    caught_up = round(waited, 1)
            if waited >= quiet and caught_up is not None:
                break
            self.pause(2)
        return caught_up, peak

    def drain(self) -> None:
        """Wait, bounded, until the group has committed every partition up to its end."""
        began = time.monotonic()
        while (offsets := self.offsets()) is None or any(done < end for done, end in offsets):
            if time.monotonic() - began > self.args.drain:
                self.failures.append(f"not drained in {self.args.drain:.0f}s: {offsets}")
                return
            self.pause(1)
        self.figures["drained_in_s"] = round(time.monotonic() - began, 1)

    def account(self) -> None:
        producer, figures = self.producer, self.figures
        valid, invalid = producer.valid, producer.invalid
        figures["sent"] = {"valid": len(valid), "invalid": len(invalid), "failed": producer.failed}
        if producer.error:
            self.failures.append(producer.error)
        offsets, acknowledged = self.offsets(), len(valid) + len(invalid)
        in_topic = sum(end for _, end in offsets) if offsets else None
        if in_topic != acknowledged:
            self.failures.append(f"the topic holds {in_topic} records, {acknowledged} acknowledged")
        stored = accounting.postgres_coordinates(self.endpoints, self.database)
        figures["postgres_rows"] = stored.total()
        self.failures += accounting.exactly_once("PostgreSQL", stored, valid)
        size, documents = accounting.mongo_figures(
            self.endpoints, self.database, self.args.mongo_read_limit
        )
        figures["mongo_documents"] = size
        if documents is not None:
            self.failures += accounting.exactly_once("MongoDB", documents, valid)
        elif size != len(valid):
            self.failures.append(f"MongoDB: {size} documents for {len(valid)} valid records")
        dead = accounting.dead_letter_sources(self.endpoints.kafka, self.dlq)
        figures["dead_lettered"] = {"distinct": len(set(dead)), "total": len(dead)}
        if missing := set(invalid) - set(dead):
            self.failures.append(f"dead-letter topic: {len(missing)} invalid records missing")
        if strangers := set(dead) - set(invalid):
            self.failures.append(f"dead-letter topic: {len(strangers)} records not invalid ones")
        rss: dict[str, list[float]] = {}
        for replica in self.replicas.all:
            rss[replica.name] = accounting.rss_thirds(replica.rss_kb)
            first, last = rss[replica.name][0], rss[replica.name][2]
            judged = replica.name in figures["survivors"] and len(replica.rss_kb) >= MIN_RSS_SAMPLES
            if judged and last > RSS_GROWTH * first:
                self.failures.append(f"{replica.name}: peak RSS grew {first} -> {last} MiB")
        figures["peak_rss_mib_by_third"] = rss

    def restore(self) -> None:
        """On every way out: no replica left, and every server the soak faults back up."""
        self.replicas.kill_all()
        self.failures += self.replicas.failures
        with contextlib.suppress(Exception):
            servers.up(["kafka", "postgres"])  # starts only those not listening
        with contextlib.suppress(Exception):
            os.kill(ferretdb_pid(), signal.SIGCONT)

    def clean_up(self) -> None:
        """Drop what the soak made; on failure keep it, and say where it is."""
        try:
            if not self.failures:
                admin = KafkaAdminClient(bootstrap_servers=self.endpoints.kafka, client_id="soak")
                admin.delete_topics([self.topic, self.dlq], timeout_ms=30_000)
                admin.close()
                drop_database(self.endpoints, self.database)
                with contextlib.closing(self.endpoints.mongo_client()) as client:
                    client.drop_database(self.database)
                shutil.rmtree(self.workdir, ignore_errors=True)
        except Exception as error:
            self.failures.append(f"clean-up: {type(error).__name__}: {error}")
        if self.failures:
            self.say(
                f"kept: topics {self.topic}, {self.dlq}; database {self.database} (PostgreSQL "
                f"and MongoDB); replica logs in {self.workdir}"
            )

    def report(self, path: Path | None) -> None:
        """The figures, one line each (one per fault, per failure), and as JSON to ``path``."""
        figures = self.figures | {"faults": self.faults, "wall_s": self.elapsed()}
        figures["failures"] = self.failures
        for key, value in figures.items():
            for item in value if isinstance(value, list) else [value]:
                print(f"{key:>21}: {item}")
        print("soak", "FAILED" if self.failures else "passed", flush=True)
        if path is not None:
            path.write_text(json.dumps(figures, indent=1) + "\n")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak",
        description="Chaos soak on the native harness's servers. It stops and starts them: "
        "give it servers of its own (STREAMLAB_RUN and STREAMLAB_*_PORT).",
    )
    parser.add_argument("--minutes", type=float, default=4.0, help="time to produce for")
    parser.add_argument("--rate", type=float, default=300.0, help="records per second")
    parser.add_argument("--quiet", type=float, default=15.0, help="least seconds between faults")
    parser.add_argument("--drain", type=float, default=120.0, help="most seconds to catch up")
    limit = "read MongoDB's coordinates up to this many documents, else compare its size"
    parser.add_argument("--mongo-read-limit", type=int, default=200_000, help=limit)
    names = ",".join(FAULTS)
    parser.add_argument("--faults", default=names, help=f"the cycle, of {names}")
    parser.add_argument("--report", type=Path, help="write the figures here too, as JSON")
    args = parser.parse_args(argv)
    if unknown := set(args.faults.split(",")) - set(FAULTS):
        parser.error(f"unknown faults {', '.join(sorted(unknown))}; known: {names}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        endpoints = load()
    except EndpointError as error:
        print(f"soak: {error}", file=sys.stderr)
        return 1
    if not endpoints.harness:
        print("soak: it needs the native harness's servers (KAFKA_BOOTSTRAP_SERVERS is set)")
        return 1
    soak = Soak(args, endpoints)
    atexit.register(soak.replicas.kill_all)
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGALRM, _interrupted)
    signal.alarm(int(args.minutes * 60 + OVERRUN_S + args.drain + SETUP_S))
    try:
        soak.create()
        soak.run()
    except BaseException as error:  # the deadline, a signal, or a bug: report, clean up
        if isinstance(error, Exception):
            traceback.print_exc()
        soak.failures.append(f"aborted: {type(error).__name__}: {error}")
    finally:
        signal.alarm(0)
        soak.restore()
        soak.clean_up()
        soak.report(args.report)
    return 1 if soak.failures else 0


if __name__ == "__main__":
    sys.exit(main())
