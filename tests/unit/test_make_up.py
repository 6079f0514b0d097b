"""`make up` meets the user where they are: it finds Compose, or says in one line what is missing.

The situations a user meets (issue 23) are played by stand-in `docker` and `docker-compose`
executables, first on PATH (tests/compose_standins.py). They are test doubles for programs that
cannot run here: these machines have no Docker engine and no Compose plugin. They record each
call and start nothing. Every test runs make on a temporary copy of the Makefile, .env.example and
compose/compose.sh, so no .env in the repository is created or changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import compose_minimum, compose_standins
from tests.compose_standins import DAEMON_DENIED, DAEMON_DOWN, StandIns

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "compose" / "compose.sh"
MAKE = shutil.which("make") or "make"
MIN_VERSION = re.search(r"^MIN_VERSION=(\S+)$", SCRIPT.read_text(), flags=re.M).group(1)  # type: ignore[union-attr]
JUST_BELOW = "2.24.3"  # the release before the minimum: it rejects docker-compose.kraft.yml

DEMO = ". Or run the lab without Docker now: make demo"
INSTALL = (
    "Debian/Ubuntu: sudo apt-get install docker-compose-plugin",
    "Fedora: sudo dnf install docker-compose-plugin",
    "https://docs.docker.com/compose/install/linux/",
    "macOS: Docker Desktop, https://docs.docker.com/desktop/setup/install/mac-install/",
)
START = ("Debian/Ubuntu, Fedora: sudo systemctl start docker", "macOS: open -a Docker")
NOTHING_STARTED = {"version --short", "ls --quiet"}  # the only questions the finder may ask
VARIANT_FILES = "-f docker-compose.yml -f docker-compose.kraft.yml -f docker-compose.replicated.yml"


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """What `make up` reads, copied: the repository's own .env is never touched."""
    lab = tmp_path / "lab"
    (lab / "compose").mkdir(parents=True)
    shutil.copy(REPO / "Makefile", lab / "Makefile")
    shutil.copy(REPO / ".env.example", lab / ".env.example")
    shutil.copy2(SCRIPT, lab / "compose" / "compose.sh")  # copy2 keeps the executable bit
    return lab


def make(lab: Path, standins: StandIns, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAKE, "--no-print-directory", "-C", str(lab), f"PYTHON={sys.executable}", *args],
        env=standins.env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def said(stderr: str) -> list[str]:
    """What the user reads, without make's own closing `make: *** [Makefile:NN: up] Error 1`."""
    return [line for line in stderr.splitlines() if not line.startswith("make: ***")]


def asked(standins: StandIns) -> set[str]:
    """The Compose arguments of every call: `docker compose ls --quiet` -> `ls --quiet`."""
    return {re.sub(r"^(docker compose|docker-compose) ?", "", call) for call in standins.calls()}


# --- Each situation: one line, the fix, make demo; no .env ---------------------------------------

REFUSALS = [
    pytest.param(
        {"plugin": None},
        'Docker Compose v2 is missing: "docker compose" is not a docker command here, and there '
        "is no docker-compose. Install it on ",
        INSTALL,
        id="no-plugin",
    ),
    pytest.param(
        {"plugin": None, "no_plugin": "not-a-command"},
        'Docker Compose v2 is missing: "docker compose" is not a docker command here',
        INSTALL,
        id="no-plugin-older-docker",
    ),
    pytest.param(
        {"plugin": None, "standalone": "1.29.2"},
        "docker-compose 1.29.2 is Compose v1, which cannot read the lab's compose files, and there "
        "is no Compose v2 (docker compose). Install Compose v2 on ",
        INSTALL,
        id="compose-v1-only",
    ),
    pytest.param(
        {"plugin": JUST_BELOW},
        f"Docker Compose {JUST_BELOW} (docker compose) is older than {MIN_VERSION}, the oldest "
        "that reads the lab's variant files right. Update it on ",
        INSTALL,
        id="plugin-too-old",
    ),
    pytest.param(
        {"plugin": None, "standalone": "2.9.0"},  # 9 < 24: numbers, not text, are compared
        f"Docker Compose 2.9.0 (docker-compose) is older than {MIN_VERSION}",
        INSTALL,
        id="standalone-too-old",
    ),
    pytest.param(
        {"plugin": None, "cli": False},
        "Docker is missing: there is no docker or docker-compose command. Install Docker Engine "
        "and Compose on Debian/Ubuntu, Fedora: https://docs.docker.com/engine/install/",
        ("macOS: Docker Desktop",),
        id="no-docker",
    ),
    pytest.param(
        {"plugin": "2.40.3", "daemon": "down"},
        "Docker Compose 2.40.3 (docker compose) is here, but the Docker daemon does not answer: "
        f'"{DAEMON_DOWN}". Start it on ',
        START,
        id="daemon-down",
    ),
    pytest.param(
        {"plugin": None, "standalone": "2.24.6", "daemon": "denied"},
        "Docker Compose 2.24.6 (docker-compose) is here, but the Docker daemon refuses you: "
        f'"{DAEMON_DENIED}". Join the docker group on ',
        ("sudo usermod -aG docker $USER, then log in again",),
        id="daemon-refuses",
    ),
    pytest.param(
        {"plugin": "2.40.3", "daemon": "hangs"},
        "Docker Compose 2.40.3 (docker compose) is here, but the Docker daemon did not answer "
        "within 1 s",
        ("sudo systemctl status docker", "DOCKER_HOST"),
        id="daemon-hangs",
    ),
]


