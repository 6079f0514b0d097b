"""The Makefile's promises that need no Docker: help, .env creation, the NiFi password check.

`make up` looks for Compose before it reads .env, so its tests here run with stand-in `docker`
executables (tests/compose_standins.py): test doubles for a program that cannot run on these
machines. They start nothing. test_make_up.py covers finding Compose itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import compose_standins

REPO = Path(__file__).resolve().parents[2]
TARGETS = [
    "up", "down", "ps", "logs", "test", "lint", "reset", "psql", "mongosh",
    "topic", "dlq", "scale", "counts", "bench",
]  # fmt: skip


def make(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    (tmp_path / "compose").mkdir()
    shutil.copy2(REPO / "compose" / "compose.sh", tmp_path / "compose" / "compose.sh")
    return tmp_path


def test_help_is_the_default_and_lists_every_target(lab: Path) -> None:
    result = make(lab)
    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^  make (\S+)", result.stdout, flags=re.M))
    assert set(TARGETS) <= listed, f"missing from make help: {set(TARGETS) - listed}"


def test_kafka_tools_run_outside_the_broker() -> None:
    """The CLI tools' JVMs must not share the broker container's memory limit."""
    text = (REPO / "Makefile").read_text()
    cli = re.search(r"^KAFKA_CLI := (.+)$", text, flags=re.M)
    assert cli is not None
    assert " run --rm " in cli.group(1) and cli.group(1).endswith(" kafka-cli")
    assert "exec" not in cli.group(1)
    assert "exec -T kafka " not in text and "exec kafka " not in text


def test_env_is_created_with_fresh_secrets_and_kept_afterwards(lab: Path) -> None:
    assert make(lab, ".env").returncode == 0
    env = (lab / ".env").read_text()
    assert not re.search(r"^\w+=change-me", env, flags=re.M)
    password = re.search(r"^NIFI_PASSWORD=(\S+)$", env, flags=re.M)
    assert password is not None
    assert len(password.group(1)) >= 12
    assert (lab / ".env").stat().st_mode & 0o077 == 0, ".env holds secrets: owner-only"
    other = lab / "again"
    other.mkdir()
    shutil.copy(lab / "Makefile", other / "Makefile")
    shutil.copy(lab / ".env.example", other / ".env.example")
    make(other, ".env")
    assert (other / ".env").read_text() != env, "each lab gets its own passwords"
    assert make(lab, "check-env").returncode == 0
    assert (lab / ".env").read_text() == env, "an existing .env is never rewritten"


def make_up(lab: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`make up` with a working Compose played by stand-ins; returns what they were asked."""
    standins = compose_standins.install(lab / "stand-ins", plugin="2.40.3")
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(lab), "up"],
        env=standins.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, standins.calls()


def test_up_refuses_a_short_nifi_password(lab: Path) -> None:
    (lab / ".env").write_text("NIFI_USERNAME=admin\nNIFI_PASSWORD=short-pass\n")
    result, calls = make_up(lab)
    assert result.returncode != 0
    assert "NIFI_PASSWORD in .env has 10 characters; NiFi needs at least 12" in result.stderr
    assert not any(" up " in call for call in calls), "nothing is started"


def test_up_refuses_a_short_nifi_username(lab: Path) -> None:
    (lab / ".env").write_text("NIFI_USERNAME=nif\nNIFI_PASSWORD=long-enough-password\n")
    result, calls = make_up(lab)
    assert result.returncode != 0
    assert "NIFI_USERNAME in .env has 3 characters; NiFi needs at least 4" in result.stderr
    assert not any(" up " in call for call in calls), "nothing is started"


def test_check_env_accepts_the_minimum_lengths(lab: Path) -> None:
    (lab / ".env").write_text("NIFI_USERNAME='nifi'\nNIFI_PASSWORD=\"twelve-chars\"\n")
    result = make(lab, "check-env")
    assert result.returncode == 0, result.stderr
