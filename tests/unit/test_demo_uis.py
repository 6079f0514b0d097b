"""make demo's pieces that need no server: pgAdmin's renamed server, kept logins, held stops."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from native import lab_servers, lab_uis
from native.layout import LabError, Layout

REPO = Path(__file__).resolve().parents[2]


def test_render_config_names_the_demo_server_and_keeps_the_pgpass(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PGADMIN_DEFAULT_EMAIL": "admin@example.com",
        "POSTGRES_USER": "lab",
        "POSTGRES_DB": "quotes",
        "POSTGRES_PASSWORD": "pw",
        "PGADMIN_SERVER_HOST": "127.0.0.1",
        "PGADMIN_SERVER_PORT": "25432",
        "PGADMIN_SERVER_NAME": lab_uis.SERVER_NAME,
        "STREAMLAB_PGADMIN_DATA_DIR": str(tmp_path),
        "STREAMLAB_PGADMIN_TEMPLATE": str(REPO / "pgadmin" / "servers.json"),
        "PGADMIN_SERVER_JSON_FILE": str(tmp_path / "servers.json"),
    }
    script = [sys.executable, str(REPO / "pgadmin" / "render_config.py")]
    result = subprocess.run(script, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    server = next(iter(json.loads((tmp_path / "servers.json").read_text())["Servers"].values()))
    assert (server["Name"], server["Group"]) == (lab_uis.SERVER_NAME, "streamlab")
    pgpass = tmp_path / "storage" / "admin_example.com" / ".pgpass"
    assert pgpass.read_text(encoding="utf-8") == "127.0.0.1:25432:*:lab:pw\n"


def test_logins_are_made_once_private_and_kept(tmp_path: Path) -> None:
    home = Layout(tmp_path / "lab")
    who = lab_uis.logins(home)
    first = lab_uis.secret(who.pgadmin_password_file)
    assert lab_uis.secret(who.pgadmin_password_file) == first, "kept between starts"
    assert len(first) >= 24
    assert stat.S_IMODE(who.pgadmin_password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.uis.stat().st_mode) == 0o700
    assert who.pgadmin_email == "admin@example.com"  # .env.example's
    assert who.mongo_express_user == "admin"


def test_a_database_stopped_on_purpose_is_not_taken_for_a_crash(tmp_path: Path) -> None:
    home = Layout(tmp_path / "lab")
    home.create()
    ports = {"zookeeper": 1, "kafka": 1, "postgres": 1, "mongo": 1}  # nothing listens on 1
    assert {name for name, _log in lab_servers.silent(home, ports, nifi=False)} == {
        "ZooKeeper",
        "Kafka",
        "PostgreSQL",
        "FerretDB",
    }
    lab_servers.held_mark(home, "postgres").touch()
    silent = {name for name, _log in lab_servers.silent(home, ports, nifi=False)}
    assert "PostgreSQL" not in silent and "FerretDB" in silent
    lab_servers.release_all(home)
    assert "PostgreSQL" in {name for name, _log in lab_servers.silent(home, ports, nifi=False)}


def test_only_the_databases_can_be_stopped_by_name(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="postgres or mongo"):
        lab_servers.stop_one(Layout(tmp_path), {}, "kafka")
