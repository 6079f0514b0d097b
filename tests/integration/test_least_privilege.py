"""The consumer's PostgreSQL login may INSERT into and SELECT from quotes, and nothing else.

The privileges come from sql/010_consumer_privileges.sql, which every test database runs like
the compose container does; the login is made by the harness (native/servers/endpoints.py) or, in
compose, by sql/011_consumer_login.sh, which is run here too, through psql, as the postgres image
runs it at first start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg2
import psycopg2.errors
import pytest

from native.servers.endpoints import SQL_DIR, Endpoints, admin_execute

pytestmark = pytest.mark.integration

ROW = (
    "quotes",
    0,
    0,
    datetime.now(UTC),
    "A quote.",
    "Someone",
    None,
    None,
    "0" * 64,
    2,
    datetime.now(UTC),
)
INSERT = (
    "INSERT INTO quotes (source_topic, source_partition, source_offset, kafka_timestamp, quote,"
    " character, image, character_direction, content_hash, word_count, ingested_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
REFUSED = [
    "UPDATE quotes SET word_count = 3",
    "DELETE FROM quotes",
    "TRUNCATE quotes",
    "DROP TABLE quotes",
    "ALTER TABLE quotes ADD COLUMN extra text",
    "CREATE TABLE mine (id int)",
    "CREATE TEMPORARY TABLE mine (id int)",
    "CREATE VIEW mine AS SELECT 1",
    "SELECT * FROM other_table",
    "SELECT * FROM quotes_per_character",
]


def connect(
    endpoints: Endpoints, database: str, user: str, password: str
) -> psycopg2.extensions.connection:
    params = {**endpoints.pg_params(database), "user": user, "password": password}
    return psycopg2.connect(**params)


def assert_least_privilege(endpoints: Endpoints, database: str, user: str, password: str) -> None:
    owner = psycopg2.connect(**endpoints.pg_params(database))
    with owner, owner.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS other_table (id int)")
    owner.close()
    conn = connect(endpoints, database, user, password)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(INSERT + " ON CONFLICT DO NOTHING", ROW)
            cursor.execute("SELECT count(*) FROM quotes")
            assert cursor.fetchone() == (1,)
        for statement in REFUSED:
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn, conn.cursor() as cur:
                cur.execute(statement)
    finally:
        conn.close()


def test_consumer_login_may_only_insert_and_select(
    endpoints: Endpoints, fresh_database: str
) -> None:
    assert endpoints.consumer_user != endpoints.pg_user
    assert_least_privilege(
        endpoints, fresh_database, endpoints.consumer_user, endpoints.consumer_password
    )


@pytest.fixture
def throwaway_role(endpoints: Endpoints) -> Iterator[str]:
    name = f"consumer_{uuid.uuid4().hex[:8]}"
    yield name
    admin_execute(endpoints, f'DROP ROLE IF EXISTS "{name}"')


def run_login_script(
    endpoints: Endpoints, database: str, extra: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """sql/011_consumer_login.sh with the postgres image's environment, pointed at the harness."""
    psql = shutil.which("psql")
    assert psql, "psql not found: apt-get install postgresql-client (.ci/run does)"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "POSTGRES_USER": endpoints.pg_user,
        "POSTGRES_DB": database,
        "PGHOST": endpoints.pg_host,
        "PGPORT": str(endpoints.pg_port),
        "PGPASSWORD": endpoints.pg_password,
        **extra,
    }
    return subprocess.run(
        [str(SQL_DIR / "011_consumer_login.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_login_script_makes_a_least_privilege_login(
    endpoints: Endpoints, fresh_database: str, throwaway_role: str
) -> None:
    password = "it's a pass:word with \\ and spaces"
    login = {"CONSUMER_POSTGRES_USER": throwaway_role, "CONSUMER_POSTGRES_PASSWORD": password}
    for _ in range(2):  # a second run (a restarted init) changes nothing and still succeeds
        result = run_login_script(endpoints, fresh_database, login)
        assert result.returncode == 0, result.stderr
    assert_least_privilege(endpoints, fresh_database, throwaway_role, password)


def test_compose_login_script_names_a_missing_setting(
    endpoints: Endpoints, fresh_database: str
) -> None:
    result = run_login_script(endpoints, fresh_database, {"CONSUMER_POSTGRES_USER": "x"})
    assert result.returncode != 0
    assert "CONSUMER_POSTGRES_PASSWORD" in result.stderr
