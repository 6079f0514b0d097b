"""The second peer: a Kafka Connect 3.9.1 standalone worker with the Debezium JDBC sink and the
MongoDB sink, over a copy of the bench's topic in JsonConverter's envelope (how and why:
``bench/README.md``, *What is measured*).

``python -m bench.connect_reference --home H`` writes the worker's and connectors' settings from
the consumer's environment variables, then becomes the JVM (``exec``): the bench's CPU and
peak-RSS readings of its pid are the worker's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg2

from bench import stored
from bench.infra import Context
from bench.results import Run
from bench.runs import Child, WaitTimeout
from bench.workload import Source, _transformed, counts, is_valid, publish, values
from native.servers.cache import build_once, cache_dir, install_command, unpack
from native.servers.kafka import write_log4j, write_properties
from native.servers.process import HarnessError, java, log, run
from quotes_consumer.settings import load
from quotes_consumer.sinks.postgres import COLUMNS, to_columns

KAFKA_VERSION = "3.9.1"  # connect-runtime and connect-json: native/servers/connect/pom.xml
POM = Path(__file__).resolve().parents[1] / "native" / "servers" / "connect" / "pom.xml"
JDBC_PLUGIN = "io.debezium:debezium-connector-jdbc:3.0.7.Final:tar.gz:plugin"
MONGO_PLUGIN = "org.mongodb.kafka:mongo-kafka-connect:1.13.0:jar:all"
PG_DRIVER = "org.postgresql:postgresql:42.7.4"
INSERT_ONE = "com.mongodb.kafka.connect.sink.writemodel.strategy.InsertOneDefaultStrategy"
CONNECTORS = ("jdbc", "mongo")
_TYPES = {"text": "string", "integer": "int32", "bigint": "int64", "timestamptz": "string"}
# One schema for every row: the consumer's columns, timestamps as RFC 3339 text; fields are
# required unless marked optional.
_NULLABLE = ("message_id", "image")
_FIELDS = [
    {"field": name, "type": _TYPES[kind]} | ({"optional": True} if name in _NULLABLE else {})
    for name, kind, _ in COLUMNS
]
SCHEMA = json.dumps({"type": "struct", "fields": _FIELDS}, separators=(",", ":"))


def install() -> Path:
    """The worker's jars in ``libs/`` and the plugin path in ``plugins/``, from Maven Central
    once per machine; one PostgreSQL driver (42.7.4) on the plugin path, not the plugin's own."""
    home = cache_dir() / f"kafka-connect-{KAFKA_VERSION}"

    def download() -> None:
        if shutil.which("mvn") is None:
            raise HarnessError("mvn not found: install Maven (apt-get install maven)")
        log(f"downloading Kafka Connect {KAFKA_VERSION} and its sinks (first run only)")
        shutil.rmtree(home, ignore_errors=True)
        plugins, jdbc = home / "plugins", home / "plugins" / "debezium-connector-jdbc"
        mvn = ["mvn", "-q", "-B", "-f", str(POM)]
        run([*mvn, "dependency:copy-dependencies", f"-DoutputDirectory={home / 'libs'}"])
        fetched = ((JDBC_PLUGIN, home), (MONGO_PLUGIN, plugins / "mongo-kafka-connect"))
        for artifact, folder in (*fetched, (PG_DRIVER, jdbc)):
            run([*mvn, "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={folder}"])
            if folder == home:  # not dependency:unpack, whose markers beside the pom go stale
                (tarball,) = home.glob("*.tar.gz")
                unpack(tarball, plugins)
        for old in jdbc.glob("postgresql-*.jar"):
            if not old.name.startswith("postgresql-42.7.4"):
                old.unlink()

    build_once(home, download)
    return home


def envelopes(topic: str, partitions: int) -> Source:
    """A :data:`bench.workload.Source`: each valid record of ``topic`` as the consumer's row (its
    coordinates included) in the envelope; each invalid one as it is, which the worker skips."""

    def source(total: int) -> Iterator[bytes]:
        for index, value in enumerate(values(total)):
            quote = _transformed(topic, index, partitions, value)
            if quote is None:
                yield value
                continue
            row = to_columns(quote)
            for name in ("kafka_timestamp", "ingested_at"):
                row[name] = row[name].isoformat() if row[name] is not None else None
            payload = json.dumps(row, separators=(",", ":"))
            yield f'{{"schema":{SCHEMA},"payload":{payload}}}'.encode()

    return source


