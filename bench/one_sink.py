"""Benchmark-only entry point: the real consumer with one of its two sinks switched off.

``python -m bench.one_sink postgres`` (or ``mongo``) runs ``quotes_consumer.__main__.main`` in
this process, unchanged (settings, health server, signals, loop, dead-lettering, commits), after
replacing the *other* sink class in ``quotes_consumer.loop`` with :class:`NullSink`, which accepts
every batch without doing anything. That isolates what one database costs the pipeline.

Why here and not a consumer setting: a "write to only one database" switch would be a way to
silently lose data in production; the benchmark needs it, the service does not. The patch relies
on ``quotes_consumer.loop.run`` looking up ``PostgresSink`` and ``MongoSink`` as module globals
when it builds its sinks, which this module checks before patching so that a refactoring of the
loop fails loudly here instead of measuring both sinks under a single-sink label.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import quotes_consumer.__main__ as service
from quotes_consumer import loop
from quotes_consumer.record import Quote

SINKS = {"postgres": "MongoSink", "mongo": "PostgresSink"}  # kept sink -> class to replace


class NullSink:
    """Accepts every batch instantly; keeps the name of the sink it stands in for."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, batch: Sequence[Quote]) -> None:
        """Nothing to write: this sink is switched off for the measurement."""

    def close(self) -> None:
        """Nothing to close."""


def switch_off(class_name: str) -> None:
    """Make ``loop.run`` build a NullSink where it would build ``class_name``."""
    original = getattr(loop, class_name, None)
    if original is None or class_name not in loop.run.__code__.co_names:
        raise SystemExit(f"bench.one_sink: quotes_consumer.loop.run no longer uses {class_name}")
    stand_in_name = original.name

    def build(*_args: Any, **_kwargs: Any) -> NullSink:
        return NullSink(stand_in_name)

    setattr(loop, class_name, build)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1 or argv[0] not in SINKS:
        print(f"usage: python -m bench.one_sink {{{','.join(SINKS)}}}", file=sys.stderr)
        return 2
    switch_off(SINKS[argv[0]])
    return service.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
