"""The facts a reader needs to compare two result files: machine, clients and servers.

Why ask the servers: a number measured against PostgreSQL 15 and FerretDB on SQLite means little
against PostgreSQL 17 and MongoDB, so server versions are read from the servers themselves
(``SHOW server_version``, ``buildInfo``) rather than assumed; Kafka does not report its release,
so the harness's pinned version is given with the API level the broker answers with.
"""

from __future__ import annotations

import contextlib
import os
import platform
from contextlib import closing
from importlib import metadata
from pathlib import Path

import psycopg2
from kafka import KafkaAdminClient
from kafka.record import util as kafka_record_util

from bench.infra import Endpoints
from native.servers.kafka import KAFKA_VERSION


def _proc(path: str, key: str) -> str | None:
    """The value of the line starting with ``key`` in a /proc file, if there is one."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe(endpoints: Endpoints) -> dict[str, str]:
    postgres = psycopg2.connect(**endpoints.pg_params("postgres"))
    with closing(postgres) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres_version = str(cursor.fetchone()[0])
    with closing(endpoints.mongo_client()) as client:
        info = client.admin.command("buildInfo")
    if "ferretdbVersion" in info:
        mongo = f"FerretDB {info['ferretdbVersion']} (MongoDB wire protocol {info['version']})"
    else:
        mongo = f"MongoDB {info['version']}"
    kafka = KafkaAdminClient(bootstrap_servers=endpoints.kafka.split(","), client_id="bench-env")
    with closing(kafka) as admin:
        api = ".".join(str(part) for part in admin._client.check_version())
    memory_kb = float((_proc("/proc/meminfo", "MemTotal:") or "nan kB").split()[0])
    return {
        "CPUs": str(os.cpu_count()),
        "CPU model": _proc("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "memory": f"{memory_kb / 1024 / 1024:.0f} GB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "kafka-python": _version("kafka-python"),
        "kafka-python CRC32C": (
            "C (crc32c package)"
            if kafka_record_util.crc32c_c is not None
            else "pure Python (the optional crc32c package is not installed)"
        ),
        "psycopg2": _version("psycopg2-binary"),
        "pymongo": _version("pymongo"),
        "Kafka": f"{KAFKA_VERSION} (harness pin; broker API level {api})",
        "PostgreSQL": postgres_version,
        "MongoDB server": mongo,
    }