def main(argv: list[str]) -> int:
    if argv == ["install"]:  # fill the cache ahead of a first `make bench`
        return install_command("bench.connect_reference", install, argv)
    parser = argparse.ArgumentParser(
        prog="python -m bench.connect_reference",
        epilog="python -m bench.connect_reference install: fetch the jars into the cache only",
    )
    parser.add_argument("--home", type=Path, required=True, help="settings and offsets go here")
    home = parser.parse_args(argv).home
    settings, install_dir = load(os.environ), install()
    home.mkdir(parents=True, exist_ok=True)
    worker = home / "worker.properties"
    write_properties(
        worker,
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "true",
            "offset.storage.file.filename": home / "offsets",
            "offset.flush.interval.ms": 1000,  # the default, 60 s, would end each run late
            "plugin.path": install_dir / "plugins",
            "listeners": "http://127.0.0.1:0",
        },
    )
    common = {"topics": settings.kafka_topic, "tasks.max": 1, "errors.tolerance": "all"}
    pg = f"{settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}"
    connectors = {
        "jdbc": {
            "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
            # Text for timestamps: the server casts it, as it does the consumer's JSON.
            "connection.url": f"jdbc:postgresql://{pg}?stringtype=unspecified",
            "connection.username": settings.postgres_user,
            "connection.password": settings.postgres_password,
            "insert.mode": "insert",
            "primary.key.mode": "none",
            "schema.evolution": "none",  # the lab's table (sql/), as the consumer writes it
            "collection.name.format": "quotes",
        },
        "mongo": {
            "connector.class": "com.mongodb.kafka.connect.MongoSinkConnector",
            "connection.uri": settings.mongo_uri,
            "database": settings.mongo_db,
            "collection": "quotes",
            "writemodel.strategy": INSERT_ONE,  # the default ReplaceOne upsert: tens per second
        },
    }
    files = []
    for name, values_ in connectors.items():
        files.append(home / f"{name}.properties")
        write_properties(
            files[-1], {"name": f"{settings.kafka_group_id}-{name}"} | common | values_
        )
    log4j = write_log4j(home)
    command = [java(), "-Xmx1g", f"-Dlog4j.configuration=file:{log4j}", "-cp"]
    command += [f"{install_dir / 'libs'}/*", "org.apache.kafka.connect.cli.ConnectStandalone"]
    sys.stdout.flush()
    os.execv(command[0], [*command, str(worker), *map(str, files)])


def envelope_topic(ctx: Context, source_topic: str, total: int) -> tuple[str, list[float]]:
    """A fresh topic holding ``source_topic``'s records in the envelope, and the mean bytes of
    a record in each (of the first 1,000); the jars fetched beforehand."""
    install()  # not inside the timed child
    topic = ctx.scratch.topic("bench-connect-", ctx.partitions)
    source = envelopes(source_topic, ctx.partitions)
    with ctx.bar(total, f"publish {total:,} (envelopes)") as bar:
        publish(ctx.endpoints.kafka, topic, total, ctx.partitions, progress=bar, source=source)
    sample = min(total, 1000)
    return topic, [sum(map(len, made(sample))) / sample for made in (values, source)]


def connect_run(ctx: Context, topic: str, total: int) -> Run:
    """Kafka Connect over ``topic`` (:func:`envelope_topic`), into fresh databases, until both
    connectors' groups have committed every record; its first record is the first row's
    ``written_at`` in PostgreSQL (the MongoDB sink leaves no write time)."""
    result = Run("connect", total)
    home = ctx.logs / f"connect-{time.time_ns()}"
    child = Child(
        ctx, f"connect-{total}", ["-m", "bench.connect_reference", "--home", str(home)], topic
    )
    groups = [ctx.scratch.adopt_group(f"connect-{child.group}-{name}") for name in CONNECTORS]
    needed = _committable(total, ctx.partitions)
    try:
        with ctx.bar(total, "Kafka Connect") as bar:

            def done() -> bool:
                committed = min(ctx.scratch.committed(g, topic) for g in groups)
                bar.update(max(0, committed - bar.n))
                return committed >= needed

            done_at = child.wait_until("Connect's commits", done, 120 + total / 300)
    except WaitTimeout as error:
        done_at, result.finished = time.time(), False
        result.problems.append(str(error).splitlines()[0])
    finally:
        code = child.stop()  # the JVM's exit on SIGTERM is 143
        result.cpu_s, result.peak_rss_mb = child.cpu_s, child.peak_rss_mb
        if code not in (0, 143):
            result.problems.append(f"Kafka Connect exited with {code}; log {child.log_path}")
    valid, _ = counts(total)
    params = ctx.endpoints.pg_params(child.dbs["postgres"])
    with closing(psycopg2.connect(**params)) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*), extract(epoch FROM min(written_at)) FROM quotes")
        rows, first = cursor.fetchone()
    documents = stored.quix_count(ctx.endpoints, "mongo", child.dbs["mongo"])
    for sink, found in (("postgres", rows), ("mongo", documents)):
        if result.finished and found != valid:
            result.problems.append(f"{sink}: {found} stored, {valid} expected")
    return child.timed(result, float(first) if first is not None else done_at, done_at)


def _committable(total: int, partitions: int) -> int:
    """Records the slower group commits: the JDBC sink commits up to the last record it was
    handed, and an invalid record (refused by the converter) at a partition's end never is."""
    ends = {i % partitions: i // partitions + 1 for i in range(total) if is_valid(i)}
    return sum(ends.values())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
