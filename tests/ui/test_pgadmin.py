"""pgAdmin, used the way the README tells a learner to: log in, open the pre-registered server
without a password prompt, run a README query in the Query Tool, see the consumer's rows.

pgAdmin 9.8 runs natively (native/servers/pgadmin.py) with the server list and ``.pgpass`` that
``pgadmin/render_config.py`` renders, the compose file's ``PGADMIN_CONFIG_*`` settings and its
login e-mail; only the database address differs (the harness's PostgreSQL instead of the
``postgres`` service). The browser is the system's headless Chromium.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from native.servers.endpoints import Endpoints
from native.servers.pgadmin import Database, Login, PgAdmin
from tests.integration.pipeline import free_port
from tests.ui.browser import artifacts_dir, chromium
from tests.ui.conftest import Consumed
from tests.ui.pages import pgadmin_query, total_rows

pytestmark = [pytest.mark.integration, pytest.mark.ui]


@pytest.fixture
def pgadmin(
    endpoints: Endpoints,
    consumed: Consumed,
    compose_services: dict[str, Any],
    tmp_path: Path,
) -> Iterator[PgAdmin]:
    environment = compose_services["pgadmin"]["environment"]
    instance = PgAdmin(
        tmp_path / "pgadmin",
        free_port(),
        Login(environment["PGADMIN_DEFAULT_EMAIL"], secrets.token_urlsafe(16)),
        # pgAdmin logs in as the database owner, as in compose (POSTGRES_USER).
        Database(
            endpoints.pg_host,
            endpoints.pg_port,
            consumed.database,
            endpoints.pg_user,
            endpoints.pg_password,
        ),
        {k: v for k, v in environment.items() if k.startswith("PGADMIN_CONFIG_")},
    )
    instance.workdir.mkdir()
    try:
        yield instance.start()
    finally:
        instance.stop()


def test_query_tool_shows_the_consumers_rows(pgadmin: PgAdmin, consumed: Consumed) -> None:
    rendered = json.loads((pgadmin.data_dir / "servers.json").read_text(encoding="utf-8"))
    server_name = next(iter(rendered["Servers"].values()))["Name"]
    expected = {row["quote"] for row in consumed.rows}
    with chromium() as driver:
        cells = pgadmin_query(
            driver,
            pgadmin.url,
            (pgadmin.login.email, pgadmin.login.password),
            server_name,
            consumed.database,
            lambda found: expected <= found,
        )
        assert {row["character"] for row in consumed.rows} <= cells
        assert total_rows(driver) == len(consumed.rows)
        driver.save_screenshot(str(artifacts_dir() / "pgadmin-query-tool.png"))
