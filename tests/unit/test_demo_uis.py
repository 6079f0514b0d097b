"""make demo's pieces that need no server: pgAdmin's renamed server, kept logins, held stops."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from native import lab_servers, lab_uis
from native.layout import LabError, Layout

REPO = Path(__file__).resolve().parents[2]


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
