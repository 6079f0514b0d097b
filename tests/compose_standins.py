"""Stand-in ``docker`` and ``docker-compose`` executables for the Makefile's Compose tests.

Why: these machines have no Docker engine and no Compose plugin, so the situations a user meets
(no plugin, only the standalone binary, Compose v1, a Compose too old, the daemon down, all fine)
cannot be made with the real programs. These are test doubles for programs that cannot run here:
they answer ``version --short`` and ``ls`` with what the real programs print in each situation,
write every call to a log, and start nothing (``up``, ``down`` and the rest only reach the log).

The texts come from the real programs: Docker 28.2's CLI without the plugin on this machine
(``unknown flag: --short``, exit 125), older CLIs' ``'compose' is not a docker command``, and
the Compose CLI built by tests/compose_cli.py with no daemon (``Cannot connect to the Docker
daemon ...``).
"""

from __future__ import annotations

import os
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Daemon = Literal["up", "down", "denied", "hangs"]
# How a docker CLI without the Compose plugin refuses `docker compose ...`.
NoPlugin = Literal["unknown-flag", "not-a-command"]

DAEMON_DOWN = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
    "Is the docker daemon running?"
)
DAEMON_DENIED = (
    "permission denied while trying to connect to the Docker daemon socket at "
    "unix:///var/run/docker.sock: Get "
    '"http://%2Fvar%2Frun%2Fdocker.sock/v1.47/containers/json": '
    "dial unix /var/run/docker.sock: connect: permission denied"
)

# Compose itself (the plugin or the standalone binary): its version, then the daemon's state
# for every other command. `hangs` execs sleep so that killing the pid stops it.
_COMPOSE_BODY = """\
if [ "$*" = "version --short" ]; then echo "$VERSION"; exit 0; fi
case $DAEMON in
  down) echo "$DAEMON_DOWN" >&2; exit 1 ;;
  denied) echo "$DAEMON_DENIED" >&2; exit 1 ;;
  hangs) exec sleep 60 ;;
esac
exit 0
"""

_DOCKER_PLAYS_ONLY_COMPOSE = """\
if [ "${1:-}" != compose ]; then echo "stand-in: only compose is played" >&2; exit 99; fi
shift
"""

# Docker's CLI without the plugin: modern CLIs parse the flags first and name the first unknown
# one (exit 125), or, with no flags, the unknown command; older ones say it is not a command.
_NO_PLUGIN = {
    "unknown-flag": """\
for arg; do
  case $arg in
    --*) printf 'unknown flag: %s\\n' "$arg" >&2; flag=1; break ;;
    -?*) printf "unknown shorthand flag: '%s' in %s\\n" "${arg#-}" "$arg" >&2; flag=1; break ;;
  esac
done
if [ -z "${flag:-}" ]; then
  printf 'docker: unknown command: docker compose\\n\\n' >&2
  echo "Run 'docker --help' for more information" >&2
  exit 1
fi
printf '\\nUsage:  docker [OPTIONS] COMMAND [ARG...]\\n\\n' >&2
echo "Run 'docker --help' for more information" >&2
exit 125
""",
    "not-a-command": """\
echo "docker: 'compose' is not a docker command." >&2
echo "See 'docker --help'" >&2
exit 1
""",
}


@dataclass(frozen=True)
class StandIns:
    """Where the stand-ins are, and what they were asked."""

    bin_dir: Path
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a run: the stand-ins first on PATH, no real docker behind them."""
        kept = [
            folder
            for folder in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
            if folder
            and not any((Path(folder) / name).exists() for name in ("docker", "docker-compose"))
        ]
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"DOCKER_COMPOSE", "COMPOSE", "VARIANT", "MAKEFLAGS", "MAKELEVEL"}
        }
        env["PATH"] = os.pathsep.join([str(self.bin_dir), *kept])
        env.update(extra)
        return env

    def calls(self) -> list[str]:
        """Every call the stand-ins received, in order: `docker compose up -d --build`."""
        return self.log.read_text().splitlines() if self.log.exists() else []


def install(
    where: Path,
    *,
    plugin: str | None,
    standalone: str | None = None,
    daemon: Daemon = "up",
    no_plugin: NoPlugin = "unknown-flag",
    cli: bool = True,
) -> StandIns:
    """Write the stand-ins for one situation into ``where/bin``.

    ``plugin``: the version `docker compose version --short` prints, or None for a docker CLI
    without the plugin (answering as ``no_plugin`` says). ``standalone``: the version of a
    `docker-compose` binary, or None for none. ``daemon``: how the daemon answers. ``cli``:
    False for a machine without even the docker command.
    """
    bin_dir = where / "bin"
    bin_dir.mkdir(parents=True)
    log = where / "calls.log"
    common = textwrap.dedent(
        f"""\
        #!/bin/sh
        # Test double: stands in for a program that cannot run on this machine. Starts nothing.
        DAEMON={daemon}
        DAEMON_DOWN={shlex.quote(DAEMON_DOWN)}
        DAEMON_DENIED={shlex.quote(DAEMON_DENIED)}
        """
    )
    record = f'echo "$(basename "$0") $*" >> {shlex.quote(str(log))}\n'
    docker = common + record + _DOCKER_PLAYS_ONLY_COMPOSE
    if plugin is None:
        docker += _NO_PLUGIN[no_plugin]
    else:
        docker += f"VERSION={shlex.quote(plugin)}\n" + _COMPOSE_BODY
    if cli:
        _write(bin_dir / "docker", docker)
    if standalone is not None:
        _write(
            bin_dir / "docker-compose",
            common + record + f"VERSION={shlex.quote(standalone)}\n" + _COMPOSE_BODY,
        )
    return StandIns(bin_dir=bin_dir, log=log)


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
