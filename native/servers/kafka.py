"""Kafka natively: 3.9 with ZooKeeper (the default), or 4.x in KRaft mode, one node or three.

- Kafka 3.9.1 + ZooKeeper (the version Confluent Platform 7.9 ships, as in docker-compose.yml),
  jars from Maven Central laid out by ``mvn dependency:copy-dependencies`` on ``kafka/pom.xml``;
- with ``STREAMLAB_KAFKA_MODE=kraft``, Apache Kafka 4.x in KRaft mode instead, no ZooKeeper (the
  compose overrides' apache/kafka image), jars from ``kafka4/pom.xml``;
- :class:`KraftNode` and :func:`kraft_command` also make the replicated variant's three
  brokers (docker-compose.replicated.yml), each broker and controller.

Both run on the machine's Java.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from native.servers.cache import build_once, cache_dir
from native.servers.process import (
    HOST,
    HarnessError,
    is_listening,
    java,
    log,
    run,
    run_dir,
    spawn,
    tail,
    wait_until,
)

HERE = Path(__file__).resolve().parent  # the poms: kafka/pom.xml, kafka4/pom.xml
KAFKA_VERSION = "3.9.1"
# STREAMLAB_KAFKA_MODE=kraft: Apache Kafka 4.x in KRaft mode instead, no ZooKeeper (the compose
# overrides' apache/kafka image); see "Kafka in KRaft mode" below.
KRAFT_KAFKA_VERSION = "4.4.0"
KAFKA_MODE = os.environ.get("STREAMLAB_KAFKA_MODE", "zookeeper")
ZOOKEEPER_PORT = int(os.environ.get("STREAMLAB_ZOOKEEPER_PORT", "12181"))
KAFKA_PORT = int(os.environ.get("STREAMLAB_KAFKA_PORT", "19092"))


def kafka_libs() -> Path:
    """The broker's jars (native/servers/kafka/pom.xml), copied from Maven Central once."""
    return kafka_jars(KAFKA_VERSION, "kafka")


def kafka_jars(version: str, pom_folder: str) -> Path:
    """Kafka ``version``'s jars, as ``native/servers/<pom_folder>/pom.xml`` lists them, copied
    once per machine, under a lock: the CI's KRaft pass and a developer's run may both reach
    here on a cold cache."""
    libs = cache_dir() / f"kafka-{version}" / "libs"

    def download() -> None:
        if shutil.which("mvn") is None:
            raise HarnessError("mvn not found: install Maven (apt-get install maven)")
        log(f"downloading Kafka {version} jars (first run only)")
        shutil.rmtree(libs, ignore_errors=True)
        run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(HERE / pom_folder / "pom.xml"),
                "dependency:copy-dependencies",
                f"-Dkafka.version={version}",
                f"-DoutputDirectory={libs}",
            ]
        )

    build_once(libs, download)
    return libs


