"""Build, cache and locate a standalone ``docker-compose`` binary for checking docker-compose.yml.

Why this exists: the machines the lab is developed and tested on have the ``docker`` client but
neither an engine nor the compose plugin, and cannot download release binaries. ``docker-compose
config`` needs no engine, only the Compose parser, so we build the real Compose CLI from its
published Go module with the machine's Go toolchain and keep it in a cache outside the repository.
Validating with the real parser (interpolation, ``${VAR:?}`` errors, merge rules, schema) catches
what a hand-rolled YAML check would miss.

Why not ``go install module/cmd@version``: Compose's go.mod carries ``exclude`` directives, which
``go install pkg@version`` refuses. So we download the module, copy it to a writable directory,
and ``go build`` there, where its go.mod and go.sum apply as the main module (``-mod=readonly``:
dependencies are exactly the ones go.sum pins).

Usage::

    python -m tests.compose_cli install   # build if needed; print the binary's path
    python -m tests.compose_cli path      # print the path if already built, else exit 1
    python -m tests.compose_cli version   # print the cached binary's version

Cache: ``${STREAMLAB_CACHE:-~/.cache/streamlab}/compose/<version>/docker-compose``. Go's own
module and build caches (GOMODCACHE, GOCACHE) are used as configured, so a rebuild is quick.
Set ``STREAMLAB_DOCKER_COMPOSE`` to use an existing binary instead (for example a real Docker
installation's ``docker-compose``).

Which Go: the first ``go`` on PATH if it is at least ``GO_MINIMUM`` (the ``go`` line of the pinned
Compose's go.mod), else a newer release fetched with it (native/servers/golang.py): Debian 12's
Go 1.19 cannot build Compose ("invalid go version").
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from native.servers import golang
from native.servers.process import answer

COMPOSE_MODULE = "github.com/docker/compose/v2"
COMPOSE_VERSION = "v2.40.3"
# Linker flag that makes `docker-compose version` report the tag instead of "dev".
_VERSION_SYMBOL = f"{COMPOSE_MODULE}/internal.Version"

# The `go` line of Compose v2.40.3's go.mod: an older Go refuses to build it.
GO_MINIMUM = (1, 24, 9)
ENV_CACHE = "STREAMLAB_CACHE"
ENV_BINARY = "STREAMLAB_DOCKER_COMPOSE"

# Bounds on the external commands: a cold build measured ~130 s on a 2-core machine.
DOWNLOAD_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 1800
PROBE_TIMEOUT_S = 30


class ComposeUnavailable(RuntimeError):
    """The binary is not cached and cannot be built here; ``str()`` says why and what to do."""


def cache_root() -> Path:
    """The lab's cache directory, outside the repository so builds never dirty the work tree."""
    configured = os.environ.get(ENV_CACHE, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "streamlab"


def binary_path(version: str = COMPOSE_VERSION) -> Path:
    """Where the binary for ``version`` lives once built (it may not exist yet)."""
    return cache_root() / "compose" / version / "docker-compose"


def probe(binary: Path) -> str | None:
    """Return the binary's short version if it runs, else None (missing, truncated, wrong arch)."""
    return answer([str(binary), "version", "--short"], timeout_s=PROBE_TIMEOUT_S)


def find() -> Path | None:
    """The override from STREAMLAB_DOCKER_COMPOSE if set, else the cached build if it runs."""
    override = os.environ.get(ENV_BINARY, "").strip()
    if override:
        path = Path(override).expanduser()
        return path if probe(path) else None
    path = binary_path()
    return path if probe(path) else None


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Serialise builds: parallel test workers or CI steps must not build twice at once."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # A static binary that runs on any Linux of the same architecture.
    env["CGO_ENABLED"] = "0"
    # The module's go.mod/go.sum decide the dependency set; ignore a caller's -mod=vendor etc.
    env["GOFLAGS"] = "-mod=readonly -buildvcs=false"
    # The Go go_command() chose builds; it must not switch to another release on its own.
    env["GOTOOLCHAIN"] = "local"
    return env


def _run(cmd: list[str], *, cwd: Path | None, timeout: int, log: TextIO) -> str:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    try:
        result = subprocess.run(
            cmd,
            cwd=cwd,
            env=_go_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise ComposeUnavailable(f"`{' '.join(cmd)}` timed out after {timeout} s") from error
    log.write(result.stderr)
    log.flush()
    if result.returncode != 0:
        # `go mod download -json` reports its error in the JSON on stdout.
        tail = "\n".join((result.stderr.strip() or result.stdout.strip()).splitlines()[-15:])
        raise ComposeUnavailable(f"`{' '.join(cmd)}` failed (exit {result.returncode}):\n{tail}")
    return result.stdout


def go_command() -> str:
    """A Go that can build Compose (native/servers/golang.py: the one on PATH, or a newer one)."""
    try:
        return golang.go_command(GO_MINIMUM)
    except golang.GoUnavailable as error:
        raise ComposeUnavailable(
            f"{error}; or set {ENV_BINARY} to an existing docker-compose binary"
        ) from error


def build(version: str = COMPOSE_VERSION, *, log: TextIO = sys.stderr) -> Path:
    """Build the binary for ``version`` into the cache and return its path (no lock held)."""
    go = go_command()
    target = binary_path(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    info = json.loads(
        _run(
            [go, "mod", "download", "-json", f"{COMPOSE_MODULE}@{version}"],
            cwd=None,
            timeout=DOWNLOAD_TIMEOUT_S,
            log=log,
        )
    )
    if info.get("Error") or not info.get("Dir"):
        raise ComposeUnavailable(f"go mod download {COMPOSE_MODULE}@{version}: {info}")
    with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as work:
        source = Path(work) / "src"
        # The module cache is read-only and must stay pristine; build in a writable copy.
        shutil.copytree(info["Dir"], source)
        for path in [source, *source.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
        compile_source(source, version, log=log)
    log.write(f"built {target} in {time.monotonic() - started:.0f} s\n")
    return target


def compile_source(source: Path, version: str, *, log: TextIO = sys.stderr) -> Path:
    """Build Compose's writable source tree ``source`` as ``version`` into the cache.

    Also for a release the module proxy does not serve: its tag's tree from a clone of
    docker/compose (tests/compose_minimum.py --git).
    """
    go = go_command()
    target = binary_path(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = source.parent / "docker-compose"
    _run(
        [
            go,
            "build",
            "-trimpath",
            "-ldflags",
            f"-s -w -X {_VERSION_SYMBOL}={version}",
            "-o",
            str(staged),
            "./cmd",
        ],
        cwd=source,
        timeout=BUILD_TIMEOUT_S,
        log=log,
    )
    if probe(staged) is None:
        raise ComposeUnavailable(f"the freshly built {staged} does not run")
    os.replace(staged, target)  # atomic: readers see the old binary or the whole new one
    return target


def install(*, force: bool = False, log: TextIO = sys.stderr) -> Path:
    """Return a working docker-compose, building it into the cache on first use."""
    if not force:
        found = find()
        if found is not None:
            return found
        if os.environ.get(ENV_BINARY, "").strip():
            raise ComposeUnavailable(f"{ENV_BINARY}={os.environ[ENV_BINARY]} does not run")
    go_command()  # fail before taking the lock or writing a log when there is nothing to build with
    target = binary_path()
    with _locked(target.parent.parent / ".build.lock"):
        if not force and probe(target):
            return target  # another process built it while we waited for the lock
        log_path = target.parent / "build.log"
        target.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("w", encoding="utf-8") as build_log:
            log.write(f"building docker-compose {COMPOSE_VERSION} (log: {log_path})\n")
            log.flush()
            return build(log=build_log)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m tests.compose_cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    install_cmd = sub.add_parser("install", help="build if needed, print the binary path")
    install_cmd.add_argument("--force", action="store_true", help="rebuild even if cached")
    sub.add_parser("path", help="print the binary path if it is already built")
    sub.add_parser("version", help="print the cached binary's version")
    args = parser.parse_args(argv)

    if args.command == "install":
        try:
            print(install(force=args.force))
        except ComposeUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    found = find()
    if found is None:
        print(f"docker-compose not built yet; run: {parser.prog} install", file=sys.stderr)
        return 1
    print(found if args.command == "path" else probe(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
