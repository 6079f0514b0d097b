"""Benchmark-only entry point: the real consumer under pyinstrument, profiling its busy time.

``python -m bench.profiled OUT_PREFIX`` runs ``quotes_consumer.__main__.main`` unchanged, and
starts a pyinstrument profiler (main thread, 1 ms sampling) when the loop transforms its first
batch, so interpreter start-up and the group join, which say nothing
about throughput, stay out of the profile. The profile ends when the service returns after
SIGTERM; at most one idle poll (<= 0.5 s) at the end is included.

Written on exit: ``OUT_PREFIX.txt`` (pyinstrument's call tree) and ``OUT_PREFIX.json`` (where
the time went, per consumer stage and per function, computed by :func:`summarize`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from pyinstrument.frame import Frame

import quotes_consumer.__main__ as service
from quotes_consumer import loop

# The stages of one batch, as (label, the function in quotes_consumer/loop.py that is it).
LOOP = "quotes_consumer/loop.py"
STAGES: tuple[tuple[str, str], ...] = (
    ("Kafka poll (fetch + decode)", "fill"),
    ("validate + transform", "transform_all"),
    # The sinks and the dead-letter topic are written in their lanes (worker threads), which
    # this profiler (main thread only) does not sample. The main thread waits for them only when
    # two batches are handed over and a third is full; that wait is this stage.
    ("waiting for the oldest batch in flight (written in the lanes)", "keep_alive"),
    ("offset commit", "commit"),
    ("log line + metrics", "report"),
)


def _walk(frame: Frame, ancestors: tuple[str, ...] = ()) -> Iterator[tuple[Frame, bool]]:
    """Every frame, with whether its function already appears above it (recursion)."""
    key = _key(frame)
    yield frame, key in ancestors
    for child in frame.children:
        yield from _walk(child, (*ancestors, key))


def _key(frame: Frame) -> str:
    return f"{frame.function} ({frame.file_path_short}:{frame.line_no})"


def summarize(root: Frame, top: int = 15) -> dict[str, Any]:
    """Wall time per consumer stage, and the functions with the most self and total time.

    Stage times are inclusive (the stage and everything it calls), counted once when a stage
    function calls itself. ``self`` is time with the function itself on top of the stack.
    """
    total = root.time
    stage_time = dict.fromkeys((label for label, _ in STAGES), 0.0)
    self_time: dict[str, float] = {}
    inclusive: dict[str, float] = {}
    for frame, recursive in _walk(root):
        if frame.is_synthetic:
            continue
        key = _key(frame)
        self_time[key] = self_time.get(key, 0.0) + frame.total_self_time
        if not recursive:
            inclusive[key] = inclusive.get(key, 0.0) + frame.time
            in_loop = (frame.file_path or "").replace("\\", "/").endswith(LOOP)
            for label, function in STAGES:
                if in_loop and frame.function == function:
                    stage_time[label] += frame.time
    stages = [
        {"stage": label, "seconds": seconds, "share": seconds / total if total else 0.0}
        for label, seconds in stage_time.items()
    ]
    rest = total - sum(stage_time.values())
    stages.append({"stage": "other", "seconds": rest, "share": rest / total if total else 0.0})

    def ranked(times: dict[str, float]) -> list[dict[str, Any]]:
        best = sorted(times.items(), key=lambda item: item[1], reverse=True)[:top]
        return [
            {"function": k, "seconds": v, "share": v / total if total else 0.0} for k, v in best
        ]

    return {
        "profiled_seconds": total,
        "stages": stages,
        "top_self": ranked(self_time),
        "top_total": ranked(inclusive),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.profiled OUT_PREFIX", file=sys.stderr)
        return 2
    prefix = Path(argv[0])
    profiler = Profiler(interval=0.001, async_mode="disabled")
    original_transform = loop.transform_all

    def profile_from_first_batch(*args: Any, **kwargs: Any) -> Any:
        if not profiler.is_running:
            profiler.start()
        return original_transform(*args, **kwargs)

    loop.transform_all = profile_from_first_batch  # type: ignore[assignment]
    try:
        code = service.main()
    finally:
        if profiler.is_running:
            profiler.stop()
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    if root is None:
        print("bench.profiled: no batch was consumed, nothing profiled", file=sys.stderr)
        return 1
    prefix.with_suffix(".txt").write_text(profiler.output_text(unicode=False, color=False))
    prefix.with_suffix(".json").write_text(json.dumps(summarize(root), indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
