"""The entry point's process tuning: the garbage collector is tuned before the loop runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

import quotes_consumer.__main__ as service
from tests.unit.test_settings import MINIMAL


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """The test process's collector as it was, whatever the test did to it."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("gc_restored")
def test_the_loop_runs_with_startup_frozen_and_young_collections_rarer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens there: the dead-letter publisher's background connect fails at once.
    local = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "CONSUMER_METRICS_PORT": "0"}
    for name, value in {**MINIMAL, **local}.items():
        monkeypatch.setenv(name, value)
    gc.unfreeze()
    seen: dict[str, Any] = {}

    def run(*_args: object) -> None:  # the loop, replaced: what does it run with?
        seen["threshold"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()

    monkeypatch.setattr(service, "run", run)
    assert service.main(build_sinks=lambda _settings: []) == 0
    assert seen["threshold"] == (service.GC_YOUNG_THRESHOLD, 10, 10)
    assert seen["frozen"] > 1_000, "the modules and clients startup made are frozen"
