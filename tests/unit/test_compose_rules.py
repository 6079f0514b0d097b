"""The lab's docker-compose.yml rules, checked with the real Compose parser.

Why with the real parser: ``docker-compose config`` resolves interpolation, ``${VAR:?}`` errors,
YAML anchors and defaults exactly as ``docker compose up`` will, and needs no Docker engine. The
binary is built once from Compose's Go module (tests/compose_cli.py, ~2 minutes cold) and
cached outside the repository. Every run of ``config`` gets a scrubbed environment and an env
file copied from .env.example, so a developer's own .env or exported variables cannot change the
result.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from native.servers.kafka import KRAFT_CLEANER_BUFFER_BYTES, KRAFT_KAFKA_VERSION
from tests import compose_cli

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
CONSUMER_SRC = REPO / "consumer" / "src"
CONFIG_TIMEOUT_S = 120

# Services that run once and exit; everything else must stay up and report health.
ONE_SHOTS = {"kafka-init", "nifi-init"}
# Services whose data must survive `docker compose down` (named volumes, not bind mounts).
STATEFUL = {"zookeeper", "kafka", "postgres", "pgadmin", "mongo", "nifi"}
# Memory budget for the sum of limits with 3 consumers: must leave room on an 8 GB laptop.
LAPTOP_BUDGET_MIB = 7 * 1024
SCALED_CONSUMERS = 3
# `${NAME}`, `${NAME:-default}`, `${NAME:?error}` and friends; `$$` is a literal dollar.
VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


# --- Helpers ------------------------------------------------------------------------------------


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as written (no interpolation): enough for the lab's simple .env files."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        values[key.strip()] = value.strip()
    return values


def scrubbed_env(tmp_home: Path) -> dict[str, str]:
    """Only what the Compose CLI needs: no developer variables leak into interpolation."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_home)}


