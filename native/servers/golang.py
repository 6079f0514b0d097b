"""A Go that can build a given module: the one on PATH, or a newer release fetched with it.

Why: on a Debian machine without Go, .ci/install brings Debian 12's Go 1.19, which cannot build
Compose (go 1.24.9) or FerretDB (go 1.24) and predates the ``GOTOOLCHAIN`` switch. Its
``go mod download`` can still fetch a Go release from the module proxy, which serves releases as
the module ``golang.org/toolchain`` (``v0.0.1-go1.27.3.linux-amd64``); that release's ``bin/go``
then builds. It lands in Go's module cache, so only the first build downloads it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from native.servers.process import answer

# The Go release fetched when the Go on PATH is older than asked for: the one release the module
# proxy serves here as golang.org/toolchain (newer than anything the lab builds needs).
GO_TOOLCHAIN = "go1.27.3"
TOOLCHAIN_MODULE = "golang.org/toolchain"

PROBE_TIMEOUT_S = 30
DOWNLOAD_TIMEOUT_S = 900


class GoUnavailable(RuntimeError):
    """No Go here can build the module; ``str()`` says why and what to do."""


def go_env() -> dict[str, str]:
    """The caller's environment, with the chosen Go pinned: it must not switch on its own."""
    return {**os.environ, "GOTOOLCHAIN": "local"}


def _output(cmd: list[str], *, cwd: Path | None, timeout: int) -> str:
    try:
        result = subprocess.run(
            cmd, cwd=cwd, env=go_env(), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise GoUnavailable(f"`{' '.join(cmd)}` did not finish: {error}") from error
    if result.returncode != 0:
        # `go mod download -json` reports its error in the JSON on stdout.
        tail = "\n".join((result.stderr.strip() or result.stdout.strip()).splitlines()[-15:])
        raise GoUnavailable(f"`{' '.join(cmd)}` failed (exit {result.returncode}):\n{tail}")
    return result.stdout


def go_version(go: str) -> tuple[int, ...] | None:
    """``go1.19.8`` -> (1, 19, 8); None if ``go`` does not run or says something else."""
    text = (
        answer([go, "env", "GOVERSION"], env=go_env(), timeout_s=PROBE_TIMEOUT_S) or ""
    ).removeprefix("go")
    numbers = text.split("-")[0].split(" ")[0].split(".")
    if not all(part.isdigit() for part in numbers):
        return None
    return tuple(int(part) for part in numbers)


def toolchain_version(platform: str) -> str:
    """The module version of GO_TOOLCHAIN for ``platform`` (``linux-amd64``)."""
    return f"v0.0.1-{GO_TOOLCHAIN}.{platform}"


def fetch_toolchain(old_go: str, minimum: tuple[int, ...]) -> str:
    """GO_TOOLCHAIN's ``bin/go``, downloaded as a module with ``old_go`` (any Go from 1.16 on)."""
    platform = "-".join(
        _output([old_go, "env", "GOOS", "GOARCH"], cwd=None, timeout=PROBE_TIMEOUT_S).split()
    )
    module = f"{TOOLCHAIN_MODULE}@{toolchain_version(platform)}"
    # Outside any module (a go.mod in the caller's directory must not take part).
    with tempfile.TemporaryDirectory(prefix="go-toolchain-") as outside:
        info = json.loads(
            _output(
                [old_go, "mod", "download", "-json", module],
                cwd=Path(outside),
                timeout=DOWNLOAD_TIMEOUT_S,
            )
        )
    if info.get("Error") or not info.get("Dir"):
        raise GoUnavailable(f"go mod download {module}: {info}")
    root = Path(info["Dir"])
    # Module zips carry no execute bits, so the module cache holds bin/go as 0444. Go 1.21's own
    # toolchain switch sets them on first use, in place, on bin/ and pkg/tool/
    # (cmd/go/internal/toolchain); an older Go does not, so this does the same.
    for folder in (root / "bin", root / "pkg" / "tool"):
        for path in folder.rglob("*") if folder.is_dir() else ():
            mode = path.stat().st_mode
            if path.is_file() and not mode & 0o111:
                path.chmod(mode | 0o111)
    go = str(root / "bin" / "go")
    if (go_version(go) or ()) < minimum:
        raise GoUnavailable(f"{go} (from {module}) does not run or is older than needed")
    return go


@functools.cache
def go_command(minimum: tuple[int, ...]) -> str:
    """A Go of at least ``minimum``: the one on PATH, or GO_TOOLCHAIN fetched with it."""
    go = shutil.which("go")
    if go is None:
        raise GoUnavailable(
            f"Go is not on PATH; install Go (any version: an older one fetches {GO_TOOLCHAIN})"
        )
    found = go_version(go)
    if found is not None and found >= minimum:
        return go
    sys.stderr.write(
        f"{go} is Go {'.'.join(map(str, found or ())) or '(unknown)'}, older than "
        f"{'.'.join(map(str, minimum))}: fetching {GO_TOOLCHAIN} as a module\n"
    )
    return fetch_toolchain(go, minimum)
