"""Where the real servers are, and throwaway databases on them: shared by the tests and bench/.

Endpoints come from the environment first (so the same tests and benchmark run against the
compose stack), then from the settings file ``python -m native.servers up`` writes.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pymongo
from dotenv import dotenv_values
from psycopg2 import sql

from native import servers

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
NAMES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_DB",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "CONSUMER_POSTGRES_USER",
    "CONSUMER_POSTGRES_PASSWORD",
    "MONGO_URI",
)


class EndpointError(RuntimeError):
    """The servers are not configured or not reachable; the message says how to start them."""


@dataclass(frozen=True)
class Endpoints:
    kafka: str
    pg_host: str
    pg_port: int
    pg_db: str
    pg_user: str
    pg_password: str
    # The consumer's least-privilege login (INSERT and SELECT on quotes only).
    consumer_user: str
    consumer_password: str
    mongo_uri: str
    # True when the servers are the native harness's, which tests may stop and start.
    harness: bool

    def pg_params(self, dbname: str | None = None) -> dict[str, Any]:
        return {
            "host": self.pg_host,
            "port": self.pg_port,
            "dbname": dbname or self.pg_db,
            "user": self.pg_user,
            "password": self.pg_password,
            "connect_timeout": 5,
        }

    def mongo_client(self) -> pymongo.MongoClient[dict[str, Any]]:
        return pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=10_000, tz_aware=True)

    def addresses(self) -> dict[str, tuple[str, int]]:
        """Each server's first host and port, for a reachability check."""
        kafka_host, kafka_port = self.kafka.split(",")[0].rsplit(":", 1)
        mongo_host, mongo_port = pymongo.uri_parser.parse_uri(self.mongo_uri)["nodelist"][0]
        return {
            "Kafka": (kafka_host, int(kafka_port)),
            "PostgreSQL": (self.pg_host, self.pg_port),
            "MongoDB": (mongo_host, int(mongo_port)),
        }


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def load() -> Endpoints:
    """The endpoints, checked to be reachable; EndpointError says what to do otherwise."""
    path = servers.env_file()
    from_harness = dotenv_values(path) if path.exists() else {}
    values = {name: os.environ.get(name) or from_harness.get(name) or "" for name in NAMES}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise EndpointError(
            f"test servers not configured ({', '.join(missing)} unset): run `make servers` "
            "(python -m native.servers up), or export the compose stack's endpoints"
        )
    endpoints = Endpoints(
        kafka=values["KAFKA_BOOTSTRAP_SERVERS"],
        pg_host=values["POSTGRES_HOST"],
        pg_port=int(values["POSTGRES_PORT"]),
        pg_db=values["POSTGRES_DB"],
        pg_user=values["POSTGRES_USER"],
        pg_password=values["POSTGRES_PASSWORD"],
        consumer_user=values["CONSUMER_POSTGRES_USER"],
        consumer_password=values["CONSUMER_POSTGRES_PASSWORD"],
        mongo_uri=values["MONGO_URI"],
        harness=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") is None,
    )
    for name, (host, port) in endpoints.addresses().items():
        if not _reachable(host, port):
            raise EndpointError(
                f"{name} is not reachable at {host}:{port}: run `make servers` "
                "(python -m native.servers up)"
            )
    return endpoints


def admin_execute(endpoints: Endpoints, statement: str) -> None:
    """One statement outside a transaction (CREATE/DROP DATABASE), on a connection of its own:
    tests may restart the server in between, so no connection is kept."""
    conn = psycopg2.connect(**endpoints.pg_params("postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


def apply_schema(endpoints: Endpoints, dbname: str) -> None:
    """Run ``sql/*.sql`` in order: the same files that initialize the compose container."""
    conn = psycopg2.connect(**endpoints.pg_params(dbname))
    try:
        with conn, conn.cursor() as cursor:
            for path in sorted(SQL_DIR.glob("*.sql")):
                cursor.execute(path.read_text())
    finally:
        conn.close()


def ensure_consumer_login(endpoints: Endpoints) -> None:
    """The consumer's login as a member of quotes_writer, as sql/011_consumer_login.sh makes it
    in compose. On the compose stack that script has made it already, so only the harness's
    servers get it here; the password is (re)set to the one the harness handed out."""
    if not endpoints.harness:
        return
    role = sql.Identifier(endpoints.consumer_user)
    conn = psycopg2.connect(**endpoints.pg_params("postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (endpoints.consumer_user,))
            verb = "ALTER" if cursor.fetchone() else "CREATE"
            cursor.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(role),
                (endpoints.consumer_password,),
            )
            cursor.execute(sql.SQL("GRANT quotes_writer TO {}").format(role))
    finally:
        conn.close()


def create_database(endpoints: Endpoints, name: str) -> None:
    """A new database with the lab's schema and the consumer's privileges on it.

    ``name`` is generated by the caller, never input.
    """
    admin_execute(endpoints, f'CREATE DATABASE "{name}"')
    apply_schema(endpoints, name)
    ensure_consumer_login(endpoints)


def drop_database(endpoints: Endpoints, name: str) -> None:
    admin_execute(endpoints, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