@pytest.mark.parametrize(("situation", "begins", "fixes"), REFUSALS)
def test_up_says_in_one_line_what_is_missing_and_creates_no_env(
    lab: Path, tmp_path: Path, situation: dict[str, Any], begins: str, fixes: tuple[str, ...]
) -> None:
    standins = compose_standins.install(tmp_path, **situation)
    result = make(lab, standins, "up", STREAMLAB_DAEMON_TIMEOUT_S="1")
    assert result.returncode != 0
    lines = said(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(begins), lines[0]
    assert all(fix in lines[0] for fix in fixes), lines[0]
    assert lines[0].endswith(DEMO), lines[0]
    assert result.stdout == ""
    assert not (lab / ".env").exists(), ".env only once Compose is found"
    assert asked(standins) <= NOTHING_STARTED


def test_an_existing_env_is_kept_as_it_is(lab: Path, tmp_path: Path) -> None:
    env = lab / ".env"
    env.write_text("NIFI_USERNAME=admin\nNIFI_PASSWORD=long-enough-password\n")
    before = env.read_bytes()
    result = make(lab, compose_standins.install(tmp_path, plugin=None), "up")
    assert result.returncode != 0
    assert env.read_bytes() == before


@pytest.mark.parametrize("target", ["down", "ps", "counts"])
def test_every_compose_target_says_the_same_line(lab: Path, tmp_path: Path, target: str) -> None:
    """Not only up: `counts`, whose lines pipe into awk, stops at the first one too."""
    standins = compose_standins.install(tmp_path, plugin="2.40.3", daemon="down")
    result = make(lab, standins, target)
    assert result.returncode != 0
    assert said(result.stderr) == [
        "Docker Compose 2.40.3 (docker compose) is here, but the Docker daemon does not answer: "
        f'"{DAEMON_DOWN}". Start it on Debian/Ubuntu, Fedora: sudo systemctl start docker; '
        "macOS: open -a Docker. Or run the lab without Docker now: make demo"
    ]
    assert "records" not in result.stdout, "counts stops before its table"


# --- A usable Compose: found, run, .env created ---------------------------------------------------

USABLE = [
    pytest.param({"plugin": "2.40.3"}, "docker compose", id="plugin"),
    pytest.param({"plugin": MIN_VERSION}, "docker compose", id="plugin-at-the-minimum"),
    pytest.param({"plugin": "2.29.1-desktop.1"}, "docker compose", id="docker-desktop"),
    pytest.param({"plugin": "5.0.0"}, "docker compose", id="compose-v5"),
    pytest.param({"plugin": None, "standalone": "2.24.6"}, "docker-compose", id="standalone-only"),
    pytest.param(
        {"plugin": "2.20.2", "standalone": "2.40.3"}, "docker-compose", id="old-plugin-new-binary"
    ),
    pytest.param(
        {"plugin": "2.40.3", "standalone": "1.29.2"}, "docker compose", id="plugin-and-v1"
    ),
]


@pytest.mark.parametrize(("situation", "command"), USABLE)
def test_up_runs_the_compose_it_found_and_then_creates_env(
    lab: Path, tmp_path: Path, situation: dict[str, Any], command: str
) -> None:
    standins = compose_standins.install(tmp_path, **situation)
    result = make(lab, standins, "up")
    assert result.returncode == 0, result.stderr
    assert standins.calls()[-1] == f"{command} up -d --build"
    assert "created .env from .env.example" in result.stdout
    assert (lab / ".env").exists()
    which = subprocess.run(
        [str(lab / "compose" / "compose.sh"), "--which"],
        env=standins.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (which.returncode, which.stdout, which.stderr) == (0, f"{command}\n", "")


def test_docker_compose_names_the_command(lab: Path, tmp_path: Path) -> None:
    standins = compose_standins.install(tmp_path, plugin="2.40.3", standalone="2.24.6")
    result = make(lab, standins, "up", DOCKER_COMPOSE="docker-compose")
    assert result.returncode == 0, result.stderr
    assert standins.calls()[-1] == "docker-compose up -d --build"


def test_an_exported_compose_cannot_drop_the_variant(lab: Path, tmp_path: Path) -> None:
    """Issue 21: `COMPOSE="docker compose" make up-replicated` used to start the ZooKeeper lab."""
    standins = compose_standins.install(tmp_path, plugin="2.40.3")
    result = make(lab, standins, "up-replicated", COMPOSE="docker compose")
    assert result.returncode == 0, result.stderr
    assert standins.calls()[-1] == f"docker compose {VARIANT_FILES} up -d --build"


def variant_carriers(makefile: str) -> dict[str, str]:
    """Variables that carry the variant or its broker list, directly or through one that does,
    with the operator that defines them (`:=`, `?=`, ...). VARIANT itself is the user's choice."""
    definitions = {
        match.group(1): (match.group(2), match.group(3))
        for match in re.finditer(r"^([A-Za-z_][\w-]*)\s*([:?+!]?=)\s*(.*)$", makefile, flags=re.M)
    }
    carriers = {
        name
        for name, (_, value) in definitions.items()
        if name.startswith("VARIANT_FILES_") or re.search(r"\$\(VARIANT\)|BOOTSTRAP", value)
    } - {"VARIANT"}
    grew = True
    while grew:
        found = {
            name
            for name, (_, value) in definitions.items()
            if any(f"$({carrier})" in value for carrier in carriers)
        }
        grew = not found <= carriers
        carriers |= found
    return {name: definitions[name][0] for name in sorted(carriers)}


def test_no_variable_from_the_environment_can_drop_the_variant(lab: Path, tmp_path: Path) -> None:
    """Issue 21, for every variable like COMPOSE: defined with `:=`, so an exported one is
    ignored, and the replicated files and the broker list survive each being exported."""
    carriers = variant_carriers((lab / "Makefile").read_text())
    assert {"COMPOSE", "KAFKA_CLI", "VARIANT_FILES_replicated"} <= set(carriers), carriers
    assert all(op == ":=" for op in carriers.values()), f"not := {carriers}"
    standins = compose_standins.install(tmp_path, plugin=None)
    for name in carriers:
        result = make(
            lab, standins, "-n", "topic", "VARIANT=replicated", **{name: "docker compose"}
        )
        assert result.returncode == 0, result.stderr
        assert f"compose/compose.sh {VARIANT_FILES} run" in result.stdout, (name, result.stdout)
        assert '"$KAFKA_BOOTSTRAP_SERVERS"' in result.stdout, (name, result.stdout)


@pytest.mark.parametrize(
    "target",
    ["up", "down", "ps", "logs", "reset", "psql", "mongosh", "topic", "dlq", "scale", "counts"],
)
def test_every_compose_command_goes_through_the_finder(
    lab: Path, tmp_path: Path, target: str
) -> None:
    standins = compose_standins.install(tmp_path, plugin=None)
    result = make(lab, standins, "-n", target, "VARIANT=replicated", "CONFIRM=yes")
    assert result.returncode == 0, result.stderr
    assert f"compose/compose.sh {VARIANT_FILES} " in result.stdout
    assert not re.search(r"\bdocker[ -]compose\s", result.stdout), result.stdout
    assert standins.calls() == [], "make -n runs nothing"


# --- What the README promises -------------------------------------------------------------------


def test_readme_first_section_shows_both_spellings_and_the_minimum() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Three commands", 1)[1].split("\n## ", 1)[0]
    assert "docker compose up -d" in section
    assert "docker-compose up -d" in section
    assert f"Compose {MIN_VERSION}" in section


def test_the_minimum_is_judged_by_the_merged_result_not_the_exit_code() -> None:
    """2.24.0 accepted the KRaft override and kept ZooKeeper settings: that must count as a fail."""
    kraft = {"KAFKA_NODE_ID": "1"}
    pinned = {"services": {"kafka": {"environment": kraft}}}
    kept = {**kraft, "KAFKA_ZOOKEEPER_CONNECT": "zookeeper:2181"}
    ignored_override = {"services": {"kafka": {"environment": kept}}}
    assert compose_minimum.differences(pinned, ignored_override) == [
        "services.kafka.environment.KAFKA_ZOOKEEPER_CONNECT only in this version"
    ]
    assert compose_minimum.differences(pinned, pinned) == []
    assert compose_minimum.min_version() == MIN_VERSION
