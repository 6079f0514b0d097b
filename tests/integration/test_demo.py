"""``make demo``, as a person runs it: in the background, watched, Ctrl-C'd, started again.

The lab gets a directory of its own under /tmp and ports free at that moment, so it never
meets a person's lab or the test servers. It runs its own Kafka, ZooKeeper, PostgreSQL and
FerretDB (the harness's, with persistent data), so it is checked through its own addresses.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.integration.demo_lab import REPO, Demo, demo_lab, text, wait_exit
from tests.integration.pipeline import wait_for

pytestmark = pytest.mark.integration

ARRIVAL_TIMEOUT_S = 60.0


@pytest.fixture
def demo() -> Iterator[Demo]:
    with demo_lab() as lab:
        yield lab


def _status_states(port: int) -> set[tuple[str, str]]:
    """(stage, state) pairs from the demo's status page data API; empty if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as response:
            return {(s["id"], s["state"]) for s in json.loads(response.read())["stages"]}
    except OSError:
        return set()


def test_make_demo_fills_both_databases_stops_cleanly_and_keeps_its_data(demo: Demo) -> None:
    began = time.monotonic()
    proc, log = demo.start()
    try:
        wait_for(
            "quotes in PostgreSQL and MongoDB",
            lambda: proc.poll() is None and demo.rows() > 0 and demo.documents() > 0,
            ARRIVAL_TIMEOUT_S,
            every_s=1.0,
        )
    except AssertionError as error:
        raise AssertionError(f"{error}; make demo said:\n{text(log)}") from None
    arrival_s = time.monotonic() - began
    print(f"first quotes in both databases {arrival_s:.1f}s after `make demo`")
    output = text(log)
    assert "[lab] new lab in" in output
    assert "producer: the Python stand-in" in output, "the lab says which producer runs"
    for address in (
        f"127.0.0.1:{demo.ports['kafka']}",
        f"127.0.0.1:{demo.ports['postgres']}",
        f"mongodb://127.0.0.1:{demo.ports['mongo']}/",
        f"http://127.0.0.1:{demo.ports['quotes-api']}/quotes",
        f"http://127.0.0.1:{demo.ports['status']}/",
        f"http://127.0.0.1:{demo.ports['pgadmin']}/",
        f"http://127.0.0.1:{demo.ports['mongo-express']}/",
    ):
        assert address in output, f"the table shows {address}"
    wait_for(
        "a status line with rows and documents",
        lambda: re.search(r"PostgreSQL: [1-9][\d,]* rows \| MongoDB: [1-9]", text(log)),
        10,
    )
    wait_for(
        "the status page to show PostgreSQL and MongoDB flowing",
        lambda: _status_states(demo.ports["status"]) >= {("postgres", "ok"), ("mongo", "ok")},
        10,
    )

    # One stored quote, to find again after the restart, with its write time.
    with demo.pg() as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT source_partition, source_offset, ingested_at FROM quotes "
            "ORDER BY ingested_at, source_partition, source_offset LIMIT 1"
        )
        partition, offset, ingested_at = cursor.fetchone()
    conn.close()
    witness_id = f"quotes:{partition}:{offset}"

    # Ctrl-C, as a terminal sends it: to the whole foreground process group.
    os.killpg(proc.pid, signal.SIGINT)
    wait_exit(proc, log)
    output = text(log)
    assert "[lab] stopped" in output, output
    for name in ("pgadmin", "mongo-express", "status", "producer", "consumer", "quotes-api"):
        assert f"[lab] {name}: stopped" in output, f"{name} did not stop on its own:\n{output}"
    assert demo.leftovers() == [], "processes left after Ctrl-C"
    assert demo.rows() == 0, "PostgreSQL still answers after Ctrl-C"

    # A second start reuses the data: the same quote, untouched, and quotes keep coming; this
    # time without the web UIs, whose ports then stay closed.
    began = time.monotonic()
    proc, log = demo.start("UIS=0")
    try:
        wait_for("the second start", lambda: "[lab] lab up in" in text(log), 60)
        print(f"second start up after {time.monotonic() - began:.1f}s")
        output = text(log)
        assert "reusing its data" in output and "new lab" not in output, output
        assert "not started (make demo UIS=0)" in output, output
        assert f":{demo.ports['pgadmin']}/" not in output, output
        with demo.pg() as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT ingested_at FROM quotes WHERE source_topic = 'quotes' "
                "AND source_partition = %s AND source_offset = %s",
                (partition, offset),
            )
            assert cursor.fetchone() == (ingested_at,), "the stored row survived unchanged"
            cursor.execute("SELECT count(*) FROM quotes")
            rows_at_restart = int(cursor.fetchone()[0])
        conn.close()
        client = demo.mongo()
        try:
            assert client["quotes"]["quotes"].find_one({"_id": witness_id}) is not None
        finally:
            client.close()
        wait_for("new quotes after the restart", lambda: demo.rows() > rows_at_restart, 30)

        # The inspection commands, against the running lab.
        counts = demo.make("demo-counts")
        assert counts.returncode == 0, counts.stderr
        assert re.search(r"postgres rows:\s+[1-9]", counts.stdout), counts.stdout
        assert re.search(r"mongo documents:\s+[1-9]", counts.stdout), counts.stdout
        topic = demo.make("demo-topic", "MESSAGES=3")
        assert topic.returncode == 0, topic.stderr
        assert "topic quotes: 3 partition(s)" in topic.stdout
        assert "latest 3 record(s)" in topic.stdout, topic.stdout
        dlq = demo.make("demo-dlq")
        assert dlq.returncode == 0, dlq.stderr
        assert "topic quotes.dlq: 1 partition(s)" in dlq.stdout, dlq.stdout
        psql = subprocess.run(
            [sys.executable, "-m", "native", "psql", "-Atc", "SELECT count(*) > 0 FROM quotes"],
            env=demo.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (psql.returncode, psql.stdout.strip()) == (0, "t"), psql.stderr
        mongo = subprocess.run(
            [sys.executable, "-m", "native", "mongo"],
            input="print('documents', db.quotes.count_documents({}) > 0)\n",
            env=demo.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (mongo.returncode, mongo.stdout.strip()) == (0, "documents True"), mongo.stderr
    finally:
        # `make demo-down`, from another shell, stops the lab running in the background.
        down = demo.make("demo-down", timeout_s=240)
        wait_exit(proc, log)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "[lab] stopped" in text(log)
    assert demo.leftovers() == [], "processes left after make demo-down"

    # make demo-reset asks first (no answer: nothing deleted); CONFIRM=yes deletes the data.
    refused = demo.make("demo-reset")
    assert refused.returncode != 0 and "Aborted." in refused.stdout, refused.stdout
    assert (demo.root / "lab.json").exists()
    reset = demo.make("demo-reset", "CONFIRM=yes")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert not demo.root.exists()
