"""The native lab as a whole: start in order, show where things are, watch, stop on Ctrl-C.

Order (the compose file's ``depends_on``, without containers): servers (ZooKeeper, Kafka,
PostgreSQL, FerretDB) -> topics and schema (kafka-init, the postgres init scripts) -> the web
UIs, pgAdmin and mongo-express (they need only their database; they boot while the rest starts)
-> quotes API -> consumer -> producer. Stop is the reverse, each step bounded: the UIs and the
producer first (so nothing new arrives), then the consumer (it commits what it wrote), the API,
NiFi, and the servers, Kafka before ZooKeeper. Data stays in the lab directory for the next
start. ``make demo UIS=0`` leaves the UIs out (``--no-uis``).

Producer: the Python stand-in by default. The native NiFi (``--producer nifi``) runs the
shipped flow, but takes a 1 GB heap and 30 s to start on the project's 2-core machine
(minutes on its first run, which lays NiFi out from Maven Central), and it is the harness's
NiFi 1.18.0 with the project's stand-in PublishKafka_2_6
(native/servers/nifi/stand-ins/README.md), not Apache's 1.28.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg2

from native import lab_servers, lab_uis, processes, provision
from native.layout import (
    BY_NAME,
    HOST,
    UI_PORTS,
    LabError,
    Layout,
    choose_ports,
    layout,
    port_is_free,
)
from native.observe import Probe
from native.servers import mongo_express, pgadmin
from native.servers.ferretdb import FERRETDB_VERSION
from native.servers.kafka import KAFKA_VERSION
from native.servers.mongo_express import MONGO_EXPRESS_VERSION
from native.servers.pgadmin import PGADMIN_VERSION
from native.servers.postgres import POSTGRES_DB, POSTGRES_USER

REPO = Path(__file__).resolve().parents[1]
API_APP = REPO / "quotes-api" / "app.py"
PRODUCERS = ("stand-in", "nifi")
STATUS_EVERY_S = 2.0
# As long as native.servers.pgadmin gives pgAdmin to answer its ping.
UI_START_TIMEOUT_S = 90
POLL_INTERVAL_S = 5
POLL_COUNT = 10
# Settings the consumer reads (quotes_consumer.settings); inherited ones are dropped so that a
# shell with the compose stack's values exported cannot point the lab's consumer elsewhere.
CONSUMER_PREFIXES = ("KAFKA_", "POSTGRES_", "MONGO_", "CONSUMER_")
# In stopping order.
CHILDREN = ("pgadmin", "mongo-express", "status", "producer", "consumer", "quotes-api")


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: stop everything, keep the data."""


def log(message: str) -> None:
    print(f"[lab] {message}", flush=True)


