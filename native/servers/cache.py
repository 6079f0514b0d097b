"""Downloads and builds, shared by every clone on the machine, each filled once under a lock."""

from __future__ import annotations

import fcntl
import os
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

from native.servers.process import HarnessError


def cache_dir() -> Path:
    """Downloads and builds, shared by every clone on the machine."""
    return Path(os.environ.get("STREAMLAB_CACHE", Path.home() / ".cache" / "streamlab"))


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


def unpack(archive: Path, into: Path) -> None:
    """Extract a downloaded tar archive into ``into``, refusing what could land outside it.

    Python 3.11.4 and later check that themselves (``filter="data"``); Debian 12's Python is
    3.11.2, which has no filter, so there each member is checked here first: no absolute path,
    no ``..``, no device, and no link that leads out of ``into``.
    """
    into = into.resolve()
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
            return
        for member in tar.getmembers():
            if member.isdev() or not _stays_inside(into, member):
                raise HarnessError(f"{archive.name}: refusing {member.name!r}: outside {into}")
        tar.extractall(into)


def _stays_inside(into: Path, member: tarfile.TarInfo) -> bool:
    """Whether ``member``, and what it links to if it is a link, both land inside ``into``."""
    target = (into / member.name).resolve()
    if member.issym():  # relative to the directory the link sits in
        points_to = (target.parent / member.linkname).resolve()
    elif member.islnk():  # a hard link names another member of the archive
        points_to = (into / member.linkname).resolve()
    else:
        points_to = target
    return all(path == into or into in path.parents for path in (target, points_to))


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
