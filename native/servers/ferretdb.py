"""FerretDB natively: the MongoDB wire protocol on SQLite, built with Go from its module."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from native.servers import golang
from native.servers.cache import cache_dir
from native.servers.process import (
    HOST,
    HarnessError,
    is_listening,
    log,
    run,
    run_dir,
    spawn,
    wait_until,
)

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
FERRETDB_PORT = int(os.environ.get("STREAMLAB_FERRETDB_PORT", "27217"))
# The `go` line of FerretDB v1.24.2's go.mod: an older Go (Debian 12's 1.19) refuses to build it.
FERRETDB_GO_MINIMUM = (1, 24)


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
    try:
        go = golang.go_command(FERRETDB_GO_MINIMUM)
    except golang.GoUnavailable as error:
        raise HarnessError(f"cannot build FerretDB: {error}") from error
    log(f"building FerretDB {FERRETDB_VERSION} from its Go module (first run only)")
    info = run([go, "mod", "download", "-json", f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"])
    module_dir = Path(json.loads(info.stdout)["Dir"])
    src = home / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(module_dir, src)
    for path in [src, *src.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    (src / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
    run([go, "build", "-o", str(binary), "./cmd/ferretdb"], cwd=src)
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