class Lab:
    """One lab directory with its ports: the addresses everything derives from."""

    def __init__(self, home: Layout, ports: Mapping[str, int], uis: bool = True) -> None:
        self.home = home
        self.ports = dict(ports)
        self.uis = uis

    def url(self, name: str) -> str:
        """A web UI's address (``pgadmin``, ``mongo-express``)."""
        return f"http://{HOST}:{self.ports[name]}"

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.ports['kafka']}"

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://{HOST}:{self.ports['mongo']}/"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.ports['quotes-api']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.ports['metrics']}"

    def pg_params(self) -> dict[str, Any]:
        return {
            "host": HOST,
            "port": self.ports["postgres"],
            "dbname": POSTGRES_DB,
            "user": POSTGRES_USER,
            "password": lab_servers.postgres_password(self.home),
        }

    def probe(self) -> Probe:
        return Probe(self.bootstrap, self.pg_params(), self.mongo_uri)

    def consumer_env(self) -> dict[str, str]:
        """docker-compose.yml's consumer settings, with the lab's addresses."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(CONSUMER_PREFIXES)}
        params = self.pg_params()
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "KAFKA_TOPIC": provision.TOPIC,
                "KAFKA_GROUP_ID": provision.GROUP,
                "KAFKA_DLQ_TOPIC": provision.DLQ_TOPIC,
                "POSTGRES_HOST": HOST,
                "POSTGRES_PORT": str(params["port"]),
                "POSTGRES_DB": params["dbname"],
                "POSTGRES_USER": params["user"],
                "POSTGRES_PASSWORD": params["password"],
                "MONGO_URI": self.mongo_uri,
                "MONGO_DB": "quotes",
                "MONGO_COLLECTION": "quotes",
                "CONSUMER_METRICS_PORT": str(self.ports["metrics"]),
                "STREAMLAB_LAB_DIR": str(self.home.root),
            }
        )
        return env

    @property
    def status_url(self) -> str:
        return f"http://{HOST}:{self.ports['status']}"

    def status_env(self) -> dict[str, str]:
        """The status page's settings: the consumer's, plus its own port and the quotes API."""
        env = {
            k: v
            for k, v in self.consumer_env().items()
            if not k.startswith(("STATUS_", "NIFI_", "QUOTES_API_"))
        }
        env.update({"STATUS_PORT": str(self.ports["status"]), "QUOTES_API_URL": self.api_url})
        return env

    def child_env(self) -> dict[str, str]:
        return {**os.environ, "STREAMLAB_LAB_DIR": str(self.home.root), "PYTHONUNBUFFERED": "1"}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], log_path: Path,
          timeout_s: float) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            raise LabError(f"{what} exited with {proc.returncode}:\n{_tail(log_path)}")
        time.sleep(0.3)
    raise LabError(f"{what} not ready after {timeout_s:.0f}s; see {log_path}:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 12) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _server_version(lab: Lab) -> str:
    conn = psycopg2.connect(**lab.pg_params(), connect_timeout=5)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return str(cursor.fetchone()[0]).split()[0]
    finally:
        conn.close()


def write_pgpass(lab: Lab) -> None:
    """A 0600 password file for psql, so ``make demo-psql`` logs in without showing it."""
    params = lab.pg_params()
    lab.home.pgpass.touch(mode=0o600)
    lab.home.pgpass.chmod(0o600)
    lab.home.pgpass.write_text(f"{HOST}:{params['port']}:*:{params['user']}:{params['password']}\n")


# --- the table of addresses ----------------------------------------------------------------------


def table(lab: Lab, producer: str, postgres_version: str) -> str:
    """The README's services table, with the native lab's addresses."""
    nifi = producer == "nifi"
    secrets = lab.home.servers
    who = lab_uis.logins(lab.home)
    skipped = ("not started (make demo UIS=0)", "-", "-")
    rows = [
        ("Service", "What it is", "Address on this machine", "Credentials"),
        (
            "nifi",
            "NiFi 1.18.0 (harness build): GetHTTP -> SplitJson -> PublishKafka_2_6"
            if nifi
            else "not started: the Python stand-in produces (make demo PRODUCER=nifi)",
            f"https://{HOST}:{lab.ports['nifi']}/nifi (self-signed certificate)" if nifi else "-",
            f"in {secrets / 'nifi' / 'credentials.json'}" if nifi else "-",
        ),
        (
            "kafka-ui",
            "compose only (no native build of Kafbat UI): use the commands and the status page",
            "make demo-topic / demo-dlq / demo-counts",
            "-",
        ),
        (
            "pgadmin",
            *(
                (
                    f"pgAdmin {PGADMIN_VERSION}, server {lab_uis.SERVER_NAME!r} pre-registered, "
                    "no password prompt",
                    f"{lab.url('pgadmin')}/",
                    f"{who.pgadmin_email} / in {who.pgadmin_password_file}",
                )
                if lab.uis
                else skipped
            ),
        ),
        (
            "mongo-express",
            *(
                (
                    f"mongo-express {MONGO_EXPRESS_VERSION}, database quotes on the mongo row",
                    f"{lab.url('mongo-express')}/",
                    f"{who.mongo_express_user} / in {who.mongo_express_password_file}",
                )
                if lab.uis
                else skipped
            ),
        ),
        (
            "postgres",
            f"PostgreSQL {postgres_version}, schema from sql/",
            f"{HOST}:{lab.ports['postgres']}, database {POSTGRES_DB}",
            f"{POSTGRES_USER} / in {lab.home.postgres_password_file}",
        ),
        (
            "mongo",
            f"FerretDB {FERRETDB_VERSION} (MongoDB wire protocol, SQLite)",
            lab.mongo_uri,
            "none (loopback only)",
        ),
        (
            "kafka",
            f"Apache Kafka {KAFKA_VERSION}, ZooKeeper mode",
            lab.bootstrap,
            "none (PLAINTEXT)",
        ),
        ("zookeeper", "ZooKeeper for the broker", f"{HOST}:{lab.ports['zookeeper']}", "none"),
        (
            "quotes-api",
            "Offline stand-in for the retired public quotes API",
            f"{lab.api_url}/quotes?count=3",
            "none",
        ),
        (
            "consumer",
            f"python -m quotes_consumer: {provision.TOPIC} -> PostgreSQL + MongoDB, "
            f"rejects -> {provision.DLQ_TOPIC}",
            f"{lab.metrics_url}/metrics",
            "the PostgreSQL and MongoDB rows",
        ),
        ("status", "The pipeline on one page, every 2 s", f"{lab.status_url}/", "none"),
        (
            "kafka-init",
            f"done at every start: {provision.TOPIC} (3 partitions), {provision.DLQ_TOPIC} (1)",
            "-",
            "none",
        ),
        (
            "nifi-init",
            "done: nifi/deploy.py deployed and started the flow" if nifi else "not needed",
            "-",
            "-",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


# --- up ------------------------------------------------------------------------------------------


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _already_stopping(_signum: int, _frame: FrameType | None) -> None:
    log("already stopping; every step has a time limit")


def prepare(home: Layout, producer: str, uis: bool = True) -> Lab:
    """The lab directory and its ports; refuses if this lab runs already or a port is taken."""
    home.create()
    owner = processes.recorded(home.control_pid)
    if owner is not None:
        raise LabError(
            f"the lab in {home.root} is already running (pid {owner.pid}): "
            "watch it with `make demo-counts`, stop it with `make demo-down`"
        )
    saved = home.saved_ports()
    if saved is not None and _leftovers(home):
        log("stopping what an earlier run, ended without clean-up, left running")
        cleanup(Lab(home, saved), quiet=True)
    ports = choose_ports(saved, os.environ)
    needed = [
        name
        for name in ports
        if (producer == "nifi" or name != "nifi") and (uis or name not in UI_PORTS)
    ]
    for name in needed:
        if not port_is_free(ports[name]):
            raise LabError(
                f"port {ports[name]} for {BY_NAME[name].what} is taken by another program: "
                f"stop it (ss -ltnp | grep :{ports[name]}), or `make demo-reset` to pick new ports"
            )
    if saved != ports:  # a new lab, or one made before a port was added (the UIs')
        home.save_ports(ports)
    if saved is None:
        log(f"new lab in {home.root}")
    else:
        log(f"lab in {home.root}: reusing its data")
    return Lab(home, ports, uis)


def up(producer: str, uis: bool = True) -> int:
    """``make demo``: start everything, print where it is, a status line every 2 s, until
    Ctrl-C (or SIGTERM from ``make demo-down``); then stop everything, keeping the data."""
    if producer not in PRODUCERS:
        raise LabError(f"PRODUCER={producer!r}: expected one of {', '.join(PRODUCERS)}")
    home = layout()
    lab = prepare(home, producer, uis)
    processes.record(home.control_pid, os.getpid())
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)
    children: dict[str, subprocess.Popen[bytes]] = {}
    code = 0
    try:
        began = time.monotonic()
        start(lab, producer, children)
        log(f"lab up in {time.monotonic() - began:.1f}s")
        watch(lab, producer, children)
    except Interrupted as signum:
        log(f"{signum}: stopping everything (the data stays in {home.root})")
    except (LabError, psycopg2.Error, OSError) as error:
        print(f"[lab] error: {error}".rstrip(), file=sys.stderr, flush=True)
        log("stopping everything that started")
        code = 1
    finally:
        signal.signal(signal.SIGINT, _already_stopping)
        signal.signal(signal.SIGTERM, _already_stopping)
        cleanup(lab, children=children)
        home.control_pid.unlink(missing_ok=True)
    log("stopped")
    return code


def start(lab: Lab, producer: str, children: dict[str, subprocess.Popen[bytes]]) -> None:
    home = lab.home
    lab_servers.release_all(home)
    lab_servers.start(home, lab.ports)
    partitions = provision.ensure_topics(lab.bootstrap)
    log(f"topics: {', '.join(f'{t} ({n} partitions)' for t, n in partitions.items())}")
    log(f"schema: applied {', '.join(provision.apply_schema(lab.pg_params()))}")
    version = _server_version(lab)
    write_pgpass(lab)
    ui_checks = start_uis(lab, children) if lab.uis else {}

    env = lab.child_env()
    api_cmd = [sys.executable, str(API_APP), "--host", HOST, "--port", str(lab.ports["quotes-api"])]
    children["quotes-api"] = processes.spawn(home, "quotes-api", api_cmd, env, home.logs)
    _wait(
        "the quotes API",
        lambda: _answers(f"{lab.api_url}/healthz"),
        children["quotes-api"],
        home.logs / "quotes-api.log",
        20,
    )
    consumer_cmd = [sys.executable, "-m", "quotes_consumer"]
    # The working directory is the lab's logs folder: the consumer also reads a .env from its
    # working directory, and the repository's .env holds the compose stack's addresses.
    children["consumer"] = processes.spawn(
        home, "consumer", consumer_cmd, lab.consumer_env(), home.logs
    )
    _wait(
        "the consumer",
        lambda: _answers(f"{lab.metrics_url}/healthz"),
        children["consumer"],
        home.logs / "consumer.log",
        60,
    )
    status_cmd = [sys.executable, "-m", "streamlab_status"]
    children["status"] = processes.spawn(home, "status", status_cmd, lab.status_env(), home.logs)
    _wait(
        "the status page",
        lambda: _answers(f"{lab.status_url}/healthz"),
        children["status"],
        home.logs / "status.log",
        20,
    )
    for name, (what, ready) in ui_checks.items():
        _wait(what, ready, children[name], home.logs / f"{name}.log", UI_START_TIMEOUT_S)
    if producer == "nifi":
        lab_servers.start_nifi(home, lab.ports)
        which = (
            f"producer: NiFi, the shipped flow nifi/quotes-flow.xml, polling the API every "
            f"{POLL_INTERVAL_S} s (NiFi 1.18.0 with the project's stand-in PublishKafka_2_6)"
        )
    else:
        producer_cmd = [
            sys.executable, "-m", "quotes_producer", "poll",
            "--api-url", f"{lab.api_url}/quotes?count={POLL_COUNT}",
            "--bootstrap", lab.bootstrap, "--topic", provision.TOPIC,
            "--iterations", "0", "--interval", str(POLL_INTERVAL_S),
        ]  # fmt: skip
        children["producer"] = processes.spawn(home, "producer", producer_cmd, env, home.logs)
        which = (
            f"producer: the Python stand-in (python -m quotes_producer poll: {POLL_COUNT} "
            f"quotes every {POLL_INTERVAL_S} s, as the NiFi flow). NiFi is not the default: "
            "it takes a 1 GB heap and 30 s or more to start; `make demo PRODUCER=nifi` runs it"
        )
    print()
    print(table(lab, producer, version))
    print()
    log(which)
    log(f"logs: {home.logs}/ and {home.servers}/*.log")
    log(
        "look inside: make demo-counts | demo-psql | demo-mongo | demo-topic | demo-dlq    "
        "stop: Ctrl-C (or make demo-down), data kept; make demo-reset deletes it"
    )


def start_uis(
    lab: Lab, children: dict[str, subprocess.Popen[bytes]]
) -> dict[str, tuple[str, Callable[[], bool]]]:
    """Install (first run only) and spawn pgAdmin and mongo-express; returns how to tell each is
    serving, for a wait once the pipeline has started: they boot while it does."""
    home = lab.home
    lab_uis.install()
    express = lab_uis.mongo_express_instance(home, lab.ports["mongo-express"], lab.mongo_uri)
    children["mongo-express"] = processes.spawn(
        home,
        "mongo-express",
        express.COMMAND,
        {**express.env, "STREAMLAB_LAB_DIR": str(home.root)},
        mongo_express.install(),
    )
    admin = lab_uis.pgadmin_instance(home, lab.ports["pgadmin"], lab.pg_params())
    command = admin.prepare(pgadmin.install())  # first start: setup-db, load-servers (seconds)
    children["pgadmin"] = processes.spawn(
        home, "pgadmin", command, {**admin.env, "STREAMLAB_LAB_DIR": str(home.root)}, admin.workdir
    )
    return {"mongo-express": ("mongo-express", express.answers), "pgadmin": ("pgAdmin", admin.ping)}


def watch(lab: Lab, producer: str, children: Mapping[str, subprocess.Popen[bytes]]) -> None:
    """A status line every 2 s until a signal. A part that dies (a child, a server, NiFi)
    stops the lab with the end of its log, rather than a status line of question marks.
    A server must be silent twice in a row (2 s apart) to count as dead."""
    probe = lab.probe()
    silent_before: set[str] = set()
    try:
        while True:
            for name, proc in children.items():
                if proc.poll() is not None:
                    log_path = lab.home.logs / f"{name}.log"
                    raise LabError(
                        f"{name} exited with {proc.returncode}; last lines of {log_path}:\n"
                        f"{_tail(log_path)}"
                    )
            silent = lab_servers.silent(lab.home, lab.ports, nifi=producer == "nifi")
            for name, log_path in silent:
                if name in silent_before:
                    raise LabError(
                        f"{name} stopped answering; last lines of {log_path}:\n{_tail(log_path)}"
                    )
            silent_before = {name for name, _log in silent}
            print(probe.look().line(), flush=True)
            time.sleep(STATUS_EVERY_S)
    finally:
        probe.close()


# --- down, reset ---------------------------------------------------------------------------------


def cleanup(
    lab: Lab, children: Mapping[str, subprocess.Popen[bytes]] | None = None, quiet: bool = False
) -> None:
    """Stop, in order and each within its time limit, whatever of this lab still runs.

    Producers first (the stand-in or NiFi), so nothing new arrives while the consumer commits
    what it wrote; the servers last. A step that fails is reported and the next one still runs.
    """
    children = children or {}
    first = {"producer": signal.SIGINT}  # the stand-in flushes and exits on Ctrl-C
    limits = {
        "pgadmin": 20.0,
        "mongo-express": 20.0,
        "status": 10.0,
        "producer": 15.0,
        "consumer": 35.0,
        "quotes-api": 10.0,
    }

    def stop_child(name: str) -> None:
        how = processes.stop(
            lab.home, name, first.get(name, signal.SIGTERM), limits[name], children.get(name)
        )
        if how:
            log(f"{name}: {how}")

    def stop_nifi() -> None:
        if (lab_servers.nifi_home(lab.home) / "nifi.pid").exists():
            lab_servers.stop_nifi(lab.home, lab.ports)

    def stop_servers() -> None:
        if not quiet or _servers_recorded(lab.home):
            lab_servers.stop(lab.home, lab.ports)

    steps = [
        ("pgAdmin", lambda: stop_child("pgadmin")),
        ("mongo-express", lambda: stop_child("mongo-express")),
        ("the status page", lambda: stop_child("status")),
        ("the producer", lambda: stop_child("producer")),
        ("NiFi", stop_nifi),
        ("the consumer", lambda: stop_child("consumer")),
        ("the quotes API", lambda: stop_child("quotes-api")),
        ("the servers", stop_servers),
    ]
    for what, step in steps:
        try:
            step()
        except (LabError, OSError) as error:
            print(f"[lab] error stopping {what}: {error}", file=sys.stderr, flush=True)


def _leftovers(home: Layout) -> bool:
    children = any(processes.recorded(processes.pidfile(home, name)) for name in CHILDREN)
    nifi = (lab_servers.nifi_home(home) / "nifi.pid").exists()
    return children or nifi or _servers_recorded(home)


def _servers_recorded(home: Layout) -> bool:
    pids = [home.servers / f"{name}.pid" for name in ("zookeeper", "kafka", "ferretdb")]
    postmaster = home.servers / "postgres" / "data" / "postmaster.pid"
    return any(path.exists() for path in [*pids, postmaster])


def down() -> int:
    """``make demo-down``: stop a lab running in another shell, or what a killed lab left."""
    home = layout()
    saved = home.saved_ports()
    if saved is None:
        log(f"no lab in {home.root}: nothing to stop")
        return 0
    owner = processes.recorded(home.control_pid)
    if owner is not None:
        log(f"asking the lab (pid {owner.pid}) to stop")
        os.kill(owner.pid, signal.SIGTERM)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and processes.is_running(owner):
            time.sleep(0.3)
        if processes.is_running(owner):
            log(f"the lab (pid {owner.pid}) did not stop within 180s; stopping its parts")
            os.kill(owner.pid, signal.SIGKILL)
    cleanup(Lab(home, saved), quiet=True)
    home.control_pid.unlink(missing_ok=True)
    log("stopped; data kept")
    return 0


def reset(confirmed: bool) -> int:
    """``make demo-reset``: stop the lab and delete its directory (asks first)."""
    home = layout()
    if not home.root.exists():
        log(f"no lab in {home.root}: nothing to delete")
        return 0
    if not (home.config.exists() or home.servers.exists()):
        raise LabError(f"{home.root} does not look like a lab directory (no lab.json): not deleted")
    if not confirmed:
        print(
            f"This deletes ALL native lab data in {home.root} (Kafka, PostgreSQL, MongoDB, "
            "NiFi, pgAdmin). Type yes to continue: ",
            end="",
            flush=True,
        )
        try:
            answer = input()
        except EOFError:
            answer = ""
        if answer.strip() != "yes":
            print("Aborted.")
            return 1
    down()
    shutil.rmtree(home.root)
    log(f"deleted {home.root}")
    return 0


def status() -> int:
    """Whether the lab runs, where, and its numbers."""
    home = layout()
    saved = home.saved_ports()
    owner = processes.recorded(home.control_pid)
    if saved is None:
        print(f"no lab in {home.root} (make demo creates it)")
        return 1
    print(f"lab {home.root}: {'running, pid ' + str(owner.pid) if owner else 'not running'}")
    print("ports: " + ", ".join(f"{name} {port}" for name, port in saved.items()))
    return 0 if owner else 1


def running_lab() -> Lab:
    """The lab the inspection commands look at; one line saying what to do if there is none."""
    home = layout()
    saved = home.saved_ports()
    if saved is None or not home.postgres_password_file.exists():
        raise LabError(f"no native lab in {home.root}: start one with `make demo`")
    lab = Lab(home, saved)
    if processes.recorded(home.control_pid) is None and port_is_free(saved["kafka"]):
        raise LabError(f"the native lab in {home.root} is not running: start it with `make demo`")
    return lab