def write_properties(path: Path, values: dict[str, object]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


def start_zookeeper() -> None:
    """A fresh ZooKeeper, and with it a fresh Kafka cluster.

    The cluster is throwaway (every test makes its own topics), and a ZooKeeper that went down
    uncleanly (a killed CI run, a reboot) comes back holding the dead broker's registration,
    which a new broker refuses to start beside. So both data folders start empty.

    With ``STREAMLAB_KEEP_DATA=1`` (the native lab, ``make demo``) both are kept instead. The
    lab stops Kafka before ZooKeeper, so the broker deregisters; after an unclean stop, the
    retry in :func:`start_kafka` waits out the dead broker's session. Kafka's data is still
    dropped if ZooKeeper's is gone, since a broker refuses a cluster id it does not know.
    """
    libs = kafka_libs()
    home = run_dir() / "zookeeper"
    keep = os.environ.get("STREAMLAB_KEEP_DATA") == "1" and (home / "data").is_dir()
    if not keep:
        shutil.rmtree(home / "data", ignore_errors=True)
        shutil.rmtree(run_dir() / "kafka" / "data", ignore_errors=True)
    home.mkdir(exist_ok=True)
    conf = home / "zookeeper.properties"
    write_properties(
        conf,
        {
            "dataDir": home / "data",
            "clientPort": ZOOKEEPER_PORT,
            "clientPortAddress": HOST,
            "maxClientCnxns": 0,
            "admin.enableServer": "false",
        },
    )
    log4j = write_log4j(home)
    spawn(
        "zookeeper",
        [
            java(),
            "-Xmx256m",
            f"-Dlog4j.configuration=file:{log4j}",
            "-cp",
            f"{libs}/*",
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(conf),
        ],
    )
    wait_until("ZooKeeper", lambda: is_listening(ZOOKEEPER_PORT), 60, run_dir() / "zookeeper.log")


def write_log4j(home: Path) -> Path:
    """Console logging at INFO for the server, WARN for the chatty parts."""
    path = home / "log4j.properties"
    path.write_text(
        "log4j.rootLogger=INFO, stdout\n"
        "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        "log4j.logger.org.apache.zookeeper=WARN\n"
        "log4j.logger.kafka.request.logger=WARN\n"
        "log4j.logger.state.change.logger=WARN\n"
        "log4j.logger.kafka.log.LogCleaner=WARN\n"
    )
    return path


def start_kafka() -> None:
    libs = kafka_libs()
    home = run_dir() / "kafka"
    home.mkdir(exist_ok=True)
    conf = home / "server.properties"
    write_properties(
        conf,
        {
            "broker.id": 0,
            "listeners": f"PLAINTEXT://{HOST}:{KAFKA_PORT}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{KAFKA_PORT}",
            "zookeeper.connect": f"{HOST}:{ZOOKEEPER_PORT}",
            "zookeeper.session.timeout.ms": 6000,
            "log.dirs": home / "data",
            "num.partitions": 1,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
        },
    )
    log4j = write_log4j(home)
    logfile = run_dir() / "kafka.log"
    command = [
        java(),
        "-Xms256m",
        "-Xmx1g",
        f"-Dlog4j.configuration=file:{log4j}",
        "-cp",
        f"{libs}/*",
        "kafka.Kafka",
        str(conf),
    ]
    # A broker killed without a clean shutdown leaves its registration in a running ZooKeeper
    # until its session times out (6 s here); a broker started before that exits at once.
    for attempt in range(1, 4):
        started_at = logfile.stat().st_size if logfile.exists() else 0
        process = spawn("kafka", command)

        def started(offset: int = started_at) -> bool:
            with logfile.open("rb") as handle:
                handle.seek(offset)
                return b"started (kafka.server.KafkaServer)" in handle.read()

        try:
            wait_until(
                "Kafka", lambda: started() and is_listening(KAFKA_PORT), 120, logfile, process
            )
            return
        except HarnessError:
            if attempt == 3 or "NodeExistsException" not in tail(logfile, 40):
                raise
            log("Kafka: the previous broker's registration has not expired yet; retrying in 8s")
            time.sleep(8)


# --- Kafka in KRaft mode (STREAMLAB_KAFKA_MODE=kraft) --------------------------------------------


def kraft_libs() -> Path:
    """Kafka 4.x's jars (native/servers/kafka4/pom.xml), copied from Maven Central once."""
    return kafka_jars(KRAFT_KAFKA_VERSION, "kafka4")


def write_log4j2(home: Path) -> Path:
    """Kafka 4 logs through Log4j 2: console at INFO, WARN for the chatty parts."""
    path = home / "log4j2.properties"
    path.write_text(
        "appender.console.type = Console\n"
        "appender.console.name = stdout\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\n"
        "rootLogger.appenderRef.stdout.ref = stdout\n"
        "logger.request.name = kafka.request.logger\n"
        "logger.request.level = WARN\n"
        "logger.state.name = state.change.logger\n"
        "logger.state.level = WARN\n"
        "logger.cleaner.name = kafka.log.LogCleaner\n"
        "logger.cleaner.level = WARN\n"
    )
    return path


@dataclass(frozen=True)
class KraftNode:
    """One KRaft node that is both broker and controller (the lab's "combined" mode)."""

    node_id: int
    port: int  # clients and the other brokers
    controller_port: int  # the Raft quorum
    home: Path

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"


KRAFT_CLEANER_BUFFER_BYTES = 32 * 2**20


def kraft_voters(nodes: list[KraftNode]) -> str:
    """controller.quorum.voters: every node votes, so a quorum is a majority of ``nodes``."""
    return ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes)


