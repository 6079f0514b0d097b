"""Which Go builds the Compose CLI (and FerretDB): the one on PATH, or a newer one fetched with it.

Issue 21: on a Debian machine without Go, .ci/install brings Debian 12's Go 1.19, which cannot
build Compose. Stand-in `go` executables play an old Go (whose `go mod download` hands out a
toolchain module) and a new one; the real fetch ran on a debootstrap machine (docs/testing.md).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from native.servers import golang
from tests import compose_cli

GO_STANDIN = textwrap.dedent(
    """\
    #!/bin/sh
    # A stand-in go: `env GOVERSION`, `env GOOS GOARCH` and `mod download -json MODULE`.
    echo "$*" >> "{calls}"
    case "$1 $2" in
      "env GOVERSION") echo "{version}" ;;
      "env GOOS") printf 'linux\\namd64\\n' ;;
      "mod download") printf '{{"Path": "x", "Dir": "{toolchain_dir}"}}\\n' ;;
      *) exit 2 ;;
    esac
    """
)


def write_go(path: Path, version: str, calls: Path, toolchain_dir: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        GO_STANDIN.format(version=version, calls=calls, toolchain_dir=toolchain_dir),
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


@pytest.fixture(autouse=True)
def fresh_choice() -> Iterator[None]:
    """go_command() remembers its answer for the process; each test asks anew."""
    golang.go_command.cache_clear()
    yield
    golang.go_command.cache_clear()


def test_a_new_enough_go_on_path_is_used_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls.log"
    go = write_go(tmp_path / "bin" / "go", "go1.26.8", calls, tmp_path / "unused")
    monkeypatch.setenv("PATH", str(go.parent))
    assert compose_cli.go_command() == str(go)
    assert "mod download" not in calls.read_text()


def test_an_old_go_fetches_the_toolchain_module_and_hands_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls.log"
    toolchain = tmp_path / "modcache" / "toolchain"
    new_go = write_go(toolchain / "bin" / "go", "go1.27.3", calls, tmp_path / "unused")
    new_go.chmod(0o444)  # as a module zip leaves it in the module cache
    old_go = write_go(tmp_path / "debian" / "go", "go1.19.8", calls, toolchain)
    monkeypatch.setenv("PATH", str(old_go.parent))
    assert compose_cli.go_command() == str(new_go)
    assert new_go.stat().st_mode & 0o111, "made executable, as Go's own toolchain switch does"
    asked = calls.read_text().splitlines()
    assert (
        f"mod download -json golang.org/toolchain@v0.0.1-{golang.GO_TOOLCHAIN}.linux-amd64" in asked
    )


def test_a_fetched_toolchain_that_is_still_too_old_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls.log"
    toolchain = tmp_path / "modcache" / "toolchain"
    write_go(toolchain / "bin" / "go", "go1.20.1", calls, tmp_path / "unused")
    old_go = write_go(tmp_path / "debian" / "go", "go1.19.8", calls, toolchain)
    monkeypatch.setenv("PATH", str(old_go.parent))
    with pytest.raises(compose_cli.ComposeUnavailable, match="older than needed"):
        compose_cli.go_command()
    golang.go_command.cache_clear()
    with pytest.raises(golang.GoUnavailable, match="older than needed"):
        golang.go_command((1, 24))  # FerretDB's minimum, the same way


def test_no_go_at_all_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(compose_cli.ComposeUnavailable, match="Go is not on PATH"):
        compose_cli.go_command()


def test_the_minimum_is_the_pinned_compose_go_mod_line() -> None:
    """GO_MINIMUM follows COMPOSE_VERSION: read from the module cache when it is there."""
    gomodcache = Path(os.environ.get("GOMODCACHE") or Path.home() / "go" / "pkg" / "mod")
    go_mod = gomodcache / "github.com/docker/compose" / f"v2@{compose_cli.COMPOSE_VERSION}/go.mod"
    if not go_mod.exists():
        if os.environ.get("CI"):  # .ci/install builds Compose from this module: it must be here
            pytest.fail(f"{go_mod} missing in CI")
        pytest.skip(f"{go_mod} not downloaded here")
    line = next(x for x in go_mod.read_text().splitlines() if x.startswith("go "))
    wanted = tuple(int(part) for part in line.split()[1].split("."))
    assert wanted == compose_cli.GO_MINIMUM
