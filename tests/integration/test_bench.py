"""The benchmark's quick mode runs end to end against the real servers and writes its report.

Not a timed test: it checks that `make bench` keeps working (every stage, every output file),
and that the run it reports was complete; the numbers themselves are the benchmark's business.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from native.servers.endpoints import Endpoints

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_a_complete_report(endpoints: Endpoints, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-progress", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "latest.md").read_text()
    assert "## Throughput at full speed" in report
    assert "## Latency, Kafka record timestamp to database write" in report
    assert "Completeness check: every run stored every valid record" in report
    # Issue 11's references and targets, each measured (tiny sizes in --quick).
    targets = report[report.index("## Targets") :]
    for row in (
        "both databases vs the concurrent raw ceiling",
        "PostgreSQL only vs Quix Streams",
        "both databases vs Kafka Connect, after first records",
        "p50 latency at 1,000 rec/s, both sinks, default settings",
        "p99 latency at 1,000 rec/s, both sinks, default settings",
        "consumer peak RSS, ~60 KB records, default batch settings",
    ):
        line = next(line for line in targets.splitlines() if row in line)
        assert "not measured" not in line, line
    assert "Quix Streams MongoDBSink, measured once on a topic of its own: **" in report
    assert "## Memory with large records" in report
    assert "## Beside Kafka Connect (both databases)" in report
    assert (tmp_path / "latest.png").stat().st_size > 10_000
    assert (tmp_path / "latest.json").exists()