def kraft_command(node: KraftNode, nodes: list[KraftNode], cluster_id: str, heap: str) -> list[str]:
    """Write ``node``'s configuration, format its log folder once, return the broker's command.

    Formatting is skipped for a folder that already holds the cluster's metadata: a restarted
    broker (a test's outage, a SIGKILLed leader coming back) keeps its log, as a real one does.
    """
    libs = kraft_libs()
    node.home.mkdir(parents=True, exist_ok=True)
    replicas = len(nodes)
    conf = node.home / "server.properties"
    write_properties(
        conf,
        {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": kraft_voters(nodes),
            "listeners": f"PLAINTEXT://{HOST}:{node.port},CONTROLLER://{HOST}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": node.home / "data",
            "num.partitions": 1,
            "default.replication.factor": replicas,
            "min.insync.replicas": min(2, replicas),
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min(2, replicas),
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min(2, replicas),
            "group.initial.rebalance.delay.ms": 0,
            # Kafka 4.0 refuses records stamped more than an hour ahead (KIP-1030); 3.9 took any.
            # The consumer suite puts far-future and largest-64-bit timestamps into the topic to
            # check the consumer copes, so the test broker takes any timestamp, as 3.9 did.
            "log.message.timestamp.after.max.ms": 2**63 - 1,
            "auto.create.topics.enable": "true" if replicas == 1 else "false",
            "delete.topic.enable": "true",
        }
        | (
            # The log cleaner allocates this buffer in one piece on the heap when the broker
            # starts. Kafka's default, 128 MiB, sometimes did not fit the replicated nodes'
            # 256 MiB heap: the broker exited with OutOfMemoryError. As in
            # docker-compose.replicated.yml; the single node keeps the default, as the KRaft
            # variant does.
            {"log.cleaner.dedupe.buffer.size": KRAFT_CLEANER_BUFFER_BYTES} if replicas > 1 else {}
        ),
    )
    log4j = write_log4j2(node.home)
    java_cmd = [java(), f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*"]
    if not (node.home / "data" / "meta.properties").exists():
        storage_tool = [*java_cmd, "-Xmx256m", "kafka.tools.StorageTool"]
        run([*storage_tool, "format", "-t", cluster_id, "-c", str(conf), "--ignore-formatted"])
    return [*java_cmd, f"-Xms{heap}", f"-Xmx{heap}", "kafka.Kafka", str(conf)]


def kraft_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's Uuid)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


def kraft_started(logfile: Path, offset: int = 0) -> bool:
    """The broker logged its start-up as complete after ``offset`` in its log."""
    if not logfile.exists():
        return False
    with logfile.open("rb") as handle:
        handle.seek(offset)
        return b"Kafka Server started" in handle.read()


def start_kafka_kraft() -> None:
    """The single test broker in KRaft mode, its controller on the ZooKeeper slot's port.

    ZooKeeper does not run in this mode, so its port (``STREAMLAB_ZOOKEEPER_PORT``) is free and
    no other setting is needed. The cluster id is kept beside the data, so a restart (a test's
    Kafka outage) finds the same cluster.
    """
    home = run_dir() / "kafka-kraft"
    home.mkdir(exist_ok=True)
    id_file = home / "cluster.id"
    if not id_file.exists() or not (home / "node" / "data" / "meta.properties").exists():
        shutil.rmtree(home / "node", ignore_errors=True)
        id_file.write_text(kraft_cluster_id())
    node = KraftNode(1, KAFKA_PORT, ZOOKEEPER_PORT, home / "node")
    command = kraft_command(node, [node], id_file.read_text().strip(), "512m")
    logfile = run_dir() / "kafka.log"
    offset = logfile.stat().st_size if logfile.exists() else 0
    process = spawn("kafka", command)
    wait_until(
        f"Kafka {KRAFT_KAFKA_VERSION} (KRaft)",
        lambda: kraft_started(logfile, offset) and is_listening(KAFKA_PORT),
        120,
        logfile,
        process,
    )
