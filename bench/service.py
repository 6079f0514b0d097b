"""The real consumer, ``quotes_consumer.__main__.main`` unchanged, with a sink switched off or
under a profiler: ``python -m bench.service [--only postgres|mongo] [--profile OUT_PREFIX]``.

``--only`` goes through the service's public ``build_sinks`` seam: the production sinks are
built and the other one is replaced by :class:`NullSink`, to isolate what one database costs.
Why here and not a consumer setting: a "write to only one database" switch would be a way to
silently lose data in production; the benchmark needs it, the service does not.

``--profile`` starts pyinstrument (main thread, 1 ms sampling) when the loop transforms its
first batch, so start-up and the group join stay out, and stops when the service returns after
SIGTERM (at most one idle poll, <= 0.5 s, included). Written: ``OUT_PREFIX.txt`` (the call
tree) and ``OUT_PREFIX.json`` (where the time went, by :func:`summarize`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pyinstrument import Profiler
from pyinstrument.frame import Frame

import quotes_consumer.__main__ as service
from quotes_consumer import loop, sinks
from quotes_consumer.record import Quote
from quotes_consumer.settings import Settings

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


class NullSink:
    """Accepts every batch instantly; keeps the name of the sink it stands in for."""

    holds_back = False

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, batch: Sequence[Quote]) -> None:
        """Nothing to write: this sink is switched off for the measurement."""

    def commit(self, keep: Sequence[Quote], withdrawn: Sequence[Quote]) -> None:
        """Nothing to commit."""

    def rollback(self) -> None:
        """Nothing to forget."""

    def close(self) -> None:
        """Nothing to close."""


def only(kept: str) -> service.SinkBuilder:
    def build(settings: Settings) -> list[sinks.Sink]:
        built = sinks.build(settings)
        for sink in built:
            if sink.name != kept:
                sink.close()
        return [sink if sink.name == kept else NullSink(sink.name) for sink in built]

    return build


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


def profiled(prefix: Path, build_sinks: service.SinkBuilder) -> int:
    profiler = Profiler(interval=0.001, async_mode="disabled")
    original_transform = loop.transform_all

    def profile_from_first_batch(*args: Any, **kwargs: Any) -> Any:
        if not profiler.is_running:
            profiler.start()
        return original_transform(*args, **kwargs)

    loop.transform_all = profile_from_first_batch  # type: ignore[assignment]
    try:
        code = service.main(build_sinks=build_sinks)
    finally:
        if profiler.is_running:
            profiler.stop()
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    if root is None:
        print("bench.service: no batch was consumed, nothing profiled", file=sys.stderr)
        return 1
    prefix.with_suffix(".txt").write_text(profiler.output_text(unicode=False, color=False))
    prefix.with_suffix(".json").write_text(json.dumps(summarize(root), indent=2))
    return code


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service")
    parser.add_argument("--only", choices=("postgres", "mongo"), help="the other sink is a no-op")
    parser.add_argument("--profile", type=Path, metavar="OUT_PREFIX", help="under pyinstrument")
    args = parser.parse_args(argv)
    build_sinks = only(args.only) if args.only else sinks.build
    if args.profile:
        return profiled(args.profile, build_sinks)
    return service.main(build_sinks=build_sinks)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
