"""Which stage is fine, falling behind, or down: the rules behind the page's red.

- **down**: the stage's server did not answer one look within the probe timeout, or answered
  with an error (a missing topic, a refused login, a stopped database). Shown from the first
  failed look, so a stopped server turns red within one refresh plus the timeout.
- **behind** (also red, with the reason):
  - consumer group: lag above zero and either no member in the group, or the total lag grew at
    each of the last ``LAG_LOOKS`` looks (10 s at the default refresh): records arrive faster
    than the group stores them;
  - PostgreSQL, MongoDB: the topic grew in the last ``STALL_S`` seconds, the group has lag, and
    the stage's count did not move in that time: records wait that this store does not get;
  - NiFi: GetHTTP has not polled for ``POLL_STALE_S`` seconds (the page must have watched it
    that long first; it polls every 5 s when the flow runs).
- **off** (grey): the stage's server is not part of this lab (NiFi when ``make demo``'s Python
  stand-in produces): nothing to watch, nothing wrong.
- **ok** otherwise. The quotes API, the topic and the dead-letter topic are only ever up or down.
"""

from __future__ import annotations

import itertools
from typing import Any

from streamlab_status.history import History

LAG_LOOKS = 5
STALL_S = 30.0
POLL_STALE_S = 60.0
LAG_SERIES = "consumer.lag"


def judge(
    stage: str,
    reading: dict[str, Any] | None,
    readings: dict[str, dict[str, Any] | None],
    history: History,
    now: float,
) -> tuple[str, str]:
    """(state, reason) for one stage, from this look's readings and the recent history."""
    if reading is not None and reading.get("off"):
        return "off", f"not in this lab: {reading.get('error')}"
    if reading is None or reading.get("error"):
        return "down", (reading or {}).get("error") or "no answer"
    detail = reading.get("detail", {})
    if stage == "consumer":
        lag = int(detail.get("total_lag", 0))
        if lag > 0 and detail.get("members") == 0:
            return "behind", f"no consumer in group {detail.get('group')}; lag {lag}"
        lags = [count for _t, count in history.samples(LAG_SERIES)][-LAG_LOOKS:]
        growing = len(lags) == LAG_LOOKS and all(b > a for a, b in itertools.pairwise(lags))
        if lag > 0 and growing:
            return "behind", f"lag grew for {LAG_LOOKS} looks in a row, now {lag}"
    if stage in ("postgres", "mongo"):
        consumer = readings.get("consumer") or {}
        lag = int(consumer.get("detail", {}).get("total_lag", 0)) if consumer else 0
        topic_moved = history.changed_within("topic", now, STALL_S)
        stage_moved = history.changed_within(stage, now, STALL_S)
        if lag > 0 and topic_moved and stage_moved is False:
            return "behind", f"topic grew but no new {stage} records for {STALL_S:.0f} s"
    if stage == "nifi":
        samples = history.samples("nifi")
        last_poll = detail.get("last_poll")
        watched = bool(samples) and samples[0][0] <= now - POLL_STALE_S
        if watched and (last_poll is None or last_poll < now - POLL_STALE_S):
            return "behind", f"GetHTTP has not polled for {POLL_STALE_S:.0f} s"
    return "ok", ""
