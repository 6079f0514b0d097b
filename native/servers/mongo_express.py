"""mongo-express run natively, at the compose file's version, for the UI test and ``make demo``.

Why this is more than ``npm install mongo-express@1.0.2``: that command fails. The published
package names one dependency by a GitHub branch (``bootstrap-paginator``) and one as a yarn
patch (``mongodb-query-parser``), neither of which npm can fetch; and it ships no built client
assets, so ``node app.js`` stops on a missing ``build-assets.json``. So the install:

1. fetches the package itself (``npm pack mongo-express@1.0.2``);
2. swaps its ``package.json`` for ``native/servers/mongo-express/package.json``: the same runtime
   dependencies at exact versions (the two above as their npm releases), plus only the build
   tools its ``webpack.config.js`` needs; ``package-lock.json`` beside it pins the whole tree;
3. installs that tree with ``npm ci --ignore-scripts`` (no install scripts run);
4. builds the client assets with the package's own ``webpack.config.js``.

Everything lands in ``$STREAMLAB_CACHE/mongo-express-1.0.2``, once per machine. The server itself
is configured only through the ``ME_CONFIG_*`` environment, as in the compose file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from native.servers.cache import build_once, cache_dir, install_command, unpack
from native.servers.process import HarnessError, log, run, stop_child, wait_until

MONGO_EXPRESS_VERSION = "1.0.2"  # docker-compose.yml: mongo-express:1.0.2-20-alpine3.19
PINS = Path(__file__).resolve().parent / "mongo-express"
START_TIMEOUT_S = 60
# The compose file's own settings that are not secrets or addresses (docker-compose.yml,
# service mongo-express), for a run outside compose that cannot read it: ``make demo`` has no
# Compose. The demo's browser walk checks they still agree with the file.
COMPOSE_CONFIG = {"ME_CONFIG_MONGODB_ENABLE_ADMIN": "true", "ME_CONFIG_BASICAUTH": "true"}


def _home() -> Path:
    return cache_dir() / f"mongo-express-{MONGO_EXPRESS_VERSION}"


def installed() -> bool:
    """Whether :func:`install` has nothing left to do (the lab then skips its progress step)."""
    return (_home() / ".complete").exists()


def install() -> Path:
    """The package folder holding ``app.js`` and its built assets, made once per machine."""
    home = _home()
    build_once(home, lambda: _build(home))
    return home


def _build(home: Path) -> None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise HarnessError("node/npm not found: install Node.js 18+ and npm to run mongo-express")
    log(f"building mongo-express {MONGO_EXPRESS_VERSION} into {home} (first run only)")
    shutil.rmtree(home, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=home.parent, prefix=f".{home.name}.") as scratch:
        work = Path(scratch)
        run(["npm", "pack", f"mongo-express@{MONGO_EXPRESS_VERSION}", "--silent"], cwd=work)
        unpack(next(work.glob("mongo-express-*.tgz")), work)
        package = work / "package"
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(PINS / name, package / name)
        run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=package)
        run(
            ["node", str(package / "node_modules" / "webpack" / "bin" / "webpack.js")],
            cwd=package,
            env={**os.environ, "NODE_ENV": "production"},
        )
        if not (package / "build-assets.json").exists():
            raise HarnessError(f"webpack left no build-assets.json in {package}")
        package.rename(home)


class MongoExpress:
    """One mongo-express process on ``127.0.0.1:port``, configured by ``ME_CONFIG_*`` only."""

    def __init__(self, workdir: Path, port: int, config: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = port
        self.config = config
        self.log_path = workdir / "mongo-express.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The server's environment: ``ME_CONFIG_*`` and the address, nothing else inherited."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "NODE_ENV": "production",
            **self.config,
            # The image's listen address is 0.0.0.0 inside its container; on the host, loopback.
            "VCAP_APP_HOST": "127.0.0.1",
            "PORT": str(self.port),
        }

    COMMAND = ("node", "app.js")  # run in the package folder :func:`install` returns

    def start(self) -> MongoExpress:
        home = install()
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                list(self.COMMAND),
                cwd=home,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_until("mongo-express", self.answers, START_TIMEOUT_S, self.log_path, self.proc)
        return self

    def answers(self) -> bool:
        """Any HTTP answer (a 401 without credentials included) means it is serving."""
        try:
            with urllib.request.urlopen(f"{self.url}/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        stop_child(self.proc)


def main(argv: list[str] | None = None) -> int:
    return install_command("native.servers.mongo_express", install, argv)


if __name__ == "__main__":
    sys.exit(main())
