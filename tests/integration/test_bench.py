"""The benchmark's quick mode runs end to end against the real servers and writes its report.

Not a timed test: it checks that `make bench` keeps working (every stage, every output file),
and that the run it reports was complete; the numbers themselves are the benchmark's business.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.endpoints import Endpoints

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
    assert (tmp_path / "latest.png").stat().st_size > 10_000
    assert (tmp_path / "latest.json").exists()
