"""The committed benchmark reports are exactly what the renderer makes of their saved runs.

Why: ``python -m bench --render latest.json`` exists so that a change to the report does not cost
another hour of measuring; it is only honest if rendering the saved JSON again gives the report
that was committed with it, and if reading and writing the JSON loses nothing. No server needed.
"""

from __future__ import annotations

import statistics
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


# A run with Kafka Connect beside the consumer (100k records, both databases, 3 repeats), as
# `python -m bench --sizes 100000 --modes both` saved it.
CONNECT_SAMPLE = Path(__file__).resolve().parent / "bench_samples" / "connect.json"


def test_kafka_connect_renders_beside_the_consumer(tmp_path: Path) -> None:
    saved = CONNECT_SAMPLE.read_text()
    results = from_json(saved)
    assert to_json(results) == saved
    text = report.markdown(results)
    section = text[text.index("## Beside Kafka Connect") :].split("\n## ")[0]
    rows = {
        cells[1]: cells
        for row in section.splitlines()
        if row.startswith("| 100,000 |") and (cells := row.strip("| ").split(" | "))
    }
    assert list(rows) == ["consumer", "Kafka Connect"]
    connect = results.sizes[0].connect

    def median(figure: str) -> float:
        return statistics.median(getattr(run, figure) for run in connect)

    cells = rows["Kafka Connect"]
    assert cells[2].startswith(f"{median('throughput'):,.0f} (")  # median (min-max)
    assert cells[3].startswith(f"{median('from_start'):,.0f} (")
    assert (cells[6], cells[8]) == (f"{median('cpu_s'):,.2f}", f"{median('peak_rss_mb'):,.1f}")
    ours, envelope = (int(rows[name][9].replace(",", "")) for name in rows)
    assert envelope > 2 * ours and "records are larger" in section
    target = next(line for line in text.splitlines() if "both databases vs Kafka Connect" in line)
    assert ">= 1.3x" in target and "not measured" not in target
    report.chart(results, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 10_000
