"""The committed benchmark reports are exactly what the renderer makes of their saved runs.

Why: ``python -m bench --render latest.json`` exists so that a change to the report does not cost
another hour of measuring; it is only honest if rendering the saved JSON again gives the report
that was committed with it, and if reading and writing the JSON loses nothing. No server needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import report
from bench.results import from_json, to_json

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
SAVED = [RESULTS, RESULTS / "scale"]


@pytest.mark.parametrize("folder", SAVED, ids=lambda folder: folder.name)
def test_rendering_the_saved_json_gives_the_committed_report(folder: Path) -> None:
    saved = (folder / "latest.json").read_text()
    results = from_json(saved)
    assert report.markdown(results) == (folder / "latest.md").read_text()
    assert to_json(results) == saved
