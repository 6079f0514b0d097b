"""The last five minutes of each stage's count, in memory, for rates and sparklines.

Why in memory: the page is a live view. Five minutes at one look per 2 s is 150 samples per
stage; a restart of the page starts the sparklines afresh, which is what a learner expects of a
window on "now".
"""

from __future__ import annotations

import itertools
import threading
from collections import deque

WINDOW_S = 300.0
RATE_WINDOW_S = 10.0


class History:
    """Per stage, (time, count) samples no older than ``WINDOW_S``; thread-safe."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, when: float, count: int | None) -> None:
        """Record a count; None (the stage did not answer) leaves a gap, not a zero."""
        with self._lock:
            samples = self._samples.setdefault(stage, deque())
            if count is not None:
                samples.append((when, count))
            while samples and samples[0][0] < when - self.window_s:
                samples.popleft()

    def samples(self, stage: str) -> list[tuple[float, int]]:
        with self._lock:
            return list(self._samples.get(stage, ()))

    def rate(self, stage: str, now: float, window_s: float = RATE_WINDOW_S) -> float | None:
        """Count per second over the last ``window_s`` (None with fewer than two samples)."""
        recent = [s for s in self.samples(stage) if s[0] >= now - window_s]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return None
        (t0, c0), (t1, c1) = recent[0], recent[-1]
        return max(0.0, (c1 - c0) / (t1 - t0))

    def sparkline(self, stage: str) -> list[tuple[float, float]]:
        """(time, count per second) between consecutive samples: the 5-minute rate curve.

        A count that went down (a topic recreated, a table emptied) plots as 0, not negative.
        """
        samples = self.samples(stage)
        return [
            (t1, max(0.0, (c1 - c0) / (t1 - t0)))
            for (t0, c0), (t1, c1) in itertools.pairwise(samples)
            if t1 > t0
        ]

    def changed_within(self, stage: str, now: float, window_s: float) -> bool | None:
        """Whether the count moved in the last ``window_s``; None if not watched that long."""
        samples = self.samples(stage)
        if not samples or samples[0][0] > now - window_s:
            return None
        before = [c for t, c in samples if t <= now - window_s]
        recent = [c for t, c in samples if t >= now - window_s]
        baseline = before[-1] if before else samples[0][1]
        return any(c != baseline for c in recent)
