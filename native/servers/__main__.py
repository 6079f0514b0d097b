"""``python -m native.servers``: start, stop and inspect the lab's native servers."""

from __future__ import annotations

import argparse
import shutil
import sys

from native import servers
from native.servers.kafka import KAFKA_MODE
from native.servers.process import HarnessError, log, run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m native.servers", description=(servers.__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "command", choices=["up", "down", "status", "env", "reset", "start", "stop"]
    )
    known = servers.BY_NAME
    parser.add_argument("names", nargs="*", help=f"servers, of {', '.join(known)} (default: all)")
    args = parser.parse_args(argv)
    if KAFKA_MODE not in ("zookeeper", "kraft"):
        parser.error(f"STREAMLAB_KAFKA_MODE={KAFKA_MODE!r}: use zookeeper (default) or kraft")
    names = args.names or list(known)
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown server {', '.join(unknown)}; known: {', '.join(known)}")
    try:
        if args.command in ("up", "start"):
            servers.up(names)
        elif args.command in ("down", "stop"):
            servers.down(names)
        elif args.command == "reset":
            servers.down(list(known))
            path = run_dir()
            shutil.rmtree(path, ignore_errors=True)
            log(f"removed {path}")
        elif args.command == "env":
            print(servers.write_env_file().read_text(), end="")
        else:
            return servers.status()
    except HarnessError as error:
        print(f"[harness] error: {error}", file=sys.stderr)
        return 1
    return 0


sys.exit(main())
