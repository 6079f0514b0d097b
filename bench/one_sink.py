"""Benchmark-only entry point: the real consumer with one of its two sinks switched off.

``python -m bench.one_sink postgres`` (or ``mongo``) runs ``quotes_consumer.__main__.main``
unchanged (settings, health server, signals, loop, dead-lettering, commits), through its public
``build_sinks`` seam: the production sinks are built, and the *other* one is replaced by
:class:`NullSink`, which accepts every batch without doing anything. That isolates what one
database costs the pipeline.

Why here and not a consumer setting: a "write to only one database" switch would be a way to
silently lose data in production; the benchmark needs it, the service does not.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import quotes_consumer.__main__ as service
from quotes_consumer import sinks
from quotes_consumer.record import Quote
from quotes_consumer.settings import Settings

KEPT = ("postgres", "mongo")


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


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1 or argv[0] not in KEPT:
        print(f"usage: python -m bench.one_sink {{{','.join(KEPT)}}}", file=sys.stderr)
        return 2
    return service.main(build_sinks=only(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
