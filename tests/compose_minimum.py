"""Which Docker Compose releases read the lab's compose files as the pinned one does.

Why: the variant files use the `!override` and `!reset` YAML tags, which older releases reject
or, worse, ignore. 2.24.0 reads docker-compose.kraft.yml without a word and keeps the ZooKeeper
broker's settings in the KRaft broker. So the oldest usable Compose (compose/compose.sh's
MIN_VERSION, stated in the README) is decided by the merged result, not by the exit code: each
release given is built with the real Compose parser (tests/compose_cli.py, cached under
~/.cache/streamlab/compose/<version>), runs `config` on the base file, base + kraft and
base + kraft + replicated with .env.example, and is compared with the pinned version.

    python -m tests.compose_minimum                    # the release before the minimum, and it
    python -m tests.compose_minimum v2.24.0 v2.24.5    # any releases
    python -m tests.compose_minimum --git ~/compose v2.24.4

``--git`` builds a release the Go module proxy does not serve from its tag in a clone of
github.com/docker/compose (the proxy this was first run through refused v2.24.4). Exit status 0
when the releases at or above MIN_VERSION read the files as the pinned one and those below do
not, so a change to the compose files that needs a newer Compose shows here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from native.servers.cache import unpack
from tests import compose_cli

REPO = Path(__file__).resolve().parents[1]
FINDER = REPO / "compose" / "compose.sh"
JUST_BELOW = "v2.24.3"  # the release before MIN_VERSION
BASE = ("docker-compose.yml",)
FILE_SETS = {
    "base": BASE,
    "kraft": (*BASE, "docker-compose.kraft.yml"),
    "replicated": (*BASE, "docker-compose.kraft.yml", "docker-compose.replicated.yml"),
}
CONFIG_TIMEOUT_S = 120


def min_version() -> str:
    """The minimum compose/compose.sh enforces, e.g. ``2.24.4``."""
    found = re.search(r"^MIN_VERSION=(\S+)$", FINDER.read_text(encoding="utf-8"), flags=re.M)
    if found is None:
        raise SystemExit(f"{FINDER}: no MIN_VERSION= line")
    return found.group(1)


def numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def merged(binary: Path, files: tuple[str, ...], env_file: Path) -> dict[str, Any] | str:
    """The merged configuration as JSON, or Compose's error when it refuses the files."""
    result = subprocess.run(
        [
            str(binary),
            "--project-directory",
            str(REPO),
            "--env-file",
            str(env_file),
            *(arg for name in files for arg in ("-f", str(REPO / name))),
            "config",
            "--format",
            "json",
        ],
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent)},
        capture_output=True,
        text=True,
        timeout=CONFIG_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        return (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def differences(want: Any, got: Any, where: str = "") -> list[str]:
    """Where two merged configurations differ: `services.kafka.environment.KAFKA_BROKER_ID`."""
    if isinstance(want, dict) and isinstance(got, dict):
        found: list[str] = []
        for key in sorted(set(want) | set(got), key=str):
            path = f"{where}.{key}" if where else str(key)
            if key not in want or key not in got:
                found.append(f"{path} only in {'the pinned' if key in want else 'this'} version")
            else:
                found += differences(want[key], got[key], path)
        return found
    return [] if want == got else [f"{where}: {json.dumps(got)}, pinned {json.dumps(want)}"]


def verdict(binary: Path, pinned: Path, env_file: Path) -> str | None:
    """None when ``binary`` merges every file set as ``pinned`` does, else the first reason."""
    for name, files in FILE_SETS.items():
        want = merged(pinned, files, env_file)
        got = merged(binary, files, env_file)
        if isinstance(got, str):
            return f"rejects the {name} files: {got}"
        if got != want:
            return f"merges the {name} files differently: {'; '.join(differences(want, got)[:3])}"
    return None


def build(version: str, git: Path | None) -> Path:
    """The cached binary for ``version``, built from the module proxy or from ``git``'s tag."""
    cached = compose_cli.binary_path(version)
    if compose_cli.probe(cached):
        return cached
    if git is None:
        return compose_cli.build(version)
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="build-", dir=cached.parent) as work:
        archive = Path(work) / "src.tar"
        subprocess.run(
            ["git", "-C", str(git), "archive", "--output", str(archive), version], check=True
        )
        source = Path(work) / "src"
        unpack(archive, source)
        return compose_cli.compile_source(source, version)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m tests.compose_minimum", description=__doc__)
    parser.add_argument("versions", nargs="*", help="release tags, e.g. v2.24.4")
    parser.add_argument("--git", type=Path, help="a clone of docker/compose, for --git builds")
    args = parser.parse_args(argv)
    minimum = min_version()
    versions = args.versions or [JUST_BELOW, f"v{minimum}"]

    pinned = compose_cli.install()
    agrees, unbuilt = True, []
    with tempfile.TemporaryDirectory() as home:
        env_file = Path(home) / ".env"
        shutil.copyfile(REPO / ".env.example", env_file)
        for version in versions:
            try:
                reason = verdict(build(version, args.git), pinned, env_file)
            except (compose_cli.ComposeUnavailable, subprocess.CalledProcessError) as error:
                print(f"{version}: not built (if the proxy refuses it, use --git): {error}")
                unbuilt.append(version)
                continue
            print(f"{version}: {reason or f'same as {compose_cli.COMPOSE_VERSION}'}")
            agrees &= (reason is None) == (numbers(version) >= numbers(minimum))
    if unbuilt:
        print(f"not checked: {' '.join(unbuilt)}")
        return 1
    print(f"compose/compose.sh's minimum {minimum} {'agrees' if agrees else 'does NOT agree'}")
    return 0 if agrees else 1


if __name__ == "__main__":
    sys.exit(main())
