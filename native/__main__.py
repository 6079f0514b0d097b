"""``python -m native``: the lab without Docker (``make demo``, ``make demo-down``, ...)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from glob import glob

from native import lab as native_lab
from native import lab_servers, observe, provision
from native.layout import LabError


def psql(args: list[str]) -> int:
    """Replace this process with psql, logged in to the lab's database through its pgpass."""
    lab = native_lab.running_lab()
    native_lab.write_pgpass(lab)
    found = shutil.which("psql") or next(iter(sorted(glob("/usr/lib/postgresql/*/bin/psql"))), None)
    if found is None:
        raise LabError(
            "psql not found: install the PostgreSQL client (apt-get install postgresql-client)"
        )
    params = lab.pg_params()
    env = {**os.environ, "PGPASSFILE": str(lab.home.pgpass)}
    command = [found, "-h", params["host"], "-p", str(params["port"]), "-U", params["user"]]
    os.execve(found, [*command, *args, params["dbname"]], env)
    return 1  # not reached


def mongo() -> int:
    """A Python prompt with pymongo and ``db`` = the lab's quotes database: the lab has no
    mongosh (it is not packaged for the registries this project installs from)."""
    lab = native_lab.running_lab()
    startup = (
        "import sys, pymongo\n"
        f"client = pymongo.MongoClient({lab.mongo_uri!r}, serverSelectionTimeoutMS=5000)\n"
        "db = client['quotes']\n"
        "print('Python + pymongo; db is the database quotes of the native lab (FerretDB). '\n"
        "      'Try: db.quotes.count_documents({}) or db.quotes.find_one()', file=sys.stderr)\n"
    )
    os.execv(sys.executable, [sys.executable, "-i", "-c", startup])
    return 1  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m native", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole pipeline; Ctrl-C stops it, keeping the data")
    up.add_argument(
        "--producer",
        choices=native_lab.PRODUCERS,
        default=os.environ.get("PRODUCER") or "stand-in",
        help="stand-in (default): the Python producer; nifi: the NiFi flow (slow to start)",
    )
    up.add_argument(
        "--no-uis",
        dest="uis",
        action="store_false",
        help="leave out pgAdmin and mongo-express (make demo UIS=0)",
    )
    sub.add_parser("down", help="stop a running lab (its data is kept)")
    reset = sub.add_parser("reset", help="stop the lab and delete its data")
    reset.add_argument("--yes", action="store_true", help="do not ask")
    sub.add_parser("status", help="is the lab running, and on which ports")
    sub.add_parser("counts", help="records, lag, rows, documents, dead letters")
    sql = sub.add_parser("psql", help="psql in the lab's database (extra arguments go to psql)")
    sql.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("mongo", help="a Python prompt with pymongo, db = the quotes database")
    for verb, what in (("stop", "stop a database of the running lab"), ("start", "start it again")):
        held = sub.add_parser(verb, help=f"{what} (as docker compose {verb})")
        held.add_argument("service", choices=lab_servers.STOPPABLE)
    for name, topic in (("topic", provision.TOPIC), ("dlq", provision.DLQ_TOPIC)):
        reader = sub.add_parser(name, help=f"the {topic} topic and its latest records")
        reader.add_argument("--messages", type=int, default=10, help="how many (default 10)")
        reader.set_defaults(topic=topic)
    # psql's own options (-c, -At, ...) pass through untouched; any other command refuses them.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "psql":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "up":
            return native_lab.up(args.producer, args.uis)
        if args.command == "down":
            return native_lab.down()
        if args.command == "reset":
            return native_lab.reset(args.yes)
        if args.command == "status":
            return native_lab.status()
        if args.command == "mongo":
            return mongo()
        if args.command == "psql":
            return psql([*extra, *args.args])
        if args.command in ("stop", "start"):
            lab = native_lab.running_lab()
            verb = lab_servers.stop_one if args.command == "stop" else lab_servers.start_one
            verb(lab.home, lab.ports, args.service)
            return 0
        probe = native_lab.running_lab().probe()
        try:
            if args.command == "counts":
                observe.print_counts(probe)
            else:
                if args.messages < 1:
                    raise LabError("MESSAGES must be 1 or more")
                observe.print_latest(
                    probe, args.topic, args.messages, headers=args.command == "dlq"
                )
        finally:
            probe.close()
    except LabError as error:
        print(f"[lab] error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