def run(cmd: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    """A tool the rules drive, its output as text: bounded (60 s unless ``timeout`` says), its
    exit status left to the caller."""
    return subprocess.run(
        cmd, **{"capture_output": True, "text": True, "timeout": 60, "check": False, **options}
    )


def run_config(
    binary: Path,
    env_file: Path,
    *extra: str,
    files: tuple[Path, ...] = (COMPOSE_FILE,),
    profiles: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """``docker compose config`` on ``files`` (the main file, then any overrides, in order)."""
    return run(
        [
            str(binary),
            "--project-directory",
            str(REPO),
            "--env-file",
            str(env_file),
            *(arg for path in files for arg in ("-f", str(path))),
            *(arg for profile in profiles for arg in ("--profile", profile)),
            "config",
            *extra,
        ],
        cwd=REPO,
        env=scrubbed_env(env_file.parent),
        timeout=CONFIG_TIMEOUT_S,
    )


def mebibytes(value: Any) -> float:
    """Compose renders mem_limit as a byte count (a string or a number)."""
    return int(value) / (1024 * 1024)


def memory_limit(service: Mapping[str, Any]) -> Any:
    limit = service.get("mem_limit")
    if limit is None:
        limit = service.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
    return limit


def dockerfile_from_lines(path: Path) -> list[str]:
    return [
        line.split()[1]
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip().upper().startswith("FROM ")
    ]


def assert_pinned(image: str, where: str) -> None:
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    assert tag, f"{where}: image {image!r} has no tag"
    assert tag != "latest", f"{where}: image {image!r} uses latest"
    assert re.search(r"\d+\.\d+", tag), f"{where}: tag {tag!r} of {name} is not an exact version"


# --- Fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def compose_bin() -> Path:
    try:
        return compose_cli.install()
    except compose_cli.ComposeUnavailable as error:
        pytest.fail(f"docker-compose is needed for these checks and could not be built: {error}")


@pytest.fixture(scope="session")
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="session")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose-env") / ".env"
    shutil.copyfile(ENV_EXAMPLE, path)
    return path


@pytest.fixture(scope="session")
def config(compose_bin: Path, env_file: Path) -> dict[str, Any]:
    result = run_config(compose_bin, env_file, "--format", "json")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.fixture(scope="session")
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = config["services"]
    return found


@cache
def raw_compose_text() -> str:
    """The compose file without its full-line comments (which may show `${VAR}` as prose)."""
    lines = COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


# --- The compose file as a whole ----------------------------------------------------------------


def test_config_is_valid(compose_bin: Path, env_file: Path) -> None:
    result = run_config(compose_bin, env_file, "-q")
    assert result.returncode == 0, result.stderr


def test_expected_services_exist(services: dict[str, Any]) -> None:
    expected = {
        "zookeeper",
        "kafka",
        "kafka-init",
        "kafka-ui",
        "postgres",
        "pgadmin",
        "mongo",
        "mongo-express",
        "quotes-api",
        "nifi",
        "nifi-init",
        "consumer",
        "status",
    }
    assert set(services) == expected


def test_missing_credential_stops_compose(compose_bin: Path, tmp_path: Path) -> None:
    """A `${VAR:?}` credential left out of .env must fail loudly, naming the variable."""
    env_file = tmp_path / ".env"
    kept = [
        line
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if not line.startswith("POSTGRES_PASSWORD=")
    ]
    env_file.write_text("\n".join(kept) + "\n", encoding="utf-8")
    result = run_config(compose_bin, env_file, "-q")
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_every_image_is_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "build" in service:
            dockerfile = Path(service["build"]["context"]) / service["build"].get(
                "dockerfile", "Dockerfile"
            )
            if not dockerfile.exists():
                pytest.fail(f"{name}: {dockerfile} is missing")
            for image in dockerfile_from_lines(dockerfile):
                assert_pinned(image, f"{name} ({dockerfile.relative_to(REPO)})")
        else:
            assert "image" in service, f"{name}: neither image nor build"
            assert_pinned(service["image"], name)


def test_long_running_services_have_healthchecks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in ONE_SHOTS:
            continue
        check = service.get("healthcheck")
        assert check, f"{name}: no healthcheck"
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check.get("interval") and check.get("timeout") and check.get("retries"), name


def test_restart_policies(services: dict[str, Any]) -> None:
    for name, service in services.items():
        policy = service.get("restart", "no")
        if name in ONE_SHOTS:
            assert policy == "no" or policy.startswith("on-failure"), f"{name}: {policy}"
        else:
            assert policy == "unless-stopped", f"{name}: {policy}"


def test_depends_on_waits_for_health_or_completion(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            wanted = (
                "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            )
            assert spec["condition"] == wanted, f"{name} -> {dependency}: {spec['condition']}"


def test_startup_order(services: dict[str, Any]) -> None:
    """The pipeline converges: topics exist before anyone produces or consumes."""
    assert "kafka-init" in services["consumer"]["depends_on"]
    assert "kafka-init" in services["nifi-init"]["depends_on"]
    assert "nifi" in services["nifi-init"]["depends_on"]
    assert "quotes-api" in services["nifi-init"]["depends_on"]
    assert "kafka" in services["kafka-init"]["depends_on"]


def test_every_service_has_a_memory_limit_within_budget(services: dict[str, Any]) -> None:
    total = 0.0
    for name, service in services.items():
        limit = memory_limit(service)
        assert limit, f"{name}: no memory limit"
        if name in ONE_SHOTS:
            continue
        total += mebibytes(limit) * (SCALED_CONSUMERS if name == "consumer" else 1)
    assert total <= LAPTOP_BUDGET_MIB, f"limits add up to {total:.0f} MiB"


def test_stateful_services_use_named_volumes(
    config: dict[str, Any], services: dict[str, Any]
) -> None:
    declared = set(config.get("volumes", {}))
    for name in STATEFUL:
        named = [v for v in services[name].get("volumes", []) if v["type"] == "volume"]
        assert named, f"{name}: no named volume"
        for volume in named:
            assert volume["source"] in declared, f"{name}: undeclared volume {volume['source']}"


def test_host_ports_bound_to_loopback(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name}: {port} is not on 127.0.0.1"


def test_one_shots_publish_no_ports(services: dict[str, Any]) -> None:
    for name in ONE_SHOTS:
        assert not services[name].get("ports"), name


# --- Environment and credentials ----------------------------------------------------------------


def test_every_compose_variable_is_in_env_example(env_example: dict[str, str]) -> None:
    used = {match.group(1) for match in VAR_REF.finditer(raw_compose_text())}
    missing = sorted(used - set(env_example))
    assert not missing, f"used in docker-compose.yml but not in .env.example: {missing}"


def test_compose_defaults_match_env_example(env_example: dict[str, str]) -> None:
    """`${VAR:-default}` must agree with .env.example, or behaviour depends on which is read."""
    for match in VAR_REF.finditer(raw_compose_text()):
        name, operator, default = match.groups()
        if operator in (":-", "-"):
            assert env_example[name] == default, f"{name}: compose {default!r} vs .env.example"


def test_credentials_are_required_not_defaulted() -> None:
    secret = re.compile(r"PASSWORD|SECRET|USERNAME|_USER$|EMAIL")
    for match in VAR_REF.finditer(raw_compose_text()):
        name, operator, _ = match.groups()
        if secret.search(name):
            assert operator == ":?", f"{name} must be written ${{{name}:?message}}"


def test_env_example_documents_every_variable() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith("#") and "=" in line:
            assert index > 0 and lines[index - 1].startswith("# "), f"no comment above {line!r}"


def test_env_example_has_placeholders_not_secrets(env_example: dict[str, str]) -> None:
    for name, value in env_example.items():
        if re.search(r"PASSWORD|SECRET", name):
            assert value.startswith("change-me"), f"{name} should be a change-me placeholder"
    # NiFi refuses to start with a single-user password shorter than 12 characters.
    assert len(env_example["NIFI_PASSWORD"]) >= 12


def test_env_example_covers_consumer_settings(env_example: dict[str, str]) -> None:
    names = consumer_setting_names()
    assert not set(names) - set(env_example), set(names) - set(env_example)


# --- Per-service contracts ----------------------------------------------------------------------


def consumer_setting_names() -> tuple[str, ...]:
    if str(CONSUMER_SRC) not in sys.path:
        sys.path.insert(0, str(CONSUMER_SRC))
    settings = importlib.import_module("quotes_consumer.settings")  # on the path just above
    names: tuple[str, ...] = settings.SETTING_NAMES
    return names


def test_consumer_environment_is_exactly_its_settings(services: dict[str, Any]) -> None:
    assert set(services["consumer"]["environment"]) == set(consumer_setting_names())


def test_consumer_is_scalable(services: dict[str, Any]) -> None:
    consumer = services["consumer"]
    assert "container_name" not in consumer
    assert not consumer.get("ports"), "a published port would collide with --scale"
    probe = " ".join(consumer["healthcheck"]["test"])
    assert "/healthz" in probe and "'8000'" in probe


def test_no_container_names(services: dict[str, Any]) -> None:
    """Fixed names collide between checkouts and block scaling; compose names them itself."""
    for name, service in services.items():
        assert "container_name" not in service, name


def test_kafka_listeners(services: dict[str, Any]) -> None:
    env = services["kafka"]["environment"]
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised == {"INTERNAL": "kafka:29092", "EXTERNAL": "localhost:9092"}
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    published = {(p["published"], p["target"]) for p in services["kafka"]["ports"]}
    assert published == {("9092", 9092)}, "only the EXTERNAL listener is published"


def test_containers_use_the_internal_listener(services: dict[str, Any]) -> None:
    for name in ("kafka-init", "nifi-init", "consumer", "status"):
        assert services[name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:29092", name
    assert services["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"] == (
        "kafka:29092"
    )


def test_nifi_init_contract(services: dict[str, Any], env_example: dict[str, str]) -> None:
    service = services["nifi-init"]
    env = service["environment"]
    assert env["NIFI_API_URL"] == "https://nifi:8443/nifi-api"
    assert env["QUOTES_API_URL"] == "http://quotes-api:8080/quotes?count=10"
    assert env["NIFI_USERNAME"] == env_example["NIFI_USERNAME"]
    assert env["NIFI_PASSWORD"] == env_example["NIFI_PASSWORD"]
    assert env["KAFKA_TOPIC"] == env_example["KAFKA_TOPIC"]
    assert service["command"] == ["python", "/nifi/deploy.py"]
    mounts = {(v["source"], v["target"], v.get("read_only", False)) for v in service["volumes"]}
    assert (str(REPO / "nifi"), "/nifi", True) in mounts
    assert service["user"] != "root" and not str(service["user"]).startswith("0")


def test_nifi_heap_and_credentials(services: dict[str, Any], env_example: dict[str, str]) -> None:
    env = services["nifi"]["environment"]
    assert env["SINGLE_USER_CREDENTIALS_PASSWORD"] == env_example["NIFI_PASSWORD"]
    assert env["NIFI_JVM_HEAP_MAX"] == env_example["NIFI_JVM_HEAP_MAX"]
    heap_max = int(env["NIFI_JVM_HEAP_MAX"].rstrip("gGmM")) * (
        1024 if env["NIFI_JVM_HEAP_MAX"][-1] in "gG" else 1
    )
    assert heap_max < mebibytes(services["nifi"]["mem_limit"]) * 0.75, "heap leaves no headroom"


def test_postgres_schema_mount(services: dict[str, Any]) -> None:
    mounts = {
        (v["source"], v["target"], v.get("read_only", False))
        for v in services["postgres"]["volumes"]
    }
    assert (str(REPO / "sql"), "/docker-entrypoint-initdb.d", True) in mounts


def test_pgadmin_servers_json_points_at_compose_postgres(
    services: dict[str, Any], env_example: dict[str, str]
) -> None:
    servers = json.loads((REPO / "pgadmin" / "servers.json").read_text(encoding="utf-8"))
    assert len(servers["Servers"]) == 1
    server = next(iter(servers["Servers"].values()))
    assert server["Host"] == "postgres" and "postgres" in services
    container_ports = {p["target"] for p in services["postgres"]["ports"]}
    assert server["Port"] in container_ports
    assert server["MaintenanceDB"] == env_example["POSTGRES_DB"]
    assert server["Username"] == env_example["POSTGRES_USER"]
    assert server["ConnectionParameters"]["passfile"] == ".pgpass"
    # The wrapper that renders the password file gets the same values as the database.
    pgadmin_env = services["pgadmin"]["environment"]
    for name in ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"):
        assert pgadmin_env[name] == services["postgres"]["environment"][name], name


def test_pgadmin_listens_on_ipv4_and_keeps_hand_added_servers(services: dict[str, Any]) -> None:
    env = services["pgadmin"]["environment"]
    # The image's default, [::], fails on hosts with IPv6 disabled.
    assert env["PGADMIN_LISTEN_ADDRESS"] == "0.0.0.0"
    # It would delete, at every start, the servers a user registered by hand.
    assert "PGADMIN_REPLACE_SERVERS_ON_STARTUP" not in env


def test_mongo_express_basic_auth_uses_the_102_name(services: dict[str, Any]) -> None:
    env = services["mongo-express"]["environment"]
    assert env["ME_CONFIG_BASICAUTH"] == "true"
    assert "ME_CONFIG_BASICAUTH_ENABLED" not in env, "only read from mongo-express 1.1 on"


def test_mongo_healthcheck_probes_the_service_address(services: dict[str, Any]) -> None:
    """The image's init server listens on 127.0.0.1 only; a probe there passes too early."""
    probe = services["mongo"]["healthcheck"]["test"]
    assert "--host" in probe and probe[probe.index("--host") + 1] == "mongo"
    assert not any("127.0.0.1" in part or "localhost" in part for part in probe)


def test_consumer_uses_its_own_least_privilege_logins(services: dict[str, Any]) -> None:
    consumer = services["consumer"]["environment"]
    postgres = services["postgres"]["environment"]
    mongo = services["mongo"]["environment"]
    assert consumer["POSTGRES_USER"] == postgres["CONSUMER_POSTGRES_USER"]
    assert consumer["POSTGRES_PASSWORD"] == postgres["CONSUMER_POSTGRES_PASSWORD"]
    assert consumer["POSTGRES_USER"] != postgres["POSTGRES_USER"], "not the database owner"
    user, password = mongo["MONGO_CONSUMER_USERNAME"], mongo["MONGO_CONSUMER_PASSWORD"]
    database = consumer["MONGO_DB"]
    assert consumer["MONGO_URI"] == (
        f"mongodb://{user}:{password}@mongo:27017/{database}?authSource={database}"
    )
    assert mongo["MONGO_DB"] == database
    assert mongo["MONGO_INITDB_ROOT_USERNAME"] not in consumer["MONGO_URI"].split("@")[0]
    mounts = {(v["source"], v["target"]) for v in services["mongo"]["volumes"]}
    assert (str(REPO / "mongo"), "/docker-entrypoint-initdb.d") in mounts
    # The login script must be executable: the postgres image sources a non-executable *.sh
    # into its own shell instead of running it.
    assert os.access(REPO / "sql" / "011_consumer_login.sh", os.X_OK)


def test_status_page_is_read_only_and_least_privileged(services: dict[str, Any]) -> None:
    """The status page: 127.0.0.1:8088, read-only container, the consumer's logins, not root."""
    status = services["status"]
    env = status["environment"]
    published = {(p["host_ip"], p["published"], p["target"]) for p in status["ports"]}
    assert published == {("127.0.0.1", "8088", 8088)}
    assert env["STATUS_PORT"] == "8088" and "8088" in " ".join(status["healthcheck"]["test"])
    assert status["read_only"] is True
    consumer = services["consumer"]["environment"]
    assert env["POSTGRES_USER"] == consumer["POSTGRES_USER"], "the consumer's login, not the owner"
    assert env["POSTGRES_PASSWORD"] == consumer["POSTGRES_PASSWORD"]
    assert env["MONGO_URI"] == consumer["MONGO_URI"], "the consumer's MongoDB user, not root"
    for name in ("KAFKA_TOPIC", "KAFKA_DLQ_TOPIC", "KAFKA_GROUP_ID", "MONGO_DB", "POSTGRES_DB"):
        assert env[name] == consumer[name], name
    assert env["NIFI_API_URL"] == services["nifi-init"]["environment"]["NIFI_API_URL"]
    assert "depends_on" not in status, "it must start, and show red, while others are down"


def test_image_volumes_are_mapped(services: dict[str, Any]) -> None:
    """VOLUMEs the Confluent images declare: mapped, so no anonymous volume piles up."""
    declared = {
        "zookeeper": {
            "/var/lib/zookeeper/data",
            "/var/lib/zookeeper/log",
            "/etc/zookeeper/secrets",
        },
        "kafka": {"/var/lib/kafka/data", "/etc/kafka/secrets"},
        "kafka-init": {"/var/lib/kafka/data", "/etc/kafka/secrets"},
    }
    for name, paths in declared.items():
        service = services[name]
        mapped = {v["target"] for v in service.get("volumes", [])} | set(service.get("tmpfs", []))
        assert paths <= mapped, f"{name}: unmapped {sorted(paths - mapped)}"


# --- Helper scripts the compose file runs -------------------------------------------------------


def test_pgadmin_render_config_writes_private_pgpass(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGADMIN_DEFAULT_EMAIL": "admin@example.com",
        "POSTGRES_USER": "lab",
        "POSTGRES_DB": "labdb",
        "POSTGRES_PASSWORD": r"pa:ss\word",
        "STREAMLAB_PGADMIN_DATA_DIR": str(tmp_path),
        "STREAMLAB_PGADMIN_TEMPLATE": str(REPO / "pgadmin" / "servers.json"),
        "PGADMIN_SERVER_JSON_FILE": str(tmp_path / "servers.json"),
    }
    result = run([sys.executable, str(REPO / "pgadmin" / "render_config.py")], env=env)
    assert result.returncode == 0, result.stderr
    rendered = json.loads((tmp_path / "servers.json").read_text(encoding="utf-8"))
    server = next(iter(rendered["Servers"].values()))
    assert (server["Username"], server["MaintenanceDB"]) == ("lab", "labdb")
    pgpass = tmp_path / "storage" / "admin_example.com" / ".pgpass"
    assert pgpass.read_text(encoding="utf-8") == "postgres:5432:*:lab:pa\\:ss\\\\word\n"
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600


def test_pgadmin_render_config_can_point_elsewhere(tmp_path: Path) -> None:
    """PGADMIN_SERVER_HOST/PORT/NAME (the native PostgreSQL of make demo and the UI tests) move
    the server and .pgpass, and name the server."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGADMIN_DEFAULT_EMAIL": "admin@example.com",
        "POSTGRES_USER": "lab",
        "POSTGRES_DB": "labdb",
        "POSTGRES_PASSWORD": "pw",
        "PGADMIN_SERVER_HOST": "127.0.0.1",
        "PGADMIN_SERVER_PORT": "15432",
        "PGADMIN_SERVER_NAME": "streamlab (demo postgres)",
        "STREAMLAB_PGADMIN_DATA_DIR": str(tmp_path),
        "STREAMLAB_PGADMIN_TEMPLATE": str(REPO / "pgadmin" / "servers.json"),
        "PGADMIN_SERVER_JSON_FILE": str(tmp_path / "servers.json"),
    }
    script = [sys.executable, str(REPO / "pgadmin" / "render_config.py")]
    result = run(script, env=env)
    assert result.returncode == 0, result.stderr
    server = next(iter(json.loads((tmp_path / "servers.json").read_text())["Servers"].values()))
    assert (server["Host"], server["Port"]) == ("127.0.0.1", 15432)
    assert (server["Name"], server["Group"]) == ("streamlab (demo postgres)", "streamlab")
    pgpass = tmp_path / "storage" / "admin_example.com" / ".pgpass"
    assert pgpass.read_text(encoding="utf-8") == "127.0.0.1:15432:*:lab:pw\n"
    bad = run(script, env={**env, "PGADMIN_SERVER_PORT": "5432x"})
    assert bad.returncode == 1 and "PGADMIN_SERVER_PORT" in bad.stderr


FAKE_KAFKA_TOPICS = textwrap.dedent(
    """\
    #!/usr/bin/env python3
    # Stand-in for Confluent's kafka-topics: topics are files in $FAKE_KAFKA_STATE.
    import os, pathlib, sys
    state = pathlib.Path(os.environ["FAKE_KAFKA_STATE"])
    if (state / "down").exists():
        sys.exit(1)
    args = sys.argv[1:]
    def opt(name):
        return args[args.index(name) + 1] if name in args else None
    with open(state / "calls.log", "a") as log:
        log.write(" ".join(args) + "\\n")
    topic = opt("--topic")
    if "--list" in args:
        print("\\n".join(p.name for p in state.glob("t.*")))
    elif "--create" in args:
        path = state / f"t.{topic}"
        if path.exists():
            sys.exit(0 if "--if-not-exists" in args else 1)
        path.write_text(opt("--partitions"))
    elif "--alter" in args:
        (state / f"t.{topic}").write_text(opt("--partitions"))
    elif "--describe" in args:
        count = (state / f"t.{topic}").read_text()
        print(f"Topic: {topic}\\tTopicId: x\\tPartitionCount: {count}\\tReplicationFactor: 1")
    """
)


@pytest.fixture
def fake_kafka(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kafka-topics"
    fake.write_text(FAKE_KAFKA_TOPICS, encoding="utf-8")
    fake.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "FAKE_KAFKA_STATE": str(state),
        "KAFKA_BOOTSTRAP_SERVERS": "kafka:29092",
        "KAFKA_TOPIC": "quotes",
        "KAFKA_DLQ_TOPIC": "quotes.dlq",
        "KAFKA_TOPIC_PARTITIONS": "3",
        "KAFKA_DLQ_TOPIC_PARTITIONS": "1",
    }


def run_kafka_init(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return run(["bash", str(REPO / "kafka" / "create-topics.sh")], env=dict(env))


def test_kafka_init_creates_topics_idempotently(fake_kafka: dict[str, str]) -> None:
    state = Path(fake_kafka["FAKE_KAFKA_STATE"])
    for _ in range(2):  # the second run must be a no-op that still exits 0
        result = run_kafka_init(fake_kafka)
        assert result.returncode == 0, result.stderr
    assert (state / "t.quotes").read_text() == "3"
    assert (state / "t.quotes.dlq").read_text() == "1"
    creates = [c for c in (state / "calls.log").read_text().splitlines() if "--create" in c]
    assert all("--if-not-exists" in call for call in creates)


def test_kafka_init_grows_a_topic_with_too_few_partitions(fake_kafka: dict[str, str]) -> None:
    state = Path(fake_kafka["FAKE_KAFKA_STATE"])
    (state / "t.quotes").write_text("1")
    result = run_kafka_init(fake_kafka)
    assert result.returncode == 0, result.stderr
    assert (state / "t.quotes").read_text() == "3"


def test_kafka_init_rejects_dlq_equal_to_topic(fake_kafka: dict[str, str]) -> None:
    result = run_kafka_init({**fake_kafka, "KAFKA_DLQ_TOPIC": "quotes"})
    assert result.returncode == 1
    assert "must differ" in result.stderr


def test_kafka_init_gives_up_on_an_unreachable_broker(fake_kafka: dict[str, str]) -> None:
    (Path(fake_kafka["FAKE_KAFKA_STATE"]) / "down").write_text("")
    result = run_kafka_init({**fake_kafka, "KAFKA_INIT_MAX_ATTEMPTS": "2"})
    assert result.returncode == 1
    assert "not reachable after 2 attempts" in result.stderr


# mongosh's globals, faked in Node's vm: enough to check what the script asks of MongoDB. The
# script itself is not run against a MongoDB here (the test server, FerretDB, has no users).
FAKE_MONGOSH = textwrap.dedent(
    """\
    const fs = require("fs"), vm = require("vm");
    const calls = [];
    const existing = process.env.FAKE_EXISTING_USER || null;
    const sibling = (name) => ({
      getUser: (user) => (user === existing ? { user } : null),
      createUser: (spec) => calls.push({ db: name, spec }),
    });
    const context = { process, db: { getSiblingDB: sibling }, print: () => {} };
    try {
      vm.runInNewContext(fs.readFileSync(process.argv[2], "utf8"), context);
    } catch (error) {
      console.error(error.message);
      process.exit(1);
    }
    console.log(JSON.stringify(calls));
    """
)


def run_mongo_init(tmp_path: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "node not found: .ci/run installs Node.js"
    harness = tmp_path / "fake-mongosh.js"
    harness.write_text(FAKE_MONGOSH, encoding="utf-8")
    return run(
        [node, str(harness), str(REPO / "mongo" / "create-consumer-user.js")],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
    )


def test_mongo_init_creates_the_consumer_user_with_readwrite_only(tmp_path: Path) -> None:
    env = {"MONGO_CONSUMER_USERNAME": "c", "MONGO_CONSUMER_PASSWORD": "p", "MONGO_DB": "quotes"}
    result = run_mongo_init(tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "db": "quotes",
            "spec": {"user": "c", "pwd": "p", "roles": [{"role": "readWrite", "db": "quotes"}]},
        }
    ]
    again = run_mongo_init(tmp_path, {**env, "FAKE_EXISTING_USER": "c"})
    assert again.returncode == 0 and json.loads(again.stdout) == [], "an existing user is kept"


def test_mongo_init_names_a_missing_setting(tmp_path: Path) -> None:
    result = run_mongo_init(tmp_path, {"MONGO_CONSUMER_USERNAME": "c", "MONGO_DB": "quotes"})
    assert result.returncode == 1
    assert "MONGO_CONSUMER_PASSWORD" in result.stderr


# --- The KRaft and replicated variants ----------------------------------------------------------
#
# `make up-kraft` and `make up-replicated` add override files to docker-compose.yml. The merged
# configuration, as the real Compose parser builds it, must pass the same project rules.

KRAFT_VARIANTS = {
    "kraft": ("docker-compose.kraft.yml",),
    "replicated": ("docker-compose.kraft.yml", "docker-compose.replicated.yml"),
}
KRAFT_IMAGE = f"apache/kafka:{KRAFT_KAFKA_VERSION}"
# The apache/kafka image's VOLUMEs: mapped, so no anonymous volume piles up.
KRAFT_IMAGE_VOLUMES = {"/var/lib/kafka/data", "/etc/kafka/secrets", "/mnt/shared/config"}


def run_variant_config(
    binary: Path, env_file: Path, variant: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    files = (COMPOSE_FILE, *(REPO / name for name in KRAFT_VARIANTS[variant]))
    return run_config(binary, env_file, *extra, files=files)


@pytest.fixture(scope="session", params=sorted(KRAFT_VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def variant_config(compose_bin: Path, env_file: Path, variant: str) -> dict[str, Any]:
    result = run_variant_config(compose_bin, env_file, variant, "--format", "json")
    assert result.returncode == 0, f"{variant}: {result.stderr}"
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.fixture(scope="session")
def variant_services(variant_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = variant_config["services"]
    return found


def brokers(services: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("image") == KRAFT_IMAGE}


SHARED_RULES = [
    test_every_image_is_pinned,
    test_long_running_services_have_healthchecks,
    test_restart_policies,
    test_depends_on_waits_for_health_or_completion,
    test_startup_order,
    test_every_service_has_a_memory_limit_within_budget,
    test_host_ports_bound_to_loopback,
    test_one_shots_publish_no_ports,
    test_no_container_names,
    test_consumer_environment_is_exactly_its_settings,
    test_consumer_uses_its_own_least_privilege_logins,
]


@pytest.mark.parametrize("rule", SHARED_RULES, ids=lambda rule: rule.__name__[len("test_") :])
def test_variant_follows_the_project_rule(variant_services: dict[str, Any], rule: Any) -> None:
    rule(variant_services)


def test_variant_missing_credential_stops_compose(
    compose_bin: Path, tmp_path: Path, variant: str
) -> None:
    env_file = tmp_path / ".env"
    kept = [
        line
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if not line.startswith("POSTGRES_PASSWORD=")
    ]
    env_file.write_text("\n".join(kept) + "\n", encoding="utf-8")
    result = run_variant_config(compose_bin, env_file, variant, "-q")
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_variant_runs_no_zookeeper(variant_services: dict[str, Any]) -> None:
    assert "zookeeper" not in variant_services
    for name, service in variant_services.items():
        assert "zookeeper" not in json.dumps(service.get("environment", {})).lower(), name
        assert "zookeeper" not in service.get("depends_on", {}), name


def test_variant_brokers_are_kraft_nodes(variant: str, variant_services: dict[str, Any]) -> None:
    """Kafka 4.x, each node broker and controller, one quorum listing every node."""
    nodes = brokers(variant_services)
    assert len(nodes) == (3 if variant == "replicated" else 1)
    assert "kafka" in nodes, "node 1 keeps the name the Makefile and the UI use"
    voters = {
        f"{s['environment']['KAFKA_NODE_ID']}@{s.get('hostname', name)}:29093"
        for name, s in nodes.items()
    }
    for name, service in nodes.items():
        env = service["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters, name
        assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER", name
        assert "CONTROLLER" not in env["KAFKA_ADVERTISED_LISTENERS"], f"{name}: quorum advertised"
        listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
        advertised = dict(
            item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
        )
        external_port = int(advertised["EXTERNAL"].rsplit(":", 1)[1])
        assert advertised["EXTERNAL"] == f"localhost:{external_port}", name
        assert listeners["EXTERNAL"] == f"0.0.0.0:{external_port}", name
        published = {(int(p["published"]), p["target"]) for p in service.get("ports", [])}
        assert published == {(external_port, external_port)}, f"{name}: only EXTERNAL published"
        assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL", name
        assert env["CLUSTER_ID"] == nodes["kafka"]["environment"]["CLUSTER_ID"], name
        assert not service.get("depends_on"), f"{name} waits for nothing"


def test_variant_brokers_keep_their_own_volumes(
    variant_config: dict[str, Any], variant_services: dict[str, Any]
) -> None:
    declared = set(variant_config.get("volumes", {}))
    sources = []
    for name, service in brokers(variant_services).items():
        named = [v for v in service.get("volumes", []) if v["type"] == "volume"]
        assert [v["target"] for v in named] == ["/var/lib/kafka/data"], name
        assert named[0]["source"] in declared, name
        assert named[0]["source"] != "kafka-data", f"{name}: a ZooKeeper-mode log is not KRaft's"
        sources.append(named[0]["source"])
        mapped = {v["target"] for v in service.get("volumes", [])} | set(service.get("tmpfs", []))
        assert mapped >= KRAFT_IMAGE_VOLUMES, f"{name}: unmapped {KRAFT_IMAGE_VOLUMES - mapped}"
    assert len(sources) == len(set(sources)), "brokers share a data volume"


def test_variant_replication_settings(variant: str, variant_services: dict[str, Any]) -> None:
    nodes = brokers(variant_services)
    replicas = len(nodes)
    bootstrap = ",".join(f"{s.get('hostname', n)}:29092" for n, s in sorted(nodes.items()))
    for name in ("kafka-init", "nifi-init", "consumer"):
        assert variant_services[name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == bootstrap, name
    ui = variant_services["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]
    assert ui == bootstrap
    init = variant_services["kafka-init"]
    assert set(nodes) <= set(init["depends_on"]), "topics are made once every broker is up"
    if variant == "replicated":
        assert init["environment"]["KAFKA_REPLICATION_FACTOR"] == "3"
        assert init["environment"]["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        for name, service in nodes.items():
            env = service["environment"]
            assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == str(replicas), name
            assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
            assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == str(replicas), name
            assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false", name


# Kafka's default log.cleaner.dedupe.buffer.size, allocated on the heap in one piece at start.
KAFKA_DEFAULT_CLEANER_BUFFER = 128 * 2**20


def test_variant_brokers_cleaner_buffer_fits_the_heap(variant_services: dict[str, Any]) -> None:
    """At most a quarter of the heap: at half (128 MiB in 256 MiB) a native broker of the same
    release exited with OutOfMemoryError at start, once in a CI run. The harness's three nodes
    use the replicated variant's value."""
    for name, service in brokers(variant_services).items():
        env = service["environment"]
        heap = re.search(r"-Xmx(\d+)m", env["KAFKA_HEAP_OPTS"])
        assert heap, f"{name}: no -Xmx in KAFKA_HEAP_OPTS"
        buffer = int(env.get("KAFKA_LOG_CLEANER_DEDUPE_BUFFER_SIZE", KAFKA_DEFAULT_CLEANER_BUFFER))
        assert buffer <= int(heap.group(1)) * 2**20 // 4, name
        if int(heap.group(1)) <= 256:
            assert buffer == KRAFT_CLEANER_BUFFER_BYTES, f"{name}: as the harness's nodes"


def test_kafka_init_sets_min_insync_replicas_only_when_asked(fake_kafka: dict[str, str]) -> None:
    """The replicated variant's topics need 2 in-sync replicas; the others keep the default."""
    calls = Path(fake_kafka["FAKE_KAFKA_STATE"]) / "calls.log"
    assert run_kafka_init(fake_kafka).returncode == 0
    assert "min.insync.replicas" not in calls.read_text()
    calls.unlink()
    for name in ("t.quotes", "t.quotes.dlq"):
        (Path(fake_kafka["FAKE_KAFKA_STATE"]) / name).unlink()
    env = {**fake_kafka, "KAFKA_REPLICATION_FACTOR": "3", "KAFKA_MIN_INSYNC_REPLICAS": "2"}
    result = run_kafka_init(env)
    assert result.returncode == 0, result.stderr
    creates = [c for c in calls.read_text().splitlines() if "--create" in c]
    assert len(creates) == 2
    assert all(
        "--config min.insync.replicas=2" in c and "--replication-factor 3" in c for c in creates
    )


# --- Switching, resetting and stopping (issue 21) -----------------------------------------------
#
# Rules across all three variants at once, the ZooKeeper default included: what a user who moves
# between them (`make up-kraft`, then `make up-replicated`, then `make reset`) relies on.

ALL_VARIANTS = {"zookeeper": (), **KRAFT_VARIANTS}
# Every service that talks to Kafka; each must be given the variant's whole broker list.
KAFKA_CLIENTS = {"kafka-init", "kafka-cli", "kafka-ui", "nifi-init", "consumer", "status"}
# Docker's own stop timeout, after which it sends SIGKILL.
DOCKER_DEFAULT_STOP_S = 10


def files_of(variant: str) -> tuple[Path, ...]:
    return (COMPOSE_FILE, *(REPO / name for name in ALL_VARIANTS[variant]))


@pytest.fixture(scope="session")
def every_variant(compose_bin: Path, env_file: Path) -> dict[str, dict[str, Any]]:
    """Each variant's merged configuration, with the `tools` profile (kafka-cli) enabled."""
    configs = {}
    for name in ALL_VARIANTS:
        result = run_config(
            compose_bin,
            env_file,
            "--format",
            "json",
            files=(*files_of(name),),
            profiles=("tools",),
        )
        assert result.returncode == 0, f"{name}: {result.stderr}"
        configs[name] = json.loads(result.stdout)
    return configs


def kafka_brokers(services: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Brokers of any generation: the services that advertise listeners."""
    return {
        name: service
        for name, service in services.items()
        if "KAFKA_ADVERTISED_LISTENERS" in service.get("environment", {})
    }


def internal_address(broker: Mapping[str, Any]) -> str:
    advertised = broker["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")
    listeners = dict(item.split("://") for item in advertised)
    address: str = listeners["INTERNAL"]
    return address


def broker_volumes(broker: Mapping[str, Any]) -> set[str]:
    return {v["source"] for v in broker.get("volumes", []) if v["type"] == "volume"}


def seconds(duration: str) -> float:
    """Compose's duration strings as `config` renders them: 30s, 1m30s, 2m."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s|ms)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(number) * scale[unit] for number, unit in parts)


def test_no_two_variants_share_a_broker_volume(every_variant: dict[str, dict[str, Any]]) -> None:
    """A volume another variant formatted is another cluster's log: topics at its replication
    factor, its committed offsets. Each broker of each variant has a data volume of its own."""
    owner: dict[str, str] = {}
    for variant, config in every_variant.items():
        for name, broker in kafka_brokers(config["services"]).items():
            volumes = broker_volumes(broker)
            assert volumes, f"{variant}: {name} keeps its log in no named volume"
            for volume in volumes:
                assert volume not in owner, (
                    f"{volume}: used by {owner.get(volume)} and {variant} {name}"
                )
                owner[volume] = f"{variant} {name}"


def test_kraft_variants_have_their_own_cluster_ids(
    every_variant: dict[str, dict[str, Any]],
) -> None:
    """The apache/kafka image checks the volume's meta.properties against CLUSTER_ID at every
    start, so distinct ids turn a wrongly reused volume into a start-up error. Unset, every
    container would get the image's one default id, and the check would pass."""
    ids: dict[str, str] = {}
    for variant, config in every_variant.items():
        nodes = brokers(config["services"])
        if not nodes:
            continue  # the ZooKeeper variant: ZooKeeper holds its cluster id
        found = {name: node["environment"].get("CLUSTER_ID") for name, node in nodes.items()}
        assert all(found.values()), f"{variant}: CLUSTER_ID unset on {found}"
        assert len(set(found.values())) == 1, f"{variant}: nodes disagree: {found}"
        ids[variant] = next(iter(found.values()))
    assert len(ids) == len(KRAFT_VARIANTS)
    assert len(set(ids.values())) == len(ids), f"variants share a cluster id: {ids}"


@pytest.mark.parametrize("variant_name", sorted(ALL_VARIANTS))
def test_every_kafka_client_gets_the_whole_broker_list(
    every_variant: dict[str, dict[str, Any]], variant_name: str
) -> None:
    """Any one broker down, every client still reaches the cluster: each setting that names a
    broker names all of them, and every known client has one."""
    services = every_variant[variant_name]["services"]
    nodes = kafka_brokers(services)
    whole = {internal_address(node) for node in nodes.values()}
    hosts = "|".join(re.escape(address.rsplit(":", 1)[0]) for address in whole)
    mentions = re.compile(rf"(?<![\w.-])(?:{hosts}):\d+")
    clients = set()
    for name, service in services.items():
        if name in nodes:
            continue
        for key, value in service.get("environment", {}).items():
            if not isinstance(value, str) or not mentions.search(value):
                continue
            clients.add(name)
            listed = value.split(",")
            assert len(listed) == len(set(listed)), f"{name}.{key}: {value}"
            assert set(listed) == whole, f"{name}.{key} = {value}; the brokers are {sorted(whole)}"
    assert clients >= KAFKA_CLIENTS, f"no broker list for {sorted(KAFKA_CLIENTS - clients)}"


def test_the_makefile_names_no_broker(every_variant: dict[str, dict[str, Any]]) -> None:
    """The Makefile's Kafka tools take the kafka-cli container's list, which the variant sets."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    addresses = {
        internal_address(node)
        for config in every_variant.values()
        for node in kafka_brokers(config["services"]).values()
    }
    named = sorted(address for address in addresses if address in text)
    assert not named, f"the Makefile hard-codes {named}"
    dry = run(
        ["make", "--no-print-directory", "-n", "topic", "dlq", "counts", "VARIANT=replicated"],
        cwd=REPO,
    )
    assert dry.returncode == 0, dry.stderr
    tool_calls = [line for line in dry.stdout.splitlines() if " kafka-cli " in line]
    assert len(tool_calls) == 6, dry.stdout
    for line in tool_calls:
        assert '--bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS"' in line, line


def reset_commands(variant: str) -> list[list[str]]:
    """The `down --volumes` commands `make reset` would run with VARIANT=variant."""
    dry = run(
        ["make", "--no-print-directory", "-n", "reset", "CONFIRM=yes", f"VARIANT={variant}"],
        cwd=REPO,
    )
    assert dry.returncode == 0, dry.stderr
    commands = [line.split() for line in dry.stdout.splitlines() if " down " in line]
    assert commands and all("--volumes" in command for command in commands), dry.stdout
    return commands


@pytest.mark.parametrize("variant_name", ["", "kraft", "replicated"])
def test_reset_removes_every_variants_volumes(
    compose_bin: Path,
    env_file: Path,
    every_variant: dict[str, dict[str, Any]],
    variant_name: str,
) -> None:
    """`down --volumes` removes the volumes of the configuration it is given (Compose drops the
    ones no service uses): the union over reset's commands must be every variant's volumes."""
    everything = {volume for config in every_variant.values() for volume in config["volumes"]}
    removed: set[str] = set()
    for command in reset_commands(variant_name):
        given = [command[i + 1] for i, arg in enumerate(command) if arg == "-f"]
        files = tuple(REPO / name for name in given) or (COMPOSE_FILE,)
        result = run_config(compose_bin, env_file, "--format", "json", files=files)
        assert result.returncode == 0, result.stderr
        removed |= set(json.loads(result.stdout).get("volumes", {}))
    kept = sorted(everything - removed)
    assert not kept, f"make reset VARIANT={variant_name} keeps {kept}"


def test_every_broker_has_a_stop_grace_period(every_variant: dict[str, dict[str, Any]]) -> None:
    """SIGTERM starts a controlled shutdown; Docker's SIGKILL at 10 s could cut it short and
    leave every log to recover at the next start."""
    for variant, config in every_variant.items():
        for name, broker in kafka_brokers(config["services"]).items():
            grace = broker.get("stop_grace_period")
            assert grace, f"{variant} {name}: no stop_grace_period (killed after 10 s)"
            assert seconds(grace) > DOCKER_DEFAULT_STOP_S, f"{variant} {name}: {grace}"
